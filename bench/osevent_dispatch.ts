/**
 * osevent costs, two tables.
 *
 * 1. Dispatch cost per event with N = 10, 1,000 and 10,000 enabled
 *    generators, N queued events and N waiters (the poll-loop style, no
 *    real fds). Domains come from a minimal DomainEventSource that reports
 *    "death" records directly (the simulator's SimHypervisor feeds the same
 *    path, but creating 10,000 simulated domains per round takes seconds of
 *    setup). For each N, M domains die and one afterpoll turns their records
 *    into DOMAIN_DEATH events, which are then retrieved; only afterpoll and
 *    retrieval are timed. M = 1,000 for every N (100 with --quick), on top
 *    of the N in the background. Columns:
 *      gen+check  afterpoll generating the event + eventCheck(DEATH, {domid}),
 *               with N SHUTDOWN events queued
 *      check    the eventCheck alone
 *      wait     each DEATH handed to its eventWait({domid}) among N others
 *      libxl    the same lookups on a plain list scanned front to back
 *               (what libxl_event_check does), for contrast
 *      predfn   eventCheck with a predicate function and N DEATH events of
 *               other domains queued ahead: a documented O(n) scan
 *    "growth" is cost(10,000) / cost(10): about 1 means flat.
 *
 * 2. Waiting cost per handle: N eventfd "handles", one notified at a time,
 *    round trip notify -> event. "one poller": every handle watched by one
 *    EventContext on the built-in loop (one poll(2) in flight). "per
 *    handle": Deno: one FdPoller per handle (N concurrent nonblocking poll
 *    calls, one blocking-pool thread each); Bun: one Worker per handle
 *    (ffi/poll_worker.ts). Setup = time until all N wait; threads and RSS
 *    are the process's increase.
 *
 * Usage: deno run -A bench/osevent_dispatch.ts [--quick]
 *        bun run bench/osevent_dispatch.ts [--quick]
 * Output (bench/rows.ts): JSON rows on stdout (suite osevent; table 1 as
 * cases "<column> N=<n>" in ns/event, median of the repeats, with the
 * libxl-style scan as baseline of check and the 10-waiter cost as baseline
 * of wait; table 2 as "<way> handles=<n>" round trips in us); the tables on
 * stderr.
 */
import { readFileSync } from "node:fs";
import process from "node:process";
import { emitRow, say } from "./rows.ts";
import { FdPoller, loadXenLibraries, POLL_WORKER_URL, sharedPoller } from "../ffi/mod.ts";
import {
  attachRuntimeLoop,
  type DomainEventSource,
  type DomainState,
  EventContext,
  EventFd,
  EventFdPortSource,
  eventMask,
  EventType,
  type PollSlot,
  type RawDomainEvent,
  type XenEvent,
} from "../plugins/osevent/mod.ts";

const quick = process.argv.includes("--quick");
const runtime = "Deno" in globalThis ? "deno" : "bun";
const DEATH = eventMask(EventType.DOMAIN_DEATH);
const SIZES = [10, 1_000, 10_000];
const POLLIN = 1;

function pollOnce(ctx: EventContext): void {
  const fds: PollSlot[] = [];
  ctx.beforepoll(fds, -1);
  ctx.afterpoll(fds);
}

/** A minimal domain source: every domain exists until `destroy`. */
class FakeDomains implements DomainEventSource {
  #listener: ((e: RawDomainEvent) => void) | null = null;
  #dead = new Set<number>();
  subscribe(listener: (e: RawDomainEvent) => void): () => void {
    this.#listener = listener;
    return () => this.#listener = null;
  }
  domainState(domid: number): DomainState | undefined {
    return this.#dead.has(domid) ? undefined : {};
  }
  shutdown(domid: number): void {
    this.#listener?.({ type: "shutdown", domid, reasonCode: 0 });
  }
  destroy(domid: number): void {
    this.#dead.add(domid);
    this.#listener?.({ type: "death", domid });
  }
}

interface World {
  hv: FakeDomains;
  ctx: EventContext;
  domids: number[];
}

