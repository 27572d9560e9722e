/**
 * 2-level ABI: Xen event_2l.c semantics on the hypervisor side, Linux
 * events_2l.c scan order and fairness on the guest side.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createAbi, NO_UPCALL } from "../plugins/abi/mod.ts";
import { XenCallError, XenUsageError } from "../core/errors.ts";
import { drain, openPorts } from "./helpers/abi.ts";

const open = openPorts;

describe("2-level ABI", () => {
  it("has 4096 ports with 64-bit words and 1024 with 32-bit words", () => {
    assert.equal(createAbi("2l").portLimit, 4096);
    assert.equal(createAbi("2l", { wordBits: 32 }).portLimit, 1024);
  });

  it("raises an upcall only on the first pending, unmasked event of a vCPU", () => {
    const abi = createAbi("2l");
    open(abi, 3, 200);
    assert.equal(abi.setPending(3), 0);
    assert.equal(abi.upcallPending(0), true);
    assert.equal(abi.setPending(200), NO_UPCALL); // upcall already pending
    assert.equal(abi.setPending(3), NO_UPCALL); // already pending: coalesced
    assert.deepEqual(drain(abi), [3, 200]);
    assert.equal(abi.upcallPending(0), false);
    assert.equal(abi.isPending(3), false);
  });

  it("keeps a masked event pending without an upcall; unmask makes it deliverable", () => {
    const abi = createAbi("2l");
    assert.equal(abi.isMasked(9), true); // start-of-day: everything masked
    assert.equal(abi.setPending(9), NO_UPCALL);
    assert.equal(abi.upcallPending(0), false);
    assert.deepEqual(drain(abi), []);
    assert.equal(abi.isPending(9), true);
    assert.deepEqual(abi.unmask(9), { deliverable: true, upcall: 0 });
    assert.deepEqual(abi.unmask(9), { deliverable: false, upcall: NO_UPCALL }); // already unmasked
    assert.deepEqual(drain(abi), [9]);
  });

  it("initiallyMasked: false starts with every port unmasked", () => {
    const abi = createAbi("2l", { initiallyMasked: false });
    assert.equal(abi.isMasked(77), false);
    assert.equal(abi.setPending(77), 0);
  });

  it("scans ports in ascending order from the cursor, clearing PENDING before deliver", () => {
    const abi = createAbi("2l");
    open(abi, 4000, 70, 5, 3);
    for (const p of [4000, 70, 5, 3]) abi.setPending(p);
    const seen: boolean[] = [];
    const got: number[] = [];
    abi.scan(0, (p) => {
      got.push(p);
      seen.push(abi.isPending(p));
    });
    assert.deepEqual(got, [3, 5, 70, 4000]);
    assert.deepEqual(seen, [false, false, false, false]);
  });

  it("scans the start word twice: bits below the cursor come after the other words", () => {
    const abi = createAbi("2l");
    open(abi, 10, 5, 20, 100);
    abi.setPending(10);
    assert.deepEqual(drain(abi), [10]); // cursor is now port 11 (word 0, bit 11)
    for (const p of [5, 20, 100]) abi.setPending(p);
    assert.deepEqual(drain(abi), [20, 100, 5]);
  });

  it("is fair: a port re-raised in its own handler does not starve a higher port", () => {
    const abi = createAbi("2l");
    open(abi, 1, 4000);
    abi.setPending(1);
    abi.setPending(4000);
    const got: number[] = [];
    abi.scan(0, (p) => {
      got.push(p);
      if (p === 1) abi.setPending(1); // busy low port
    }, 6);
    assert.deepEqual(got, [1, 4000, 1, 1, 1, 1]);
    assert.equal(abi.upcallPending(0), true); // budget ran out with port 1 pending
  });

  it("is fair across budget-limited upcalls (resumes after the last port served)", () => {
    const abi = createAbi("2l", { wordBits: 32 });
    open(abi, 1, 1000);
    abi.setPending(1000);
    const got: number[] = [];
    for (let round = 0; round < 4; round++) {
      abi.setPending(1);
      abi.scan(0, (p) => got.push(p), 1);
    }
    assert.deepEqual(got, [1, 1000, 1, 1]);
  });

  it("a budget puts the rest back and the next scan continues in order", () => {
    const abi = createAbi("2l");
    const ports = [2, 64, 65, 130, 4095];
    open(abi, ...ports);
    for (const p of ports) abi.setPending(p);
    assert.deepEqual(drain(abi, 0, 2), [2, 64]);
    assert.equal(abi.upcallPending(0), true);
    assert.deepEqual(drain(abi, 0, 0), []);
    assert.deepEqual(drain(abi), [65, 130, 4095]);
    assert.equal(abi.upcallPending(0), false);
  });

  it("delivers only ports routed to the scanning vCPU (cpu_evtchn_mask)", () => {
    const abi = createAbi("2l", { vcpus: 2 });
    open(abi, 5, 6);
    assert.deepEqual(abi.bindToVcpu(6, 1), { deliverable: false, upcall: NO_UPCALL });
    assert.equal(abi.vcpuOf(6), 1);
    assert.equal(abi.setPending(5), 0);
    assert.equal(abi.setPending(6), 1);
    assert.deepEqual(drain(abi, 0), [5]);
    assert.deepEqual(drain(abi, 1), [6]);
  });

  it("rebinding a pending port re-raises it on the new vCPU", () => {
    const abi = createAbi("2l", { vcpus: 2 });
    open(abi, 5);
    abi.setPending(5);
    assert.deepEqual(abi.bindToVcpu(5, 1), { deliverable: true, upcall: 1 });
    assert.deepEqual(drain(abi, 0), []);
    assert.deepEqual(drain(abi, 1), [5]);
  });

  it("never delivers a port masked by an earlier handler in the same scan", () => {
    const abi = createAbi("2l");
    open(abi, 1, 2, 3);
    for (const p of [1, 2, 3]) abi.setPending(p);
    assert.deepEqual(
      (() => {
        const got: number[] = [];
        abi.scan(0, (p) => {
          got.push(p);
          if (p === 1) abi.mask(2);
        });
        return got;
      })(),
      [1, 3],
    );
    assert.equal(abi.isPending(2), true);
    abi.unmask(2);
    assert.deepEqual(drain(abi), [2]);
  });

  it("a throwing handler propagates and the remaining events stay deliverable", () => {
    const abi = createAbi("2l");
    open(abi, 7, 300);
    abi.setPending(7);
    abi.setPending(300);
    assert.throws(() =>
      abi.scan(0, () => {
        throw new Error("boom");
      }), /boom/);
    assert.equal(abi.upcallPending(0), true);
    assert.deepEqual(drain(abi), [300]);
  });

  it("refuses nested scans of the same vCPU, bad ports, vCPUs, budgets and priorities", () => {
    const abi = createAbi("2l", { vcpus: 2 });
    open(abi, 1);
    abi.setPending(1);
    assert.throws(() => abi.scan(0, () => abi.scan(0, () => {})), XenUsageError);
    assert.throws(
      () => abi.setPending(0),
      (e: unknown) => e instanceof XenCallError && e.code === "EINVAL",
    );
    assert.throws(
      () => abi.setPending(4096),
      (e: unknown) => e instanceof XenCallError && e.code === "EINVAL",
    );
    assert.throws(
      () => abi.bindToVcpu(1, 2),
      (e: unknown) => e instanceof XenCallError && e.code === "ENOENT",
    );
    assert.throws(() => abi.scan(0, () => {}, -1), XenUsageError);
    assert.throws(
      () => abi.setPriority(1, 3),
      (e: unknown) => e instanceof XenCallError && e.code === "ENOSYS",
    );
    assert.equal(abi.priorityOf(1), 7);
  });

  it("evtchn_upcall_mask: unmasking with an upcall pending asks for the callback", () => {
    const abi = createAbi("2l");
    open(abi, 4);
    assert.equal(abi.setUpcallMask(0, true), false);
    assert.equal(abi.upcallMasked(0), true);
    abi.setPending(4);
    assert.equal(abi.setUpcallMask(0, false), true);
    assert.equal(abi.upcallMasked(0), false);
  });

  it("supports vCPUs beyond the 32 legacy vcpu_info slots", () => {
    const abi = createAbi("2l", { vcpus: 40 });
    assert.equal(abi.layout.vcpuInfo[33], 4096 + 64);
    open(abi, 12);
    abi.bindToVcpu(12, 33);
    assert.equal(abi.setPending(12), 33);
    assert.deepEqual(drain(abi, 33), [12]);
  });
});
