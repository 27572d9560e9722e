/**
 * `xenchan bench`: runs the benchmark suites in bench/ (each as a child
 * process of this same runtime), shows a progress line per suite on stderr,
 * reads the JSON rows each prints on stdout (bench/rows.ts; never their
 * text) and prints one table of ratios against each suite's baseline.
 * Suites that cannot run here (no gcc for a C baseline, no real Xen) are
 * listed with the reason; missing Deno permissions are named as such.
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

/**
 * One result row as the bench scripts print it (bench/rows.ts documents the
 * schema): JSON, one object per stdout line. Fields beyond these are kept.
 */
export interface ResultRow {
  readonly suite: string;
  readonly case: string;
  readonly unit: string;
  readonly better: "lower" | "higher";
  readonly value: number;
  readonly stat: string;
  readonly values?: readonly number[];
  readonly spread?: number;
  readonly baseline?: { readonly name: string; readonly value: number };
  readonly ratio?: number;
  readonly summary?: boolean;
  readonly runtime?: string;
  readonly [extra: string]: unknown;
}

/** What a suite needs before it can run. */
type Requirement = "gcc" | "xen";

/** One suite: the script that prints its rows, and its arguments. */
export interface Suite {
  readonly name: string;
  readonly file: string;
  readonly what: string;
  readonly needs: readonly Requirement[];
  readonly args: (quick: boolean) => string[];
  readonly env: (quick: boolean) => Record<string, string>;
}

const isNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

/** Checks one parsed line against the row schema; returns what is wrong, or null. */
function rowProblem(row: Record<string, unknown>): string | null {
  for (const key of ["suite", "case", "unit"]) {
    if (typeof row[key] !== "string" || row[key] === "") return `"${key}" is not a string`;
  }
  if (row.better !== "lower" && row.better !== "higher") return `"better" is not lower/higher`;
  if (!isNumber(row.value)) return `"value" is not a finite number`;
  if (typeof row.stat !== "string") return `"stat" is not a string`;
  if (row.values !== undefined && !(Array.isArray(row.values) && row.values.every(isNumber))) {
    return `"values" is not a list of numbers`;
  }
  if (row.spread !== undefined && !isNumber(row.spread)) return `"spread" is not a number`;
  const baseline = row.baseline as Record<string, unknown> | undefined;
  if (baseline !== undefined) {
    if (typeof baseline !== "object" || baseline === null) return `"baseline" is not an object`;
    if (typeof baseline.name !== "string" || !isNumber(baseline.value)) {
      return `"baseline" needs a name and a finite value`;
    }
    if (!isNumber(row.ratio)) return `"ratio" is missing next to "baseline"`;
  } else if (row.ratio !== undefined) return `"ratio" without "baseline"`;
  if (row.summary !== undefined && typeof row.summary !== "boolean") {
    return `"summary" is not a boolean`;
  }
  return null;
}

/**
 * Reads a suite's stdout: every non-blank line must be one JSON row of
 * `suite` (bench/rows.ts). Returns the rows in order. Throws Error naming
 * the line number and what is wrong (not JSON, a field missing or of the
 * wrong type, another suite's row), or when there is no row at all.
 */
export function readRows(stdout: string, suite: string): ResultRow[] {
  const rows: ResultRow[] = [];
  for (const [i, raw] of stdout.split("\n").entries()) {
    const line = raw.trim();
    if (line === "") continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      throw new Error(`stdout line ${i + 1} is not a JSON row: '${line.slice(0, 60)}'`);
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new Error(`stdout line ${i + 1} is not a JSON object`);
    }
    const row = parsed as Record<string, unknown>;
    const problem = rowProblem(row);
    if (problem) throw new Error(`stdout line ${i + 1}: ${problem}`);
    if (row.suite !== suite) {
      throw new Error(`stdout line ${i + 1} is a row of suite '${row.suite}', not '${suite}'`);
    }
    rows.push(row as ResultRow);
  }
  if (rows.length === 0) throw new Error("no result rows on stdout");
  return rows;
}

/**
 * Puts the C round trip (bench/c/evtchn_pingpong.c's one JSON line,
 * {"ns_per_roundtrip","notify_ns"}) under the rows of bench/evtchn_roundtrip.ts
 * as their baseline: each row names the C field it compares with in "key".
 * Returns new rows. Throws Error when the C line is missing or lacks a field.
 */
