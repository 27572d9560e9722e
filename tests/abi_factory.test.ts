/**
 * createAbi / negotiateAbi / abiAfterReset: option checks, port limits, and
 * "FIFO with fallback to 2-level" as Xen and Linux do it.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  abiAfterReset,
  abiMaxPorts,
  createAbi,
  DEFAULT_ABI,
  MAX_VCPUS,
  negotiateAbi,
} from "../plugins/abi/mod.ts";
import { XenUsageError } from "../core/errors.ts";

describe("createAbi", () => {
  it("builds each kind with its own port limit and page-aligned layout", () => {
    for (const kind of ["2l", "3l", "fifo"] as const) {
      for (const wordBits of [64, 32] as const) {
        const abi = createAbi(kind, { wordBits, vcpus: 3 });
        assert.equal(abi.kind, kind);
        assert.equal(abi.vcpus, 3);
        assert.equal(abi.portLimit, abiMaxPorts(kind, wordBits));
        assert.equal(abi.buffer.byteLength % 4096, 0);
        assert.equal(abi.buffer.byteLength, abi.layout.byteLength);
      }
    }
    assert.equal(abiMaxPorts("3l", 64), 262144);
    assert.equal(abiMaxPorts("2l", 32), 1024);
  });

  it("maxPorts lowers the limit (a domain's max_evtchns)", () => {
    const abi = createAbi("2l", { maxPorts: 1024 });
    assert.equal(abi.portLimit, 1024);
    assert.throws(() => abi.setPending(1024), /EINVAL/);
  });

  it("refuses bad options with XenUsageError", () => {
    assert.throws(() => createAbi("4l" as never), XenUsageError);
    assert.throws(() => createAbi("2l", { wordBits: 16 as never }), XenUsageError);
    assert.throws(() => createAbi("2l", { vcpus: 0 }), XenUsageError);
    assert.throws(() => createAbi("2l", { vcpus: MAX_VCPUS + 1 }), XenUsageError);
    assert.throws(() => createAbi("2l", { maxPorts: 4097 }), XenUsageError);
    assert.throws(() => createAbi("fifo", { maxPorts: 1 }), XenUsageError);
  });

  it("gives each instance its own memory", () => {
    const a = createAbi("fifo", { maxPorts: 1024 });
    const b = createAbi("fifo", { maxPorts: 1024 });
    a.unmask(3);
    a.setPending(3);
    assert.equal(a.isPending(3), true);
    assert.equal(b.isPending(3), false);
  });
});

describe("negotiateAbi / abiAfterReset", () => {
  it("defaults to FIFO when the hypervisor supports it (Xen >= 4.4)", () => {
    assert.equal(DEFAULT_ABI, "fifo");
    assert.equal(negotiateAbi(), "fifo");
    assert.equal(negotiateAbi("fifo", ["2l", "fifo"]), "fifo");
  });

  it("falls back to 2-level when EVTCHNOP_init_control fails", () => {
    assert.equal(negotiateAbi("fifo", ["2l"]), "2l");
    assert.equal(negotiateAbi("fifo", []), "2l");
  });

  it("3L is used only where offered (the RFC); 2L is always available", () => {
    assert.equal(negotiateAbi("3l", ["2l", "fifo"]), "2l");
    assert.equal(negotiateAbi("3l", ["3l"]), "3l");
    assert.equal(negotiateAbi("2l", []), "2l");
    assert.throws(() => negotiateAbi("x" as never), XenUsageError);
  });

  it("EVTCHNOP_reset on DOMID_SELF reverts to 2-level", () => {
    assert.equal(abiAfterReset("fifo"), "2l");
    assert.equal(abiAfterReset("2l"), "2l");
    assert.equal(abiAfterReset("3l"), "2l");
  });
});