/** n + extra domains, each enabled; the first n have a SHUTDOWN event left queued. */
function world(n: number, extraDomains: number): World {
  const hv = new FakeDomains();
  const ctx = new EventContext({ domains: hv });
  const domids: number[] = [];
  for (let i = 0; i < n + extraDomains; i++) domids.push(i + 1);
  for (const d of domids) ctx.enableDomainDeath(d, d);
  for (const d of domids.slice(0, n)) hv.shutdown(d);
  pollOnce(ctx);
  return { hv, ctx, domids };
}

/** ns per event for generation + eventCheck by domid, and for the eventCheck alone; M deaths, N queued. */
function benchCheck(n: number, m: number): { total: number; lookup: number } {
  const { hv, ctx, domids } = world(n, m);
  const victims = domids.slice(n);
  for (const d of victims) hv.destroy(d);
  const t0 = performance.now();
  pollOnce(ctx);
  const t1 = performance.now();
  for (const d of victims.reverse()) {
    const ev = ctx.eventCheck(DEATH, { domid: d });
    if (!ev || ev.domid !== d) throw new Error("lost event");
  }
  const t2 = performance.now();
  if (ctx.stats().queued !== n) throw new Error("queue size changed");
  ctx.close();
  return { total: ((t2 - t0) * 1e6) / m, lookup: ((t2 - t1) * 1e6) / m };
}

/** ns per event handed to waiters: N + M waiters, the M extra ones served. */
async function benchWait(n: number, m: number): Promise<number> {
  const { hv, ctx, domids } = world(n, m);
  const waits = domids.map((d) => ctx.eventWait(DEATH, { domid: d }));
  const victims = domids.slice(n);
  for (const d of victims) hv.destroy(d);
  const t0 = performance.now();
  pollOnce(ctx); // generating each event resolves its waiter
  const ns = ((performance.now() - t0) * 1e6) / m;
  const got = await Promise.all(waits.slice(n));
  got.forEach((ev, i) => {
    if (ev.domid !== victims[i]) throw new Error("wrong waiter");
  });
  if (ctx.stats().waiters !== n) throw new Error("waiter count");
  ctx.close();
  for (const w of waits.slice(0, n)) w.catch(() => {});
  return ns;
}

/** ns per lookup on a libxl-like list: N queued, each lookup scans from the front. */
function benchLinear(n: number, m: number): number {
  const list: XenEvent[] = [];
  for (let i = 0; i < n; i++) {
    list.push({ type: 1, domid: i, forUser: i, shutdownReason: 0, shutdownReasonName: "poweroff" });
  }
  for (let i = 0; i < m; i++) list.push({ type: 2, domid: n + i, forUser: n + i });
  const t0 = performance.now();
  for (let i = 0; i < m; i++) {
    const want = n + i;
    const at = list.findIndex((e) => e.type === 2 && e.domid === want);
    if (at < 0) throw new Error("lost");
    list.splice(at, 1);
  }
  return ((performance.now() - t0) * 1e6) / m;
}

