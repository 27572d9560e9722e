/**
 * The real domain event source (a @releaseDomain watch plus domain
 * information, as libxl builds DOMAIN_SHUTDOWN / DOMAIN_DEATH) through the
 * EventContext API: exact event sequences for poweroff, reboot, crash,
 * destroy before shutdown and ten domains one after another, on fakes of
 * both dependencies and on the simulator; dying flags, reused domids,
 * failures as disasters, and no watch left behind after close.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  attachSimClockLoop,
  DisasterError,
  EventContext,
  eventMask,
  EventType,
  type PollSlot,
  simDomainInfo,
  simReleaseDomainWatch,
  xenDomainSource,
  type XenEvent,
} from "../plugins/osevent/mod.ts";
import { SimHypervisor } from "../sim/mod.ts";
import { FakeDomains, FakeReleaseWatch, settle } from "./helpers/domain_fakes.ts";

const DOMAIN = eventMask(EventType.DOMAIN_SHUTDOWN) | eventMask(EventType.DOMAIN_DEATH);
const POWEROFF = 0, REBOOT = 1, CRASH = 3;

function fakeContext(...domids: number[]) {
  const xs = new FakeReleaseWatch();
  const hv = new FakeDomains(...domids);
  const source = xenDomainSource({ xenstore: xs, domains: hv });
  const ctx = new EventContext({ domains: source });
  return { xs, hv, source, ctx };
}

/** What the application's loop sees after the watch loop ran: one poll turn, then every event. */
async function turn(ctx: EventContext): Promise<string[]> {
  await settle();
  const fds: PollSlot[] = [];
  ctx.beforepoll(fds, -1);
  ctx.afterpoll(fds);
  const out: string[] = [];
  for (let ev = ctx.eventCheck(DOMAIN); ev; ev = ctx.eventCheck(DOMAIN)) out.push(show(ev));
  return out;
}

function show(ev: XenEvent): string {
  switch (ev.type) {
    case EventType.DOMAIN_SHUTDOWN:
      return `shutdown ${ev.domid} ${ev.shutdownReasonName} ${String(ev.forUser)}`;
    case EventType.DOMAIN_DEATH:
      return `death ${ev.domid} ${String(ev.forUser)}`;
    default:
      return `type ${ev.type}`;
  }
}

