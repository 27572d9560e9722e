/**
 * Simulator event channels against the driver interface (EventChannelDriver):
 * Xen port semantics (event_channel.c) and the Linux /dev/xen/evtchn driver
 * semantics (evtchn.c) with every error code.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { POLLERR, POLLIN, POLLNVAL } from "../core/driver.ts";
import { ClosedHandleError, XenCallError, XenUsageError } from "../core/errors.ts";
import { callFailed } from "./helpers/errors.ts";
import {
  DOMID_SELF,
  type PortEventState,
  QueuePortState,
  type SimEventChannelDriver,
  SimHypervisor,
  VIRQ,
} from "../sim/mod.ts";

const code = callFailed;

function setup() {
  const hv = new SimHypervisor();
  const d1 = hv.createDomain();
  const a = hv.backend(0).openEventChannels();
  const b = hv.backend(d1).openEventChannels();
  return { hv, d1, a, b };
}

/** a (dom0) offers a port, b (d1) binds it and drains the bind event. */
function connect() {
  const s = setup();
  const pa = s.a.bindUnboundPort(s.d1);
  const pb = s.b.bindInterdomain(0, pa);
  assert.equal(s.b.pending(), pb);
  s.b.unmask(pb);
  return { ...s, pa, pb };
}

describe("sim event channels: binding", () => {
  it("allocates the lowest free port, starting at 1 (port 0 reserved)", () => {
    const { hv, d1, a } = setup();
    assert.equal(hv.portStatus(0, 0).kind, "reserved");
    const p1 = a.bindUnboundPort(d1);
    const p2 = a.bindUnboundPort(d1);
    const p3 = a.bindUnboundPort(d1);
    assert.deepEqual([p1, p2, p3], [1, 2, 3]);
    a.unbind(p2);
    assert.equal(a.bindUnboundPort(d1), 2);
    assert.equal(hv.portStatus(0, p1).kind, "unbound");
    assert.equal(hv.portStatus(0, p1).remoteDomid, d1);
  });

  it("gives unique fds from 1 << 20 and domids from 1 upward", () => {
    const { hv, a, b } = setup();
    assert.ok(a.fd >= 1 << 20 && b.fd > a.fd);
    assert.equal(hv.createDomain(), 2);
    assert.deepEqual(hv.domids(), [0, 1, 2]);
  });

  it("bindInterdomain connects both ends and sets the new port pending at once", () => {
    const { hv, d1, a, b } = setup();
    const pa = a.bindUnboundPort(d1);
    assert.equal(a.pollNow(), 0);
    const pb = b.bindInterdomain(0, pa);
    assert.equal(b.pollNow(), POLLIN);
    assert.equal(b.pending(), pb);
    assert.equal(a.pollNow(), 0, "the offering side gets no event");
    const st = hv.portStatus(d1, pb);
    assert.equal(st.kind, "interdomain");
    assert.equal(st.remoteDomid, 0);
    assert.equal(st.remotePort, pa);
    assert.equal(hv.portStatus(0, pa).remotePort, pb);
  });

  it("bindInterdomain accepts DOMID_SELF and loopback within one handle", () => {
    const { a } = setup();
    const p = a.bindUnboundPort(0);
    const q = a.bindInterdomain(DOMID_SELF, p);
    assert.equal(a.pending(), q);
    a.unmask(q);
    a.notify(p);
    assert.equal(a.pending(), q);
    a.notify(q);
    assert.equal(a.pending(), p);
  });

  it("bindInterdomain errors: ESRCH, EINVAL (free, bound, other domain, out of range)", () => {
    const { hv, d1, a, b } = setup();
    const call = "xenevtchn_bind_interdomain";
    assert.throws(() => b.bindInterdomain(42, 1), code(call, "ESRCH"));
    assert.throws(() => b.bindInterdomain(0, 5), code(call, "EINVAL"));
    assert.throws(() => b.bindInterdomain(0, 200_000), code(call, "EINVAL"));
    const d2 = hv.createDomain();
    const forD2 = a.bindUnboundPort(d2);
    assert.throws(() => b.bindInterdomain(0, forD2), code(call, "EINVAL"));
    const pa = a.bindUnboundPort(d1);
    b.bindInterdomain(0, pa);
    assert.throws(() => b.bindInterdomain(0, pa), code(call, "EINVAL"));
    assert.equal(hv.stats(d1).boundPorts, 1, "failed binds leak nothing");
  });

  it("bindUnboundPort does not check that the remote domain exists (dummy XSM)", () => {
    const { hv, a } = setup();
    const p = a.bindUnboundPort(999);
    assert.equal(hv.portStatus(0, p).remoteDomid, 999);
  });

  it("ENOSPC when the domain's max_event_channels are used up", () => {
    const hv = new SimHypervisor();
    const d = hv.createDomain({ maxEventChannels: 3 });
    const h = hv.backend(d).openEventChannels();
    for (let i = 0; i < 3; i++) h.bindUnboundPort(0);
    assert.throws(() => h.bindUnboundPort(0), code("xenevtchn_bind_unbound_port", "ENOSPC"));
  });

  it("rejects arguments that do not fit the C types with XenUsageError", () => {
    const { a } = setup();
    assert.throws(() => a.notify(-1), XenUsageError);
    assert.throws(() => a.unmask(1.5), XenUsageError);
    assert.throws(() => a.bindUnboundPort(70_000), XenUsageError);
    assert.throws(() => a.bindInterdomain(1, 2 ** 32), XenUsageError);
    assert.throws(() => a.restrict(-3), XenUsageError);
  });
});