/** ns per eventCheck with a predicate function, N DEATH events of other domains queued ahead. */
function benchPredicate(n: number, m: number): number {
  const { hv, ctx, domids } = world(0, n + m);
  for (const d of domids) hv.destroy(d);
  pollOnce(ctx);
  const victims = domids.slice(n);
  const t0 = performance.now();
  for (const d of victims) {
    const ev = ctx.eventCheck(DEATH, (e) => e.domid === d);
    if (!ev) throw new Error("lost");
  }
  const ns = ((performance.now() - t0) * 1e6) / m;
  ctx.close();
  return ns;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function pad(s: string | number, w: number): string {
  return String(s).padStart(w);
}

// ---- table 1 ----------------------------------------------------------------

const M = quick ? 100 : 1000;
const REPEAT = quick ? 3 : 7;
const COLUMNS = ["gen+check", "check", "wait", "libxl", "predfn"];
const dispatch: Record<string, Record<number, number>> = Object.fromEntries(
  COLUMNS.map((c) => [c, {}]),
);
const samples: Record<string, Record<number, number[]>> = Object.fromEntries(
  COLUMNS.map((c) => [c, {}]),
);
// round 0 warms the JIT up on every size and is dropped; then sizes are interleaved
for (let r = 0; r <= REPEAT; r++) {
  for (const n of SIZES) {
    const check = benchCheck(n, M);
    const got = {
      "gen+check": check.total,
      check: check.lookup,
      wait: await benchWait(n, M),
      libxl: benchLinear(n, M),
      predfn: benchPredicate(n, M),
    };
    if (r === 0) continue;
    for (const [col, ns] of Object.entries(got)) (samples[col][n] ??= []).push(ns);
  }
}
for (const col of Object.keys(samples)) {
  for (const n of SIZES) dispatch[col][n] = median(samples[col][n]);
}

say(`\nosevent dispatch cost per event (${runtime}; ns/event, median of ${REPEAT})`);
say(pad("N", 8) + COLUMNS.map((c) => pad(c, 11)).join(""));
for (const n of SIZES) {
  say(
    pad(n.toLocaleString("en"), 8) +
      COLUMNS.map((c) => pad(dispatch[c][n].toFixed(0), 11)).join(""),
  );
}
for (const col of COLUMNS) {
  for (const n of SIZES) {
    const baseline = col === "check"
      ? { name: "libxl-style list scan (TS)", value: dispatch.libxl[n] }
      : col === "wait" && n !== SIZES[0]
      ? { name: `with ${SIZES[0]} waiters`, value: dispatch.wait[SIZES[0]] }
      : undefined;
    emitRow({
      suite: "osevent",
      case: col === "check"
        ? `eventCheck by domid, ${n.toLocaleString("en")} queued`
        : col === "wait"
        ? `event to its eventWait, ${n.toLocaleString("en")} waiters`
        : `${col} N=${n}`,
      unit: "ns/event",
      better: "lower",
      value: +dispatch[col][n].toFixed(1),
      stat: "median",
      values: samples[col][n].map((v) => +v.toFixed(1)),
      ...(baseline ? { baseline: { ...baseline, value: +baseline.value.toFixed(1) } } : {}),
      summary: n === SIZES.at(-1) && (col === "check" || col === "wait"),
      column: col,
      n,
    });
  }
}
const growth = (col: string) => dispatch[col][SIZES.at(-1)!] / dispatch[col][SIZES[0]];
say(pad("growth", 8) + COLUMNS.map((c) => pad(`${growth(c).toFixed(2)}x`, 11)).join(""));
say(
  "N grew 1000x. gen+check: afterpoll turning a death record into an event + eventCheck by domid; check: the eventCheck alone;\n" +
    "wait: afterpoll handing each event to its eventWait({domid}); libxl: the lookup on a list scanned front to back\n" +
    "(libxl_event_check's way), for contrast with check; predfn: eventCheck with a predicate function (documented O(n)).",
);

// ---- table 2 ----------------------------------------------------------------

function procStatus(): { threads: number; rssKb: number } {
  try {
    const text = readFileSync("/proc/self/status", "utf8");
    const threads = Number(/^Threads:\s+(\d+)/m.exec(text)?.[1] ?? NaN);
    const rssKb = Number(/^VmRSS:\s+(\d+)/m.exec(text)?.[1] ?? NaN);
    return { threads, rssKb };
  } catch {
    return { threads: NaN, rssKb: NaN };
  }
}

async function settle(test: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!test()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 1));
  }
}

interface WaitResult {
  setupMs: number;
  rtUs: number;
  threads: number;
  rssMb: number;
}

const libs = await loadXenLibraries();

/** Many handles, one poller: the built-in loop. */
async function onePoller(n: number, rounds: number): Promise<WaitResult> {
  const before = procStatus();
  const sources: EventFdPortSource[] = [];
  for (let i = 0; i < n; i++) sources.push(await EventFdPortSource.open(i + 1));
  const ctx = new EventContext();
  const poller = sharedPoller(libs);
  const t0 = performance.now();
  await attachRuntimeLoop(ctx);
  for (const s of sources) ctx.watchEventChannels(s, { forUser: s, autoUnmask: true });
  await settle(() => poller.waiting === n);
  const setupMs = performance.now() - t0;
  const mid = procStatus();
  const t1 = performance.now();
  for (let r = 0; r < rounds; r++) {
    const s = sources[(r * 7919) % n];
    s.notify();
    const ev = await ctx.eventWait(eventMask(EventType.EVTCHN_PORT));
    if (ev.forUser !== s) throw new Error("wrong handle");
  }
  const rtUs = ((performance.now() - t1) * 1e3) / rounds;
  ctx.close();
  for (const s of sources) s.close();
  await settle(() => poller.waiting === 0);
  return {
    setupMs,
    rtUs,
    threads: mid.threads - before.threads,
    rssMb: (mid.rssKb - before.rssKb) / 1024,
  };
}

