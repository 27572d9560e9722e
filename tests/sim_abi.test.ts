/**
 * The simulator delivers events through the event delivery ABI chosen per
 * domain: FIFO by default, 2-level when Xen does not offer FIFO (as Linux
 * falls back), 3-level on request. What a guest would see is in the ABI's
 * byte layout.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type AbiKind,
  type EventAbi,
  FIFO_MASKED_BIT,
  FIFO_PENDING_BIT,
  sharedInfoLayout,
} from "../plugins/abi/mod.ts";
import { SimHypervisor } from "../sim/mod.ts";

function loopback(hv: SimHypervisor, domU: number) {
  const back = hv.backend(0).openEventChannels();
  const front = hv.backend(domU).openEventChannels();
  const backPort = back.bindUnboundPort(domU);
  const frontPort = front.bindInterdomain(0, backPort);
  assert.equal(front.pending(), frontPort); // the bind-time event
  front.unmask(frontPort);
  return { back, front, backPort, frontPort };
}

/** PENDING and MASKED of `port` as the guest reads them from the ABI's memory. */
function guestView(abi: EventAbi, port: number): { pending: boolean; masked: boolean } {
  const bytes = new DataView(abi.buffer);
  if (abi.kind === "fifo") {
    const word = bytes.getUint32(abi.layout.eventArray + 4 * port, true);
    return { pending: (word & FIFO_PENDING_BIT) !== 0, masked: (word & FIFO_MASKED_BIT) !== 0 };
  }
  const si = sharedInfoLayout(abi.wordBits);
  const bit = (base: number) => (bytes.getUint8(base + (port >> 3)) >> (port & 7)) & 1;
  if (abi.kind === "2l") {
    return { pending: bit(si.evtchnPending) === 1, masked: bit(si.evtchnMask) === 1 };
  }
  return { pending: bit(abi.layout.l3Pending) === 1, masked: bit(abi.layout.l3Mask) === 1 };
}

describe("sim: event delivery ABIs per domain", () => {
  it("FIFO by default, 2-level when Xen lacks FIFO, 3-level on request", () => {
    assert.equal(new SimHypervisor().domainInfo(0)?.abi, "fifo");
    const qemuLike = new SimHypervisor({ supportedAbis: ["2l"] });
    assert.equal(qemuLike.domainInfo(qemuLike.createDomain({ abi: "fifo" }))?.abi, "2l");
    const withRfc = new SimHypervisor({ supportedAbis: ["2l", "fifo", "3l"] });
    assert.equal(withRfc.domainInfo(withRfc.createDomain({ abi: "3l" }))?.abi, "3l");
    assert.equal(qemuLike.domainInfo(qemuLike.createDomain({ abi: "3l" }))?.abi, "2l");
  });

  for (const kind of ["fifo", "2l", "3l"] as AbiKind[]) {
    it(`${kind}: events cross domains and the guest sees PENDING and MASKED in the ABI layout`, () => {
      const hv = new SimHypervisor({ supportedAbis: ["2l", "fifo", "3l"] });
      const domU = hv.createDomain({ abi: kind });
      const abi = hv.eventState(domU) as EventAbi;
      assert.equal(abi.kind, kind);
      const { back, front, backPort, frontPort } = loopback(hv, domU);
      assert.deepEqual(guestView(abi, frontPort), { pending: false, masked: false });
      back.notify(backPort);
      assert.equal(front.pending(), frontPort);
      assert.deepEqual(
        guestView(abi, frontPort),
        { pending: false, masked: true },
        "delivered: masked until unmask",
      );
      back.notify(backPort);
      assert.deepEqual(
        guestView(abi, frontPort),
        { pending: true, masked: true },
        "a notify while masked stays pending",
      );
      assert.equal(front.pollNow(), 0);
      front.unmask(frontPort);
      assert.equal(front.pending(), frontPort);
      front.unmask(frontPort);
      assert.deepEqual(guestView(abi, frontPort), { pending: false, masked: false });
    });
  }

  it("the 2-level ABI limits a 64-bit domain to 4095 ports", () => {
    const hv = new SimHypervisor({ supportedAbis: ["2l"] });
    const domU = hv.createDomain({ maxEventChannels: 100_000 });
    const h = hv.backend(domU).openEventChannels();
    let bound = 0;
    assert.throws(() => {
      for (;;) {
        h.bindUnboundPort(0);
        bound++;
      }
    }, { name: "XenCallError", code: "ENOSPC" });
    assert.equal(bound, 4095);
  });
});