describe("sim event channels: delivery and masking", () => {
  it("a delivered port stays masked until unmask; notifies meanwhile coalesce into one", () => {
    const { hv, d1, a, b, pa, pb } = connect();
    a.notify(pa);
    assert.equal(b.pending(), pb);
    assert.ok(hv.portStatus(d1, pb).masked);
    a.notify(pa);
    a.notify(pa);
    assert.equal(b.pollNow(), 0, "masked: nothing queued");
    assert.ok(hv.portStatus(d1, pb).pending);
    b.unmask(pb);
    assert.equal(b.pending(), pb);
    assert.equal(b.pollNow(), 0, "three notifies, one delivery");
    b.unmask(pb);
    assert.equal(b.pollNow(), 0);
    assert.ok(!hv.portStatus(d1, pb).masked);
  });

  it("pending() returns ports in arrival order", () => {
    const { d1, a, b } = setup();
    const pairs = Array.from({ length: 5 }, () => {
      const pa = a.bindUnboundPort(d1);
      const pb = b.bindInterdomain(0, pa);
      assert.equal(b.pending(), pb);
      b.unmask(pb);
      return [pa, pb];
    });
    for (const i of [3, 0, 4, 1]) a.notify(pairs[i][0]);
    const got = [b.pending(), b.pending(), b.pending(), b.pending()];
    assert.deepEqual(got, [3, 0, 4, 1].map((i) => pairs[i][1]));
  });

  it("unmask of a port not bound here, or not masked, is silently ignored", () => {
    const { b, pb } = connect();
    b.unmask(777);
    b.unmask(pb);
    b.unmask(pb);
    assert.equal(b.pollNow(), 0);
  });

  it("notify: ENOTCONN for ports not bound here, beyond the channel count too; VIRQ silent", () => {
    const { hv, a, b, pa, pb } = connect();
    // Real Linux (IOCTL_EVTCHN_NOTIFY) only looks the port up: no EINVAL, unlike unbind.
    assert.throws(() => b.notify(131_072), code("xenevtchn_notify", "ENOTCONN"));
    assert.throws(() => b.notify(0xffff_ffff), code("xenevtchn_notify", "ENOTCONN"));
    assert.throws(() => b.notify(pb + 1), code("xenevtchn_notify", "ENOTCONN"));
    assert.throws(() => a.notify(4000), code("xenevtchn_notify", "ENOTCONN"));
    const other = hv.backend(0).openEventChannels();
    assert.throws(() => other.notify(pa), code("xenevtchn_notify", "ENOTCONN"));
    const v = a.bindVirq(VIRQ.CONSOLE);
    a.notify(v);
    assert.equal(a.pollNow(), 0);
  });

  it("pending() with nothing queued fails with EAGAIN (non-blocking read)", () => {
    const { b } = connect();
    assert.throws(() => b.pending(), code("xenevtchn_pending", "EAGAIN"));
  });
});

