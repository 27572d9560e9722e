/**
 * Event channel round trip and notify cost through the public API, the same
 * loop as bench/c/evtchn_pingpong.c: two handles joined by a dom0 loopback
 * channel; each round trip is notify -> pending -> unmask, both ways.
 *
 * Usage: deno run -A bench/evtchn_roundtrip.ts [N] [ffi|sim]
 *        bun run bench/evtchn_roundtrip.ts [N] [ffi|sim]
 * Prints one JSON line: {"name","roundtrips","ns_per_roundtrip","notify_ns"}.
 */
import process from "node:process";
import { type EventChannels, openEventChannels } from "../mod.ts";

const n = Number(process.argv[2] ?? process.env.XENCHAN_BENCH_ROUNDTRIPS ?? 10_000);
const backend = (process.argv[3] ?? "ffi") as "ffi" | "sim";

async function waitPort(handle: EventChannels, expect: number): Promise<void> {
  const got = await handle.pending();
  if (got !== expect) throw new Error(`pending returned ${got}, expected ${expect}`);
  handle.unmask(got);
}

async function roundtrips(
  a: EventChannels,
  pa: number,
  b: EventChannels,
  pb: number,
  count: number,
): Promise<void> {
  for (let i = 0; i < count; i++) {
    a.notify(pa);
    await waitPort(b, pb);
    b.notify(pb);
    await waitPort(a, pa);
  }
}

const options = { backend } as const;
await using a = await openEventChannels(options);
await using b = await openEventChannels(options);
const pa = a.bindUnboundPort(0);
const pb = b.bindInterdomain(0, pa);
await waitPort(b, pb); // the event Xen raises on the binder's port at bind

await roundtrips(a, pa, b, pb, Math.floor(n / 10) + 1);
let t0 = performance.now();
await roundtrips(a, pa, b, pb, n);
const rtNs = ((performance.now() - t0) * 1e6) / n;

t0 = performance.now();
for (let i = 0; i < n; i++) a.notify(pa);
const notifyNs = ((performance.now() - t0) * 1e6) / n;
await waitPort(b, pb); // the one coalesced event

const name = "Deno" in globalThis ? "deno" : "bun";
console.log(
  JSON.stringify({
    name,
    roundtrips: n,
    ns_per_roundtrip: +rtNs.toFixed(1),
    notify_ns: +notifyNs.toFixed(1),
  }),
);
