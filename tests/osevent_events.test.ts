/**
 * The event API end to end on the simulator's domains: DOMAIN_SHUTDOWN
 * (with the reason), DOMAIN_DEATH, DISK_EJECT, user values, exactly-once
 * delivery per enable, duplicates, disable, close, eventCheck / eventWait /
 * events(), registerCallbacks, disasters, abort, and 10,000 domains.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ClosedHandleError, XenCallError, XenUsageError } from "../core/errors.ts";
import {
  attachSimClockLoop,
  DisasterError,
  EventContext,
  eventMask,
  EventType,
  type OsEventRef,
  OsEventRegError,
  type PendingPortSource,
  type PollSlot,
  simDomainSource,
  type XenEvent,
} from "../plugins/osevent/mod.ts";
import { SimHypervisor } from "../sim/mod.ts";

const SHUTDOWN = eventMask(EventType.DOMAIN_SHUTDOWN);
const DEATH = eventMask(EventType.DOMAIN_DEATH);
const EJECT = eventMask(EventType.DISK_EJECT);
const DOMAIN = SHUTDOWN | DEATH;
const PORT = eventMask(EventType.EVTCHN_PORT);

/** A small guest (cheap to create in bulk). */
const SMALL = { maxEventChannels: 8, maxGrantFrames: 1, maxMaptrackFrames: 1 };

function simContext() {
  const hv = new SimHypervisor();
  const ctx = new EventContext({ clock: hv.clock, domains: simDomainSource(hv) });
  return { hv, ctx };
}

/** One turn of the application's poll loop (no real fds: the sim's events come as due timeouts). */
function pollOnce(ctx: EventContext): void {
  const fds: PollSlot[] = [];
  const r = ctx.beforepoll(fds, -1);
  assert.equal(r.needed, 0);
  ctx.afterpoll(fds);
}

function drain(ctx: EventContext, mask: number): XenEvent[] {
  const out: XenEvent[] = [];
  for (let ev = ctx.eventCheck(mask); ev; ev = ctx.eventCheck(mask)) out.push(ev);
  return out;
}

function summary(ev: XenEvent | null): unknown[] | null {
  if (!ev) return null;
  switch (ev.type) {
    case EventType.DOMAIN_SHUTDOWN:
      return ["shutdown", ev.domid, ev.forUser, ev.shutdownReasonName, ev.shutdownReason];
    case EventType.DOMAIN_DEATH:
      return ["death", ev.domid, ev.forUser];
    case EventType.DISK_EJECT:
      return ["eject", ev.domid, ev.forUser, ev.vdev];
    case EventType.EVTCHN_PORT:
      return ["port", ev.port, ev.forUser];
  }
}

