/**
 * `xenchan bench`: runs the benchmark suites in bench/ (each as a child
 * process of this same runtime), shows progress on stderr, and prints one
 * table of ratios against each suite's baseline. Suites that cannot run
 * here (no gcc for a C baseline, no real Xen) are listed with the reason.
 *
 * @module
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { selectBackend } from "../mod.ts";
import { type CommandSpec, listOption, type ParsedValues, UsageError } from "./args.ts";
import { childCommand, runtimeLabel } from "./facts.ts";
import { grouped, type Output, table } from "./io.ts";

/** One row of the summary table. */
export interface BenchRow {
  readonly suite: string;
  readonly measure: string;
  /** xenchan's figure, with its unit. */
  readonly xenchan: string;
  /** The baseline's figure, with what it is, or "-" when the suite has none. */
  readonly baseline: string;
  /** xenchan / baseline (lower is better for times), or null. */
  readonly ratio: number | null;
}

/** What a suite needs before it can run. */
type Requirement = "gcc" | "xen";

/** One suite: how to run it and how to read its output. */
export interface Suite {
  readonly name: string;
  readonly file: string;
  readonly what: string;
  readonly needs: readonly Requirement[];
  readonly args: (quick: boolean) => string[];
  readonly env: (quick: boolean) => Record<string, string>;
  /** Turns the suite's stdout into rows; throws when the output is not what it should be. */
  readonly parse: (stdout: string) => BenchRow[];
}

function jsonLine(stdout: string): Record<string, unknown> {
  const line = stdout.split("\n").map((l) => l.trim()).reverse().find((l) => l.startsWith("{"));
  if (!line) throw new Error("no JSON line in the output");
  return JSON.parse(line);
}

function num(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isFinite(value)) throw new Error(`${what} missing`);
  return value;
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

const ns = (v: number) => `${v < 100 ? v.toFixed(1) : grouped(v)} ns`;

/** bench/abi_scan.ts: its table rows "ABI ports pattern TSns Mev/s Cns TS/C". */
export function parseAbiScan(stdout: string): BenchRow[] {
  const rows: { abi: string; ts: number; c: number; ratio: number }[] = [];
  const re =
    /^\s*(2l|3l|fifo)\s+(\d+)\s+(sparse|low|dense)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$/gm;
  for (const m of stdout.matchAll(re)) {
    rows.push({ abi: m[1], ts: Number(m[4]), c: Number(m[6]), ratio: Number(m[7]) });
  }
  if (rows.length === 0) throw new Error("no result rows with a C figure");
  return ["2l", "3l", "fifo"].filter((abi) => rows.some((r) => r.abi === abi)).map((abi) => {
    const mine = rows.filter((r) => r.abi === abi);
    const worst = Math.max(...mine.map((r) => r.ratio));
    return {
      suite: "abi_scan",
      measure: `${abi} upcall scan per event (median of ${mine.length}; worst ${
        worst.toFixed(1)
      }x)`,
      xenchan: ns(median(mine.map((r) => r.ts))),
      baseline: `${ns(median(mine.map((r) => r.c)))} C 2l`,
      ratio: median(mine.map((r) => r.ratio)),
    };
  });
}

/** bench/doorbell.ts: its JSON line (js/c rw_ns, seq_ns). */
export function parseDoorbell(stdout: string): BenchRow[] {
  const j = jsonLine(stdout) as { js?: Record<string, unknown>; c?: Record<string, unknown> };
  const row = (key: string, measure: string): BenchRow => {
    const js = num(j.js?.[key], `js.${key}`);
    const c = num(j.c?.[key], `c.${key}`);
    return { suite: "doorbell", measure, xenchan: ns(js), baseline: `${ns(c)} C`, ratio: js / c };
  };
  return [
    row("rw_ns", "doorbell write -> eventfd read"),
    row("seq_ns", "doorbell write -> poll wake -> read"),
  ];
}

