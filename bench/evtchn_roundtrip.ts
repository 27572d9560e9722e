/**
 * Event channel round trip and notify cost through the public API, the same
 * loop as bench/c/evtchn_pingpong.c: two handles joined by a dom0 loopback
 * channel; each round trip is notify -> pending -> unmask, both ways. Two
 * ways to wait: the awaited pending() (never blocks the event loop; what a
 * main thread uses) and pendingSync() (blocks the thread in poll, as C
 * does; what a Worker or a dedicated process may use).
 *
 * Each round-trip row also carries cpu_ns_per_roundtrip, the CPU time of
 * this process per round trip (process.cpuUsage(), user + system), so that
 * a wait that burns CPU is never a hidden cost.
 *
 * Cross-process mode (the protocol of bench/c/evtchn_pingpong.c echo and
 * client, so either side may be C):
 *   --echo <N> [awaited|sync]          binds an unbound port for domain 0,
 *       prints {"port":P} on stderr, answers N/10 + 1 + N events (wait,
 *       unmask, notify) and emits one row, name "<runtime>-echo-<mode>",
 *       with cpu_ns_per_reply (over the last N replies).
 *   --client <P> <N> [awaited|sync]    binds to port P of domain 0, drains
 *       the bind-time event, N/10 + 1 warm-up and N timed round trips
 *       (notify, wait, unmask); one row, name "<runtime>-client-<mode>",
 *       with ns_per_roundtrip and cpu_ns_per_roundtrip.
 *
 * Usage: deno run -A bench/evtchn_roundtrip.ts [N] [ffi|sim]
 *        bun run bench/evtchn_roundtrip.ts [N] [ffi|sim]
 *        ... bench/evtchn_roundtrip.ts --echo <N> [awaited|sync]
 *        ... bench/evtchn_roundtrip.ts --client <port> <N> [awaited|sync]
 * Output (bench/rows.ts): JSON rows on stdout, suite evtchn_roundtrip: per
 * way of waiting one round-trip row (unit ns/roundtrip) that also carries
 * the fields scripts/bench_xen.mjs reads, {"name","roundtrips",
 * "ns_per_roundtrip","notify_ns"}, with name "<runtime>" (pending) and
 * "<runtime>-blocking" (pendingSync), one CPU row (unit cpu-ns/roundtrip,
 * key cpu_ns_per_roundtrip) and one notify row (unit ns/notify).
 * `xenchan bench` adds the C baseline (bench/c/evtchn_pingpong.c).
 */
import process from "node:process";
import { type EventChannels, openEventChannels } from "../mod.ts";
import { emitRow, say } from "./rows.ts";

const argv = process.argv.slice(2);
const role = argv[0] === "--echo" || argv[0] === "--client" ? argv.shift() : undefined;
const remotePort = role === "--client" ? Number(argv.shift()) : 0;
const n = Number(argv[0] ?? process.env.XENCHAN_BENCH_ROUNDTRIPS ?? 10_000);
const backend = (role ? "ffi" : argv[1] ?? "ffi") as "ffi" | "sim";
const crossMode = role ? (argv[1] ?? "awaited") : "";

/** CPU time of this process (user + system), in ns. */
function cpuNs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) * 1000;
}

type Wait = (handle: EventChannels, expect: number) => Promise<void> | void;

async function waitAsync(handle: EventChannels, expect: number): Promise<void> {
  check(await handle.pending(), expect);
  handle.unmask(expect);
}

function waitBlocking(handle: EventChannels, expect: number): void {
  check(handle.pendingSync(), expect);
  handle.unmask(expect);
}

function check(got: number | null, expect: number): void {
  if (got !== expect) throw new Error(`pending returned ${got}, expected ${expect}`);
}

async function roundtrips(
  wait: Wait,
  a: EventChannels,
  pa: number,
  b: EventChannels,
  pb: number,
  count: number,
) {
  for (let i = 0; i < count; i++) {
    a.notify(pa);
    await wait(b, pb);
    b.notify(pb);
    await wait(a, pa);
  }
}