describe("xenDomainSource on fakes of XenStore and libxenctrl", () => {
  it("registers one @releaseDomain watch and reads the list as a baseline", async () => {
    const { xs, hv, source, ctx } = fakeContext(1);
    assert.deepEqual(xs.paths, ["@releaseDomain"]);
    assert.deepEqual(await turn(ctx), [], "the initial event finds no change");
    assert.equal(hv.lists, 2, "baseline + the initial event's scan");
    assert.deepEqual(source.stats(), { subscriptions: 1, scans: 1, tracked: 2 });
    ctx.close();
  });

  it("poweroff: SHUTDOWN poweroff, then DEATH when destroyed", async () => {
    const { xs, hv, ctx } = fakeContext(1);
    ctx.enableDomainDeath(1, "g1");
    assert.deepEqual(await turn(ctx), []);
    hv.shutdown(1, POWEROFF);
    xs.fire();
    assert.deepEqual(await turn(ctx), ["shutdown 1 poweroff g1"]);
    xs.fire(); // xenstored may fire again; the shutdown is reported once
    assert.deepEqual(await turn(ctx), []);
    hv.destroy(1);
    xs.fire();
    assert.deepEqual(await turn(ctx), ["death 1 g1"]);
    ctx.close();
  });

  it("reboot: SHUTDOWN reboot and DEATH of the old domain; the new one is a new domid", async () => {
    const { xs, hv, ctx } = fakeContext(1);
    ctx.enableDomainDeath(1, "old");
    hv.shutdown(1, REBOOT);
    xs.fire();
    assert.deepEqual(await turn(ctx), ["shutdown 1 reboot old"]);
    hv.destroy(1);
    hv.create(2); // the toolstack builds the rebooted guest as domain 2
    xs.fire();
    assert.deepEqual(await turn(ctx), ["death 1 old"]);
    ctx.enableDomainDeath(2, "new");
    hv.shutdown(2, POWEROFF);
    xs.fire();
    assert.deepEqual(await turn(ctx), ["shutdown 2 poweroff new"]);
    ctx.close();
  });

  it("crash: SHUTDOWN crash then DEATH; destroyed before the scan, DEATH only", async () => {
    const { xs, hv, ctx } = fakeContext(1, 2);
    ctx.enableDomainDeath(1, "a");
    ctx.enableDomainDeath(2, "b");
    hv.shutdown(1, CRASH);
    xs.fire();
    assert.deepEqual(await turn(ctx), ["shutdown 1 crash a"]);
    hv.destroy(1);
    xs.fire();
    assert.deepEqual(await turn(ctx), ["death 1 a"]);
    hv.shutdown(2, CRASH);
    hv.destroy(2); // on_crash=destroy won the race with the scan
    xs.fire();
    xs.fire();
    assert.deepEqual(await turn(ctx), ["death 2 b"]);
    ctx.close();
  });

  it("destroy before shutdown: DEATH only; a dying domain counts as dead", async () => {
    const { xs, hv, ctx } = fakeContext(1, 2);
    ctx.enableDomainDeath(1, "a");
    ctx.enableDomainDeath(2, "b");
    hv.destroy(1);
    hv.dying(2);
    xs.fire();
    assert.deepEqual(await turn(ctx), ["death 1 a", "death 2 b"]);
    hv.destroy(2);
    xs.fire();
    assert.deepEqual(await turn(ctx), [], "nothing after DEATH");
    ctx.close();
  });

  it("ten domains one after another: exactly SHUTDOWN then DEATH for each, in order", async () => {
    const { xs, hv, source, ctx } = fakeContext();
    const seen: string[] = [];
    const expected: string[] = [];
    for (let i = 1; i <= 10; i++) {
      const domid = hv.create(i);
      ctx.enableDomainDeath(domid, `guest-${i}`);
      hv.shutdown(domid, POWEROFF);
      xs.fire();
      seen.push(...await turn(ctx));
      hv.destroy(domid);
      xs.fire();
      seen.push(...await turn(ctx));
      expected.push(`shutdown ${i} poweroff guest-${i}`, `death ${i} guest-${i}`);
    }
    assert.deepEqual(seen, expected);
    assert.equal(source.stats().tracked, 1, "only dom0 is still tracked");
    ctx.close();
  });

  it("the source itself reports a shutdown once per shut-down period, in domid order", async () => {
    const xs = new FakeReleaseWatch();
    const hv = new FakeDomains(1, 2);
    const source = xenDomainSource({ xenstore: xs, domains: hv });
    const raw: unknown[] = [];
    const stop = source.subscribe((event) => raw.push(event));
    hv.shutdown(2, CRASH);
    hv.shutdown(1, 2); // suspend
    xs.fire();
    await settle();
    xs.fire();
    await settle();
    assert.deepEqual(raw, [
      { type: "shutdown", domid: 1, reasonCode: 2 },
      { type: "shutdown", domid: 2, reasonCode: CRASH },
    ]);
    raw.length = 0;
    hv.destroy(1);
    hv.create(1); // a new domain reuses domid 1 (a new handle): the old one died
    hv.destroy(2);
    xs.fire();
    await settle();
    assert.deepEqual(raw, [{ type: "death", domid: 1 }, { type: "death", domid: 2 }]);
    stop();
    stop();
    await settle();
    assert.equal(xs.active, 0);
  });

  it("a domain created after the last scan and enabled is tracked until its death", async () => {
    const { xs, hv, ctx } = fakeContext();
    await turn(ctx);
    hv.create(7); // no @releaseDomain for a new domain
    ctx.enableDomainDeath(7, "late");
    hv.destroy(7);
    xs.fire();
    assert.deepEqual(await turn(ctx), ["death 7 late"]);
    ctx.close();
  });

  it("enabling reads the state: already shut down gives SHUTDOWN, missing gives DEATH", async () => {
    const { hv, ctx } = fakeContext(3);
    hv.shutdown(3, REBOOT);
    ctx.enableDomainDeath(3, "x");
    ctx.enableDomainDeath(9, "y");
    assert.deepEqual(await turn(ctx), ["shutdown 3 reboot x", "death 9 y"]);
    ctx.close();
  });

  it("a reused domid with another handle is the old domain's DEATH", async () => {
    const { xs, hv, ctx } = fakeContext(4);
    ctx.enableDomainDeath(4, "first");
    hv.destroy(4);
    hv.create(4); // same id, new handle, before the scan
    xs.fire();
    assert.deepEqual(await turn(ctx), ["death 4 first"]);
    ctx.enableDomainDeath(4, "second");
    hv.shutdown(4, POWEROFF);
    xs.fire();
    assert.deepEqual(await turn(ctx), ["shutdown 4 poweroff second"]);
    ctx.close();
  });

  it("close aborts the watch: nothing registered, nothing tracked, later fires ignored", async () => {
    const { xs, hv, source, ctx } = fakeContext(1);
    ctx.enableDomainDeath(1, "a");
    await turn(ctx);
    assert.equal(xs.active, 1);
    ctx.close();
    await settle();
    assert.equal(xs.active, 0, "the watch was removed");
    assert.deepEqual(source.stats(), { subscriptions: 0, scans: 1, tracked: 0 });
    const lists = hv.lists;
    hv.destroy(1);
    xs.fire();
    await settle();
    assert.equal(hv.lists, lists, "no scan after close");
  });

  it("100 contexts opened and closed leave no watch behind", async () => {
    const xs = new FakeReleaseWatch();
    const hv = new FakeDomains(1);
    const source = xenDomainSource({ xenstore: xs, domains: hv });
    for (let i = 0; i < 100; i++) {
      using ctx = new EventContext({ domains: source });
      ctx.enableDomainDeath(1, i);
      if (i % 10 === 0) await settle();
    }
    await settle();
    assert.equal(xs.registered, 100);
    assert.equal(xs.active, 0);
    assert.equal(source.stats().subscriptions, 0);
  });

  it("a domain list that cannot be read is a disaster (told to the handler, with errno)", async () => {
    const { xs, hv, ctx } = fakeContext(1);
    const told: [number, string, number][] = [];
    ctx.registerCallbacks({
      disaster: (type, message, errno) => told.push([type, message, errno]),
    });
    await turn(ctx);
    hv.listError = Object.assign(new Error("xc_domain_getinfolist failed"), { errno: 13 });
    xs.fire();
    await turn(ctx);
    assert.deepEqual(told, [[0, "cannot read the domain list after @releaseDomain", 13]]);
    ctx.enableDomainDeath(1, "a");
    hv.listError = undefined;
    hv.destroy(1);
    xs.fire();
    assert.deepEqual(await turn(ctx), ["death 1 a"], "the watch stayed");
    ctx.close();
  });

  it("a failed watch is fatal to a context without a disaster handler", async () => {
    const { xs, ctx } = fakeContext(1);
    await turn(ctx);
    xs.fail(new Error("ECONNRESET"));
    await settle();
    assert.ok(ctx.failure instanceof DisasterError, String(ctx.failure));
    assert.match(ctx.failure!.message, /@releaseDomain watch failed/);
    ctx.close();
    assert.equal(xs.active, 0);
  });
});

