/**
 * The FFI poller on the host with real eventfds: several pollers wait at
 * once without mixing up their answers, close() cancels waits, and waiting
 * never blocks the event loop; the inline wait (ready fds at once, a
 * bounded ppoll learned from recent waits, capped, configurable) stays
 * within its bounds.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EventFd } from "../ffi/eventfd.ts";
import { loadLibc } from "../ffi/load.ts";
import { FdPoller } from "../ffi/poller.ts";
import { POLLIN } from "../core/driver.ts";
import { ClosedHandleError, XenUsageError } from "../core/errors.ts";

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

  it("a ready fd resolves without parking; the cap is validated and 0 turns inline waits off", async () => {
    const libs = await loadLibc();
    const poller = new FdPoller(libs, 0);
    using efd = await EventFd.create();
    try {
      assert.equal(poller.inlineWaitMaxUs, 0);
      efd.signal();
      assert.equal(poller.readyNow(efd.fd, POLLIN), POLLIN);
      assert.equal(poller.tryInline(efd.fd, POLLIN), POLLIN);
      assert.deepEqual(poller.stats, { ready: 2, inlineHits: 0, inlineMisses: 0, parked: 0 });
      // wait() does not look first (its callers do): with inline waits off
      // it parks, and the background poll answers for the ready fd.
      assert.equal(await poller.wait(efd.fd, POLLIN), POLLIN);
      assert.equal(poller.stats.parked, 1);
      assert.equal(efd.read(), 1n);
      assert.equal(poller.tryInline(efd.fd, POLLIN), 0, "nothing ready, nothing waited for");
      assert.equal(poller.readyNow(efd.fd, POLLIN), 0);
      for (const bad of [-1, 1.5, Number.NaN, 1_000_001]) {
        assert.throws(() => poller.setInlineWait(bad), XenUsageError);
        assert.throws(() => new FdPoller(libs, bad), XenUsageError);
      }
      assert.equal(poller.inlineWaitMaxUs, 0, "a refused cap leaves the old one");
      poller.setInlineWait(500);
      assert.equal(poller.inlineWaitMaxUs, 500);
    } finally {
      poller.close();
    }
  });

  it("after a quick wait the next one waits inline, bounded by twice the time learned, then parks", async () => {
    // A cap of a second: whatever the machine's load, the first wait is learned.
    const poller = new FdPoller(await loadLibc(), 1_000_000);
    using efd = await EventFd.create();
    try {
      // A first wait with nothing known parks; its answer time is learned.
      const began = performance.now();
      const first = poller.wait(efd.fd, POLLIN);
      setTimeout(() => efd.signal(), 1);
      assert.equal(await first, POLLIN);
      const firstMs = performance.now() - began;
      assert.equal(poller.stats.parked, 1);
      efd.read();
      // Nothing will arrive: the inline wait is bounded by the learned budget.
      const t0 = performance.now();
      assert.equal(poller.tryInline(efd.fd, POLLIN), 0);
      const spent = performance.now() - t0;
      assert.ok(spent < 2 * firstMs + 50, `inline wait took ${spent} ms, first wait ${firstMs} ms`);
      assert.equal(poller.stats.inlineMisses, 1);
      // The parked wait that follows still gets the answer.
      const second = poller.wait(efd.fd, POLLIN, undefined, false);
      efd.signal();
      assert.equal(await second, POLLIN);
      assert.equal(poller.waiting, 0);
      // A ready fd with a budget resolves inline at once.
      assert.equal(poller.tryInline(efd.fd, POLLIN), POLLIN);
    } finally {
      poller.close();
    }
  });

  it("a wait lets what its caller just set going run before it may wait inline", async () => {
    // A pump wakes a consumer and waits again at once; the consumer's reply
    // is what makes the fd ready (here: it signals the eventfd itself). The
    // wait must not block before the consumer ran: it finds the fd ready
    // after one turn of the loop, with no inline miss and no parking.
    const poller = new FdPoller(await loadLibc(), 1_000_000);
    using efd = await EventFd.create();
    try {
      const learn = poller.wait(efd.fd, POLLIN);
      setTimeout(() => efd.signal(), 1);
      assert.equal(await learn, POLLIN);
      efd.read();
      assert.deepEqual(poller.stats, { ready: 0, inlineHits: 0, inlineMisses: 0, parked: 1 });
      let wake!: () => void;
      const consumer = new Promise<void>((resolve) => wake = resolve).then(() => efd.signal());
      wake();
      assert.equal(await poller.wait(efd.fd, POLLIN), POLLIN);
      await consumer;
      assert.deepEqual(poller.stats, { ready: 1, inlineHits: 0, inlineMisses: 0, parked: 1 });
      efd.read();
      // close() while the wait is deferred: it rejects instead of waiting.
      const deferred = poller.wait(efd.fd, POLLIN);
      poller.close();
      await assert.rejects(deferred, ClosedHandleError);
    } finally {
      poller.close();
    }
  });

  it("no inline wait while another wait is in flight", async () => {
    const poller = new FdPoller(await loadLibc(), 1_000_000);
    using a = await EventFd.create();
    using b = await EventFd.create();
    try {
      const learn = poller.wait(b.fd, POLLIN);
      b.signal();
      await learn;
      b.read();
      const parked = poller.wait(a.fd, POLLIN);
      const t0 = performance.now();
      assert.equal(poller.tryInline(b.fd, POLLIN), 0);
      assert.ok(performance.now() - t0 < 500, "tryInline must only look while a wait is parked");
      a.signal();
      assert.equal(await parked, POLLIN);
    } finally {
      poller.close();
    }
  });
});