/** bench/osevent_dispatch.ts: its JSON line (dispatch costs at N = 10 and 10,000). */
export function parseOsevent(stdout: string): BenchRow[] {
  const j = jsonLine(stdout) as { dispatch?: Record<string, Record<string, unknown>> };
  const d = j.dispatch ?? {};
  const check = num(d.check?.["10000"], "dispatch.check[10000]");
  const libxl = num(d.libxl?.["10000"], "dispatch.libxl[10000]");
  const wait10 = num(d.wait?.["10"], "dispatch.wait[10]");
  const wait10k = num(d.wait?.["10000"], "dispatch.wait[10000]");
  return [
    {
      suite: "osevent",
      measure: "eventCheck by domid, 10,000 queued",
      xenchan: ns(check),
      baseline: `${ns(libxl)} libxl-style list scan (TS)`,
      ratio: check / libxl,
    },
    {
      suite: "osevent",
      measure: "event to its eventWait, 10,000 vs 10 waiters",
      xenchan: ns(wait10k),
      baseline: `${ns(wait10)} with 10 waiters`,
      ratio: wait10k / wait10,
    },
  ];
}

/** bench/sim_throughput.ts: its table ("scenario n unit per-second"); no baseline. */
export function parseSimThroughput(stdout: string): BenchRow[] {
  const rows: BenchRow[] = [];
  const re = /^(.+?)\s{2,}(\d+)\s+(events|cycles|pages)\s+([\d,]+)\s*$/gm;
  for (const m of stdout.matchAll(re)) {
    if (m[2] !== "10000") continue;
    rows.push({
      suite: "sim_throughput",
      measure: `${m[1].trim()}, n = 10,000`,
      xenchan: `${m[4]} ${m[3]}/s`,
      baseline: "- (simulator only)",
      ratio: null,
    });
  }
  if (rows.length === 0) throw new Error("no n = 10000 rows");
  return rows;
}

/**
 * bench/evtchn_roundtrip.ts plus the C evtchn_pingpong, as "ts\n---c---\nc". The TS bench prints
 * a line for the awaited pending() and, on real Xen, one for the blocking pendingSync()
 * ("<runtime>-blocking"); each becomes its own round-trip row.
 */
export function parseRoundtrip(stdout: string): BenchRow[] {
  const [tsText, cText] = stdout.split("\n---c---\n");
  const c = jsonLine(cText ?? "");
  const lines = (tsText ?? "").split("\n").map((l) => l.trim()).filter((l) => l.startsWith("{"));
  if (lines.length === 0) throw new Error("no JSON line in the output");
  const row = (ts: Record<string, unknown>, key: string, measure: string): BenchRow => {
    const a = num(ts[key], `ts.${key}`);
    const b = num(c[key], `c.${key}`);
    return {
      suite: "evtchn_roundtrip",
      measure,
      xenchan: ns(a),
      baseline: `${ns(b)} C`,
      ratio: a / b,
    };
  };
  const results = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  const rows = results.map((ts) =>
    row(
      ts,
      "ns_per_roundtrip",
      String(ts.name).endsWith("-blocking")
        ? "real event channel round trip, blocking pendingSync() (dom0 loopback)"
        : "real event channel round trip, awaited pending() (dom0 loopback)",
    )
  );
  return [...rows, row(results[0], "notify_ns", "real notify")];
}

/** The suites, in the order they run. */
export const SUITES: readonly Suite[] = [
  {
    name: "abi_scan",
    file: "bench/abi_scan.ts",
    what: "event delivery ABI scan vs C 2-level",
    needs: ["gcc"],
    args: () => [],
    env: (quick): Record<string, string> =>
      quick ? { ABI_BENCH_EVENTS: "20000", ABI_BENCH_REPEATS: "1" } : {},
    parse: parseAbiScan,
  },
  {
    name: "doorbell",
    file: "bench/doorbell.ts",
    what: "doorbell through a real eventfd vs C",
    needs: ["gcc"],
    args: (quick) => quick ? ["2000"] : [],
    env: () => ({}),
    parse: parseDoorbell,
  },
  {
    name: "osevent",
    file: "bench/osevent_dispatch.ts",
    what: "osevent dispatch cost as N grows",
    needs: [],
    args: (quick) => quick ? ["--quick"] : [],
    env: () => ({}),
    parse: parseOsevent,
  },
  {
    name: "sim_throughput",
    file: "bench/sim_throughput.ts",
    what: "simulator throughput",
    needs: [],
    args: () => [],
    env: () => ({}),
    parse: parseSimThroughput,
  },
  {
    name: "evtchn_roundtrip",
    file: "bench/evtchn_roundtrip.ts",
    what: "real event channel round trip vs C (needs a Xen dom0)",
    needs: ["xen"],
    args: (quick) => [quick ? "1000" : "10000", "ffi"],
    env: () => ({}),
    parse: parseRoundtrip,
  },
];

