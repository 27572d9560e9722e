/**
 * The ivshmem-style doorbell device over simulated notifiers: several peers
 * and vectors, (peer << 16) | vector wakes exactly that peer's notifier,
 * everything else reaches the I/O callback; plus the SimNotifier contract
 * (eventfd semantics in pure JavaScript).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  doorbellValue,
  IoeventfdError,
  IVSHMEM_REGISTERS,
  IvshmemDoorbell,
  SimNotifier,
} from "../plugins/doorbell/mod.ts";
import { ClosedHandleError, XenUsageError } from "../core/errors.ts";

const { DOORBELL, IVPOSITION, INTRMASK } = IVSHMEM_REGISTERS;

function device(position = 0) {
  const unmatched: { addr: number; data: bigint; size: number }[] = [];
  const dev = new IvshmemDoorbell({
    position,
    onWrite: (addr, data, size) => unmatched.push({ addr, data, size }),
  });
  return { dev, unmatched };
}

describe("ivshmem doorbell device", () => {
  it("doorbellValue is (peer << 16) | vector, unsigned", () => {
    assert.equal(doorbellValue(0, 0), 0n);
    assert.equal(doorbellValue(1, 2), 0x10002n);
    assert.equal(doorbellValue(0xffff, 0xffff), 0xffffffffn);
    for (const [peer, vector] of [[-1, 0], [0x10000, 0], [0, 0x10000], [1.5, 0], [0, NaN]]) {
      assert.throws(() => doorbellValue(peer, vector), XenUsageError);
    }
  });

  it("several peers and vectors: each doorbell value wakes exactly its own notifier", () => {
    const { dev, unmatched } = device();
    const peers = new Map<number, SimNotifier[]>();
    for (const [peer, count] of [[1, 3], [2, 2], [7, 1], [0xffff, 2]]) {
      const vectors = Array.from({ length: count }, () => new SimNotifier());
      dev.setPeer(peer, vectors);
      peers.set(peer, vectors);
    }
    assert.deepEqual(dev.peers(), [1, 2, 7, 0xffff]);
    assert.equal(dev.region.registrations, 8);
    for (const [peer, vectors] of peers) {
      for (let v = 0; v < vectors.length; v++) {
        assert.equal(dev.ring(peer, v), "notified");
        for (const [otherPeer, others] of peers) {
          others.forEach((n, ov) => {
            const expected = otherPeer === peer && ov === v ? 1n : 0n;
            assert.equal(
              n.read() ?? 0n,
              expected,
              `ring(${peer}, ${v}) on peer ${otherPeer} vector ${ov}`,
            );
          });
        }
      }
    }
    assert.deepEqual(unmatched, [], "no registered doorbell value reached the I/O callback");
  });

  it("an unknown peer, an unknown vector, a 2-byte write or another register goes to the I/O callback", () => {
    const { dev, unmatched } = device();
    const vectors = [new SimNotifier(), new SimNotifier()];
    const zero = [new SimNotifier(), new SimNotifier()];
    dev.setPeer(1, vectors);
    dev.setPeer(0, zero);
    assert.equal(dev.ring(1, 2), "callback"); // vector 2 not registered
    assert.equal(dev.ring(3, 0), "callback"); // peer 3 not registered
    assert.equal(dev.write(DOORBELL, 0x1n, 2), "callback"); // peer 0 vector 1's value, 2-byte write
    assert.equal(dev.write(DOORBELL, 0x10001n, 8), "callback");
    assert.equal(dev.write(INTRMASK, 0x10001n, 4), "callback"); // same value, other register
    assert.equal(dev.write(DOORBELL, 0x1_0001_0001n, 8), "callback");
    assert.deepEqual(unmatched, [
      { addr: DOORBELL, data: 0x10002n, size: 4 },
      { addr: DOORBELL, data: 0x30000n, size: 4 },
      { addr: DOORBELL, data: 0x1n, size: 2 },
      { addr: DOORBELL, data: 0x10001n, size: 8 },
      { addr: INTRMASK, data: 0x10001n, size: 4 },
      { addr: DOORBELL, data: 0x1_0001_0001n, size: 8 },
    ]);
    assert.deepEqual([...vectors, ...zero].map((n) => n.count), [0n, 0n, 0n, 0n]);
    assert.equal(
      dev.write(DOORBELL, 0x1n, 4),
      "notified",
      "the same value as a 4-byte write rings peer 0 vector 1",
    );
    assert.equal(zero[1].count, 1n);
    assert.equal(dev.write(0x100, 0n, 4), "decode-error", "outside BAR0");
    assert.equal(unmatched.length, 6);
  });

  it("removePeer deletes its registrations: its values then reach the callback; other peers keep working", () => {
    const { dev, unmatched } = device();
    const a = [new SimNotifier(), new SimNotifier()];
    const b = [new SimNotifier()];
    dev.setPeer(1, a);
    dev.setPeer(2, b);
    dev.removePeer(1);
    assert.deepEqual(dev.peers(), [2]);
    assert.equal(dev.vectors(1), 0);
    assert.equal(dev.ring(1, 0), "callback");
    assert.equal(dev.ring(1, 1), "callback");
    assert.equal(dev.ring(2, 0), "notified");
    assert.deepEqual(unmatched.map((w) => w.data), [0x10000n, 0x10001n]);
    assert.deepEqual(a.map((n) => n.count), [0n, 0n]);
    assert.equal(b[0].count, 1n);
    dev.setPeer(1, [a[1]]); // re-register with one vector
    assert.equal(dev.ring(1, 0), "notified");
    assert.equal(a[1].count, 1n);
  });

  it("IVPOSITION reads return the device position; other reads go to onRead", () => {
    const dev = new IvshmemDoorbell({ position: 5, onRead: (addr) => BigInt(addr) + 100n });
    assert.equal(dev.read(IVPOSITION, 4), 5n);
    assert.equal(dev.read(INTRMASK, 4), 100n);
    assert.equal(dev.read(DOORBELL, 4), 112n);
  });

  it("refuses bad input: duplicate peer, ids out of range, non-arrays, colliding region registrations", () => {
    const { dev } = device();
    const n = new SimNotifier();
    dev.setPeer(1, [n]);
    assert.throws(() => dev.setPeer(1, [new SimNotifier()]), XenUsageError);
    assert.throws(() => dev.setPeer(-1, [n]), XenUsageError);
    assert.throws(() => dev.setPeer(0x10000, [n]), XenUsageError);
    assert.throws(() => dev.setPeer(2, "x" as unknown as SimNotifier[]), XenUsageError);
    assert.throws(() => dev.setPeer(2, [{} as SimNotifier]), XenUsageError);
    assert.throws(() => dev.removePeer(9), XenUsageError);
    assert.throws(() => dev.ring(-1, 0), XenUsageError);
    assert.throws(() => new IvshmemDoorbell({ position: 0x10000 }), XenUsageError);
    // A registration made directly on the region collides: setPeer is all or nothing.
    dev.region.addEventfd(DOORBELL, 4, true, doorbellValue(3, 1), n);
    const error = (() => {
      try {
        dev.setPeer(3, [new SimNotifier(), new SimNotifier(), new SimNotifier()]);
      } catch (e) {
        return e;
      }
    })();
    assert.ok(error instanceof IoeventfdError);
    assert.equal(error.reason, "duplicate");
    assert.deepEqual(dev.peers(), [1]);
    assert.equal(dev.region.registrations, 2, "vector 0 of peer 3 was rolled back");
  });

  it("close() removes every registration and refuses further use; notifiers stay open", () => {
    const { dev } = device();
    const n = new SimNotifier();
    dev.setPeer(4, [n]);
    dev.close();
    dev.close();
    assert.equal(dev.region.registrations, 0);
    assert.throws(() => dev.ring(4, 0), ClosedHandleError);
    assert.throws(() => dev.setPeer(5, [n]), ClosedHandleError);
    n.notify();
    assert.equal(n.read(), 1n);
  });
});

describe("SimNotifier (eventfd semantics)", () => {
  it("counts, reads and resets; semaphore mode hands out one at a time", () => {
    const n = new SimNotifier();
    assert.equal(n.read(), null);
    n.notify();
    n.notify();
    n.notify();
    assert.equal(n.read(), 3n);
    assert.equal(n.read(), null);
    const s = new SimNotifier({ semaphore: true, initial: 2n });
    assert.equal(s.read(), 1n);
    assert.equal(s.read(), 1n);
    assert.equal(s.read(), null);
  });

  it("saturates at 2^64 - 2 like an eventfd (the signal is dropped, readers already woken)", () => {
    const n = new SimNotifier({ initial: 0xfffffffffffffffdn });
    n.notify();
    n.notify();
    assert.equal(n.signals, 2);
    assert.equal(n.read(), 0xfffffffffffffffen);
  });

  it("wait() resolves on a later notify, FIFO across waiters; abort and close reject", async () => {
    const n = new SimNotifier({ semaphore: true });
    const first = n.wait();
    const second = n.wait();
    n.notify();
    n.notify();
    assert.deepEqual(await Promise.all([first, second]), [1n, 1n]);
    const controller = new AbortController();
    const aborted = n.wait({ signal: controller.signal });
    controller.abort(new Error("stop"));
    await assert.rejects(aborted, /stop/);
    const closing = n.wait();
    n.close();
    await assert.rejects(closing, ClosedHandleError);
    await assert.rejects(n.wait(), ClosedHandleError);
    assert.throws(() => n.notify(), ClosedHandleError);
    assert.throws(() => n.read(), ClosedHandleError);
  });

  it("refuses an initial counter out of range", () => {
    for (const initial of [-1n, 0xffffffffffffffffn, 1 as unknown as bigint]) {
      assert.throws(() => new SimNotifier({ initial }), XenUsageError);
    }
  });
});