/** Round trips, then bare notifies, with one way of waiting; prints its JSON line. */
async function measure(
  name: string,
  wait: Wait,
  a: EventChannels,
  pa: number,
  b: EventChannels,
  pb: number,
) {
  await roundtrips(wait, a, pa, b, pb, Math.floor(n / 10) + 1);
  let t0 = performance.now();
  const c0 = cpuNs();
  await roundtrips(wait, a, pa, b, pb, n);
  const rtNs = ((performance.now() - t0) * 1e6) / n;
  const cpuPerRt = (cpuNs() - c0) / n;
  t0 = performance.now();
  for (let i = 0; i < n; i++) a.notify(pa);
  const notifyNs = ((performance.now() - t0) * 1e6) / n;
  await waitAsync(b, pb); // the one coalesced event
  const blocking = name.endsWith("-blocking");
  const legacy = {
    name,
    roundtrips: n,
    ns_per_roundtrip: +rtNs.toFixed(1),
    notify_ns: +notifyNs.toFixed(1),
    cpu_ns_per_roundtrip: +cpuPerRt.toFixed(1),
  };
  emitRow({
    suite: "evtchn_roundtrip",
    case: blocking ? "round trip, blocking pendingSync()" : "round trip, awaited pending()",
    unit: "ns/roundtrip",
    better: "lower",
    value: legacy.ns_per_roundtrip,
    stat: "single",
    summary: true,
    key: "ns_per_roundtrip",
    backend,
    ...legacy,
  });
  emitRow({
    suite: "evtchn_roundtrip",
    case: blocking ? "notify (after the blocking run)" : "notify",
    unit: "ns/notify",
    better: "lower",
    value: legacy.notify_ns,
    stat: "single",
    summary: !blocking,
    key: "notify_ns",
    backend,
  });
  emitRow({
    suite: "evtchn_roundtrip",
    case: blocking
      ? "CPU per round trip, blocking pendingSync()"
      : "CPU per round trip, awaited pending()",
    unit: "cpu-ns/roundtrip",
    better: "lower",
    value: legacy.cpu_ns_per_roundtrip,
    stat: "single",
    summary: true,
    key: "cpu_ns_per_roundtrip",
    backend,
  });
  say(
    `${name}: ${n} round trips, ${legacy.ns_per_roundtrip} ns each (CPU ${legacy.cpu_ns_per_roundtrip} ns); notify ${legacy.notify_ns} ns`,
  );
}

const runtime = "Deno" in globalThis ? "deno" : "bun";
if (role === undefined) {
  const options = { backend } as const;
  await using a = await openEventChannels(options);
  await using b = await openEventChannels(options);
  const pa = a.bindUnboundPort(0);
  const pb = b.bindInterdomain(0, pa);
  await waitAsync(b, pb); // the event Xen raises on the binder's port at bind
  await measure(runtime, waitAsync, a, pa, b, pb);
  if (backend === "ffi") await measure(`${runtime}-blocking`, waitBlocking, a, pa, b, pb);
} else {
  if (crossMode !== "awaited" && crossMode !== "sync") {
    throw new Error(`wait mode must be awaited or sync, got ${crossMode}`);
  }
  const wait: Wait = crossMode === "sync" ? waitBlocking : waitAsync;
  await using h = await openEventChannels({ backend: "ffi" });
  const warm = Math.floor(n / 10) + 1;
  if (role === "--echo") {
    const port = h.bindUnboundPort(0);
    say(JSON.stringify({ port })); // read by scripts/bench_xen.mjs to start the client
    const replies = warm + n;
    let c0 = 0;
    for (let i = 0; i < replies; i++) {
      if (i === warm) c0 = cpuNs(); // the timed replies only, as the client times its round trips
      await wait(h, port);
      h.notify(port);
    }
    const perReply = (cpuNs() - c0) / n;
    emitRow({
      suite: "evtchn_roundtrip",
      case: `cross-process echo, ${crossMode === "sync" ? "pendingSync()" : "awaited pending()"}`,
      unit: "cpu-ns/reply",
      better: "lower",
      value: +perReply.toFixed(1),
      stat: "single",
      name: `${runtime}-echo-${crossMode}`,
      replies,
      cpu_ns_per_reply: +perReply.toFixed(1),
    });
  } else {
    const port = h.bindInterdomain(0, remotePort);
    await waitAsync(h, port); // the bind-time event
    const loop = async (count: number) => {
      for (let i = 0; i < count; i++) {
        h.notify(port);
        await wait(h, port);
      }
    };
    await loop(warm);
    const t0 = performance.now(), c0 = cpuNs();
    await loop(n);
    const rtNs = ((performance.now() - t0) * 1e6) / n, cpu = (cpuNs() - c0) / n;
    emitRow({
      suite: "evtchn_roundtrip",
      case: `cross-process round trip, ${
        crossMode === "sync" ? "pendingSync()" : "awaited pending()"
      } against a peer process`,
      unit: "ns/roundtrip",
      better: "lower",
      value: +rtNs.toFixed(1),
      stat: "single",
      key: "ns_per_roundtrip",
      name: `${runtime}-client-${crossMode}`,
      roundtrips: n,
      ns_per_roundtrip: +rtNs.toFixed(1),
      cpu_ns_per_roundtrip: +cpu.toFixed(1),
    });
  }
}