describe("sim event channels: unbind and close", () => {
  it("unbind: peer becomes unbound, its notify is dropped; EINVAL/ENOTCONN", () => {
    const { hv, d1, a, b, pa, pb } = connect();
    assert.throws(() => b.unbind(131_072), code("xenevtchn_unbind", "EINVAL"));
    assert.throws(() => b.unbind(pa + 50), code("xenevtchn_unbind", "ENOTCONN"));
    b.unbind(pb);
    assert.equal(hv.portStatus(d1, pb).kind, "free");
    const st = hv.portStatus(0, pa);
    assert.equal(st.kind, "unbound");
    assert.equal(st.remoteDomid, d1);
    a.notify(pa);
    assert.equal(b.pollNow(), 0);
    assert.throws(() => b.notify(pb), code("xenevtchn_notify", "ENOTCONN"));
    assert.throws(() => b.unbind(pb), code("xenevtchn_unbind", "ENOTCONN"));
    const again = b.bindInterdomain(0, pa);
    assert.equal(b.pending(), again, "the freed peer can be bound again");
  });

  it("a port already queued stays in the ring after unbind", () => {
    const { a, b, pa, pb } = connect();
    a.notify(pa);
    b.unbind(pb);
    assert.equal(b.pending(), pb);
  });

  it("close unbinds everything, wakes waiters with POLLNVAL, and is idempotent", async () => {
    const { hv, d1, b, pa, pb } = connect();
    const waiting = b.waitReadable();
    b.close();
    b.close();
    assert.equal(await waiting, POLLNVAL);
    assert.equal(hv.portStatus(d1, pb).kind, "free");
    assert.equal(hv.portStatus(0, pa).kind, "unbound");
    assert.throws(() => b.notify(pb), ClosedHandleError);
    assert.throws(() => b.pending(), ClosedHandleError);
    assert.throws(() => b.pollNow(), ClosedHandleError);
    await assert.rejects(b.waitReadable(), ClosedHandleError);
    assert.equal(hv.stats(d1).handles.evtchn, 0);
  });
});

describe("sim event channels: VIRQs", () => {
  it("bindVirq delivers raised VIRQs; EINVAL for virq >= 24; EEXIST when bound", () => {
    const { hv, d1, a } = setup();
    const call = "xenevtchn_bind_virq";
    assert.throws(() => a.bindVirq(24), code(call, "EINVAL"));
    const p = a.bindVirq(VIRQ.CONSOLE);
    assert.equal(hv.portStatus(0, p).virq, VIRQ.CONSOLE);
    assert.throws(() => a.bindVirq(VIRQ.CONSOLE), code(call, "EEXIST"));
    const other = hv.backend(0).openEventChannels();
    assert.throws(() => other.bindVirq(VIRQ.CONSOLE), code(call, "EEXIST"));
    assert.equal(hv.raiseVirq(0, VIRQ.CONSOLE), true);
    assert.equal(a.pending(), p);
    a.unbind(p);
    assert.equal(hv.raiseVirq(0, VIRQ.CONSOLE), false);
    assert.equal(other.bindVirq(VIRQ.CONSOLE), p);
    assert.equal(hv.raiseVirq(d1, VIRQ.CONSOLE), false, "VIRQs are per domain");
  });

  it("VIRQ_DOM_EXC fires in dom0 on shutdown and on destroy", () => {
    const { hv, d1, a } = setup();
    const p = a.bindVirq(VIRQ.DOM_EXC);
    hv.shutdown(d1, "reboot");
    assert.equal(a.pending(), p);
    a.unmask(p);
    hv.destroy(d1);
    assert.equal(a.pending(), p);
  });
});

