/**
 * The output convention of every bench/*.ts script: results on stdout as
 * JSON rows (one JSON object per line, nothing else on stdout), the
 * human-readable tables and notes on stderr. `xenchan bench` reads the rows;
 * a person running a script sees both on a terminal, and
 * `deno run -A bench/x.ts > rows.jsonl` keeps only the rows.
 *
 * A row (fields beyond these are allowed and kept, e.g. a suite's raw
 * parameters):
 *   suite     string   the script's suite name ("abi_scan")
 *   case      string   what was measured within the suite ("2l ports=10 sparse")
 *   unit      string   the unit of value, baseline.value and values ("ns/event")
 *   better    "lower" | "higher"   which direction is an improvement
 *   value     number   the figure (see stat)
 *   stat      "best" | "median" | "single"   how value was taken from values
 *   values    number[] every sample behind value (optional)
 *   spread    number   (max - min) / value over values: 0.1 = the samples lie
 *                      within 10% of the figure (optional; 0 for one sample)
 *   baseline  {name: string, value: number}   what value is compared with, in
 *                      the same unit and the same run (optional)
 *   ratio     number   value / baseline.value (present exactly when baseline is)
 *   summary   boolean  true: one of the suite's headline rows, shown in the
 *                      `xenchan bench` table (the others with --all)
 *   runtime   string   "deno 2.9.5" or "bun 1.4.5"
 *
 * @module
 */
import process from "node:process";

/** The fixed fields a script supplies for a row. */
export interface RowFields {
  readonly suite: string;
  readonly case: string;
  readonly unit: string;
  readonly better: "lower" | "higher";
  readonly value: number;
  readonly stat: "best" | "median" | "single";
  readonly values?: readonly number[];
  readonly baseline?: { readonly name: string; readonly value: number };
  readonly summary?: boolean;
  readonly runtime?: string;
}

/** What a script supplies: the fixed fields plus any of its own (raw parameters). */
export type RowInput = RowFields & { readonly [extra: string]: unknown };

/** One result row as written, described in the module comment. */
export type BenchRow = RowInput & {
  readonly runtime: string;
  readonly spread?: number;
  readonly ratio?: number;
};

/** "deno 2.9.5" or "bun 1.4.5". Throws nothing. */
export function runtimeName(): string {
  const v = process.versions as Record<string, string | undefined>;
  return v.deno ? `deno ${v.deno}` : v.bun ? `bun ${v.bun}` : `node ${v.node}`;
}

/** (max - min) / reference over `values`, rounded to 4 digits; 0 for fewer than 2. */
export function spreadOf(values: readonly number[], reference: number): number {
  if (values.length < 2 || reference === 0) return 0;
  return round((Math.max(...values) - Math.min(...values)) / Math.abs(reference), 4);
}

/** Rounds to `digits` decimals (as a number). */
export function round(x: number, digits = 2): number {
  return Number(x.toFixed(digits));
}

/** The median of `values` (the mean of the middle two for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/**
 * Completes `input` into a BenchRow (runtime, spread from values, ratio from
 * baseline) and writes it as one JSON line to stdout. Returns the row.
 * Throws Error when value or the baseline's value is not a finite number
 * (a bench bug: nothing is written then).
 */
export function emitRow(input: RowInput): BenchRow {
  if (!Number.isFinite(input.value)) {
    throw new Error(`bench row ${input.suite}/${input.case}: value ${input.value} is not finite`);
  }
  if (input.baseline && !(Number.isFinite(input.baseline.value) && input.baseline.value > 0)) {
    throw new Error(
      `bench row ${input.suite}/${input.case}: baseline ${input.baseline.value} is not positive`,
    );
  }
  const row: BenchRow = {
    ...input,
    runtime: input.runtime ?? runtimeName(),
    ...(input.values ? { spread: spreadOf(input.values, input.value) } : {}),
    ...(input.baseline ? { ratio: round(input.value / input.baseline.value, 4) } : {}),
  };
  process.stdout.write(`${JSON.stringify(row)}\n`);
  return row;
}

/** Writes human-readable lines (tables, notes) to stderr. Throws nothing. */
export function say(...lines: string[]): void {
  for (const line of lines) process.stderr.write(`${line}\n`);
}