/** Deno: one FdPoller per handle. */
async function perHandleDeno(n: number, rounds: number): Promise<WaitResult> {
  const before = procStatus();
  const efds: EventFd[] = [];
  for (let i = 0; i < n; i++) efds.push(await EventFd.create());
  const pollers = efds.map(() => new FdPoller(libs));
  const abort = new AbortController();
  const ready = new Map<number, () => void>();
  let armed = 0;
  const t0 = performance.now();
  efds.forEach((e, i) => {
    const loop = async () => {
      while (!abort.signal.aborted) {
        armed++;
        const revents = await pollers[i].wait(e.fd, POLLIN, abort.signal);
        armed--;
        if (!revents) continue;
        e.read();
        ready.get(i)?.();
      }
    };
    void loop();
  });
  await settle(() => armed === n && pollers.every((p) => p.waiting === 1));
  const setupMs = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 50)); // let every poll thread start
  const mid = procStatus();
  const t1 = performance.now();
  for (let r = 0; r < rounds; r++) {
    const i = (r * 7919) % n;
    const got = new Promise<void>((resolve) => ready.set(i, resolve));
    efds[i].signal();
    await got;
    ready.delete(i);
  }
  const rtUs = ((performance.now() - t1) * 1e3) / rounds;
  abort.abort();
  await settle(() => pollers.every((p) => p.waiting === 0));
  for (const e of efds) e.close();
  return {
    setupMs,
    rtUs,
    threads: mid.threads - before.threads,
    rssMb: (mid.rssKb - before.rssKb) / 1024,
  };
}

/** Bun: one Worker per handle, each running ffi/poll_worker.ts on its one fd. */
async function perHandleBun(n: number, rounds: number): Promise<WaitResult> {
  const before = procStatus();
  const efds: EventFd[] = [];
  for (let i = 0; i < n; i++) efds.push(await EventFd.create());
  const url = POLL_WORKER_URL;
  const ready = new Map<number, () => void>();
  let armed = 0;
  let stopping = false;
  const t0 = performance.now();
  const workers = efds.map((e, i) => {
    const w = new Worker(url);
    const post = () => {
      const fds = new Uint8Array(8);
      const view = new DataView(fds.buffer);
      view.setInt32(0, e.fd, true);
      view.setInt16(4, POLLIN, true);
      armed++;
      w.postMessage({ fds: fds.buffer, count: 1, timeoutMs: stopping ? 0 : -1 }, [fds.buffer]);
    };
    w.onmessage = () => {
      armed--;
      if (stopping) return;
      e.read();
      ready.get(i)?.();
      post();
    };
    post();
    return w;
  });
  await settle(() => armed === n);
  const setupMs = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 200)); // let every worker start polling
  const mid = procStatus();
  const t1 = performance.now();
  for (let r = 0; r < rounds; r++) {
    const i = (r * 7919) % n;
    const got = new Promise<void>((resolve) => ready.set(i, resolve));
    efds[i].signal();
    await got;
    ready.delete(i);
  }
  const rtUs = ((performance.now() - t1) * 1e3) / rounds;
  stopping = true;
  for (const e of efds) e.signal(); // wake every poll so the workers can go
  await settle(() => armed === 0);
  for (const w of workers) w.terminate();
  for (const e of efds) e.close();
  return {
    setupMs,
    rtUs,
    threads: mid.threads - before.threads,
    rssMb: (mid.rssKb - before.rssKb) / 1024,
  };
}

/**
 * Deno only: how a poll per handle behaves past the runtime's limit of
 * concurrent nonblocking FFI calls. `n` polls with a `timeoutMs` timeout
 * are started at once; the last fd is made readable; returns how long
 * its poll took to report it (ms) and the process's thread increase.
 */
