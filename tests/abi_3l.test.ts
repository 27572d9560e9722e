/**
 * 3-level ABI (Wei Liu's never-merged RFC V5): L1 selector in vcpu_info,
 * per-vCPU L2 bitmap, shared L3 bitmaps; scan order and fairness.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createAbi, NO_UPCALL } from "../plugins/abi/mod.ts";
import { XenCallError } from "../core/errors.ts";
import { drain, openPorts } from "./helpers/abi.ts";

const open = openPorts;

describe("3-level ABI", () => {
  it("has 262,144 ports with 64-bit words and 32,768 with 32-bit words", () => {
    assert.equal(createAbi("3l").portLimit, 262144);
    assert.equal(createAbi("3l", { wordBits: 32 }).portLimit, 32768);
  });

  it("sets L3 pending, then the vCPU's L2 bit, then the L1 bit in vcpu_info", () => {
    const abi = createAbi("3l", { vcpus: 2 });
    const dv = new DataView(abi.buffer);
    const port = 4096 * 5 + 64 * 7 + 3; // L1 bit 5, L2 bit 5*64+7, L3 word 327 bit 3
    open(abi, port);
    abi.bindToVcpu(port, 1);
    assert.equal(abi.setPending(port), 1);
    assert.equal(dv.getBigUint64(abi.layout.l3Pending + 8 * 327, true), 1n << 3n);
    assert.equal(dv.getBigUint64(abi.layout.l2Selector[1] + 8 * 5, true), 1n << 7n);
    assert.equal(dv.getBigUint64(abi.layout.l2Selector[0] + 8 * 5, true), 0n);
    assert.equal(dv.getBigUint64(abi.layout.vcpuInfo[1] + 8, true), 1n << 5n);
    assert.equal(dv.getUint8(abi.layout.vcpuInfo[1]), 1);
    // A second port in the same L3 word changes no selector and raises nothing.
    open(abi, port + 1);
    abi.bindToVcpu(port + 1, 1);
    assert.equal(abi.setPending(port + 1), NO_UPCALL);
    assert.deepEqual(drain(abi, 1), [port, port + 1]);
    assert.equal(dv.getBigUint64(abi.layout.vcpuInfo[1] + 8, true), 0n);
    assert.equal(dv.getBigUint64(abi.layout.l2Selector[1] + 8 * 5, true), 0n);
  });

  it("scans ascending across L1 words, up to the last port", () => {
    const abi = createAbi("3l");
    const ports = [262143, 5, 4096 * 3 + 7, 70, 131072];
    open(abi, ...ports);
    for (const p of ports) abi.setPending(p);
    assert.deepEqual(drain(abi), [5, 70, 4096 * 3 + 7, 131072, 262143]);
  });

  it("masked events stay pending and unmask raises them", () => {
    const abi = createAbi("3l", { wordBits: 32 });
    assert.equal(abi.setPending(32767), NO_UPCALL);
    assert.deepEqual(drain(abi), []);
    assert.deepEqual(abi.unmask(32767), { deliverable: true, upcall: 0 });
    assert.deepEqual(drain(abi), [32767]);
  });

  it("scans the start L3 word twice: bits below the cursor come last", () => {
    const abi = createAbi("3l");
    open(abi, 10, 5, 20, 100, 200000);
    abi.setPending(10);
    assert.deepEqual(drain(abi), [10]);
    for (const p of [5, 20, 100, 200000]) abi.setPending(p);
    assert.deepEqual(drain(abi), [20, 100, 200000, 5]);
  });

  it("is fair: a busy low port does not starve a port in another L1 word", () => {
    const abi = createAbi("3l");
    open(abi, 1, 250000);
    abi.setPending(1);
    abi.setPending(250000);
    const got: number[] = [];
    abi.scan(0, (p) => {
      got.push(p);
      if (p === 1) abi.setPending(1);
    }, 5);
    assert.deepEqual(got, [1, 250000, 1, 1, 1]);
  });

  it("a budget puts L1/L2 work back and the next scan resumes in order", () => {
    const abi = createAbi("3l", { wordBits: 32 });
    const ports = [3, 1025, 1030, 20000, 32000];
    open(abi, ...ports);
    for (const p of ports) abi.setPending(p);
    assert.deepEqual(drain(abi, 0, 3), [3, 1025, 1030]);
    assert.equal(abi.upcallPending(0), true);
    assert.deepEqual(drain(abi), [20000, 32000]);
  });

  it("routes per vCPU and re-raises on rebind", () => {
    const abi = createAbi("3l", { vcpus: 3 });
    open(abi, 9000, 9001);
    abi.setPending(9000);
    abi.setPending(9001);
    assert.deepEqual(abi.bindToVcpu(9001, 2), { deliverable: true, upcall: 2 });
    assert.deepEqual(drain(abi, 0), [9000]);
    assert.deepEqual(drain(abi, 1), []);
    assert.deepEqual(drain(abi, 2), [9001]);
  });

  it("a throwing handler keeps the rest deliverable; priorities are ENOSYS", () => {
    const abi = createAbi("3l");
    open(abi, 2, 100000);
    abi.setPending(2);
    abi.setPending(100000);
    assert.throws(() =>
      abi.scan(0, () => {
        throw new Error("x");
      }), /x/);
    assert.deepEqual(drain(abi), [100000]);
    assert.throws(
      () => abi.setPriority(2, 1),
      (e: unknown) => e instanceof XenCallError && e.code === "ENOSYS",
    );
  });

  it("a domain with fewer ports than word_size^3 keeps its selectors intact", () => {
    for (const maxPorts of [1024, 65536]) {
      const abi = createAbi("3l", { maxPorts });
      open(abi, 5, maxPorts - 1);
      assert.equal(abi.setPending(5), 0, `upcall raised with maxPorts ${maxPorts}`);
      abi.setPending(maxPorts - 1);
      assert.deepEqual(drain(abi), [5, maxPorts - 1]);
    }
  });
});
