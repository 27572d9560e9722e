/**
 * The FFI poller on the host with real eventfds: several pollers wait at
 * once without mixing up their answers, close() cancels waits, and waiting
 * never blocks the event loop.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EventFd } from "../ffi/eventfd.ts";
import { loadLibc } from "../ffi/load.ts";
import { FdPoller } from "../ffi/poller.ts";
import { POLLIN } from "../core/driver.ts";
import { ClosedHandleError } from "../core/errors.ts";

describe("FdPoller", () => {
  it("two pollers wait at once and each gets its own fd's answer", async () => {
    const libs = await loadLibc();
    const first = new FdPoller(libs);
    const second = new FdPoller(libs);
    using a = await EventFd.create();
    using b = await EventFd.create();
    try {
      let firstDone = false;
      const waitA = first.wait(a.fd, POLLIN).then((revents) => (firstDone = true, revents));
      const waitB = second.wait(b.fd, POLLIN);
      b.signal();
      assert.equal(await waitB, POLLIN);
      await new Promise((resolve) => setTimeout(resolve, 30));
      assert.equal(firstDone, false, "the first poller must still be waiting on its own fd");
      a.signal();
      assert.equal(await waitA, POLLIN);
    } finally {
      first.close();
      second.close();
    }
  });

  it("close() rejects the waits in flight and refuses new ones", async () => {
    const poller = new FdPoller(await loadLibc());
    using efd = await EventFd.create();
    const waiting = poller.wait(efd.fd, POLLIN);
    poller.close();
    poller.close();
    await assert.rejects(waiting, ClosedHandleError);
    await assert.rejects(poller.wait(efd.fd, POLLIN), ClosedHandleError);
  });

  it("the event loop keeps running while a wait is in flight", async () => {
    const poller = new FdPoller(await loadLibc());
    using efd = await EventFd.create();
    try {
      let ticks = 0;
      const timer = setInterval(() => ticks++, 10);
      const waiting = poller.wait(efd.fd, POLLIN);
      await new Promise((resolve) => setTimeout(resolve, 150));
      efd.signal();
      assert.equal(await waiting, POLLIN);
      clearInterval(timer);
      assert.ok(ticks >= 5, `only ${ticks} timer ticks during a 150 ms wait`);
    } finally {
      poller.close();
    }
  });
});
