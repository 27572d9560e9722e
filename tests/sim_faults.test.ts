/**
 * Simulator fault injection and lifecycle: allocation failures, the old
 * blocking-pending bug, process and domain crashes, domain events, paging,
 * the virtual clock, and the simulator's own hygiene (no runtime-specific
 * imports).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { POLLNVAL } from "../core/driver.ts";
import { ClosedHandleError, XenUsageError } from "../core/errors.ts";
import { serverAndClient } from "./helpers/sim.ts";
import { callFailed } from "./helpers/errors.ts";
import { GNTST, type SimDomainEvent, SimHypervisor, VIRQ, VirtualClock } from "../sim/mod.ts";

const code = callFailed;

describe("sim faults: allocation failures (ENOMEM)", () => {
  it("fails the next open of each kind once, then works", () => {
    const hv = new SimHypervisor();
    const p = hv.backend(0);
    for (
      const [call, open] of [
        ["xenevtchn_open", () => p.openEventChannels()],
        ["xengnttab_open", () => p.openGrantTable()],
        ["xengntshr_open", () => p.openGrantShare()],
      ] as const
    ) {
      hv.faults.failNextAllocation();
      assert.throws(open, code(call, "ENOMEM"));
      assert.ok(open().fd > 0);
    }
    assert.equal(hv.faults.armedAllocationFaults, 0);
  });

  it("a failed bind closes the new port; bindInterdomain leaves the peer unbound for us", () => {
    const hv = new SimHypervisor();
    const d1 = hv.createDomain();
    const a = hv.backend(0).openEventChannels();
    const b = hv.backend(d1).openEventChannels();
    const pa = a.bindUnboundPort(d1);
    hv.faults.failNextAllocation({ call: "xenevtchn_bind_interdomain" });
    assert.throws(() => b.bindInterdomain(0, pa), code("xenevtchn_bind_interdomain", "ENOMEM"));
    assert.equal(hv.portStatus(0, pa).kind, "unbound");
    assert.equal(hv.stats(d1).openPorts, 0);
    const pb = b.bindInterdomain(0, pa);
    assert.equal(b.pending(), pb);
    hv.faults.failNextAllocation({ domid: d1 });
    assert.ok(a.bindUnboundPort(d1) > 0, "the fault is for d1 only");
    assert.throws(() => b.bindUnboundPort(0), code("xenevtchn_bind_unbound_port", "ENOMEM"));
    assert.equal(hv.stats(d1).openPorts, 1, "the failed bind left no port behind");
  });

  it("map, share and copy fail with ENOMEM and leave nothing behind", () => {
    const hv = new SimHypervisor();
    const p = hv.backend(0);
    const shr = p.openGrantShare();
    const gnt = p.openGrantTable();
    hv.faults.failNextAllocation({ count: 3 });
    assert.throws(() => shr.sharePages(0, 1, true), code("xengntshr_share_pages", "ENOMEM"));
    assert.throws(() => gnt.map([0], [8], true), code("xengnttab_map_grant_ref", "ENOMEM"));
    assert.throws(() => gnt.grantCopy([]), code("xengnttab_grant_copy", "ENOMEM"));
    assert.equal(hv.stats().activeGrants, 0);
    const s = shr.sharePages(0, 1, true);
    assert.equal(gnt.map([0], [s.refs[0]], true).count, 1);
  });
});

describe("sim faults: pending() would block", () => {
  it("throws a distinctive XenUsageError only when nothing is pending", () => {
    const hv = new SimHypervisor();
    hv.faults.pendingWouldBlock = true;
    const h = hv.backend(0).openEventChannels();
    const p = h.bindUnboundPort(0);
    const q = h.bindInterdomain(0, p);
    assert.equal(h.pending(), q);
    assert.throws(
      () => h.pending(),
      (e) => e instanceof XenUsageError && /^pending\(\) would block/.test(e.message),
    );
  });
});

describe("sim faults: process crash", () => {
  it("the kernel closes every handle, firing unmap notifications; other processes live on", () => {
    const { hv, d1, sevt, sport, s, client, cevt, cport } = serverAndClient();
    const gnt = client.openGrantTable();
    const m = gnt.map([0], [s.refs[0]], true, { offset: 0, port: cport });
    m.bytes[0] = 1;
    const bystander = hv.backend(d1).openEventChannels();
    const bport = bystander.bindUnboundPort(0);
    client.crash();
    client.crash();
    assert.equal(client.alive, false);
    assert.equal(s.memory.bytes[0], 0, "live byte cleared");
    assert.equal(sevt.pending(), sport, "peer notified");
    assert.equal(hv.portStatus(0, sport).kind, "unbound");
    assert.throws(() => cevt.notify(cport), ClosedHandleError);
    assert.throws(() => gnt.unmap(m), ClosedHandleError);
    assert.throws(() => client.openEventChannels(), ClosedHandleError);
    assert.equal(hv.portStatus(d1, bport).kind, "unbound", "other processes keep their ports");
    assert.equal(hv.stats(d1).handles.total, 1);
  });
});

describe("sim faults: domain lifecycle", () => {
  it("shutdown then destroy emits shutdown then death; a second shutdown is ignored", () => {
    const hv = new SimHypervisor();
    const d1 = hv.createDomain();
    const seen: SimDomainEvent[] = [];
    const off = hv.onDomainEvent((e) => seen.push(e));
    assert.equal(hv.shutdown(d1, "reboot"), true);
    assert.equal(hv.shutdown(d1, "crash"), false);
    assert.deepEqual(hv.domainInfo(d1), {
      domid: d1,
      state: "shutdown",
      shutdownReason: "reboot",
      abi: "fifo",
    });
    hv.destroy(d1);
    assert.equal(hv.domainInfo(d1), undefined);
    hv.ejectDisk(0, "hdc");
    off();
    hv.destroy(hv.createDomain());
    assert.deepEqual(seen, [
      { type: "shutdown", domid: d1, reason: "reboot", reasonCode: 1 },
      { type: "death", domid: d1 },
      { type: "disk-eject", domid: 0, vdev: "hdc" },
    ]);
    assert.throws(() => hv.destroy(0), XenUsageError);
    assert.throws(() => hv.destroy(d1), XenUsageError);
    assert.throws(() => hv.backend(d1), XenUsageError);
    assert.equal(hv.createDomain(), d1 + 2, "domids are not reused at once");
  });

  it("a destroyed domain's peers see their ports unbound, without any event", async () => {
    const hv = new SimHypervisor();
    const d1 = hv.createDomain();
    const a = hv.backend(0).openEventChannels();
    const pa = a.bindUnboundPort(d1);
    const guest = hv.backend(d1);
    const b = guest.openEventChannels();
    b.bindInterdomain(0, pa);
    b.pending();
    const waiting = b.waitReadable();
    hv.crashDomain(d1);
    assert.equal(await waiting, POLLNVAL);
    assert.equal(hv.portStatus(0, pa).kind, "unbound");
    assert.equal(a.pollNow(), 0, "no event on peer death");
    a.notify(pa);
    assert.throws(() => b.pending(), ClosedHandleError);
    assert.equal(guest.alive, false);
  });

  it("no unmap notification from a dead domain; its shares stay mapped by others", () => {
    const { hv, d1, server, sevt, s, client: guest, cport } = serverAndClient();
    const m = guest.openGrantTable().map([0], [s.refs[0]], true, { offset: 0, port: cport });
    const gs = guest.openGrantShare().sharePages(0, 1, true);
    const dm = server.openGrantTable().map([d1], [gs.refs[0]], true);
    s.memory.bytes[0] = 1;
    hv.destroy(d1);
    assert.equal(s.memory.bytes[0], 1, "the dead kernel cleared nothing");
    assert.equal(sevt.pollNow(), 0, "and sent nothing");
    assert.equal(m.bytes.length, 0);
    assert.equal(hv.grantStatus(0, s.refs[0])!.pins, 0, "Xen released the dead domain's mapping");
    dm.bytes[5] = 6;
    assert.equal(dm.bytes[5], 6, "dom0 still maps the dead domain's page");
    assert.equal(hv.stats().mappings, 1);
  });

  it("VIRQ_DOM_EXC reaches dom0 on crashDomain", () => {
    const hv = new SimHypervisor();
    const d1 = hv.createDomain();
    const h = hv.backend(0).openEventChannels();
    const p = h.bindVirq(VIRQ.DOM_EXC);
    hv.crashDomain(d1);
    assert.equal(h.pending(), p);
  });
});

describe("sim faults: paging", () => {
  function paged() {
    const hv = new SimHypervisor();
    const d1 = hv.createDomain();
    const s = hv.backend(d1).openGrantShare().sharePages(0, 1, true);
    const gnt = hv.backend(0).openGrantTable();
    return { hv, d1, s, gnt, ref: s.refs[0] };
  }

  it("map waits (on the virtual clock) for the frame to be paged back in", () => {
    const { hv, d1, gnt, ref } = paged();
    hv.pageOut(d1, ref, { pageInAfterMs: 100 });
    const m = gnt.map([d1], [ref], true);
    assert.equal(m.count, 1);
    assert.equal(hv.now(), 105, "retries at 0, 1, 3, ..., 91, 105 ms");
    assert.throws(() => hv.pageOut(d1, ref), XenUsageError, "a mapped frame cannot be paged out");
  });

  it("a frame that never comes back fails after Linux's 32.64 s bound (EINVAL / bad_page)", () => {
    const { hv, d1, gnt, ref } = paged();
    hv.pageOut(d1, ref);
    assert.throws(() => gnt.map([d1], [ref], true), code("xengnttab_map_grant_ref", "EINVAL"));
    assert.equal(hv.now(), 32_640);
    const seg = {
      source: { ref, domid: d1, offset: 0 },
      dest: { local: new Uint8Array(1) },
      len: 1,
    };
    assert.deepEqual(gnt.grantCopy([seg]), [GNTST.bad_page]);
    hv.pageIn(d1, ref);
    assert.deepEqual(gnt.grantCopy([seg]), [GNTST.okay]);
    assert.equal(hv.now(), 65_280);
  });

  it("pagingMaxDelay bounds the retry explicitly", () => {
    const hv = new SimHypervisor({ pagingMaxDelay: 4 });
    const d1 = hv.createDomain();
    const ref = hv.backend(d1).openGrantShare().sharePages(0, 1, true).refs[0];
    hv.pageOut(d1, ref);
    assert.throws(
      () => hv.backend(0).openGrantTable().map([d1], [ref], true),
      code("xengnttab_map_grant_ref", "EINVAL"),
    );
    assert.equal(hv.now(), 6);
  });
});

describe("sim: virtual clock", () => {
  it("fires timers in due order, ties in scheduling order; clearTimer cancels", () => {
    const c = new VirtualClock();
    const log: string[] = [];
    c.setTimer(() => log.push("b"), 20);
    c.setTimer(() => log.push("a"), 10);
    c.setTimer(() => log.push("a2"), 10);
    const x = c.setTimer(() => log.push("x"), 15);
    assert.equal(c.clearTimer(x), true);
    c.advance(15);
    assert.deepEqual(log, ["a", "a2"]);
    assert.equal(c.now(), 15);
    c.advance(5);
    assert.deepEqual(log, ["a", "a2", "b"]);
    assert.throws(() => c.advance(-1), XenUsageError);
    c.setTimer(() => c.advance(1), 0);
    assert.throws(() => c.advance(0), XenUsageError);
  });
});

describe("sim: hygiene", () => {
  it("sim/ imports only its own modules, core/{driver,errors,validate,xenstore/*}.ts and the pure ABIs", () => {
    const dir = fileURLToPath(new URL("../sim/", import.meta.url));
    const files = readdirSync(dir, { recursive: true })
      .map(String)
      .filter((f) => f.endsWith(".ts"));
    assert.ok(files.length > 10);
    assert.ok(files.some((f) => f.startsWith("xenstore/")), "sim/xenstore/ is scanned");
    for (const f of files) {
      const src = readFileSync(dir + f, "utf8");
      assert.doesNotMatch(src, /\b(Deno|Bun)\./, `${f} uses a runtime API`);
      assert.doesNotMatch(src, /from "node:/, `${f} imports a node: module`);
      const up = f.includes("/") ? "\\.\\./\\.\\." : "\\.\\.";
      const below = new RegExp(
        `^${up}/(core/(driver|errors|validate|xenstore/[a-z_]+)|plugins/abi/mod)\\.ts$`,
      );
      for (const [, spec] of src.matchAll(/from "([^"]+)"/g)) {
        assert.ok(
          /^\.\/([a-z_0-9]+\/)?[a-z_0-9]+\.ts$/.test(spec) ||
            (f.includes("/") && /^\.\.\/[a-z_0-9]+\.ts$/.test(spec)) ||
            below.test(spec),
          `${f} imports ${spec}`,
        );
      }
    }
  });
});
