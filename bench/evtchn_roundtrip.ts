/**
 * Event channel round trip and notify cost through the public API, the same
 * loop as bench/c/evtchn_pingpong.c: two handles joined by a dom0 loopback
 * channel; each round trip is notify -> pending -> unmask, both ways. Two
 * ways to wait: the awaited pending() (never blocks the event loop; what a
 * main thread uses) and pendingSync() (blocks the thread in poll, as C
 * does; what a Worker or a dedicated process may use).
 *
 * Usage: deno run -A bench/evtchn_roundtrip.ts [N] [ffi|sim]
 *        bun run bench/evtchn_roundtrip.ts [N] [ffi|sim]
 * Output (bench/rows.ts): JSON rows on stdout, suite evtchn_roundtrip: per
 * way of waiting one round-trip row (unit ns/roundtrip) that also carries
 * the fields scripts/bench_xen.mjs reads, {"name","roundtrips",
 * "ns_per_roundtrip","notify_ns"}, with name "<runtime>" (pending) and
 * "<runtime>-blocking" (pendingSync), and one notify row (unit ns/notify).
 * `xenchan bench` adds the C baseline (bench/c/evtchn_pingpong.c).
 */
import process from "node:process";
import { type EventChannels, openEventChannels } from "../mod.ts";
import { emitRow, say } from "./rows.ts";

const n = Number(process.argv[2] ?? process.env.XENCHAN_BENCH_ROUNDTRIPS ?? 10_000);
const backend = (process.argv[3] ?? "ffi") as "ffi" | "sim";

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
  await roundtrips(wait, a, pa, b, pb, n);
  const rtNs = ((performance.now() - t0) * 1e6) / n;
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
  say(
    `${name}: ${n} round trips, ${legacy.ns_per_roundtrip} ns each; notify ${legacy.notify_ns} ns`,
  );
}

const options = { backend } as const;
await using a = await openEventChannels(options);
await using b = await openEventChannels(options);
const pa = a.bindUnboundPort(0);
const pb = b.bindInterdomain(0, pa);
await waitAsync(b, pb); // the event Xen raises on the binder's port at bind

const runtime = "Deno" in globalThis ? "deno" : "bun";
await measure(runtime, waitAsync, a, pa, b, pb);
if (backend === "ffi") await measure(`${runtime}-blocking`, waitBlocking, a, pa, b, pb);