export function withCBaseline(rows: readonly ResultRow[], cStdout: string): ResultRow[] {
  const line = cStdout.split("\n").map((l) => l.trim()).reverse().find((l) => l.startsWith("{"));
  if (!line) throw new Error("evtchn_pingpong printed no JSON line");
  const c = JSON.parse(line) as Record<string, unknown>;
  return rows.map((row) => {
    const key = typeof row.key === "string" ? row.key : undefined;
    if (key === undefined) return row;
    const value = c[key];
    if (!isNumber(value) || value <= 0) throw new Error(`evtchn_pingpong: "${key}" missing`);
    return { ...row, baseline: { name: "C", value }, ratio: row.value / value };
  });
}

/** The suites, in the order they run. */
export const SUITES: readonly Suite[] = [
  {
    name: "abi_scan",
    file: "bench/abi_scan.ts",
    what: "event delivery ABI scan vs C 2-level",
    needs: ["gcc"],
    args: (quick) => quick ? ["--quick"] : [],
    env: () => ({}),
  },
  {
    name: "doorbell",
    file: "bench/doorbell.ts",
    what: "doorbell through a real eventfd vs C",
    needs: ["gcc"],
    args: (quick) => quick ? ["2000"] : [],
    env: () => ({}),
  },
  {
    name: "fd_roundtrip",
    file: "bench/fd_roundtrip.ts",
    what: "cross-process wake-up round trip over pipes vs C",
    needs: ["gcc"],
    args: (quick) => quick ? ["2000"] : [],
    env: (quick): Record<string, string> => quick ? { FD_BENCH_REPEATS: "1" } : {},
  },
  {
    name: "osevent",
    file: "bench/osevent_dispatch.ts",
    what: "osevent dispatch cost as N grows",
    needs: [],
    args: (quick) => quick ? ["--quick"] : [],
    env: () => ({}),
  },
  {
    name: "sim_throughput",
    file: "bench/sim_throughput.ts",
    what: "simulator throughput",
    needs: [],
    args: (quick) => quick ? ["--quick"] : [],
    env: () => ({}),
  },
  {
    name: "vchan",
    file: "bench/vchan.ts",
    what: "vchan throughput and ping-pong on the simulator",
    needs: [],
    args: (quick) => quick ? ["--quick"] : [],
    env: () => ({}),
  },
  {
    name: "evtchn_roundtrip",
    file: "bench/evtchn_roundtrip.ts",
    what: "real event channel round trip vs C (needs a Xen dom0)",
    needs: ["xen"],
    args: (quick) => [quick ? "1000" : "10000", "ffi"],
    env: () => ({}),
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
    all: { type: "boolean" },
    json: { type: "boolean" },
    verbose: { type: "boolean" },
  },
  help:
    `Usage: xenchan bench [--quick] [--only SUITE,...] [--skip SUITE,...] [--all] [--json] [--verbose]

Runs the benchmark suites, each as a child process of this runtime, with a
progress line per suite on stderr, then prints one table: xenchan's figure,
the spread of its samples, the baseline measured in the same run (C
compiled with gcc -O2 where there is one), and the ratio (xenchan /
baseline; lower is better). Suites that cannot run here are listed with
the reason. Each script prints JSON rows on stdout and its own tables on
stderr (bench/rows.ts); this command reads the rows.

Suites:
${SUITES.map((s) => `  ${s.name.padEnd(17)} ${s.what}`).join("\n")}

Options:
  --quick          shorter runs (seconds, not minutes): ratios within about
                   1.5x of the full run's, single figures noisier
  --only LIST      run only these suites (comma-separated, repeatable)
  --skip LIST      do not run these suites
  --all            every row of each suite, not only its summary rows
  --json           print the rows (JSON, one per line) instead of the table
  --verbose        also print each suite's own tables (its stderr)
  -h, --help       show this help

Under Deno it needs --allow-run and --allow-env (-P, this project's
permissions, grants them). The real-Xen round trip runs only in a dom0;
'npm run bench:xen' boots a real Xen under QEMU and runs it there.
Exit status: 0 when every suite that ran gave its rows, 1 otherwise
(or when permissions are missing), 2 for bad arguments.`,
};

