/**
 * Cross-process wake-up round trip on the host, no Xen needed: the same
 * shape as an event channel round trip between a C peer in one process and
 * xenchan in another, over two named pipes instead of /dev/xen/evtchn
 * (bench/c/fifo_pingpong.c is both the echo peer and the C client). Each
 * round trip: write one byte to "ping", wait until "pong" is readable, read
 * it; the echo peer does the mirror image with a blocking poll.
 *
 * Clients, each against a fresh echo process, interleaved for REPEATS rounds:
 *   c            the C client (blocking poll), the baseline
 *   awaited      FdPoller.readyNow(), then wait(): the path pending() takes
 *                (inline wait on)
 *   pumped       the same wait in a pump: one loop waits, takes the reply
 *                and wakes a consumer (a promise), which writes the next
 *                ping, as vchan's event pump and its readers do; the wait
 *                must let the consumer run before it waits inline
 *   parked       the same with the inline wait off: every wake-up
 *                goes through the background poll (Deno: nonblocking FFI
 *                call, Bun: Worker), the cost of that hand-off alone
 *   sync         FdPoller.pollNow(fd, POLLIN, -1), the path pendingSync() takes
 * For each: latency per round trip and CPU time per round trip (this
 * client's process.cpuUsage() or getrusage, plus the echo peer's getrusage
 * per reply), median over the rounds with the spread, and the ratio to C.
 * Run it under `taskset -c 0` to put both processes on one CPU, as in a
 * 1-vCPU dom0.
 *
 * Usage: deno run -A bench/fd_roundtrip.ts [N]     bun run bench/fd_roundtrip.ts [N]
 * Environment: FD_BENCH_REPEATS (default 3). Needs gcc and mkfifo.
 * Output (bench/rows.ts): rows suite fd_roundtrip, case "<client> round
 * trip" (unit ns/roundtrip, baseline C) and "<client> CPU per round trip"
 * (unit cpu-ns/roundtrip, baseline C); a table on stderr.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { cString, type LibcLibrary, loadLibc, sharedPoller } from "../ffi/mod.ts";
import { emitRow, median, say, spreadOf } from "./rows.ts";

const N = Number(process.argv[2] ?? 20_000);
const REPEATS = Number(process.env.FD_BENCH_REPEATS ?? 3);
const O_RDWR = 2, O_NONBLOCK = 0o4000, O_CLOEXEC = 0o2000000, POLLIN = 1;
const CLIENTS = ["c", "awaited", "pumped", "parked", "sync"] as const;
type Client = typeof CLIENTS[number];

interface Sample {
  readonly ns: number;
  readonly cpuNs: number;
}

const dir = mkdtempSync(join(tmpdir(), "xenchan-fifo-"));
const exe = join(dir, "fifo_pingpong");
const source = fileURLToPath(new URL("./c/fifo_pingpong.c", import.meta.url));
execFileSync("gcc", ["-O2", "-Wall", "-o", exe, source], { stdio: ["ignore", "pipe", "inherit"] });
execFileSync("mkfifo", [join(dir, "ping"), join(dir, "pong")]);

/** Runs the C program with `args`; resolves with its last stdout line as JSON. */
function runC(args: string[]): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    const child = spawn(exe, args, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (chunk) => out += chunk);
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) reject(new Error(`fifo_pingpong ${args[0]} exited ${code}`));
      else resolve(JSON.parse(out.trim().split("\n").pop()!));
    });
  });
}

function openFifo(libs: LibcLibrary, name: string): number {
  const fd = libs.libc.symbols.open(cString(join(dir, name)), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw new Error(`open ${name}: errno ${libs.errno()}`);
  return fd;
}

function cpuNs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) * 1000;
}

const libs = await loadLibc();
const poller = sharedPoller(libs);
const defaultInline = poller.inlineWaitMaxUs;
const ping = openFifo(libs, "ping"), pong = openFifo(libs, "pong");
const byte = new Uint8Array(1);
const c = libs.libc.symbols;

function put(): void {
  byte[0] = 120;
  if (c.write(ping, byte, 1n) !== 1n) throw new Error(`write: errno ${libs.errno()}`);
}

function take(): void {
  if (c.read(pong, byte, 1n) !== 1n) throw new Error(`read: errno ${libs.errno()}`);
}

