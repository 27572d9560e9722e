/**
 * What the dom0 fidelity tests share: which recorded sequences a run in
 * dom0 re-runs (planSequences), how its traces are compared with a
 * reference recording (compareWithReference), where recordings are written
 * and read back (recordingPath, writeRecording, referenceFixture), what
 * dom0's kernel holds (measureDom0StartState), the versions a recording
 * names (hostVersions), and their numeric knobs (envCount, envInt).
 *
 * @module
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import process from "node:process";
import { gunzipSync, gzipSync } from "node:zlib";
import { openEventChannels, XenCallError } from "../../mod.ts";
import {
  firstDivergence,
  FIXTURE_VERSION,
  type LaneFixture,
  type RecordedSequence,
} from "./compare.ts";
import { readFixture } from "./fixture_io.ts";
import type { Dom0StartState } from "./lanes.ts";
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

/**
 * Where runtime `who` writes its recording of `lane` in this boot:
 * $XENCHAN_OUT/fidelity/<lane, spaces as underscores>.<who>.json.gz, or
 * null outside the harness (no XENCHAN_OUT).
 */
export function recordingPath(lane: { readonly name: string }, who: string): string | null {
  const out = process.env.XENCHAN_OUT;
  return out ? `${out}/fidelity/${lane.name.replaceAll(" ", "_")}.${who}.json.gz` : null;
}

/**
 * Writes `fixture` gzipped to recordingPath(lane, who), creating the
 * folder; does nothing outside the harness. Throws what node:fs throws.
 */
export function writeRecording(
  lane: { readonly name: string },
  who: string,
  fixture: unknown,
): void {
  const file = recordingPath(lane, who);
  if (!file) return;
  mkdirSync(file.slice(0, file.lastIndexOf("/")), { recursive: true });
  writeFileSync(file, gzipSync(JSON.stringify(fixture) + "\n", { level: 9 }));
}

/**
 * The reference recording of `lane`: recording, the other runtime's of
 * this boot when it wrote one; otherwise the committed fixture (null when
 * there is none). `from` says which, for messages. Throws on a damaged file.
 */
export function referenceFixture<S>(
  lane: { readonly name: string },
  recordMode: boolean,
  other: string,
): { fixture: LaneFixture<S> | null; from: string } {
  const file = recordMode ? recordingPath(lane, other) : null;
  if (file && existsSync(file)) {
    const fixture = JSON.parse(gunzipSync(readFileSync(file)).toString("utf8")) as LaneFixture<S>;
    return { fixture, from: `${other}'s recording of this boot` };
  }
  return { fixture: readFixture<S>(lane), from: "the committed fixture" };
}

/** A file's trimmed text, or "?" when it cannot be read. */
function readText(path: string): string {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return "?";
  }
}

/** The running Xen's version (e.g. "4.17.7") and Linux's release, "?" where unreadable. */
export function hostVersions(): { xen: string; linux: string } {
  const xen = ["major", "minor"].map((f) => readText(`/sys/hypervisor/version/${f}`)).join(".") +
    readText("/sys/hypervisor/version/extra");
  return { xen, linux: readText("/proc/sys/kernel/osrelease") };
}

/**
 * What the dom0 kernel holds, through the FFI backend: binds unbound ports
 * until 64 came back (Xen hands out the lowest free port, so every lower
 * port not returned is held), then tries every VIRQ (EEXIST: the kernel
 * bound it on vCPU 0). Closing the handle frees everything again. Throws
 * the handle's errors (any bindVirq error other than EEXIST included).
 */
export async function measureDom0StartState(): Promise<Dom0StartState> {
  using h = await openEventChannels({ backend: "ffi" });
  const free = new Set<number>();
  for (let i = 0; i < 64; i++) free.add(h.bindUnboundPort(0));
  const top = Math.max(...free);
  const kernelPorts: number[] = [];
  for (let p = 1; p < top; p++) if (!free.has(p)) kernelPorts.push(p);
  const kernelVirqs: number[] = [];
  for (let v = 0; v < 24; v++) {
    try {
      h.bindVirq(v);
    } catch (error) {
      if (error instanceof XenCallError && error.code === "EEXIST") kernelVirqs.push(v);
      else throw error;
    }
  }
  return { kernelPorts, kernelVirqs };
}
