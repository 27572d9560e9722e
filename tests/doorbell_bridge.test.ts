/**
 * The doorbell -> event channel bridge on the simulator: a device model in
 * dom0 (the ivshmem doorbell) turns a guest's matching doorbell write into
 * an event channel notify, and the peer domain's handle sees its port in
 * pending(). Non-matching writes reach the I/O callback and send nothing.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type EventChannels, openEventChannels } from "../mod.ts";
import { EventChannelNotifier, IvshmemDoorbell, SimNotifier } from "../plugins/doorbell/mod.ts";
import { ClosedHandleError, XenCallError, XenUsageError } from "../core/errors.ts";
import { SimHypervisor } from "../sim/mod.ts";

/** A fresh simulated host: dom0's handle (the device model) and one handle per peer domain. */
async function host(peerCount: number) {
  const hv = new SimHypervisor();
  const dom0 = await openEventChannels({ backend: hv.backend(0) });
  const peers: { domid: number; handle: EventChannels; port: number; dom0Port: number }[] = [];
  for (let i = 0; i < peerCount; i++) {
    const domid = hv.createDomain();
    const handle = await openEventChannels({ backend: hv.backend(domid) });
    const port = handle.bindUnboundPort(0);
    const dom0Port = dom0.bindInterdomain(domid, port);
    peers.push({ domid, handle, port, dom0Port });
  }
  // Xen raises the binder's port once at bind: drain those before the test.
  for (let seen = 0; seen < peerCount;) {
    const port = dom0.tryPending();
    if (port === null) break;
    dom0.unmask(port);
    seen++;
  }
  const close = () => {
    for (const p of peers) p.handle.close();
    dom0.close();
  };
  return { hv, dom0, peers, close };
}

describe("doorbell -> event channel bridge (simulator)", () => {
  it("a doorbell hit notifies the peer: its handle's pending() returns its port", async () => {
    const { dom0, peers, close } = await host(1);
    try {
      const [peer] = peers;
      const unmatched: bigint[] = [];
      using dev = new IvshmemDoorbell({ onWrite: (_addr, data) => unmatched.push(data) });
      const notifier = new EventChannelNotifier(dom0, peer.dom0Port);
      dev.setPeer(1, [notifier]);
      assert.equal(peer.handle.tryPending(), null);
      assert.equal(dev.ring(1, 0), "notified");
      assert.equal(await peer.handle.pending({ signal: AbortSignal.timeout(10_000) }), peer.port);
      peer.handle.unmask(peer.port);
      assert.equal(notifier.sent, 1);
      assert.deepEqual(unmatched, []);
    } finally {
      close();
    }
  });

  it("a non-matching write reaches the I/O callback and sends no event", async () => {
    const { dom0, peers, close } = await host(1);
    try {
      const [peer] = peers;
      const unmatched: bigint[] = [];
      using dev = new IvshmemDoorbell({ onWrite: (_addr, data) => unmatched.push(data) });
      const notifier = new EventChannelNotifier(dom0, peer.dom0Port);
      dev.setPeer(1, [notifier]);
      assert.equal(dev.ring(1, 1), "callback");
      assert.equal(dev.ring(2, 0), "callback");
      assert.equal(dev.write(12, 0x10000n, 8), "callback");
      assert.deepEqual(unmatched, [0x10001n, 0x20000n, 0x10000n]);
      assert.equal(peer.handle.tryPending(), null, "nothing was sent");
      assert.equal(notifier.sent, 0);
    } finally {
      close();
    }
  });

  it("several peer domains and vectors: each doorbell reaches only its own domain's port", async () => {
    const { dom0, peers, close } = await host(3);
    try {
      using dev = new IvshmemDoorbell();
      const local = peers.map(() => new SimNotifier());
      peers.forEach((p, i) =>
        dev.setPeer(i + 1, [new EventChannelNotifier(dom0, p.dom0Port), local[i]])
      );
      for (const target of [2, 0, 1]) {
        assert.equal(dev.ring(target + 1, 0), "notified");
        peers.forEach((p, i) => {
          const got = p.handle.tryPending();
          assert.equal(
            got,
            i === target ? p.port : null,
            `ring peer ${target + 1}: domain ${p.domid}`,
          );
          if (got !== null) p.handle.unmask(got);
        });
      }
      assert.equal(
        dev.ring(2, 1),
        "notified",
        "vector 1 is a local notifier, not an event channel",
      );
      assert.deepEqual(local.map((n) => n.count), [0n, 1n, 0n]);
      for (const p of peers) assert.equal(p.handle.tryPending(), null);
    } finally {
      close();
    }
  });

  it("Xen coalesces: hits while the peer's port is pending and masked arrive as one event", async () => {
    const { dom0, peers, close } = await host(1);
    try {
      const [peer] = peers;
      using dev = new IvshmemDoorbell();
      dev.setPeer(0, [new EventChannelNotifier(dom0, peer.dom0Port)]);
      for (let i = 0; i < 3; i++) assert.equal(dev.ring(0, 0), "notified");
      assert.equal(peer.handle.tryPending(), peer.port);
      assert.equal(peer.handle.tryPending(), null, "one event for three hits");
      peer.handle.unmask(peer.port);
      dev.ring(0, 0);
      assert.equal(await peer.handle.pending({ signal: AbortSignal.timeout(10_000) }), peer.port);
    } finally {
      close();
    }
  });

  it("bridge errors propagate out of the write and never fall back to the callback", async () => {
    const { dom0, peers, close } = await host(1);
    try {
      const unmatched: bigint[] = [];
      using dev = new IvshmemDoorbell({ onWrite: (_addr, data) => unmatched.push(data) });
      dev.setPeer(1, [new EventChannelNotifier(dom0, 4000)]); // a port dom0's handle never bound
      const error = (() => {
        try {
          dev.ring(1, 0);
        } catch (e) {
          return e;
        }
      })();
      assert.ok(error instanceof XenCallError, `expected XenCallError, got ${error}`);
      assert.equal(error.call, "xenevtchn_notify");
      dev.removePeer(1);
      dev.setPeer(1, [new EventChannelNotifier(dom0, peers[0].dom0Port)]);
      dom0.close();
      assert.throws(() => dev.ring(1, 0), ClosedHandleError);
      assert.deepEqual(unmatched, []);
    } finally {
      close();
    }
  });

  it("refuses a bad port or a missing handle", async () => {
    const { dom0, close } = await host(0);
    try {
      for (const port of [-1, 1.5, 2 ** 32]) {
        assert.throws(() => new EventChannelNotifier(dom0, port), XenUsageError);
      }
      assert.throws(
        () => new EventChannelNotifier(null as unknown as EventChannels, 1),
        XenUsageError,
      );
    } finally {
      close();
    }
  });
});