/** Options of runBench. */
export interface BenchOptions {
  readonly quick: boolean;
  readonly suites: readonly string[];
  readonly verbose: boolean;
  /** Every row, not only the summary rows. */
  readonly all: boolean;
  /** Rows as JSON lines instead of the table. */
  readonly json: boolean;
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
      throw new UsageError(
        `xenchan bench: unknown suite '${name}' (suites: ${known.join(", ")})\n` +
          "Run 'xenchan bench --help' for usage.",
      );
    }
  }
  const selected = (only.length ? only : known).filter((name) => !skip.includes(name));
  if (selected.length === 0) {
    throw new UsageError("xenchan bench: --skip left no suite to run");
  }
  return {
    quick: values.quick === true,
    suites: selected,
    verbose: values.verbose === true,
    all: values.all === true,
    json: values.json === true,
  };
}

/** A runtime permission the command lacks (Deno's NotCapable / PermissionDenied). */
export class MissingPermissionError extends Error {
  override name = "MissingPermissionError";
}

/** Whether `error` is Deno's refusal of a permission. Throws nothing. */
export function isPermissionError(error: unknown): boolean {
  const name = (error as { name?: string } | null)?.name;
  return name === "NotCapable" || name === "PermissionDenied";
}

interface DenoPermissions {
  querySync(descriptor: { name: string }): { state: string };
}

/**
 * The Deno permissions bench needs and does not have ("run", "env"), as the
 * flags that grant them; empty under Bun and Node, which have no permission
 * model. Throws nothing.
 */
export function missingPermissions(): string[] {
  const deno = (globalThis as { Deno?: { permissions?: DenoPermissions } }).Deno;
  if (!deno?.permissions) return [];
  return ["run", "env"].filter((name) => {
    try {
      return deno.permissions!.querySync({ name }).state !== "granted";
    } catch {
      return true;
    }
  }).map((name) => `--allow-${name}`);
}

function spawnsOk(command: string, args: readonly string[]): boolean {
  try {
    return spawnSync(command, [...args], { stdio: "ignore" }).status === 0;
  } catch (error) {
    if (isPermissionError(error)) {
      throw new MissingPermissionError(
        `Deno refused to run ${command}: ${(error as Error).message}`,
      );
    }
    return false;
  }
}

const hasGcc = () => spawnsOk("gcc", ["--version"]);
const onPath = (command: string) => spawnsOk("sh", ["-c", `command -v ${command}`]);