async function denoConcurrencyProbe(
  n: number,
  timeoutMs: number,
): Promise<{ latencyMs: number; threads: number }> {
  const before = procStatus();
  const efds: EventFd[] = [];
  for (let i = 0; i < n; i++) efds.push(await EventFd.create());
  const polls = efds.map((e) => {
    const fds = new Uint8Array(8);
    const view = new DataView(fds.buffer);
    view.setInt32(0, e.fd, true);
    view.setInt16(4, POLLIN, true);
    return libs.runtime.pollAsync(fds, 1, timeoutMs);
  });
  await new Promise((r) => setTimeout(r, 200));
  const threads = procStatus().threads - before.threads;
  const t0 = performance.now();
  efds[n - 1].signal();
  await polls[n - 1];
  const latencyMs = performance.now() - t0;
  await Promise.all(polls);
  for (const e of efds) e.close();
  return { latencyMs, threads };
}

const perHandleWay = runtime === "deno" ? "FdPoller per handle" : "Worker per handle";
const HANDLES = quick ? [10, 100] : [10, 25, 100, 1000];
/** Past this, a poll per handle does not finish on Deno (see the probe); Workers get heavy on Bun. */
const PER_HANDLE_MAX = runtime === "deno" ? 25 : 100;
const ROUNDS = quick ? 200 : 2000;
const waiting: Record<string, Record<number, WaitResult | null>> = { one: {}, per: {} };
for (const n of HANDLES) {
  waiting.one[n] = await onePoller(n, ROUNDS);
  waiting.per[n] = n > PER_HANDLE_MAX
    ? null
    : runtime === "deno"
    ? await perHandleDeno(n, ROUNDS)
    : await perHandleBun(n, ROUNDS);
}

for (const n of HANDLES) {
  for (
    const [way, result] of [["one poller", waiting.one[n]], [perHandleWay, waiting.per[n]]] as const
  ) {
    if (!result) continue;
    emitRow({
      suite: "osevent",
      case: `notify -> event, ${way}, ${n} handles`,
      unit: "us/roundtrip",
      better: "lower",
      value: +result.rtUs.toFixed(2),
      stat: "single",
      setupMs: +result.setupMs.toFixed(1),
      threads: result.threads,
      rssMb: +result.rssMb.toFixed(1),
      handles: n,
      rounds: ROUNDS,
    });
  }
}
const perLabel = perHandleWay;
say(`\nwaiting cost per handle (${runtime}; ${ROUNDS} notify->event round trips)`);
say(
  `${pad("handles", 8)} | ${pad("one poller: setup ms", 21)}${pad("rt us", 8)}${
    pad("+threads", 9)
  }${pad("+RSS MB", 9)}` +
    ` | ${pad(`${perLabel}: setup ms`, 30)}${pad("rt us", 8)}${pad("+threads", 9)}${
      pad("+RSS MB", 9)
    }`,
);
for (const n of HANDLES) {
  const a = waiting.one[n]!;
  const b = waiting.per[n];
  const right = b
    ? `${pad(b.setupMs.toFixed(1), 30)}${pad(b.rtUs.toFixed(1), 8)}${pad(b.threads, 9)}${
      pad(b.rssMb.toFixed(1), 9)
    }`
    : pad(
      runtime === "deno" ? "not run: never completes (probe below)" : "not run (a Worker each)",
      56,
    );
  say(
    `${pad(n, 8)} | ${pad(a.setupMs.toFixed(1), 21)}${pad(a.rtUs.toFixed(1), 8)}${
      pad(a.threads, 9)
    }${pad(a.rssMb.toFixed(1), 9)}` +
      ` | ${right}`,
  );
}
const cmp = Math.max(...HANDLES.filter((n) => waiting.per[n]));
const one = waiting.one[cmp]!;
const per = waiting.per[cmp]!;
say(
  `at ${cmp} handles: one poller ${(one.rssMb / cmp * 1024).toFixed(0)} KB RSS and ${
    (one.threads / cmp).toFixed(2)
  } threads per handle; ` +
    `${perLabel} ${(per.rssMb / cmp * 1024).toFixed(0)} KB RSS and ${
      (per.threads / cmp).toFixed(2)
    } threads per handle`,
);
let probe: { latencyMs: number; threads: number } | null = null;
if (runtime === "deno") {
  probe = await denoConcurrencyProbe(64, 2000);
  say(
    `probe: 64 concurrent poll calls (2000 ms timeout), last fd made readable: reported after ${
      probe.latencyMs.toFixed(0)
    } ms ` +
      `(+${probe.threads} threads): Deno runs only so many nonblocking FFI calls at once, so with a poll per handle ` +
      "the handles beyond that limit are not watched at all until earlier polls return",
  );
}
