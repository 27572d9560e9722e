/**
 * The built-in Deno/Bun loop and the application styles with REAL file
 * descriptors (eventfds made through the FFI layer's libc table), on any
 * host: 1,000 watched handles served by one poller with never more than one
 * poll(2) in flight, the poll-loop style with a real poll(2), an
 * application's own hooks over the FdPoller, mixing, masking, pause (events
 * 0), abort, POLLNVAL as a disaster, and no leaked waits after close.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadXenLibraries, type XenLibraries } from "../ffi/load.ts";
import { FdPoller, sharedPoller } from "../ffi/poller.ts";
import {
  attachRuntimeLoop,
  type BuiltinLoop,
  DisasterError,
  EventContext,
  EventFd,
  EventFdPortSource,
  eventMask,
  EventType,
  type EvtchnPortEvent,
  type OsEventRef,
  type PendingPortSource,
  POLLIN,
  runtimeName,
} from "../plugins/osevent/mod.ts";
import { deadline } from "./helpers/xen.ts";

const PORT = eventMask(EventType.EVTCHN_PORT);

/** Counts pollAsync calls of the shared poller's runtime while `fn` runs (restored afterwards). */
async function countingPolls<T>(
  libs: XenLibraries,
  fn: (counts: { calls: number; inFlight: number; maxInFlight: number }) => Promise<T>,
): Promise<T> {
  const runtime = libs.runtime as { pollAsync: XenLibraries["runtime"]["pollAsync"] };
  const original = runtime.pollAsync;
  const counts = { calls: 0, inFlight: 0, maxInFlight: 0 };
  runtime.pollAsync = async (fds, count, timeout) => {
    counts.calls++;
    counts.inFlight++;
    counts.maxInFlight = Math.max(counts.maxInFlight, counts.inFlight);
    try {
      return await original(fds, count, timeout);
    } finally {
      counts.inFlight--;
    }
  };
  try {
    return await fn(counts);
  } finally {
    runtime.pollAsync = original;
  }
}