/** Why a suite cannot run here, or null when it can. Throws MissingPermissionError. */
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
  return new Promise((resolve, reject) => {
    const [exe, ...args] = argv;
    let child;
    try {
      child = spawn(exe, args, {
        cwd: REPO,
        env: { ...process.env, ...env },
        stdio: ["ignore", "pipe", "pipe"],
      });
    } catch (error) {
      reject(
        isPermissionError(error)
          ? new MissingPermissionError(`Deno refused to start ${exe}: ${(error as Error).message}`)
          : error,
      );
      return;
    }
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

/** Runs one suite (the round trip: TS then the C baseline). Its rows and its stderr text. */
async function runSuite(
  suite: Suite,
  quick: boolean,
  tick: () => void,
): Promise<{ rows: ResultRow[]; text: string }> {
  const script = fileURLToPath(new URL(`../${suite.file}`, import.meta.url));
  const result = await runChild(childCommand(script, suite.args(quick)), suite.env(quick), tick);
  if (result.code !== 0) {
    throw new Error(
      `exited with ${result.code}: ${result.stderr.trim().split("\n").slice(-3).join(" | ")}`,
    );
  }
  let rows = readRows(result.stdout, suite.name);
  if (suite.name === "evtchn_roundtrip") {
    rows = withCBaseline(rows, await runCRoundtrip(suite.args(quick)[0], tick));
  }
  return { rows, text: result.stderr };
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
export function formatRatio(ratio: number | null | undefined): string {
  if (ratio === null || ratio === undefined) return "-";
  return `${ratio < 0.1 ? ratio.toPrecision(2) : ratio.toFixed(2)}x`;
}

/** A figure with its unit: "12.3 ns/event", "3,088,976 events/s". Throws nothing. */
export function formatValue(value: number, unit: string): string {
  const text = Math.abs(value) >= 1000
    ? grouped(value)
    : Math.abs(value) >= 100
    ? value.toFixed(0)
    : value.toFixed(value >= 10 ? 1 : 2);
  return `${text} ${unit}`;
}

/** "12%" for a spread of 0.12, "-" when the row has none. Throws nothing. */
export function formatSpread(spread: number | undefined): string {
  return spread === undefined ? "-" : `${Math.round(spread * 100)}%`;
}

const SPINNER = ["|", "/", "-", "\\"];

/**
 * Runs the selected suites and prints the table (stdout) with a progress
 * line per suite on stderr. Resolves to 0 when every suite that ran gave its
 * rows, 1 otherwise; 1 also when Deno lacks a permission bench needs (the
 * message names the flag). Never rejects for a suite's failure.
 */
export async function runBench(options: BenchOptions, out: Output): Promise<number> {
  const missing = missingPermissions();
  if (missing.length) {
    out.err(
      `xenchan bench: Deno has not granted ${missing.join(" and ")}: bench starts each suite ` +
        `as a child process (and gcc for the C baselines) with this environment. Run it with ` +
        `'deno run -P cli.ts bench' (this project's permissions) or add ${missing.join(" ")}.`,
    );
    return 1;
  }
  const suites = SUITES.filter((s) => options.suites.includes(s.name));
  const rows: ResultRow[] = [];
  const skipped: string[] = [];
  const failed: string[] = [];
  const t0 = performance.now();
  for (const [i, suite] of suites.entries()) {
    const label = `[${i + 1}/${suites.length}] ${suite.name}`;
    const start = performance.now();
    let spin = 0;
    const tick = () => {
      const s = ((performance.now() - start) / 1000).toFixed(0);
      out.progress(`${label}: running ${SPINNER[spin++ % SPINNER.length]} ${s}s`);
    };
    try {
      const reason = await whyNot(suite);
      if (reason) {
        skipped.push(`${suite.name}: ${reason}`);
        out.err(`${label}: skipped (${reason})`);
        continue;
      }
      out.err(`${label}: running (${suite.what}${options.quick ? ", --quick" : ""})`);
      tick();
      const result = await runSuite(suite, options.quick, tick);
      rows.push(...result.rows);
      if (options.verbose) {
        out.log(`--- ${suite.name} output (its stderr) ---`);
        for (const line of result.text.trimEnd().split("\n")) out.log(line);
      }
      out.progress("");
      out.err(
        `${label}: done in ${((performance.now() - start) / 1000).toFixed(1)}s ` +
          `(${result.rows.length} rows)`,
      );
    } catch (error) {
      out.progress("");
      if (error instanceof MissingPermissionError) {
        out.err(`xenchan bench: ${error.message}; run with -P (this project's permissions) or -A`);
        return 1;
      }
      const message = (error as Error)?.message ?? String(error);
      failed.push(`${suite.name}: ${message}`);
      out.err(`${label}: FAILED (${message})`);
    }
  }
  if (options.json) {
    for (const row of rows) out.log(JSON.stringify(row));
    return failed.length ? 1 : 0;
  }
  const shown = options.all ? rows : rows.filter((r) => r.summary === true);
  out.log(
    `xenchan bench (${runtimeLabel()}${options.quick ? ", --quick" : ""})`,
  );
  out.log(
    "ratio = xenchan / baseline in the same run; lower is better. spread = (max - min) / figure",
  );
  out.log("");
  for (
    const line of table(
      ["suite", "measurement", "xenchan", "spread", "baseline", "ratio"],
      shown.map((r) => [
        r.suite,
        r.case,
        formatValue(r.value, r.unit),
        formatSpread(r.spread),
        r.baseline ? `${formatValue(r.baseline.value, r.unit)} ${r.baseline.name}` : "-",
        formatRatio(r.ratio),
      ]),
      [2, 3, 5],
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
    `${shown.length} of ${rows.length} rows${options.all ? "" : " (--all for every row)"} from ` +
      `${suites.length - skipped.length - failed.length} suites in ` +
      `${((performance.now() - t0) / 1000).toFixed(1)}s`,
  );
  return failed.length ? 1 : 0;
}