async function jsLoop(client: Client, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    put();
    if (client === "sync") poller.pollNow(pong, POLLIN, -1);
    else if (poller.readyNow(pong, POLLIN) === 0) await poller.wait(pong, POLLIN);
    take();
  }
}

/** The pumped client: the waits in one loop, the pings in a consumer it wakes. */
async function pumpedLoop(count: number): Promise<void> {
  let wake: () => void = () => {};
  const pump = (async () => {
    for (let i = 0; i < count; i++) {
      if (poller.readyNow(pong, POLLIN) === 0) await poller.wait(pong, POLLIN);
      take();
      wake();
    }
  })();
  for (let i = 0; i < count; i++) {
    const answered = new Promise<void>((resolve) => wake = resolve);
    put();
    await answered;
  }
  await pump;
}

async function measure(client: Client): Promise<Sample> {
  if (client === "c") {
    const echo = runC(["echo", dir]);
    const r = await runC(["client", dir, String(N)]);
    const e = await echo;
    return { ns: r.ns_per_roundtrip, cpuNs: r.cpu_ns_per_roundtrip + e.cpu_ns / e.replies };
  }
  poller.setInlineWait(client === "parked" ? 0 : defaultInline);
  const echo = runC(["echo", dir]);
  const loop = client === "pumped" ? pumpedLoop : (count: number) => jsLoop(client, count);
  await loop(Math.floor(N / 10) + 1);
  const t0 = performance.now(), c0 = cpuNs();
  await loop(N);
  if (process.env.FD_BENCH_DEBUG) say(`${client}: ${JSON.stringify(poller.stats)}`);
  const ns = ((performance.now() - t0) * 1e6) / N, cpu = (cpuNs() - c0) / N;
  byte[0] = 113; // 'q'
  c.write(ping, byte, 1n);
  const e = await echo;
  return { ns, cpuNs: cpu + e.cpu_ns / e.replies };
}

const samples = new Map<Client, Sample[]>(CLIENTS.map((k) => [k, []]));
try {
  for (let r = 0; r < REPEATS; r++) {
    for (const client of CLIENTS) samples.get(client)!.push(await measure(client));
  }
} finally {
  c.close(ping);
  c.close(pong);
  rmSync(dir, { recursive: true, force: true });
}
poller.setInlineWait(defaultInline);

const med = (k: Client, f: (s: Sample) => number) => median(samples.get(k)!.map(f));
const cNs = med("c", (s) => s.ns), cCpu = med("c", (s) => s.cpuNs);
say(
  `fd round trip across processes (${process.versions.bun ? "bun" : "deno"}, ${N} round trips, ` +
    `median of ${REPEATS} rounds; CPU = both processes; inline cap ${defaultInline} us)`,
  "client     us/rt   spread   vs C    CPU us/rt   vs C",
);
for (const client of CLIENTS) {
  const mine = samples.get(client)!;
  const ns = med(client, (s) => s.ns), cpu = med(client, (s) => s.cpuNs);
  say(
    `${client.padEnd(8)} ${(ns / 1000).toFixed(1).padStart(7)}   ${
      (100 * spreadOf(mine.map((s) => s.ns), ns)).toFixed(0).padStart(4)
    }%   ${(ns / cNs).toFixed(2)}   ${(cpu / 1000).toFixed(1).padStart(9)}   ${
      (cpu / cCpu).toFixed(2)
    }`,
  );
  const base = client === "c" ? {} : { baseline: { name: "C", value: Number(cNs.toFixed(1)) } };
  emitRow({
    suite: "fd_roundtrip",
    case: `${client} round trip`,
    unit: "ns/roundtrip",
    better: "lower",
    value: Number(ns.toFixed(1)),
    stat: "median",
    values: mine.map((s) => Number(s.ns.toFixed(1))),
    ...base,
    summary: client === "awaited" || client === "sync",
    client,
    roundtrips: N,
  });
  emitRow({
    suite: "fd_roundtrip",
    case: `${client} CPU per round trip`,
    unit: "cpu-ns/roundtrip",
    better: "lower",
    value: Number(cpu.toFixed(1)),
    stat: "median",
    values: mine.map((s) => Number(s.cpuNs.toFixed(1))),
    ...(client === "c" ? {} : { baseline: { name: "C", value: Number(cCpu.toFixed(1)) } }),
    client,
    roundtrips: N,
  });
}
