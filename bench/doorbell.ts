/**
 * Doorbell write -> notifier wake-up cost through a REAL eventfd, against a C
 * loop doing the same eventfd operations in the same run
 * (bench/c/doorbell_eventfd.c, compiled here with gcc -O2).
 *
 * Loops (N iterations each, after N/10 warm-up; C and JS alternate for 3
 * rounds and the median of each is reported):
 *   rw:  ivshmem doorbell write (matches; EventFdNotifier writes 1 to the
 *        eventfd) -> read() of the counter, no waiting.
 *        C: write(efd, 1) -> read(efd).
 *   seq: doorbell write -> wait through the shared FdPoller (poll(2) off
 *        the JS thread: Deno nonblocking FFI, Bun Worker) -> read().
 *        C: write(efd, 1) -> poll(efd, POLLIN, -1) -> read(efd).
 * Each loop is also timed in CPU time (process.cpuUsage(); C: getrusage),
 * so that a wait which spins is never a hidden cost.
 * Also, JS only (no C counterpart): the doorbell model's dispatch cost with
 * a pure-JS SimNotifier, for a hit and for a non-match reaching the I/O
 * callback.
 *
 * Usage: deno run -A bench/doorbell.ts [N]
 *        bun run bench/doorbell.ts [N]
 * Needs gcc. Output (bench/rows.ts): JSON rows on stdout (suite doorbell;
 * cases rw and seq with the C baseline, their CPU times (keys rw_cpu,
 * seq_cpu, also against C), hit and miss without; unit ns/iteration; the median of the rounds, every round in values), a short
 * table on stderr.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { EventFdNotifier, IvshmemDoorbell, SimNotifier } from "../plugins/doorbell/mod.ts";
import { emitRow, say } from "./rows.ts";

const n = Number(process.argv[2] ?? 20_000);
const ROUNDS = 3;
if (!Number.isInteger(n) || n <= 0) {
  throw new Error(`iterations must be a positive integer, got ${process.argv[2]}`);
}

interface CResult {
  readonly rw_ns: number;
  readonly seq_ns: number;
  readonly rw_cpu_ns: number;
  readonly seq_cpu_ns: number;
}

/** Compiles and runs the C baseline; returns its per-iteration times. */
function runC(iterations: number): CResult {
  const source = fileURLToPath(new URL("./c/doorbell_eventfd.c", import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), "xenchan-doorbell-"));
  try {
    const binary = join(dir, "doorbell_eventfd");
    execFileSync("gcc", ["-O2", "-Wall", "-o", binary, source], {
      stdio: ["ignore", "pipe", "inherit"], // stdout is for rows only
    });
    const out = execFileSync(binary, [String(iterations)], { encoding: "utf8" });
    return JSON.parse(out.trim().split("\n").pop()!) as CResult;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function check(value: bigint | null): void {
  if (value !== 1n) throw new Error(`eventfd read ${value}, expected 1n`);
}

const efd = await EventFdNotifier.create();
const sim = new SimNotifier();
let misses = 0;
const dev = new IvshmemDoorbell({ onWrite: () => misses++ });
dev.setPeer(1, [efd, sim]);

function rwLoop(count: number): void {
  for (let i = 0; i < count; i++) {
    dev.ring(1, 0);
    check(efd.read());
  }
}

async function seqLoop(count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    dev.ring(1, 0);
    await efd.eventfd.waitReadable();
    check(efd.read());
  }
}

function hitLoop(count: number): void {
  for (let i = 0; i < count; i++) dev.ring(1, 1);
  if (sim.read() !== BigInt(count)) throw new Error("lost SimNotifier hits");
}

function missLoop(count: number): void {
  const before = misses;
  for (let i = 0; i < count; i++) dev.ring(2, 0);
  if (misses - before !== count) throw new Error("lost non-matching writes");
}

/** CPU time of this process (user + system), in ns. */
function cpuNs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) * 1000;
}

/** The last loop's CPU time per iteration (ns), set by time(). */
let lastCpuNs = 0;

