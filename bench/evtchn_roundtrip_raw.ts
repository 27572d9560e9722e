/**
 * The floor under bench/evtchn_roundtrip.ts: the same round trip as
 * bench/c/evtchn_pingpong.c, calling the bound C functions directly
 * (ffi/load.ts symbols: xenevtchn_notify, libc poll, xenevtchn_pending,
 * xenevtchn_unmask) with a blocking poll on this thread, no xenchan layer
 * above. The gap between this and C is the runtime's own; the gap between
 * this and the public API is xenchan's.
 *
 * Usage (real Xen only): deno run -A bench/evtchn_roundtrip_raw.ts [N]
 *                        bun run bench/evtchn_roundtrip_raw.ts [N]
 * Prints one JSON row (bench/rows.ts; suite evtchn_roundtrip, case "round
 * trip, raw FFI calls") that also carries the fields scripts/bench_xen.mjs
 * reads: {"name":"<runtime>-raw","roundtrips","ns_per_roundtrip","notify_ns",
 * "cpu_ns_per_roundtrip"} (CPU: process.cpuUsage(), this process).
 */
import process from "node:process";
import { loadXenLibraries, type Ptr } from "../ffi/mod.ts";
import { emitRow } from "./rows.ts";

const n = Number(process.argv[2] ?? process.env.XENCHAN_BENCH_ROUNDTRIPS ?? 10_000);
const libs = await loadXenLibraries();
const evtchn = libs.evtchn.symbols;
const poll = libs.libc.symbols.poll;

function must(call: string, result: number): number {
  if (result < 0) throw new Error(`${call} failed: errno ${libs.errno()}`);
  return result;
}

function open(): { handle: Ptr; fds: Uint8Array } {
  const handle = evtchn.xenevtchn_open(null, 0);
  if (handle === null) throw new Error(`xenevtchn_open failed: errno ${libs.errno()}`);
  const fds = new Uint8Array(8);
  const view = new DataView(fds.buffer);
  view.setInt32(0, must("xenevtchn_fd", evtchn.xenevtchn_fd(handle)), true);
  view.setInt16(4, 1, true); // POLLIN
  return { handle, fds };
}

function waitPort(h: { handle: Ptr; fds: Uint8Array }, expect: number): void {
  must("poll", poll(h.fds, 1n, -1));
  const got = must("xenevtchn_pending", evtchn.xenevtchn_pending(h.handle));
  if (got !== expect) throw new Error(`pending returned ${got}, expected ${expect}`);
  must("xenevtchn_unmask", evtchn.xenevtchn_unmask(h.handle, expect));
}

function roundtrips(
  a: ReturnType<typeof open>,
  pa: number,
  b: ReturnType<typeof open>,
  pb: number,
  count: number,
) {
  for (let i = 0; i < count; i++) {
    must("xenevtchn_notify", evtchn.xenevtchn_notify(a.handle, pa));
    waitPort(b, pb);
    must("xenevtchn_notify", evtchn.xenevtchn_notify(b.handle, pb));
    waitPort(a, pa);
  }
}

const a = open();
const b = open();
const pa = must("xenevtchn_bind_unbound_port", evtchn.xenevtchn_bind_unbound_port(a.handle, 0));
const pb = must("xenevtchn_bind_interdomain", evtchn.xenevtchn_bind_interdomain(b.handle, 0, pa));
waitPort(b, pb); // the bind-time event
roundtrips(a, pa, b, pb, Math.floor(n / 10) + 1);
const cpu0 = process.cpuUsage();
let t0 = performance.now();
roundtrips(a, pa, b, pb, n);
const rtNs = ((performance.now() - t0) * 1e6) / n;
const cpu1 = process.cpuUsage(cpu0);
const cpuNs = ((cpu1.user + cpu1.system) * 1000) / n;
t0 = performance.now();
for (let i = 0; i < n; i++) must("xenevtchn_notify", evtchn.xenevtchn_notify(a.handle, pa));
const notifyNs = ((performance.now() - t0) * 1e6) / n;
waitPort(b, pb);
evtchn.xenevtchn_close(a.handle);
evtchn.xenevtchn_close(b.handle);
const name = `${"Deno" in globalThis ? "deno" : "bun"}-raw`;
emitRow({
  suite: "evtchn_roundtrip",
  case: "round trip, raw FFI calls (no xenchan layer)",
  unit: "ns/roundtrip",
  better: "lower",
  value: +rtNs.toFixed(1),
  stat: "single",
  key: "ns_per_roundtrip",
  name,
  roundtrips: n,
  ns_per_roundtrip: +rtNs.toFixed(1),
  notify_ns: +notifyNs.toFixed(1),
  cpu_ns_per_roundtrip: +cpuNs.toFixed(1),
});