/** The bench command's arguments. */
export const BENCH_SPEC: CommandSpec = {
  name: "bench",
  summary: "run the benchmark suites and print one table of ratios",
  options: {
    quick: { type: "boolean" },
    only: { type: "string", multiple: true },
    skip: { type: "string", multiple: true },
    verbose: { type: "boolean" },
  },
  help: `Usage: xenchan bench [--quick] [--only SUITE,...] [--skip SUITE,...] [--verbose]

Runs the benchmark suites, each as a child process of this runtime, with a
progress indicator on stderr, then prints one table: xenchan's figure, the
baseline measured in the same run (C compiled with gcc -O2 where there is
one), and the ratio (xenchan / baseline; lower is better). Suites that
cannot run here are listed with the reason.

Suites:
${SUITES.map((s) => `  ${s.name.padEnd(17)} ${s.what}`).join("\n")}

Options:
  --quick          small iteration counts (a smoke run; numbers are noisy)
  --only LIST      run only these suites (comma-separated, repeatable)
  --skip LIST      do not run these suites
  --verbose        also print each suite's own output
  -h, --help       show this help

The real-Xen round trip runs only in a dom0; 'npm run bench:xen' boots a
real Xen under QEMU and runs it there.
Exit status: 0 when every suite that ran gave its figures, 1 otherwise.`,
};

/** Options of runBench. */
export interface BenchOptions {
  readonly quick: boolean;
  readonly suites: readonly string[];
  readonly verbose: boolean;
}

/** Converts parsed arguments. Throws UsageError for an unknown suite name. */
export function benchOptions(values: ParsedValues): BenchOptions {
  const names = (v: ParsedValues[string]) =>
    listOption(v).flatMap((s) => s.split(",")).map((s) => s.trim()).filter(Boolean);
  const known = SUITES.map((s) => s.name);
  const only = names(values.only);
  const skip = names(values.skip);
  for (const name of [...only, ...skip]) {
    if (!known.includes(name)) {
      throw new UsageError(`xenchan bench: unknown suite '${name}' (suites: ${known.join(", ")})`);
    }
  }
  const selected = (only.length ? only : known).filter((name) => !skip.includes(name));
  return { quick: values.quick === true, suites: selected, verbose: values.verbose === true };
}

function hasGcc(): boolean {
  try {
    return spawnSync("gcc", ["--version"], { stdio: "ignore" }).status === 0;
  } catch {
    return false;
  }
}

function onPath(command: string): boolean {
  try {
    return spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0;
  } catch {
    return false;
  }
}

/** Why a suite cannot run here, or null when it can. */
async function whyNot(suite: Suite): Promise<string | null> {
  for (const need of suite.needs) {
    if (need === "gcc" && !hasGcc()) return "its C baseline needs gcc (apt-get install gcc)";
    if (need === "xen") {
      const selection = await selectBackend("auto");
      if (selection.kind !== "ffi") {
        return `needs a real Xen dom0 ('npm run bench:xen' runs it in one); here: ${selection.reason}`;
      }
      if (!onPath("evtchn_pingpong") && !hasGcc()) {
        return "its C baseline (bench/c/evtchn_pingpong.c) is not built and gcc is missing";
      }
    }
  }
  return null;
}

interface ChildResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

const REPO = fileURLToPath(new URL("..", import.meta.url));

