/**
 * What the pieces of one awaited wake-up cost from JavaScript, per call, in
 * this runtime on this machine: the twin of bench/c/wait_costs.c (the same
 * system calls from C), plus the JavaScript-only pieces an awaited wait
 * adds (a turn of the event loop, a promise hop, performance.now()). Under
 * QEMU's TCG a system call of a big process (a JavaScript runtime) can
 * cost far more than the same call from a small C program, and these rows
 * show whether it does: compare them with the C rows of the same boot.
 *
 *   deno run -A bench/wait_costs.ts [N]      bun run bench/wait_costs.ts [N]
 *
 * Output: one JSON line per piece,
 * {"bench":"wait_costs","backend":"deno"|"bun","piece","ns_per_call"}.
 *
 * @module
 */
import process from "node:process";
import { setImmediate } from "node:timers";
import { EventFd, loadLibc } from "../ffi/mod.ts";

const N = Number(process.argv[2] ?? 20_000);
const backend = "Deno" in globalThis ? "deno" : "bun";
const libs = await loadLibc();
const c = libs.libc.symbols;

function row(piece: string, ms: number): void {
  console.log(JSON.stringify({
    bench: "wait_costs",
    backend,
    piece,
    ns_per_call: Number((ms * 1e6 / N).toFixed(1)),
  }));
}

function pollFd(fd: number): Uint8Array {
  const entry = new Uint8Array(8);
  const view = new DataView(entry.buffer);
  view.setInt32(0, fd, true);
  view.setInt16(4, 1, true);
  return entry;
}

using idle = await EventFd.create();
using ready = await EventFd.create();
ready.signal();
const idleEntry = pollFd(idle.fd), readyEntry = pollFd(ready.fd);
const budget = new Int32Array([0, 0, 1_000_000, 0]);

let t0 = performance.now();
for (let i = 0; i < N; i++) c.poll(idleEntry, 1n, 0);
row("poll idle fd, no timeout", performance.now() - t0);

t0 = performance.now();
for (let i = 0; i < N; i++) c.ppoll(readyEntry, 1n, budget, null);
row("ppoll ready fd", performance.now() - t0);

t0 = performance.now();
for (let i = 0; i < N; i++) c.sched_yield();
row("sched_yield", performance.now() - t0);

t0 = performance.now();
let sink = 0;
for (let i = 0; i < N; i++) sink += performance.now();
row("performance.now", performance.now() - t0);

const word = new BigUint64Array([1n]);
t0 = performance.now();
for (let i = 0; i < N; i++) {
  if (c.write(idle.fd, word, 8n) !== 8n || c.read(idle.fd, word, 8n) !== 8n) {
    throw new Error(`eventfd write/read: errno ${libs.errno()}`);
  }
}
row("eventfd write + read", performance.now() - t0);

t0 = performance.now();
for (let i = 0; i < N; i++) await new Promise<void>((resolve) => setImmediate(resolve));
row("event loop turn (setImmediate)", performance.now() - t0);

t0 = performance.now();
for (let i = 0; i < N; i++) await Promise.resolve(i);
row("promise hop (await)", performance.now() - t0);

const controller = new AbortController();
t0 = performance.now();
for (let i = 0; i < N; i++) AbortSignal.any([controller.signal]);
row("AbortSignal.any", performance.now() - t0);
if (sink < 0) console.log(sink);