describe("domain events, poll-loop style step by step", () => {
  it("shutdown (with its reason) then death, each exactly once, only once the loop runs", () => {
    const { hv, ctx } = simContext();
    const d = hv.createDomain(SMALL);
    ctx.enableDomainDeath(d, 7n);
    pollOnce(ctx);
    assert.equal(ctx.eventCheck(DOMAIN), null, "a running domain generates nothing");
    hv.shutdown(d, "reboot");
    assert.equal(ctx.eventCheck(DOMAIN), null, "nothing is generated inside the simulator's call");
    assert.equal(ctx.beforepoll([], -1).timeout, 0, "xenchan asks the loop to come back at once");
    ctx.afterpoll([]);
    assert.deepEqual(summary(ctx.eventCheck(DOMAIN)), ["shutdown", d, 7n, "reboot", 1]);
    assert.equal(ctx.eventCheck(DOMAIN), null);
    hv.destroy(d);
    pollOnce(ctx);
    assert.deepEqual(summary(ctx.eventCheck(DOMAIN)), ["death", d, 7n]);
    pollOnce(ctx);
    assert.equal(ctx.eventCheck(DOMAIN), null);
    assert.equal(ctx.beforepoll([], -1).timeout, -1, "nothing left to do");
    ctx.close();
  });

  it("a domain destroyed before it shuts down gives only DOMAIN_DEATH", () => {
    const { hv, ctx } = simContext();
    const d = hv.createDomain(SMALL);
    ctx.enableDomainDeath(d, "u");
    hv.destroy(d);
    pollOnce(ctx);
    assert.deepEqual(drain(ctx, DOMAIN).map(summary), [["death", d, "u"]]);
    ctx.close();
  });

  it("a crash gives shutdown 'crash' then death, in order", () => {
    const { hv, ctx } = simContext();
    const d = hv.createDomain(SMALL);
    ctx.enableDomainDeath(d, "u");
    hv.crashDomain(d);
    pollOnce(ctx);
    assert.deepEqual(drain(ctx, DOMAIN).map(summary), [["shutdown", d, "u", "crash", 3], [
      "death",
      d,
      "u",
    ]]);
    ctx.close();
  });

  it("enabling twice gives each occurrence twice, each with its own user value (any JS value)", () => {
    const { hv, ctx } = simContext();
    const d = hv.createDomain(SMALL);
    const obj = { guest: "web" };
    ctx.enableDomainDeath(d, obj);
    ctx.enableDomainDeath(d, 2n ** 64n - 1n);
    hv.shutdown(d, "poweroff");
    hv.destroy(d);
    pollOnce(ctx);
    const got = drain(ctx, DOMAIN);
    assert.equal(got.length, 4);
    assert.equal(got[0].forUser, obj);
    assert.equal(got[1].forUser, 2n ** 64n - 1n);
    assert.deepEqual(got.map((e) => e.type), [1, 1, 2, 2]);
    ctx.close();
  });

  it("reads the state when enabling: an already shut down domain reports SHUTDOWN, a missing one DEATH", () => {
    const { hv, ctx } = simContext();
    const d = hv.createDomain(SMALL);
    hv.shutdown(d, "suspend");
    ctx.enableDomainDeath(d, "late");
    ctx.enableDomainDeath(4242, "never-existed");
    pollOnce(ctx);
    assert.deepEqual(drain(ctx, DOMAIN).map(summary), [
      ["shutdown", d, "late", "suspend", 2],
      ["death", 4242, "never-existed"],
    ]);
    hv.shutdown(d, "reboot"); // ignored by the simulator: already shut down
    hv.destroy(d);
    pollOnce(ctx);
    assert.deepEqual(drain(ctx, DOMAIN).map(summary), [["death", d, "late"]]);
    ctx.close();
  });

  it("disable after the event occurred may still return it; disable before generates nothing", () => {
    const { hv, ctx } = simContext();
    const a = hv.createDomain(SMALL);
    const b = hv.createDomain(SMALL);
    const genA = ctx.enableDomainDeath(a, "a");
    const genB = ctx.enableDomainDeath(b, "b");
    hv.destroy(a);
    pollOnce(ctx);
    genA.disable();
    genB.disable();
    genB.disable(); // idempotent
    assert.equal(genB.enabled, false);
    hv.destroy(b);
    pollOnce(ctx);
    assert.deepEqual(drain(ctx, DOMAIN).map(summary), [["death", a, "a"]]);
    assert.equal(ctx.stats().enabled, 0);
    ctx.close();
  });

  it("disk eject events carry the vdev exactly as given, once per eject, only for that vdev, until death", () => {
    const { hv, ctx } = simContext();
    const d = hv.createDomain(SMALL);
    const gen = ctx.enableDiskEject(d, "hdc", { cd: true });
    ctx.enableDiskEject(d, "xvdb", "other");
    hv.ejectDisk(d, "hdc");
    hv.ejectDisk(d, "hdc");
    hv.ejectDisk(d, "hdd");
    pollOnce(ctx);
    const got = drain(ctx, EJECT);
    assert.deepEqual(
      got.map((e) => summary(e)?.slice(0, 2).concat([(e as { vdev: string }).vdev])),
      [
        ["eject", d, "hdc"],
        ["eject", d, "hdc"],
      ],
    );
    assert.deepEqual(got[0].forUser, { cd: true });
    gen.disable();
    hv.ejectDisk(d, "hdc");
    hv.ejectDisk(d, "xvdb");
    pollOnce(ctx);
    assert.deepEqual(drain(ctx, EJECT).map(summary), [["eject", d, "other", "xvdb"]]);
    assert.throws(() => ctx.enableDiskEject(d, ""), XenUsageError);
    ctx.close();
  });

  it("eventCheck honours the typemask, filters and predicates, oldest first", () => {
    const { hv, ctx } = simContext();
    const ds = [hv.createDomain(SMALL), hv.createDomain(SMALL), hv.createDomain(SMALL)];
    for (const d of ds) ctx.enableDomainDeath(d, `u${d}`);
    ctx.enableDiskEject(ds[0], "hdc", "cd");
    hv.ejectDisk(ds[0], "hdc");
    for (const d of ds) hv.shutdown(d, "poweroff");
    for (const d of ds) hv.destroy(d);
    pollOnce(ctx);
    assert.equal(ctx.stats().queued, 7);
    assert.deepEqual(summary(ctx.eventCheck(DEATH, { domid: ds[1] })), [
      "death",
      ds[1],
      `u${ds[1]}`,
    ]);
    assert.deepEqual(summary(ctx.eventCheck(DOMAIN, { forUser: `u${ds[2]}` })), [
      "shutdown",
      ds[2],
      `u${ds[2]}`,
      "poweroff",
      0,
    ]);
    assert.deepEqual(summary(ctx.eventCheck(DOMAIN, (e) => e.domid === ds[2])), [
      "death",
      ds[2],
      `u${ds[2]}`,
    ]);
    assert.equal(ctx.eventCheck(EJECT, { domid: ds[1] }), null);
    assert.equal(ctx.eventCheck(0), null);
    // what is left, oldest first across types
    assert.deepEqual(drain(ctx, ~0).map((e) => [e.type, e.domid]), [
      [EventType.DISK_EJECT, ds[0]],
      [EventType.DOMAIN_SHUTDOWN, ds[0]],
      [EventType.DOMAIN_SHUTDOWN, ds[1]],
      [EventType.DOMAIN_DEATH, ds[0]],
    ]);
    assert.throws(() => ctx.eventCheck(2 ** 33), XenUsageError);
    ctx.close();
  });

  it("enable refuses bad arguments and a context without a domain source", () => {
    const { ctx } = simContext();
    assert.throws(() => ctx.enableDomainDeath(-1), XenUsageError);
    assert.throws(() => ctx.enableDomainDeath(1.5), XenUsageError);
    ctx.close();
    const bare = new EventContext();
    assert.throws(() => bare.enableDomainDeath(1), /no domain event source/);
    bare.close();
  });
});