function runChild(
  argv: readonly string[],
  env: Record<string, string>,
  tick: () => void,
): Promise<ChildResult> {
  return new Promise((resolve) => {
    const [exe, ...args] = argv;
    const child = spawn(exe, args, {
      cwd: REPO,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout?.setEncoding("utf8");
    child.stderr?.setEncoding("utf8");
    child.stdout?.on("data", (c: string) => (stdout += c));
    child.stderr?.on("data", (c: string) => (stderr += c));
    const timer = setInterval(tick, 250);
    child.on("error", (e) => {
      clearInterval(timer);
      resolve({ code: -1, stdout, stderr: `${stderr}${e.message}` });
    });
    child.on("close", (code) => {
      clearInterval(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs one suite (the round trip: TS then the C baseline). Rows, or the error. */
async function runSuite(
  suite: Suite,
  quick: boolean,
  tick: () => void,
): Promise<{ rows: BenchRow[]; output: string }> {
  const script = fileURLToPath(new URL(`../${suite.file}`, import.meta.url));
  const result = await runChild(childCommand(script, suite.args(quick)), suite.env(quick), tick);
  if (result.code !== 0) {
    throw new Error(
      `exited with ${result.code}: ${result.stderr.trim().split("\n").slice(-3).join(" | ")}`,
    );
  }
  let stdout = result.stdout;
  if (suite.name === "evtchn_roundtrip") {
    const c = await runCRoundtrip(suite.args(quick)[0], tick);
    stdout = `${stdout}\n---c---\n${c}`;
  }
  return { rows: suite.parse(stdout), output: stdout };
}

/** Runs the C evtchn_pingpong (built in dom0 by the harness, else compiled here). */
async function runCRoundtrip(n: string, tick: () => void): Promise<string> {
  let exe = "evtchn_pingpong";
  if (!onPath(exe)) {
    exe = join(mkdtempSync(join(tmpdir(), "xenchan-bench-")), "evtchn_pingpong");
    const source = fileURLToPath(new URL("../bench/c/evtchn_pingpong.c", import.meta.url));
    const cc = spawnSync("gcc", ["-O2", "-o", exe, source, "-lxenevtchn"], { encoding: "utf8" });
    if (cc.status !== 0) throw new Error(`gcc failed: ${cc.stderr}`);
  }
  const result = await runChild([exe, n], {}, tick);
  if (result.code !== 0) {
    throw new Error(`evtchn_pingpong exited with ${result.code}: ${result.stderr.trim()}`);
  }
  return result.stdout;
}

/** "3.75x", "0.0040x" (two significant digits below 0.1), or "-" for no ratio. */
export function formatRatio(ratio: number | null): string {
  if (ratio === null) return "-";
  return `${ratio < 0.1 ? ratio.toPrecision(2) : ratio.toFixed(2)}x`;
}

const SPINNER = ["|", "/", "-", "\\"];

/**
 * Runs the selected suites and prints the table (stdout) with progress on
 * stderr. Resolves to 0 when every suite that ran was parsed, 1 otherwise.
 */
export async function runBench(options: BenchOptions, out: Output): Promise<number> {
  const suites = SUITES.filter((s) => options.suites.includes(s.name));
  const rows: BenchRow[] = [];
  const skipped: string[] = [];
  const failed: string[] = [];
  const t0 = performance.now();
  for (const [i, suite] of suites.entries()) {
    const label = `[${i + 1}/${suites.length}] ${suite.name}`;
    const reason = await whyNot(suite);
    if (reason) {
      skipped.push(`${suite.name}: ${reason}`);
      out.err(`${label}: skipped (${reason})`);
      continue;
    }
    const start = performance.now();
    let spin = 0;
    const tick = () => {
      const s = ((performance.now() - start) / 1000).toFixed(0);
      out.progress(`${label}: running ${SPINNER[spin++ % SPINNER.length]} ${s}s`);
    };
    if (!out.interactive) out.err(`${label}: running (${suite.what})`);
    tick();
    try {
      const result = await runSuite(suite, options.quick, tick);
      rows.push(...result.rows);
      if (options.verbose) {
        out.log(`--- ${suite.name} output ---`);
        for (const line of result.output.trimEnd().split("\n")) out.log(line);
      }
      out.progress("");
      out.err(`${label}: done in ${((performance.now() - start) / 1000).toFixed(1)}s`);
    } catch (error) {
      out.progress("");
      const message = (error as Error)?.message ?? String(error);
      failed.push(`${suite.name}: ${message}`);
      out.err(`${label}: FAILED (${message})`);
    }
  }
  out.log(
    `xenchan bench (${runtimeLabel()}${options.quick ? ", --quick: small counts, noisy" : ""})`,
  );
  out.log("ratio = xenchan / baseline in the same run; lower is better");
  out.log("");
  for (
    const line of table(
      ["suite", "measurement", "xenchan", "baseline", "ratio"],
      rows.map((r) => [r.suite, r.measure, r.xenchan, r.baseline, formatRatio(r.ratio)]),
      [2, 4],
    )
  ) out.log(line);
  if (skipped.length) {
    out.log("");
    for (const s of skipped) out.log(`skipped ${s}`);
  }
  if (failed.length) {
    out.log("");
    for (const f of failed) out.log(`FAILED ${f}`);
  }
  out.log("");
  out.log(
    `${rows.length} rows from ${suites.length - skipped.length - failed.length} suites in ` +
      `${((performance.now() - t0) / 1000).toFixed(1)}s`,
  );
  return failed.length ? 1 : 0;
}
