/**
 * REAL Linux eventfds on the host (no Xen needed): the ffi/eventfd.ts
 * wrapper's counter semantics and errors, and the doorbell writing through
 * EventFdNotifier, with the woken side waiting through the shared FdPoller
 * while the event loop keeps ticking.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import process from "node:process";
import { describe, it } from "node:test";
import { EventFd, EVENTFD_MAX } from "../ffi/eventfd.ts";
import { loadLibc } from "../ffi/load.ts";
import { sharedPoller } from "../ffi/poller.ts";
import { EventFdNotifier, IvshmemDoorbell, MemoryRegion } from "../plugins/doorbell/mod.ts";
import { ClosedHandleError, XenUsageError } from "../core/errors.ts";

const POLLOUT = 0x004;
const POLLNVAL = 0x020;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
/** A safety net: a lost wake-up fails the test instead of hanging it. */
const deadline = () => AbortSignal.timeout(10_000);

async function waitsInFlight(): Promise<number> {
  return sharedPoller(await loadLibc()).waiting;
}

/** Counts event-loop timer ticks until stop() is called. */
function ticker(): { readonly ticks: number; stop(): void } {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  return {
    get ticks() {
      return ticks;
    },
    stop: () => clearInterval(timer),
  };
}

/** Resolves once `predicate` holds, checking on timers (fails after 10 s). */
async function until(predicate: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 10_000;
  while (!predicate()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(1);
  }
}

