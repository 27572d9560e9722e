/**
 * Reading and writing the committed fidelity fixtures
 * (tests/fidelity/fixtures/<lane>.json), and replaying one against the
 * simulator.
 *
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { firstDivergence, type LaneFixture, type RecordedSequence } from "./compare.ts";
import { laneSequence, type LaneSpec, simTarget } from "./lanes.ts";
import { recordTrace, type RunTarget } from "./run.ts";
import type { Divergence } from "./compare.ts";
import type { Dom0StartState } from "./lanes.ts";

/** The fixture file of a lane: its name with spaces as underscores. */
export function fixturePath(lane: { readonly name: string }): string {
  const file = `${lane.name.replaceAll(" ", "_")}.json`;
  return fileURLToPath(new URL(`./fixtures/${file}`, import.meta.url));
}

/** The committed fixture of `lane`, or null when there is none. Throws on a damaged file. */
export function readFixture<S = Dom0StartState>(
  lane: { readonly name: string },
): LaneFixture<S> | null {
  const path = fixturePath(lane);
  if (!existsSync(path)) return null;
  return JSON.parse(readFileSync(path, "utf8")) as LaneFixture<S>;
}

/** One sequence that diverged on replay. */
export interface ReplayFailure {
  readonly seed: number;
  readonly divergence: Divergence;
}

/** Result of replaying recorded sequences on the simulator. */
export interface ReplayResult {
  readonly sequences: number;
  readonly operations: number;
  readonly failures: readonly ReplayFailure[];
}

/**
 * Replays every recorded sequence on a fresh simulated dom0 in `start` and
 * compares the traces. Throws only for an engine error (a generator that no
 * longer reproduces the recorded operations shows up as a divergence).
 */
export async function replayOnSim<S extends Dom0StartState>(
  lane: LaneSpec,
  start: S,
  sequences: readonly RecordedSequence[],
  target: (start: S) => RunTarget = simTarget,
): Promise<ReplayResult> {
  const failures: ReplayFailure[] = [];
  let operations = 0;
  for (const rec of sequences) {
    const ops = laneSequence(lane, rec.seed, rec.length);
    operations += ops.length;
    const trace = await recordTrace(ops, target(start));
    const divergence = firstDivergence(rec.trace, trace);
    if (divergence) failures.push({ seed: rec.seed, divergence });
  }
  return { sequences: sequences.length, operations, failures };
}