describe("sim event channels: restrict", () => {
  it("after restrict only interdomain binds to that domain work; bound ports keep working", () => {
    const { hv, d1, a, b, pa, pb } = connect();
    const d2 = hv.createDomain();
    const from1 = b.bindUnboundPort(0);
    const from1b = b.bindUnboundPort(0);
    a.restrict(d1);
    assert.throws(() => a.restrict(d1), code("xenevtchn_restrict", "EACCES"));
    assert.throws(() => a.restrict(d2), code("xenevtchn_restrict", "EACCES"));
    assert.throws(() => a.bindUnboundPort(d1), code("xenevtchn_bind_unbound_port", "EACCES"));
    assert.throws(() => a.bindVirq(VIRQ.CONSOLE), code("xenevtchn_bind_virq", "EACCES"));
    assert.throws(() => a.bindInterdomain(d2, 1), code("xenevtchn_bind_interdomain", "EACCES"));
    assert.throws(
      () => a.bindInterdomain(DOMID_SELF, 1),
      code("xenevtchn_bind_interdomain", "EACCES"),
    );
    assert.ok(a.bindInterdomain(d1, from1) > 0);
    a.notify(pa);
    assert.equal(b.pending(), pb, "ports bound before restrict still notify");
    const fresh = hv.backend(0).openEventChannels();
    assert.ok(fresh.bindInterdomain(d1, from1b) > 0, "restriction is per handle");
    assert.ok(fresh.bindUnboundPort(d2) > 0);
  });

  it("restrict rejects domid 0 and reserved domids with EINVAL", () => {
    const { a } = setup();
    assert.throws(() => a.restrict(0), code("xenevtchn_restrict", "EINVAL"));
    assert.throws(() => a.restrict(DOMID_SELF), code("xenevtchn_restrict", "EINVAL"));
    a.restrict(5);
  });
});

