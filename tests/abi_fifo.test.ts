/**
 * FIFO ABI: priorities, per-queue FIFO order (round robin), LINKED/BUSY
 * rules and the "last queue" tail invalidation of xen/common/event_fifo.c,
 * consumption as in Linux events_fifo.c.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  createAbi,
  type EventAbi,
  FIFO,
  FIFO_BUSY_BIT,
  FIFO_LINKED_BIT,
  FIFO_MASKED_BIT,
  FIFO_PENDING_BIT,
  NO_UPCALL,
} from "../plugins/abi/mod.ts";
import { XenCallError } from "../core/errors.ts";

function open(abi: EventAbi, prio: number, ...ports: number[]): void {
  for (const p of ports) {
    abi.unmask(p);
    abi.setPriority(p, prio);
  }
}

function drain(abi: EventAbi, vcpu = 0, budget?: number): number[] {
  const got: number[] = [];
  abi.scan(vcpu, (p) => got.push(p), budget);
  return got;
}

function word(abi: EventAbi, port: number): number {
  return new DataView(abi.buffer).getUint32(abi.layout.eventArray + 4 * port, true);
}

function head(abi: EventAbi, vcpu: number, prio: number): number {
  return new DataView(abi.buffer).getUint32(abi.layout.controlBlock[vcpu] + 8 + 4 * prio, true);
}

describe("FIFO ABI", () => {
  it("has 131,072 ports and rounds maxPorts up to whole event-array pages", () => {
    assert.equal(createAbi("fifo").portLimit, FIFO.NR_CHANNELS);
    assert.equal(createAbi("fifo", { maxPorts: 1500 }).portLimit, 2048);
    assert.equal(createAbi("fifo", { wordBits: 32 }).portLimit, FIFO.NR_CHANNELS);
  });

  it("starts every event word MASKED (Linux init_array_page) with priority 7", () => {
    const abi = createAbi("fifo");
    assert.equal(word(abi, 131071) >>> 0, FIFO_MASKED_BIT);
    assert.equal(abi.priorityOf(5), FIFO.PRIORITY_DEFAULT);
  });

  it("serves higher priority (0 = highest) first", () => {
    const abi = createAbi("fifo");
    open(abi, 7, 100);
    open(abi, 15, 101);
    open(abi, 3, 102);
    open(abi, 0, 103);
    assert.equal(abi.setPending(100), 0);
    for (const p of [101, 102, 103]) assert.equal(abi.setPending(p), NO_UPCALL);
    assert.deepEqual(drain(abi), [103, 102, 100, 101]);
  });

  it("keeps arrival order within a priority, not port order", () => {
    const abi = createAbi("fifo");
    open(abi, 7, 30, 10, 20);
    for (const p of [30, 10, 20]) abi.setPending(p);
    assert.equal(head(abi, 0, 7), 30);
    assert.equal(word(abi, 30) & FIFO.LINK_MASK, 10);
    assert.equal(word(abi, 10) & FIFO.LINK_MASK, 20);
    assert.deepEqual(drain(abi), [30, 10, 20]);
  });

  it("round-robins busy ports within a priority (a re-raised event goes to the tail)", () => {
    const abi = createAbi("fifo");
    open(abi, 7, 5, 6, 7);
    for (const p of [5, 6, 7]) abi.setPending(p);
    const got: number[] = [];
    abi.scan(0, (p) => {
      got.push(p);
      if (p !== 7) abi.setPending(p);
    }, 7);
    assert.deepEqual(got, [5, 6, 7, 5, 6, 5, 6]);
  });

  it("a higher priority raised during a handler is served next", () => {
    const abi = createAbi("fifo");
    open(abi, 7, 40, 41);
    open(abi, 0, 42);
    abi.setPending(40);
    abi.setPending(41);
    const got: number[] = [];
    abi.scan(0, (p) => {
      got.push(p);
      if (p === 40) abi.setPending(42);
    });
    assert.deepEqual(got, [40, 42, 41]);
  });

  it("LINKED: a pending or re-pended linked event is never linked twice", () => {
    const abi = createAbi("fifo");
    open(abi, 7, 8, 9);
    abi.setPending(8);
    abi.setPending(9);
    abi.clearPending(8);
    assert.equal((word(abi, 8) & FIFO_LINKED_BIT) !== 0, true); // guest will unlink it
    assert.equal(abi.setPending(8), NO_UPCALL);
    assert.equal(abi.setPending(8), NO_UPCALL);
    assert.equal(word(abi, 9) & FIFO.LINK_MASK, 0); // 8 was not appended behind 9
    assert.deepEqual(drain(abi), [8, 9]);
  });

  it("a masked linked event is unlinked but not delivered; unmask relinks it", () => {
    const abi = createAbi("fifo");
    open(abi, 7, 11, 12);
    abi.setPending(11);
    abi.setPending(12);
    abi.mask(11);
    assert.deepEqual(drain(abi), [12]);
    assert.equal(word(abi, 11) >>> 0, (FIFO_PENDING_BIT | FIFO_MASKED_BIT) >>> 0);
    assert.deepEqual(abi.unmask(11), { deliverable: true, upcall: 0 });
    assert.deepEqual(drain(abi), [11]);
    assert.equal(word(abi, 11), 0);
  });

  it("invalidates the old queue's tail when an event moves queue (fifo_lastq)", () => {
    const abi = createAbi("fifo");
    open(abi, 7, 50, 51);
    open(abi, 5, 52);
    abi.setPending(50);
    assert.deepEqual(drain(abi), [50]); // 50 stays the (stale) tail of queue 7
    abi.setPriority(50, 3);
    abi.setPending(50); // now linked on queue 3
    abi.setPending(51); // queue 7: must start a new list, not link behind 50
    abi.setPending(52);
    assert.equal(word(abi, 50) & FIFO.LINK_MASK, 0);
    assert.equal(head(abi, 0, 7), 51);
    assert.deepEqual(drain(abi), [50, 52, 51]);
  });

  it("BUSY: linking to a tail clears BUSY; unmasking a BUSY word goes through Xen", () => {
    const abi = createAbi("fifo");
    const dv = new DataView(abi.buffer);
    open(abi, 7, 60, 61);
    abi.setPending(60);
    const at = abi.layout.eventArray + 4 * 60;
    dv.setUint32(at, dv.getUint32(at, true) | FIFO_BUSY_BIT, true); // as if Xen held the word
    abi.setPending(61);
    assert.equal(dv.getUint32(at, true) >>> 0, (FIFO_PENDING_BIT | FIFO_LINKED_BIT | 61) >>> 0);
    abi.mask(70);
    const at70 = abi.layout.eventArray + 4 * 70;
    dv.setUint32(at70, FIFO_MASKED_BIT | FIFO_BUSY_BIT, true);
    assert.deepEqual(abi.unmask(70), { deliverable: false, upcall: NO_UPCALL });
    assert.equal(abi.isMasked(70), false);
    assert.deepEqual(drain(abi), [60, 61]);
  });

  it("keeps separate queues per vCPU; an already linked event stays on its old vCPU", () => {
    const abi = createAbi("fifo", { vcpus: 2 });
    open(abi, 7, 80, 81, 82);
    abi.bindToVcpu(81, 1);
    abi.setPending(80);
    assert.equal(abi.setPending(81), 1);
    assert.equal(head(abi, 1, 7), 81);
    abi.setPending(82);
    // Still pending and unmasked, but already LINKED on vCPU 0: no relink, no upcall.
    assert.deepEqual(abi.bindToVcpu(82, 1), { deliverable: true, upcall: NO_UPCALL });
    assert.deepEqual(drain(abi, 1), [81]);
    assert.deepEqual(drain(abi, 0), [80, 82]);
    abi.setPending(82); // the next event follows the new binding
    assert.deepEqual(drain(abi, 0), []);
    assert.deepEqual(drain(abi, 1), [82]);
  });

  it("a budget keeps the local HEAD and READY bits; the next scan continues the queue", () => {
    const abi = createAbi("fifo");
    const ports = [9, 3, 8, 2, 7];
    open(abi, 7, ...ports);
    for (const p of ports) abi.setPending(p);
    assert.deepEqual(drain(abi, 0, 2), [9, 3]);
    assert.equal(abi.upcallPending(0), true);
    assert.deepEqual(drain(abi), [8, 2, 7]);
    assert.equal(abi.upcallPending(0), false);
  });

  it("a throwing handler propagates and the queue stays intact", () => {
    const abi = createAbi("fifo");
    open(abi, 7, 90, 91, 92);
    for (const p of [90, 91, 92]) abi.setPending(p);
    assert.throws(() =>
      abi.scan(0, () => {
        throw new Error("bad");
      }), /bad/);
    assert.deepEqual(drain(abi), [91, 92]);
  });

  it("EVTCHNOP_set_priority refuses priorities outside 0..15", () => {
    const abi = createAbi("fifo");
    const einval = (e: unknown) => e instanceof XenCallError && e.code === "EINVAL";
    assert.throws(() => abi.setPriority(5, 16), einval);
    assert.throws(() => abi.setPriority(5, -1), einval);
    assert.throws(() => abi.setPriority(131072, 1), einval);
    abi.setPriority(5, 15);
    assert.equal(abi.priorityOf(5), 15);
  });
});