describe("ffi/eventfd.ts: a real eventfd", () => {
  it("is a kernel eventfd: writes add, a read returns the sum and resets, an empty read is null", async () => {
    using efd = await EventFd.create();
    assert.ok(Number.isInteger(efd.fd) && efd.fd >= 0);
    assert.equal(efd.read(), null);
    assert.equal(efd.readable(), false);
    assert.equal(efd.signal(3n), true);
    assert.equal(efd.signal(4n), true);
    assert.equal(efd.readable(), true);
    assert.equal(efd.read(), 7n);
    assert.equal(efd.read(), null);
    assert.equal(efd.signal(0n), true);
    assert.equal(efd.read(), null, "writing 0 adds nothing");
  });

  it("EFD_SEMAPHORE reads return 1 and decrement; initval is honoured", async () => {
    using efd = await EventFd.create({ semaphore: true, initval: 2 });
    assert.equal(efd.semaphore, true);
    assert.equal(efd.read(), 1n);
    assert.equal(efd.read(), 1n);
    assert.equal(efd.read(), null);
  });

  it("the counter tops out at 2^64 - 2: the kernel's EAGAIN comes back as signal() === false", async () => {
    using efd = await EventFd.create();
    const poller = sharedPoller(await loadLibc());
    assert.equal(
      poller.pollNow(efd.fd, POLLOUT),
      POLLOUT,
      "an eventfd below its ceiling is writable",
    );
    assert.equal(efd.signal(EVENTFD_MAX), true);
    assert.equal(poller.pollNow(efd.fd, POLLOUT), 0, "the kernel clears POLLOUT at the ceiling");
    assert.equal(efd.signal(1n), false);
    assert.equal(efd.read(), EVENTFD_MAX);
    assert.equal(efd.signal(1n), true);
    assert.equal(efd.read(), 1n);
  });

  it("refuses bad values with XenUsageError before reaching the kernel", async () => {
    using efd = await EventFd.create();
    for (const n of [-1n, 0xffffffffffffffffn, 1n << 64n, 1 as unknown as bigint]) {
      assert.throws(() => efd.signal(n), XenUsageError, String(n));
    }
    for (const initval of [-1, 2 ** 32, 0.5]) {
      await assert.rejects(EventFd.create({ initval }), XenUsageError);
    }
    assert.equal(efd.read(), null, "nothing was written");
  });

  it("a kernel refusal is a typed XenCallError with the call and errno (EMFILE under a low fd limit)", () => {
    const module = new URL("../ffi/eventfd.ts", import.meta.url).href;
    const code = `import { EventFd } from ${JSON.stringify(module)};
      const kept = [];
      try {
        for (let i = 0; i < 4096; i++) kept.push(await EventFd.create());
        console.log(JSON.stringify({ made: kept.length }));
      } catch (e) {
        console.log(JSON.stringify({ name: e.name, call: e.call, code: e.code, errno: e.errno, made: kept.length }));
      }`;
    const args = "Deno" in globalThis ? ["eval", code] : ["-e", code];
    const child = spawnSync("sh", [
      "-c",
      'ulimit -n 64 && exec "$0" "$@"',
      process.execPath,
      ...args,
    ], {
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.equal(child.status, 0, child.stderr);
    const result = JSON.parse(child.stdout.trim().split("\n").pop()!);
    assert.equal(result.name, "XenCallError");
    assert.equal(result.call, "eventfd");
    assert.equal(result.code, "EMFILE");
    assert.equal(result.errno, 24);
    assert.ok(result.made > 0, "some eventfds were created before the limit");
  });

  it("after close() every use throws ClosedHandleError; close is idempotent and releases the fd", async () => {
    const poller = sharedPoller(await loadLibc());
    const efds = await Promise.all(Array.from({ length: 5 }, () => EventFd.create()));
    const fds = efds.map((efd) => efd.fd);
    assert.equal(new Set(fds).size, 5);
    for (const fd of fds) assert.equal(poller.pollNow(fd, POLLOUT), POLLOUT);
    for (const efd of efds) efd.close();
    for (const fd of fds) assert.equal(poller.pollNow(fd, POLLOUT), POLLNVAL, `fd ${fd} is closed`);
    const efd = efds[0];
    efd.close();
    assert.equal(efd.closed, true);
    assert.throws(() => efd.fd, ClosedHandleError);
    assert.throws(() => efd.read(), ClosedHandleError);
    assert.throws(() => efd.signal(1n), ClosedHandleError);
    assert.throws(() => efd.readable(), ClosedHandleError);
    assert.throws(() => efd.waitReadable(), ClosedHandleError);
    await assert.rejects(efd.wait(), ClosedHandleError);
  });

  it("wait() goes through the FdPoller without blocking the event loop", async () => {
    using efd = await EventFd.create();
    const before = await waitsInFlight(); // other files' waits may share the process-wide poller
    const tick = ticker();
    try {
      const waiting = efd.wait({ signal: deadline() });
      await until(() => tick.ticks >= 5, "5 timer ticks while waiting");
      assert.equal(await waitsInFlight(), before + 1, "one more poller wait in flight");
      efd.signal(2n);
      assert.equal(await waiting, 2n);
      assert.ok(tick.ticks >= 5);
      assert.equal(await waitsInFlight(), before);
    } finally {
      tick.stop();
    }
  });

  it("an aborted wait rejects with the reason; closing during a wait rejects with ClosedHandleError", async () => {
    const efd = await EventFd.create();
    const before = await waitsInFlight();
    const controller = new AbortController();
    const aborted = efd.wait({ signal: controller.signal });
    await sleep(5);
    controller.abort(new Error("give up"));
    await assert.rejects(aborted, /give up/);
    const closing = efd.wait();
    await sleep(5);
    efd.close();
    await assert.rejects(closing, ClosedHandleError);
    assert.equal(await waitsInFlight(), before, "both waits left the poller");
  });
});

describe("doorbell -> real eventfd", () => {
  it("a matching write adds 1 to the eventfd; the I/O callback is not called", async () => {
    using notifier = await EventFdNotifier.create();
    const writes: bigint[] = [];
    const region = new MemoryRegion("mmio", 32, { write: (_addr, data) => writes.push(data) });
    region.addEventfd(12, 4, true, 0x20001n, notifier);
    assert.equal(region.write(12, 0x20001n, 4), "notified");
    assert.equal(notifier.read(), 1n);
    for (let i = 0; i < 3; i++) region.write(12, 0x20001n, 4);
    assert.equal(notifier.read(), 3n);
    assert.deepEqual(writes, []);
  });

  it("a non-matching write (value, size, matchData off) never touches the eventfd and reaches the callback", async () => {
    using withData = await EventFdNotifier.create();
    using anyData = await EventFdNotifier.create();
    const writes: [number, bigint, number][] = [];
    const region = new MemoryRegion("mmio", 32, {
      write: (addr, data, size) => writes.push([addr, data, size]),
    });
    region.addEventfd(0, 4, true, 7n, withData);
    region.addEventfd(8, 2, false, 0n, anyData);
    assert.equal(region.write(0, 8n, 4), "callback");
    assert.equal(region.write(0, 7n, 2), "callback");
    assert.equal(region.write(8, 7n, 4), "callback");
    assert.equal(region.write(10, 7n, 2), "callback");
    assert.deepEqual(writes, [[0, 8n, 4], [0, 7n, 2], [8, 7n, 4], [10, 7n, 2]]);
    assert.equal(withData.eventfd.readable(), false);
    assert.equal(anyData.eventfd.readable(), false);
    assert.equal(region.write(8, 0xbeefn, 2), "notified");
    assert.equal(anyData.read(), 1n);
    assert.equal(withData.read(), null);
  });

  it("ivshmem: several peers and vectors on real eventfds; a waiting peer wakes only on its own value", async () => {
    const unmatched: bigint[] = [];
    using dev = new IvshmemDoorbell({ onWrite: (_addr, data) => unmatched.push(data) });
    const notifiers = await Promise.all(Array.from({ length: 4 }, () => EventFdNotifier.create()));
    try {
      dev.setPeer(1, notifiers.slice(0, 2));
      dev.setPeer(2, notifiers.slice(2, 4));
      const target = notifiers[3]; // peer 2, vector 1
      let woke = false;
      const waiting = target.wait({ signal: deadline() }).then((value) => {
        woke = true;
        return value;
      });
      const tick = ticker();
      try {
        assert.equal(dev.ring(2, 2), "callback");
        assert.equal(dev.ring(3, 1), "callback");
        assert.equal(dev.ring(1, 1), "notified");
        await until(() => tick.ticks >= 20, "20 ticks");
        assert.equal(
          woke,
          false,
          "neither a non-matching write nor another peer's doorbell woke the waiter",
        );
        assert.equal(dev.ring(2, 1), "notified");
        assert.equal(await waiting, 1n);
      } finally {
        tick.stop();
      }
      assert.deepEqual(unmatched, [0x20002n, 0x30001n]);
      assert.deepEqual(notifiers.map((n) => n.read()), [null, 1n, null, null]);
    } finally {
      dev.close();
      for (const n of notifiers) n.close();
    }
  });

  it("many waiters on different eventfds share one poller and each wakes on its own doorbell", async () => {
    using dev = new IvshmemDoorbell();
    const notifiers = await Promise.all(
      Array.from({ length: 8 }, () => EventFdNotifier.create({ semaphore: true })),
    );
    const before = await waitsInFlight();
    try {
      dev.setPeer(9, notifiers);
      const order: number[] = [];
      const waits = notifiers.map((n, v) =>
        n.wait({ signal: deadline() }).then(() => order.push(v))
      );
      await sleep(5);
      for (const v of [5, 0, 7, 3, 1, 6, 2, 4]) {
        dev.ring(9, v);
        await until(() => order.length > 0 && order[order.length - 1] === v, `vector ${v} to wake`);
      }
      await Promise.all(waits);
      assert.deepEqual(order, [5, 0, 7, 3, 1, 6, 2, 4]);
      assert.equal(await waitsInFlight(), before);
    } finally {
      dev.close();
      for (const n of notifiers) n.close();
    }
  });
});
