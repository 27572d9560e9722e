/**
 * The demo's shared ring (Xen's ring.h protocol) and its two ends: slot
 * wrap-around, the notification hold-off, and a front end that catches
 * wrong responses.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { openEventChannels, PAGE_SIZE, SimHypervisor } from "../mod.ts";
import {
  BackRing,
  fnv1a,
  FrontRing,
  HEADER_SIZE,
  MAX_PAYLOAD,
  requestPayload,
  RING_SIZE,
  SharedRing,
  SLOT_SIZE,
} from "../cli/ring.ts";
import { runBackEnd, runFrontEnd } from "../cli/split_driver.ts";

function freshRing(): SharedRing {
  const ring = new SharedRing(new Uint8Array(PAGE_SIZE));
  ring.init();
  return ring;
}

describe("demo ring", () => {
  it("fits the ring in one page as __RING_SIZE does", () => {
    assert.equal(RING_SIZE, 32);
    assert.ok(HEADER_SIZE + RING_SIZE * SLOT_SIZE <= PAGE_SIZE);
    assert.ok(
      HEADER_SIZE + 2 * RING_SIZE * SLOT_SIZE > PAGE_SIZE,
      "the next power of two does not fit",
    );
    assert.throws(() => new SharedRing(new Uint8Array(100)), RangeError);
  });

  it("moves requests and responses through many wrap-arounds, in order", () => {
    const ring = freshRing();
    const front = new FrontRing(ring);
    const back = new BackRing(ring);
    let next = 0;
    let checked = 0;
    for (let round = 0; round < 10; round++) {
      while (front.freeRequests() > 0) front.putRequest(next, requestPayload(next++));
      assert.throws(() => front.putRequest(next, requestPayload(next)), /full/);
      front.pushRequests();
      assert.equal(back.unconsumedRequests(), RING_SIZE);
      while (back.unconsumedRequests() > 0) {
        const { id, payload } = back.takeRequest();
        assert.deepEqual(payload, requestPayload(id));
        back.putResponse({ id, status: 0, checksum: fnv1a(payload), len: payload.length });
      }
      back.pushResponses();
      while (front.unconsumedResponses() > 0) {
        const r = front.takeResponse();
        assert.equal(r.id, checked);
        assert.equal(r.checksum, fnv1a(requestPayload(checked++)));
      }
    }
    assert.equal(checked, 10 * RING_SIZE);
  });

  it("notifies only when the other side asked to be woken (ring.h hold-off)", () => {
    const ring = freshRing();
    const front = new FrontRing(ring);
    const back = new BackRing(ring);
    front.putRequest(0, requestPayload(0));
    assert.equal(front.pushRequests(), true, "req_event starts at 1: the first request notifies");
    front.putRequest(1, requestPayload(1));
    assert.equal(front.pushRequests(), false, "the back end has not re-armed req_event yet");
    back.takeRequest();
    back.takeRequest();
    assert.equal(back.finalCheckForRequests(), false, "nothing new: re-armed for request 3");
    front.putRequest(2, requestPayload(2));
    assert.equal(front.pushRequests(), true, "the back end asked to be woken");
    assert.equal(back.finalCheckForRequests(), true, "a request arrived after the re-arm");
  });

  it("request payloads are 1..56 bytes and deterministic", () => {
    const lengths = new Set<number>();
    for (let id = 0; id < 200; id++) {
      const p = requestPayload(id);
      lengths.add(p.length);
      assert.deepEqual(p, requestPayload(id));
    }
    assert.equal(Math.min(...lengths), 1);
    assert.equal(Math.max(...lengths), MAX_PAYLOAD);
  });

  it("the ends exchange over simulated event channels; a wrong response is caught", async () => {
    const hv = new SimHypervisor();
    const d1 = hv.createDomain();
    using back = await openEventChannels({ backend: hv.backend(0) });
    using front = await openEventChannels({ backend: hv.backend(d1) });
    const bp = back.bindUnboundPort(d1);
    const fp = front.bindInterdomain(0, bp);
    front.unmask(await front.pending()); // the bind-time event
    const ring = freshRing();
    const signal = AbortSignal.timeout(10_000);
    const [f, b] = await Promise.all([
      runFrontEnd({ evtchn: front, port: fp, ring, requests: 100, signal }),
      runBackEnd({ evtchn: back, port: bp, ring, requests: 100, signal }),
    ]);
    assert.equal(f.responses, 100);
    assert.equal(b.responses, 100);
    assert.deepEqual(f.errors, []);

    // a back end that answers with a wrong checksum
    const bad = freshRing();
    const liar = new BackRing(bad);
    const frontRun = runFrontEnd({ evtchn: front, port: fp, ring: bad, requests: 3, signal });
    for (let answered = 0; answered < 3;) {
      if (liar.unconsumedRequests() === 0) {
        back.unmask(await back.pending({ signal }));
        continue;
      }
      const { id, payload } = liar.takeRequest();
      liar.putResponse({
        id,
        status: 0,
        checksum: fnv1a(payload) ^ (id === 1 ? 1 : 0),
        len: payload.length,
      });
      answered++;
      if (liar.pushResponses()) back.notify(bp);
    }
    const result = await frontRun;
    assert.equal(result.responses, 3);
    assert.equal(result.errors.length, 1);
    assert.match(result.errors[0], /^response #1:/);
  });
});