describe("xenDomainSource on the simulator (simDomainInfo + simReleaseDomainWatch)", () => {
  function simContext() {
    const hv = new SimHypervisor();
    const source = xenDomainSource({
      xenstore: simReleaseDomainWatch(hv),
      domains: simDomainInfo(hv),
    });
    const ctx = new EventContext({ clock: hv.clock, domains: source });
    attachSimClockLoop(ctx);
    return { hv, source, ctx };
  }

  async function waitFor(ctx: EventContext, n: number): Promise<string[]> {
    const got: string[] = [];
    const signal = AbortSignal.timeout(5000);
    for (let i = 0; i < n; i++) got.push(show(await ctx.eventWait(DOMAIN, undefined, { signal })));
    return got;
  }

  it("poweroff, reboot, crash and destroy before shutdown give the exact sequences", async () => {
    const { hv, ctx } = simContext();
    const [a, b, c, d] = [
      hv.createDomain(),
      hv.createDomain(),
      hv.createDomain(),
      hv.createDomain(),
    ];
    for (const [domid, name] of [[a, "a"], [b, "b"], [c, "c"], [d, "d"]] as const) {
      ctx.enableDomainDeath(domid, name);
    }
    hv.shutdown(a, "poweroff");
    assert.deepEqual(await waitFor(ctx, 1), [`shutdown ${a} poweroff a`]);
    hv.destroy(a);
    assert.deepEqual(await waitFor(ctx, 1), [`death ${a} a`]);
    hv.shutdown(b, "reboot");
    assert.deepEqual(await waitFor(ctx, 1), [`shutdown ${b} reboot b`]);
    hv.destroy(b);
    assert.deepEqual(await waitFor(ctx, 1), [`death ${b} b`]);
    hv.shutdown(c, "crash");
    assert.deepEqual(await waitFor(ctx, 1), [`shutdown ${c} crash c`]);
    hv.destroy(c);
    assert.deepEqual(await waitFor(ctx, 1), [`death ${c} c`]);
    hv.destroy(d);
    assert.deepEqual(await waitFor(ctx, 1), [`death ${d} d`]);
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(ctx.eventCheck(DOMAIN), null, "nothing more");
    ctx.close();
  });

  it("ten guests one after another, and the watch is gone after close", async () => {
    const hv = new SimHypervisor();
    let watching = 0;
    const counted = {
      onDomainEvent: (l: Parameters<SimHypervisor["onDomainEvent"]>[0]) => {
        watching++;
        const off = hv.onDomainEvent(l);
        return () => {
          watching--;
          off();
        };
      },
    };
    const source = xenDomainSource({
      xenstore: simReleaseDomainWatch(counted),
      domains: simDomainInfo(hv),
    });
    const ctx = new EventContext({ clock: hv.clock, domains: source });
    attachSimClockLoop(ctx);
    const seen: string[] = [];
    const expected: string[] = [];
    for (let i = 0; i < 10; i++) {
      const domid = hv.createDomain();
      ctx.enableDomainDeath(domid, i);
      hv.shutdown(domid, "poweroff");
      seen.push(...await waitFor(ctx, 1));
      hv.destroy(domid);
      seen.push(...await waitFor(ctx, 1));
      expected.push(`shutdown ${domid} poweroff ${i}`, `death ${domid} ${i}`);
    }
    assert.deepEqual(seen, expected);
    assert.equal(watching, 1);
    ctx.close();
    await settle();
    assert.equal(watching, 0, "the simulated watch unsubscribed");
    assert.equal(source.stats().subscriptions, 0);
  });
});