describe("sim event channels: ring, overflow and readiness", () => {
  it("the ring starts at 64 slots and doubles with the bound ports", () => {
    const hv = new SimHypervisor();
    const h = hv.backend(0).openEventChannels() as SimEventChannelDriver;
    assert.equal(h.ringSize, 0);
    h.bindUnboundPort(0);
    assert.equal(h.ringSize, 64);
    for (let i = 0; i < 64; i++) h.bindUnboundPort(0);
    assert.equal(h.ringSize, 128);
  });

  it("overflow: EFBIG from pending(), POLLERR from pollNow and waitReadable, for good", async () => {
    const { a, b, pa, pb } = connect();
    for (let i = 0; i < 64; i++) {
      a.notify(pa);
      b.unmask(pb); // unmask without reading: every notify queues another entry
    }
    assert.equal(b.pollNow(), POLLIN);
    a.notify(pa);
    assert.equal(b.pollNow(), POLLERR);
    assert.equal(await b.waitReadable(), POLLERR);
    assert.throws(() => b.pending(), code("xenevtchn_pending", "EFBIG"));
    assert.throws(() => b.pending(), code("xenevtchn_pending", "EFBIG"));
  });

  it("waitReadable resolves on delivery, not before", async () => {
    const { a, b, pa, pb } = connect();
    let done = false;
    const w = b.waitReadable().then((r) => {
      done = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(done, false);
    a.notify(pa);
    assert.equal(await w, POLLIN);
    assert.equal(b.pending(), pb);
  });

  it("waitReadable resolves 0 on abort (before or while waiting)", async () => {
    const { b } = connect();
    const pre = new AbortController();
    pre.abort();
    assert.equal(await b.waitReadable(pre.signal), 0);
    const ac = new AbortController();
    const w = b.waitReadable(ac.signal);
    ac.abort();
    assert.equal(await w, 0);
  });

  it("waitReadable resolves at once when something is already queued", async () => {
    const { a, b, pa } = connect();
    a.notify(pa);
    assert.equal(await b.waitReadable(), POLLIN);
  });
});

describe("sim event channels: scale and determinism", () => {
  it("handles 10,000 ports on one handle", () => {
    const hv = new SimHypervisor();
    const d1 = hv.createDomain({ maxEventChannels: 20_000 });
    const a = hv.backend(0).openEventChannels();
    const b = hv.backend(d1).openEventChannels();
    const ports: number[] = [];
    for (let i = 0; i < 10_000; i++) {
      const pb = b.bindInterdomain(0, a.bindUnboundPort(d1));
      ports.push(pb);
    }
    let n = 0;
    while (b.pollNow() === POLLIN) {
      b.pending();
      n++;
    }
    assert.equal(n, 10_000);
    assert.equal(hv.stats(d1).boundPorts, 10_000);
  });

  it("random allocation is reproducible for a seed", () => {
    const run = (seed: number) => {
      const hv = new SimHypervisor({ seed, allocation: "random" });
      const h = hv.backend(0).openEventChannels();
      return Array.from({ length: 6 }, () => h.bindUnboundPort(0));
    };
    assert.deepEqual(run(7), run(7));
    assert.notDeepEqual(run(7), [1, 2, 3, 4, 5, 6]);
  });
});

describe("sim event channels: backend identity and the delivery-state seam", () => {
  it("hv.backend() is a XenBackend of kind sim, one process per call", () => {
    const hv = new SimHypervisor();
    const d1 = hv.createDomain();
    const p = hv.backend(d1);
    const q = hv.backend(d1);
    assert.equal(p.kind, "sim");
    assert.match(p.description, /domain 1, process 1/);
    assert.match(q.description, /domain 1, process 2/);
    assert.equal(hv.stats(d1).processes, 2);
  });

  it("a domain's PortEventState can be replaced (the ABI plug-in point)", () => {
    const calls: string[] = [];
    const inner = new QueuePortState(4096);
    const spy: PortEventState = {
      portLimit: inner.portLimit,
      setPending: (p) => (calls.push(`set ${p}`), inner.setPending(p)),
      clearPending: (p) => inner.clearPending(p),
      mask: (p) => inner.mask(p),
      unmask: (p) => (calls.push(`unmask ${p}`), inner.unmask(p)),
      isPending: (p) => inner.isPending(p),
      isMasked: (p) => inner.isMasked(p),
      scan: (v, deliver) => (calls.push("scan"), inner.scan(v, deliver)),
    };
    const hv = new SimHypervisor();
    const d1 = hv.createDomain({ eventState: spy });
    const a = hv.backend(0).openEventChannels();
    const b = hv.backend(d1).openEventChannels();
    const pb = b.bindUnboundPort(0);
    const pa = a.bindInterdomain(d1, pb);
    calls.length = 0;
    a.notify(pa);
    assert.deepEqual(calls, [`set ${pb}`, "scan"]);
    assert.equal(b.pending(), pb);
    assert.throws(() => b.unbind(4096), (e) => e instanceof XenCallError && e.code === "EINVAL");
  });
});

describe("sim domains: a destroyed domain kept by foreign mappings (Xen's zombie)", () => {
  it("binding to it is EINVAL while dom0 maps its page, ESRCH after; its domid is not reused meanwhile", () => {
    const hv = new SimHypervisor();
    const d1 = hv.createDomain();
    const guest = hv.backend(d1);
    const gevt = guest.openEventChannels();
    const gport = gevt.bindUnboundPort(0);
    const share = guest.openGrantShare().sharePages(0, 1, true);
    const dom0 = hv.backend(0);
    const evt = dom0.openEventChannels();
    const gnt = dom0.openGrantTable();
    const mapping = gnt.map(d1, share.refs, true);
    hv.destroy(d1);
    assert.equal(hv.zombie(d1), true);
    assert.throws(
      () => evt.bindInterdomain(d1, gport),
      callFailed("xenevtchn_bind_interdomain", "EINVAL"),
    );
    const d2 = hv.createDomain();
    assert.notEqual(d2, d1, "a zombie's domid is not handed out");
    hv.destroy(d2);
    gnt.unmap(mapping);
    assert.equal(hv.zombie(d1), false, "the last mapping gone, the domain goes");
    assert.throws(
      () => evt.bindInterdomain(d1, gport),
      callFailed("xenevtchn_bind_interdomain", "ESRCH"),
    );
  });

  it("a destroyed domain that nobody maps goes at once (ESRCH)", () => {
    const hv = new SimHypervisor();
    const d1 = hv.createDomain();
    const port = hv.backend(d1).openEventChannels().bindUnboundPort(0);
    hv.destroy(d1);
    assert.equal(hv.zombie(d1), false);
    const evt = hv.backend(0).openEventChannels();
    assert.throws(
      () => evt.bindInterdomain(d1, port),
      callFailed("xenevtchn_bind_interdomain", "ESRCH"),
    );
  });
});
