/**
 * What the dom0 fidelity tests share: which recorded sequences a run in
 * dom0 re-runs (planSequences), how its traces are compared with a
 * reference recording (compareWithReference), and their numeric knobs
 * (envCount, envInt).
 *
 * @module
 */
import process from "node:process";
import { firstDivergence, FIXTURE_VERSION, type RecordedSequence } from "./compare.ts";
import { SeededRandom } from "./ops.ts";

/** The part of a lane the plan depends on (LaneSpec and the XenStore lane both have it). */
export interface PlannedLane {
  readonly sequences: number;
  readonly seedBase: number;
  readonly length: number;
  /** The runtime that runs every sequence (default "deno"). */
  readonly fullRuntime?: "deno" | "bun";
  /** Sequences the other runtime runs (default: PlanOptions.defaultSubset). */
  readonly subsetSequences?: number;
  /** Outside recording, every runtime runs only this many (see lanes.ts LaneSpec). */
  readonly checkSequences?: number;
}

/** How one dom0 run plans. */
export interface PlanOptions {
  readonly runtime: "deno" | "bun";
  /** XENCHAN_FIDELITY_RECORD=1: the lane's own seeds, all of them under its full runtime. */
  readonly recordMode: boolean;
  /** Seed of the subset's shuffle (fixed per test file, so both runtimes pick the same). */
  readonly subsetSeed: number;
  /** Subset size when the lane does not say. */
  readonly defaultSubset: number;
  /** A count from the environment that overrides every rule above (undefined: none). */
  readonly override?: number;
}

/**
 * The sequences (seed and length) one run in dom0 executes: the reference's
 * (or, recording or without a reference of this engine version, the lane's
 * seeds `seedBase + i`), all of them under the lane's full runtime, a seeded
 * subset under the other, only `checkSequences` outside recording when the
 * lane sets them, or `override` when given. The subset is sorted by seed.
 * Pure; never throws.
 */
export function planSequences(
  lane: PlannedLane,
  ref: { readonly version: number; readonly sequences: readonly RecordedSequence[] } | null,
  options: PlanOptions,
): { seed: number; length: number }[] {
  const all = options.recordMode || !ref || ref.version !== FIXTURE_VERSION
    ? Array.from({ length: lane.sequences }, (_, i) => ({
      seed: lane.seedBase + i,
      length: lane.length,
    }))
    : ref.sequences.map((s) => ({ seed: s.seed, length: s.length }));
  const count = options.override ??
    (!options.recordMode && lane.checkSequences
      ? lane.checkSequences
      : options.runtime === (lane.fullRuntime ?? "deno")
      ? all.length
      : lane.subsetSequences ?? options.defaultSubset);
  if (count >= all.length) return all;
  const rnd = new SeededRandom(options.subsetSeed);
  for (let i = all.length - 1; i > 0; i--) {
    const j = rnd.int(0, i);
    [all[i], all[j]] = [all[j], all[i]];
  }
  return all.slice(0, count).sort((a, b) => a.seed - b.seed);
}

/** What compareWithReference found. */
export interface ReferenceComparison {
  /** Sequences of the run that the reference also has (same seed and length). */
  readonly compared: number;
  /** Their operations. */
  readonly operations: number;
  /** One line per changed sequence: seed, first differing operation, old and new entry. */
  readonly changed: string[];
}

/**
 * Compares the traces of a run with a reference recording, sequence by
 * sequence (matched by seed and length; the others are not compared). Pure;
 * never throws.
 */
export function compareWithReference(
  reference: readonly RecordedSequence[],
  run: readonly RecordedSequence[],
): ReferenceComparison {
  const bySeed = new Map(reference.map((s) => [s.seed, s]));
  const changed: string[] = [];
  let compared = 0;
  let operations = 0;
  for (const rec of run) {
    const old = bySeed.get(rec.seed);
    if (!old || old.length !== rec.length) continue;
    compared++;
    operations += rec.length;
    const d = firstDivergence(old.trace, rec.trace);
    if (d) changed.push(`seed ${rec.seed} op ${d.index}: was ${d.expected}, now ${d.actual}`);
  }
  return { compared, operations, changed };
}

/** A positive integer from the environment variable `name`, or undefined when unset or not one. */
export function envCount(name: string): number | undefined {
  const n = Number(process.env[name] ?? "");
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/** envCount(name), or `fallback`. */
export function envInt(name: string, fallback: number): number {
  return envCount(name) ?? fallback;
}
