/**
 * XenStore round trips through the public API, the same measurements as
 * bench/c/xenstore_bench.c over libxenstore: READ and WRITE round trips per
 * second with 1 and with 64 requests in flight on one connection, and the
 * watch event latency (from just before a WRITE on one connection to the
 * event's arrival on another).
 *
 * Usage: deno run -A bench/xenstore.ts [N] [--path P | --backend ffi|sim|auto | --serve-sim P]
 *        bun run bench/xenstore.ts [N] [...the same]
 *   N          operations per row (default $XENCHAN_BENCH_XENSTORE_OPS or 10000);
 *              the watch row uses N/10 events.
 *   --path P   connect to that xenstored socket or xenbus device.
 *   --backend  "ffi" (default: the socket, else /dev/xen/xenbus), "sim" (the
 *              simulated xenstored in this process), "auto".
 *   --serve-sim P  serve a simulated xenstored on the unix socket P (in this
 *              process) and measure through the real socket transport; with
 *              --hold S, keep serving S seconds afterwards (for the C bench,
 *              XENSTORED_PATH=P bench/c/xenstore_bench).
 * Prints one JSON line per row:
 *   {"name":"<runtime>","transport":"socket","op":"read","inflight":1,"ops":N,
 *    "ops_per_s":F,"us_per_op":F}
 *   {"name":"<runtime>","transport":"socket","op":"watch","events":M,"us_mean":F,
 *    "us_p50":F,"us_p99":F}
 * Everything is written under /xenchan-bench/<pid> and removed at the end.
 */
import process from "node:process";
import {
  type BackendChoice,
  openXenStore,
  serveXenStoreSocket,
  SimHypervisor,
  type XenStore,
} from "../mod.ts";

const args = process.argv.slice(2);
const option = (name: string) => {
  const at = args.indexOf(name);
  return at < 0 ? undefined : args[at + 1];
};
const positional = args.find((a, i) => !a.startsWith("--") && !args[i - 1]?.startsWith("--"));
const n = Number(positional ?? process.env.XENCHAN_BENCH_XENSTORE_OPS ?? 10_000);
const servePath = option("--serve-sim");
const hold = Number(option("--hold") ?? 0);
const served = servePath
  ? await serveXenStoreSocket(new SimHypervisor().xenstore, servePath)
  : undefined;
const path = option("--path") ?? servePath;
const backend = (option("--backend") ?? "ffi") as BackendChoice;
const runtime = "Bun" in globalThis ? "bun" : "deno";

if (!Number.isInteger(n) || n < 64) {
  throw new Error(`N must be an integer >= 64, got ${positional}`);
}

async function connect(): Promise<XenStore> {
  return path ? await openXenStore({ path }) : await openXenStore({ backend });
}

const store = await connect();
const watcher = await connect();
const base = `/xenchan-bench/${process.pid}`;
const value = "x".repeat(16);

function row(data: Record<string, unknown>): void {
  console.log(JSON.stringify({ name: runtime, transport: store.kind, ...data }));
}

/** `count` operations with `inflight` of them in flight at any time. */
async function rounds(op: (i: number) => Promise<unknown>, count: number, inflight: number) {
  let next = 0;
  const worker = async () => {
    while (next < count) await op(next++);
  };
  await Promise.all(Array.from({ length: inflight }, worker));
}

async function throughput(name: "read" | "write", inflight: number): Promise<void> {
  const op = name === "read"
    ? (i: number) => store.read(`${base}/k${i % 64}`)
    : (i: number) => store.write(`${base}/k${i % 64}`, value);
  await rounds(op, Math.max(64, n / 10), inflight); // warm-up
  const start = performance.now();
  await rounds(op, n, inflight);
  const ms = performance.now() - start;
  row({
    op: name,
    inflight,
    ops: n,
    ops_per_s: Math.round(n / (ms / 1000)),
    us_per_op: Number(((ms * 1000) / n).toFixed(3)),
  });
}

async function watchLatency(): Promise<void> {
  const events = Math.max(10, Math.floor(n / 10));
  const node = `${base}/watched`;
  await store.write(node, "0");
  const it = watcher.watch(node);
  await it.next(); // the initial event
  const samples: number[] = [];
  for (let i = 0; i < events; i++) {
    const start = performance.now();
    const got = it.next();
    await store.write(node, String(i));
    const r = await got;
    if (r.done) throw new Error("the watch ended");
    samples.push((performance.now() - start) * 1000);
  }
  await it.return?.();
  samples.sort((a, b) => a - b);
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  row({
    op: "watch",
    events,
    us_mean: Number(mean.toFixed(3)),
    us_p50: Number(samples[Math.floor(samples.length / 2)].toFixed(3)),
    us_p99: Number(samples[Math.floor(samples.length * 0.99)].toFixed(3)),
  });
}

try {
  await Promise.all(Array.from({ length: 64 }, (_, i) => store.write(`${base}/k${i}`, value)));
  await throughput("read", 1);
  await throughput("read", 64);
  await throughput("write", 1);
  await throughput("write", 64);
  await watchLatency();
} finally {
  await store.rm(base).catch(() => {});
  const left = await store.directory("/xenchan-bench").catch(() => ["?"]);
  if (left.length === 0) await store.rm("/xenchan-bench").catch(() => {});
  store.close();
  watcher.close();
  if (served) {
    if (hold > 0) await new Promise((resolve) => setTimeout(resolve, hold * 1000));
    await served.close();
  }
}