describe("domain events with the virtual-clock loop", () => {
  it("eventWait resolves with the event; waiters with filters each get their own", async () => {
    const { hv, ctx } = simContext();
    attachSimClockLoop(ctx);
    const a = hv.createDomain(SMALL);
    const b = hv.createDomain(SMALL);
    ctx.enableDomainDeath(a, "a");
    ctx.enableDomainDeath(b, "b");
    const waitB = ctx.eventWait(DEATH, { domid: b });
    const waitA = ctx.eventWait(DEATH, (e) => e.forUser === "a");
    const waitAny = ctx.eventWait(SHUTDOWN);
    hv.destroy(a);
    hv.shutdown(b, "watchdog");
    hv.destroy(b);
    assert.deepEqual(summary(await waitA), ["death", a, "a"]);
    assert.deepEqual(summary(await waitB), ["death", b, "b"]);
    assert.deepEqual(summary(await waitAny), ["shutdown", b, "b", "watchdog", 4]);
    assert.equal(ctx.stats().queued, 0);
    assert.equal(ctx.stats().waiters, 0);
    ctx.close();
  });

  it("the async iterator yields every event once, and ends quietly on abort", async () => {
    const { hv, ctx } = simContext();
    attachSimClockLoop(ctx);
    const ds = Array.from({ length: 5 }, () => hv.createDomain(SMALL));
    for (const d of ds) ctx.enableDomainDeath(d, d);
    const abort = new AbortController();
    const seen: number[] = [];
    const done = (async () => {
      for await (const ev of ctx.events(DEATH, undefined, { signal: abort.signal })) {
        seen.push(ev.domid);
        if (seen.length === ds.length) abort.abort();
      }
    })();
    for (const d of ds) hv.destroy(d);
    await done;
    assert.deepEqual(seen, ds);
    assert.equal(ctx.stats().waiters, 0);
    ctx.close();
  });

  it("eventWait rejects with the signal's reason on abort and leaves no waiter behind", async () => {
    const { ctx } = simContext();
    attachSimClockLoop(ctx);
    const abort = new AbortController();
    const wait = ctx.eventWait(DEATH, { domid: 3 }, { signal: abort.signal });
    assert.equal(ctx.stats().waiters, 1);
    abort.abort(new Error("stop waiting"));
    await assert.rejects(wait, /stop waiting/);
    assert.equal(ctx.stats().waiters, 0);
    await assert.rejects(ctx.eventWait(DEATH, undefined, { signal: abort.signal }), /stop waiting/);
    await assert.rejects(ctx.eventWait(0), XenUsageError);
    ctx.close();
  });

  it("timeouts of the virtual-clock loop follow virtual time; due ones need no time to pass", async () => {
    const hv = new SimHypervisor();
    const ctx = new EventContext({ clock: hv.clock });
    const loop = attachSimClockLoop(ctx);
    const fired: string[] = [];
    ctx.addTimeout(hv.now() + 50, () => fired.push(`t50@${hv.now()}`));
    ctx.addTimeout(hv.now() + 20, () => fired.push(`t20@${hv.now()}`));
    const cancelled = ctx.addTimeout(hv.now() + 30, () => fired.push("cancelled"));
    ctx.addTimeout(0, () => fired.push("now"));
    assert.equal(loop.stats().timeouts, 4);
    await Promise.resolve();
    assert.deepEqual(fired, ["now"], "a due timeout fires from a microtask, without advancing");
    hv.advance(19);
    assert.deepEqual(fired, ["now"]);
    cancelled.deregister(); // becomes "fire now", then ignored
    hv.advance(1);
    assert.deepEqual(fired, ["now", "t20@20"]);
    await Promise.resolve();
    hv.advance(100);
    assert.deepEqual(fired, ["now", "t20@20", "t50@50"]);
    assert.equal(loop.stats().timeouts, 0);
    assert.equal(ctx.stats().awaitingOccurred, 0);
    assert.equal(loop.name, "sim-clock");
    ctx.close();
  });

  it("refuses fds unless given an fd waiter", () => {
    const hv = new SimHypervisor();
    const ctx = new EventContext({ clock: hv.clock });
    attachSimClockLoop(ctx);
    assert.throws(
      () => ctx.addFdWatch(3, 1, () => {}),
      (e) =>
        e instanceof OsEventRegError &&
        /watches no file descriptors/.test(String((e.cause as Error).message)),
    );
    ctx.close();
  });

  it("refuses a context that is not on the virtual clock", () => {
    const ctx = new EventContext();
    assert.throws(() => attachSimClockLoop(ctx), /simulator's clock/);
    ctx.close();
  });

  it("10,000 simulated domains: every DOMAIN_DEATH is delivered exactly once with its user value", {
    timeout: 120_000,
  }, async () => {
    const { hv, ctx } = simContext();
    attachSimClockLoop(ctx);
    const N = 10_000;
    const ds: number[] = [];
    for (let i = 0; i < N; i++) ds.push(hv.createDomain(SMALL));
    for (const d of ds) ctx.enableDomainDeath(d, BigInt(d) * 3n);
    // half are awaited one by one (indexed waiters), half come through the iterator
    const waits = ds.slice(0, N / 2).map((d) => ctx.eventWait(DEATH, { domid: d }));
    assert.equal(ctx.stats().waiters, N / 2);
    for (const d of ds) hv.destroy(d);
    const first = await Promise.all(waits);
    const seen = new Set<number>();
    for (const [i, ev] of first.entries()) {
      assert.equal(ev.domid, ds[i]);
      assert.equal(ev.forUser, BigInt(ds[i]) * 3n);
      seen.add(ev.domid);
    }
    const abort = new AbortController();
    for await (const ev of ctx.events(DEATH, undefined, { signal: abort.signal })) {
      assert.ok(!seen.has(ev.domid), `domain ${ev.domid} reported twice`);
      assert.equal(ev.forUser, BigInt(ev.domid) * 3n);
      seen.add(ev.domid);
      if (seen.size === N) abort.abort();
    }
    assert.equal(seen.size, N);
    assert.equal(ctx.eventCheck(~0), null, "nothing more than one event per domain");
    assert.equal(ctx.stats().queued, 0);
    ctx.close();
  });
});

describe("registerCallbacks", () => {
  it("events of masked types go to eventOccurs (which may call the context), others stay queued", () => {
    const { hv, ctx } = simContext();
    const d = hv.createDomain(SMALL);
    const got: unknown[] = [];
    ctx.registerCallbacks({
      mask: DEATH,
      eventOccurs: (ev) => {
        got.push(summary(ev));
        // calling back in is permitted from eventOccurs
        got.push(summary(ctx.eventCheck(SHUTDOWN)));
      },
    });
    ctx.enableDomainDeath(d, "cb");
    hv.shutdown(d, "reboot");
    hv.destroy(d);
    pollOnce(ctx);
    assert.deepEqual(got, [["death", d, "cb"], ["shutdown", d, "cb", "reboot", 1]]);
    assert.equal(ctx.stats().queued, 0);
    ctx.close();
  });

  it("the latest call wins; an exception from eventOccurs comes out of the dispatching afterpoll", () => {
    const { hv, ctx } = simContext();
    const a = hv.createDomain(SMALL);
    const b = hv.createDomain(SMALL);
    ctx.registerCallbacks({ eventOccurs: () => assert.fail("replaced") });
    const seen: number[] = [];
    ctx.registerCallbacks({
      eventOccurs: (ev) => {
        seen.push(ev.domid);
        if (ev.domid === a) throw new Error("callback bug");
      },
    });
    ctx.enableDomainDeath(a);
    ctx.enableDomainDeath(b);
    hv.destroy(a);
    hv.destroy(b);
    assert.throws(() => pollOnce(ctx), /callback bug/);
    assert.deepEqual(seen, [a, b], "the other event was still delivered");
    assert.throws(() => ctx.registerCallbacks({ mask: DEATH }), XenUsageError);
    ctx.registerCallbacks({});
    ctx.close();
  });
});

/** A handle whose reads fail like a ring overflow. */
class OverflowingHandle implements PendingPortSource {
  closed = false;
  constructor(readonly fd: number) {}
  tryPending(): number | null {
    throw new XenCallError("xenevtchn_pending", 27); // EFBIG
  }
  unmask(): void {}
}

describe("disasters", () => {
  it("with a handler: it is told the type, message and errno; calling the context from it is refused", () => {
    const ctx = new EventContext();
    const calls: unknown[] = [];
    ctx.registerCallbacks({
      disaster: (type, message, errno) => {
        calls.push([type, errno, /fd 40/.test(message)]);
        for (const attempt of [() => ctx.eventCheck(PORT), () => ctx.close(), () => ctx.stats()]) {
          try {
            attempt();
            calls.push("allowed");
          } catch (e) {
            calls.push(e instanceof XenUsageError && /disaster handler/.test((e as Error).message));
          }
        }
      },
    });
    ctx.watchEventChannels(new OverflowingHandle(40));
    const fds: PollSlot[] = [{ fd: 0, events: 0, revents: 0 }];
    ctx.beforepoll(fds);
    fds[0].revents = 1;
    ctx.afterpoll(fds);
    assert.deepEqual(calls, [[EventType.EVTCHN_PORT, 27, true], true, true, true]);
    assert.equal(ctx.failure, null, "the context carries on");
    assert.equal(ctx.stats().watches, 0, "the broken watch was dropped");
    ctx.close();
  });

  it("without a handler it is fatal to the context: the detecting call throws, waiters reject, later calls throw", async () => {
    const ctx = new EventContext();
    const waiting = ctx.eventWait(PORT);
    ctx.watchEventChannels(new OverflowingHandle(41));
    const fds: PollSlot[] = [{ fd: 0, events: 0, revents: 0 }];
    ctx.beforepoll(fds);
    fds[0].revents = 1;
    const thrown = (() => {
      try {
        ctx.afterpoll(fds);
      } catch (e) {
        return e;
      }
    })();
    assert.ok(thrown instanceof DisasterError);
    assert.equal(thrown.eventType, EventType.EVTCHN_PORT);
    assert.equal(thrown.code, "EFBIG");
    await assert.rejects(waiting, (e) => e === thrown);
    assert.equal(ctx.failure, thrown);
    assert.throws(() => ctx.eventCheck(PORT), (e) => e === thrown);
    assert.throws(() => ctx.beforepoll([]), (e) => e === thrown);
    assert.equal(ctx.stats().fdWatches, 0, "everything was deregistered");
    ctx.close(); // still allowed
    assert.throws(() => ctx.eventCheck(PORT), ClosedHandleError);
  });

  it("a hook refusing the timeout a domain event needs, with nobody to return the error to, is a disaster", async () => {
    const hv = new SimHypervisor();
    const ctx = new EventContext({ clock: hv.clock, domains: simDomainSource(hv) });
    let refuse = false;
    const armed: OsEventRef[] = [];
    ctx.registerHooks({
      fdRegister: () => 0,
      fdModify: () => undefined,
      fdDeregister: () => {},
      timeoutRegister: (_deadline, ref) => {
        if (refuse) throw new Error("timer table full");
        armed.push(ref);
        return 0;
      },
      timeoutModify: () => undefined,
    });
    const d = hv.createDomain(SMALL);
    refuse = true;
    assert.throws(
      () => ctx.enableDomainDeath(d, "x"),
      OsEventRegError,
      "enable's own registration fails to its caller",
    );
    refuse = false;
    ctx.enableDomainDeath(d, "x");
    ctx.occurredTimeout(armed.pop()!); // the initial state check runs; nothing to report
    const waiting = ctx.eventWait(DEATH);
    refuse = true;
    hv.destroy(d); // the death needs a new timeout; the hook refuses, inside the simulator's call
    const failure = ctx.failure;
    assert.ok(failure instanceof DisasterError, "the context failed");
    assert.equal(failure.eventType, 0);
    assert.match(String((failure.cause as Error).message), /timer table full/);
    await assert.rejects(waiting, (e) => e === failure);
    assert.throws(() => ctx.eventCheck(DEATH), (e) => e === failure);
    ctx.close();
  });
});

describe("closing the context", () => {
  it("cancels everything: waiters reject, iterators end, generators stop, the source is left alone", async () => {
    const { hv, ctx } = simContext();
    attachSimClockLoop(ctx);
    const d = hv.createDomain(SMALL);
    const gen = ctx.enableDomainDeath(d, "x");
    const wait = ctx.eventWait(DEATH);
    const iter = (async () => {
      const out: XenEvent[] = [];
      for await (const ev of ctx.events(SHUTDOWN)) out.push(ev);
      return out;
    })();
    await Promise.resolve();
    ctx.close();
    ctx.close();
    await assert.rejects(wait, ClosedHandleError);
    assert.deepEqual(await iter, []);
    gen.disable(); // a no-op now
    hv.shutdown(d, "poweroff");
    hv.destroy(d); // no listener left to mind
    assert.throws(() => ctx.eventCheck(DEATH), ClosedHandleError);
    assert.throws(() => ctx.enableDomainDeath(d), ClosedHandleError);
    assert.equal(ctx.closed, true);
  });

  it("late occurrences from the application's hooks after close are ignored", () => {
    const hv = new SimHypervisor();
    const ctx = new EventContext({ clock: hv.clock, domains: simDomainSource(hv) });
    const timeouts: OsEventRef[] = [];
    const modified: unknown[] = [];
    ctx.registerHooks({
      fdRegister: () => 0,
      fdModify: () => undefined,
      fdDeregister: () => {},
      timeoutRegister: (_d, ref) => {
        timeouts.push(ref);
        return timeouts.length;
      },
      timeoutModify: (token, deadline) => {
        modified.push([token, deadline]);
        return undefined;
      },
    });
    ctx.enableDomainDeath(hv.createDomain(SMALL));
    assert.equal(timeouts.length, 1);
    ctx.close();
    assert.deepEqual(modified, [[1, 0]], "close asked for the pending timeout to fire now");
    ctx.occurredTimeout(timeouts[0]); // ignored, no throw
  });
});