async function time(loop: (count: number) => void | Promise<void>, count: number): Promise<number> {
  await loop(Math.floor(count / 10) + 1);
  const t0 = performance.now(), c0 = cpuNs();
  await loop(count);
  lastCpuNs = (cpuNs() - c0) / count;
  return ((performance.now() - t0) * 1e6) / count;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

// C and JS alternate, ROUNDS times, so both see the same machine load; medians are reported.
const samples = {
  c_rw: [] as number[],
  c_seq: [] as number[],
  rw: [] as number[],
  seq: [] as number[],
  c_rw_cpu: [] as number[],
  c_seq_cpu: [] as number[],
  rw_cpu: [] as number[],
  seq_cpu: [] as number[],
};
const hits: number[] = [];
const missed: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  const cRound = runC(n);
  samples.c_rw.push(cRound.rw_ns);
  samples.c_seq.push(cRound.seq_ns);
  samples.c_rw_cpu.push(cRound.rw_cpu_ns);
  samples.c_seq_cpu.push(cRound.seq_cpu_ns);
  samples.rw.push(await time(rwLoop, n));
  samples.rw_cpu.push(lastCpuNs);
  samples.seq.push(await time(seqLoop, n));
  samples.seq_cpu.push(lastCpuNs);
  hits.push(await time(hitLoop, n * 10));
  missed.push(await time(missLoop, n * 10));
}
const c = { rw_ns: median(samples.c_rw), seq_ns: median(samples.c_seq) };
const js = {
  rw_ns: median(samples.rw),
  seq_ns: median(samples.seq),
  hit_ns: median(hits),
  miss_ns: median(missed),
};
dev.close();
efd.close();
sim.close();

const round = (x: number) => +x.toFixed(2);
const name = "Deno" in globalThis ? "deno" : "bun";
const ratio = { rw: round(js.rw_ns / c.rw_ns), seq: round(js.seq_ns / c.seq_ns) };
const cpu = {
  rw: median(samples.rw_cpu),
  seq: median(samples.seq_cpu),
  c_rw: median(samples.c_rw_cpu),
  c_seq: median(samples.c_seq_cpu),
};
say(
  `doorbell bench (${name}, ${n} iterations, median of ${ROUNDS} rounds, ns per iteration)`,
  `  rw  (write -> read):          js ${js.rw_ns.toFixed(0)}  c ${
    c.rw_ns.toFixed(0)
  }  ratio ${ratio.rw}   CPU js ${cpu.rw.toFixed(0)}  c ${cpu.c_rw.toFixed(0)}  ratio ${
    round(cpu.rw / cpu.c_rw)
  }`,
  `  seq (write -> poll -> read):  js ${js.seq_ns.toFixed(0)}  c ${
    c.seq_ns.toFixed(0)
  }  ratio ${ratio.seq}   CPU js ${cpu.seq.toFixed(0)}  c ${cpu.c_seq.toFixed(0)}  ratio ${
    round(cpu.seq / cpu.c_seq)
  }`,
  `  model only: hit ${js.hit_ns.toFixed(0)}  miss ${js.miss_ns.toFixed(0)}`,
);
const rows: [string, string, number[], number[] | null][] = [
  ["rw", "doorbell write -> eventfd read", samples.rw, samples.c_rw],
  ["seq", "doorbell write -> poll wake -> read", samples.seq, samples.c_seq],
  ["rw_cpu", "doorbell write -> eventfd read, CPU time", samples.rw_cpu, samples.c_rw_cpu],
  ["seq_cpu", "doorbell write -> poll wake -> read, CPU time", samples.seq_cpu, samples.c_seq_cpu],
  ["hit", "doorbell model dispatch, matching write (SimNotifier)", hits, null],
  ["miss", "doorbell model dispatch, non-matching write", missed, null],
];
for (const [key, what, mine, theirs] of rows) {
  emitRow({
    suite: "doorbell",
    case: what,
    unit: "ns/iteration",
    better: "lower",
    value: round(median(mine)),
    stat: "median",
    values: mine.map(round),
    ...(theirs ? { baseline: { name: "C", value: round(median(theirs)) } } : {}),
    summary: theirs !== null && !key.endsWith("_cpu"),
    key,
    iterations: n,
  });
}