/** Resolves once `test()` holds, polling every few ms (fails after `ms`). */
async function until(test: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!test()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

async function openSources(n: number, firstPort = 1): Promise<EventFdPortSource[]> {
  const out: EventFdPortSource[] = [];
  for (let i = 0; i < n; i++) out.push(await EventFdPortSource.open(firstPort + i));
  return out;
}

describe(`built-in ${runtimeName()} loop with real fds`, () => {
  it("serves 1,000 watched handles with one poller: one poll(2) in flight, never more", {
    timeout: 60_000,
  }, async () => {
    const libs = await loadXenLibraries();
    const poller = sharedPoller(libs);
    const sources = await openSources(1000, 100);
    const ctx = new EventContext();
    try {
      await countingPolls(libs, async (counts) => {
        const loop = await attachRuntimeLoop(ctx);
        for (const s of sources) ctx.watchEventChannels(s, { forUser: `h${s.port}` });
        await until(
          () => counts.inFlight === 1 && poller.waiting === 1000,
          "1,000 waits in one poll",
        );
        assert.equal(loop.stats().waits, 1000);
        assert.equal(ctx.stats().fds, 1000);
        // wake 50 handles spread over the set; each gives exactly one event with its own user value
        const picked = sources.filter((_, i) => i % 20 === 7);
        for (const s of picked) s.notify();
        const got: EvtchnPortEvent[] = [];
        for (let i = 0; i < picked.length; i++) {
          got.push(await ctx.eventWait(PORT, undefined, { signal: deadline() }) as EvtchnPortEvent);
        }
        assert.deepEqual(got.map((e) => e.port).sort(), picked.map((s) => s.port).sort());
        for (const e of got) assert.equal(e.forUser, `h${e.port}`);
        assert.equal(ctx.eventCheck(PORT), null);
        for (const e of got) e.handle.unmask(e.port);
        await until(() => poller.waiting === 1000, "every handle waiting again");
        assert.equal(counts.maxInFlight, 1, "never more than one poll in flight");
        ctx.close();
        await until(() => poller.waiting === 0, "close to cancel every wait");
        assert.equal(counts.maxInFlight, 1);
        assert.ok(counts.calls >= 2);
      });
    } finally {
      ctx.close();
      for (const s of sources) s.close();
    }
  });

  it("several contexts with built-in loops still share the one poller", async () => {
    const libs = await loadXenLibraries();
    const poller = sharedPoller(libs);
    const sources = await openSources(30);
    const contexts = [new EventContext(), new EventContext(), new EventContext()];
    try {
      await countingPolls(libs, async (counts) => {
        for (const ctx of contexts) await attachRuntimeLoop(ctx);
        sources.forEach((s, i) => contexts[i % 3].watchEventChannels(s, { forUser: i % 3 }));
        await until(() => poller.waiting === 30, "30 waits");
        sources[4].notify();
        const ev = await contexts[1].eventWait(PORT, undefined, { signal: deadline() });
        assert.equal((ev as EvtchnPortEvent).port, 5);
        assert.equal(ev.forUser, 1);
        assert.equal(counts.maxInFlight, 1);
      });
    } finally {
      for (const ctx of contexts) ctx.close();
      for (const s of sources) s.close();
    }
    await until(() => poller.waiting === 0, "no waits left");
  });

  it("a port stays masked until unmask; autoUnmask re-enables it at once", async () => {
    const [a, b] = await openSources(2, 7);
    const ctx = new EventContext();
    try {
      await attachRuntimeLoop(ctx);
      ctx.watchEventChannels(a, { forUser: "manual" });
      ctx.watchEventChannels(b, { forUser: "auto", autoUnmask: true });
      a.notify();
      b.notify();
      const first = await Promise.all([
        ctx.eventWait(PORT, { forUser: "manual" }, { signal: deadline() }),
        ctx.eventWait(PORT, { forUser: "auto" }, { signal: deadline() }),
      ]);
      assert.deepEqual(first.map((e) => (e as EvtchnPortEvent).port), [7, 8]);
      a.notify(); // masked: held back
      b.notify(); // auto-unmasked: delivered
      const again = await ctx.eventWait(PORT, undefined, { signal: deadline() });
      assert.equal(again.forUser, "auto");
      await new Promise((r) => setTimeout(r, 30));
      assert.equal(ctx.eventCheck(PORT), null, "the masked port was not delivered");
      a.unmask(7);
      const late = await ctx.eventWait(PORT, undefined, { signal: deadline() });
      assert.equal(late.forUser, "manual");
    } finally {
      ctx.close();
      a.close();
      b.close();
    }
  });

  it("pause registers events 0 (no delivery); resume delivers what is pending", async () => {
    const [a] = await openSources(1, 3);
    const ctx = new EventContext();
    try {
      const loop = await attachRuntimeLoop(ctx);
      const watch = ctx.watchEventChannels(a);
      watch.pause();
      assert.equal(watch.paused, true);
      assert.equal(loop.stats().fds, 1, "still registered");
      a.notify();
      await new Promise((r) => setTimeout(r, 30));
      assert.equal(ctx.eventCheck(PORT), null);
      watch.resume();
      const ev = await ctx.eventWait(PORT, undefined, { signal: deadline() });
      assert.equal((ev as EvtchnPortEvent).port, 3);
      assert.equal(watch.delivered, 1);
      watch.close();
      assert.equal(loop.stats().fds, 0);
    } finally {
      ctx.close();
      a.close();
    }
  });

  it("eventWait on real fds is cancelled through its AbortSignal", async () => {
    const [a] = await openSources(1);
    const ctx = new EventContext();
    try {
      await attachRuntimeLoop(ctx);
      ctx.watchEventChannels(a);
      const abort = new AbortController();
      const wait = ctx.eventWait(PORT, undefined, { signal: abort.signal });
      setTimeout(() => abort.abort(new Error("gave up")), 20);
      await assert.rejects(wait, /gave up/);
      assert.equal(ctx.stats().waiters, 0);
    } finally {
      ctx.close();
      a.close();
    }
  });

  it("an fd closed under a watch (POLLNVAL) is a disaster: fatal without a handler", async () => {
    const efd = await EventFd.create();
    const fd = efd.fd;
    const stale: PendingPortSource = {
      fd,
      closed: false,
      tryPending: () => null,
      unmask: () => {},
    };
    const ctx = new EventContext();
    const other = await EventFdPortSource.open(1); // opened first, so it cannot reuse the fd number
    try {
      await attachRuntimeLoop(ctx);
      const wait = ctx.eventWait(PORT);
      ctx.watchEventChannels(stale);
      ctx.watchEventChannels(other);
      efd.close(); // the fd number is now invalid, but the watch does not know
      other.notify(); // wakes the poll, which then looks at the stale fd again
      const error = await wait.then(() => null, (e) => e);
      // the port event may win the race; the failure must come either way
      if (error === null) await until(() => ctx.failure !== null, "the disaster");
      const failure = ctx.failure;
      assert.ok(failure instanceof DisasterError);
      assert.equal(failure.code, "EBADF");
      assert.equal(failure.eventType, EventType.EVTCHN_PORT);
      assert.equal(ctx.stats().fdWatches, 0);
    } finally {
      ctx.close();
      other.close();
      efd.close();
    }
  });
});

describe("the application's own loop with real fds", () => {
  it("poll-loop style: beforepoll into a struct pollfd array, a real poll(2), afterpoll", async () => {
    const libs = await loadXenLibraries();
    const sources = await openSources(3, 40);
    const ctx = new EventContext();
    try {
      for (const s of sources) ctx.watchEventChannels(s, { forUser: s.port });
      let fds = new Uint8Array(8);
      let r = ctx.beforepoll(fds, 1000);
      assert.equal(r.full, true);
      assert.equal(r.needed, 3);
      fds = new Uint8Array(8 * r.needed);
      r = ctx.beforepoll(fds, 1000);
      assert.equal(r.timeout, 1000);
      sources[1].notify();
      const n = libs.libc.symbols.poll(fds, BigInt(r.needed), r.timeout);
      assert.equal(n, 1, "real poll(2) saw one ready fd");
      ctx.afterpoll(fds, Date.now());
      const ev = ctx.eventCheck(PORT) as EvtchnPortEvent;
      assert.equal(ev.port, 41);
      assert.equal(ev.forUser, 41);
      assert.equal(ctx.eventCheck(PORT), null);
      // nothing ready: poll with timeout 0 returns 0, afterpoll generates nothing
      ctx.beforepoll(fds, 0);
      assert.equal(libs.libc.symbols.poll(fds, 3n, 0), 0);
      ctx.afterpoll(fds);
      assert.equal(ctx.eventCheck(PORT), null);
    } finally {
      ctx.close();
      for (const s of sources) s.close();
    }
  });

  it("hooks style: the application's hooks wait on the FdPoller and report from a later turn", async () => {
    const libs = await loadXenLibraries();
    const poller = sharedPoller(libs);
    const sources = await openSources(4, 60);
    const ctx = new EventContext();
    const registered = new Map<number, AbortController>();
    try {
      ctx.registerHooks<number>({
        fdRegister(fd, events, ref) {
          const abort = new AbortController();
          registered.set(fd, abort);
          const loop = async () => {
            while (!abort.signal.aborted) {
              const revents = await poller.wait(fd, events, abort.signal);
              if (revents && !abort.signal.aborted) ctx.occurredFd(ref, fd, events, revents);
            }
          };
          void loop();
          return fd;
        },
        fdModify: () => undefined,
        fdDeregister(fd) {
          registered.get(fd)?.abort();
          registered.delete(fd);
        },
        timeoutRegister: () => 0,
        timeoutModify: () => undefined,
      });
      for (const s of sources) ctx.watchEventChannels(s, { forUser: s.port });
      assert.equal(registered.size, 4);
      sources[2].notify();
      sources[3].notify();
      const got = [
        await ctx.eventWait(PORT, undefined, { signal: deadline() }),
        await ctx.eventWait(PORT, undefined, { signal: deadline() }),
      ];
      assert.deepEqual(got.map((e) => e.forUser).sort(), [62, 63]);
      ctx.close();
      assert.equal(registered.size, 0, "close deregistered every fd");
    } finally {
      ctx.close();
      for (const s of sources) s.close();
    }
  });

  it("mixing: a built-in loop serves the hooks while the application also runs beforepoll/afterpoll", async () => {
    const libs = await loadXenLibraries();
    const sources = await openSources(2, 80);
    const ctx = new EventContext();
    try {
      const loop: BuiltinLoop = await attachRuntimeLoop(ctx);
      for (const s of sources) ctx.watchEventChannels(s, { forUser: s.port });
      const fds = new Uint8Array(16);
      ctx.beforepoll(fds);
      sources[0].notify();
      assert.equal(libs.libc.symbols.poll(fds, 2n, 1000), 1);
      ctx.afterpoll(fds); // the poll loop gets there first
      assert.equal((ctx.eventCheck(PORT) as EvtchnPortEvent).port, 80);
      sources[1].notify(); // this one comes through the built-in loop
      const ev = await ctx.eventWait(PORT, undefined, { signal: deadline() });
      assert.equal((ev as EvtchnPortEvent).port, 81);
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(ctx.eventCheck(PORT), null, "no duplicate from the loop for port 80");
      assert.ok(loop.stats().fdReports >= 1);
    } finally {
      ctx.close();
      for (const s of sources) s.close();
    }
  });

  it("occurredFd from inside the application's register hook is refused (real loop)", async () => {
    const [a, b] = await openSources(2);
    const ctx = new EventContext();
    const refusals: unknown[] = [];
    let first: OsEventRef | undefined;
    try {
      ctx.registerHooks<number>({
        fdRegister(fd, _events, ref) {
          if (first) {
            try {
              ctx.occurredFd(first, a.fd, POLLIN, POLLIN);
            } catch (e) {
              refusals.push(e);
            }
          }
          first ??= ref;
          return fd;
        },
        fdModify: () => undefined,
        fdDeregister: () => {},
        timeoutRegister: () => 0,
        timeoutModify: () => undefined,
      });
      ctx.watchEventChannels(a);
      a.notify();
      ctx.watchEventChannels(b);
      assert.equal(refusals.length, 1);
      assert.match(String((refusals[0] as Error).message), /reentrantly from a hook/);
      assert.equal(ctx.eventCheck(PORT), null, "nothing was dispatched reentrantly");
      ctx.occurredFd(first!, a.fd, POLLIN, POLLIN); // fine from the loop
      assert.equal((ctx.eventCheck(PORT) as EvtchnPortEvent).port, 1);
    } finally {
      ctx.close();
      a.close();
      b.close();
    }
  });

  it("a separate FdPoller instance works as the built-in loop's waiter (injection for tests)", async () => {
    const libs = await loadXenLibraries();
    const [a] = await openSources(1, 9);
    const ctx = new EventContext();
    const poller = "Deno" in globalThis ? new FdPoller(libs) : sharedPoller(libs);
    try {
      await attachRuntimeLoop(ctx, { poller });
      ctx.watchEventChannels(a);
      await until(() => poller.waiting === 1, "the wait");
      a.notify();
      assert.equal(
        ((await ctx.eventWait(PORT, undefined, { signal: deadline() })) as EvtchnPortEvent).port,
        9,
      );
    } finally {
      ctx.close();
      a.close();
    }
    await until(() => poller.waiting === 0, "no waits left");
  });
});
