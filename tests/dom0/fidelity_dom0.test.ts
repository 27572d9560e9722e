/**
 * The differential fidelity engine on real Xen (dom0 loopback lane). It
 * measures what the real dom0 kernel holds, then runs the sequences of the
 * committed fixture (tests/fidelity/fixtures/<lane>.json, which the harness
 * ships into dom0 with tests/) on the FFI backend in lockstep with a fresh
 * simulated dom0 per sequence (tests/fidelity/run.ts recordLockstep), and
 * compares each real trace
 *   - with the simulator's (0 divergences; a divergence is shrunk with ddmin
 *     against live Xen, each candidate run on both), and
 *   - with the committed trace (real Xen's answers must not have changed).
 * Only a summary and the divergences leave dom0; nothing big crosses the
 * serial console.
 *
 * Recording (XENCHAN_FIDELITY_RECORD=1, passed through by
 * scripts/test_xen.mjs): every runtime records the lane's sequences
 * (DOM0_LOOPBACK.sequences, seeds from seedBase) and writes the fixture,
 * gzipped, to $XENCHAN_OUT/fidelity/<lane>.<runtime>.json.gz (on the host:
 * .xen/runs/test_xen/out/fidelity/; `gunzip -c` it into
 * tests/fidelity/fixtures/<lane>.json to commit it). A runtime that finds
 * the other runtime's recording of this boot there compares with it instead
 * of the committed fixture (so a recording boot checks that real Xen answers
 * the same to both runtimes).
 *
 * Knobs: XENCHAN_FIDELITY_SEQUENCES (sequences run, default all for Deno and
 * SUBSET_SEQUENCES for Bun), XENCHAN_FIDELITY_SHRINK (divergent sequences
 * shrunk on live Xen, default 2), XENCHAN_FIDELITY_BUDGET (oracle runs per
 * shrink, default 30).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import {
  divergenceReport,
  firstDivergence,
  FIXTURE_VERSION,
  type LaneFixture,
  type RecordedSequence,
  shrink,
  summaryLine,
} from "../fidelity/compare.ts";
import {
  compareWithReference,
  envCount,
  envInt,
  hostVersions,
  measureDom0StartState,
  planSequences,
  referenceFixture,
  writeRecording,
} from "../fidelity/dom0_plan.ts";
import {
  closeSparePeer,
  DOM0_KILL,
  DOM0_LOOPBACK,
  type Dom0StartState,
  ffiTarget,
  laneSequence,
  type LaneSpec,
  laneTag,
  simTarget,
} from "../fidelity/lanes.ts";
import type { Op } from "../fidelity/ops.ts";
import { newTimings, recordLockstep, type RunTimings } from "../fidelity/run.ts";

const inDom0 = process.env.XENCHAN_DOM0 === "1";
const skip = inDom0 ? false : "runs only inside the Xen dom0 booted by scripts/test_xen.mjs";
const runtime = "Bun" in globalThis ? "bun" : "deno";
const other = runtime === "bun" ? "deno" : "bun";
const recordMode = process.env.XENCHAN_FIDELITY_RECORD === "1";
/** Sequences Bun runs by default (a seeded subset; Deno runs them all). */
const SUBSET_SEQUENCES = 30;
const SUBSET_SEED = 0x5b5e7;
/** Per-test timeout: the run is minutes under TCG (the harness's runner timeout is the real bound). */
const RUN_TIMEOUT_MS = 1_500_000;

interface Run {
  readonly fixture: LaneFixture;
  readonly operations: number;
  /** Seeds whose real trace differs from the simulator's, with the first difference. */
  readonly divergent: { seed: number; index: number; real?: string; sim?: string }[];
  readonly seconds: number;
  readonly real: RunTimings;
  readonly sim: RunTimings;
}

const running = new Map<string, Promise<Run>>();
let startStateOnce: Promise<Dom0StartState> | undefined;

/** Runs a lane's plan once per process (both tests of the lane use it). */
function run(lane: LaneSpec): Promise<Run> {
  const had = running.get(lane.name);
  if (had) return had;
  const p = (async () => {
    startStateOnce ??= measureDom0StartState();
    const startState = await startStateOnce;
    const { fixture: ref } = referenceFixture<Dom0StartState>(lane, recordMode, other);
    const sequences: RecordedSequence[] = [];
    const divergent: Run["divergent"] = [];
    let operations = 0;
    const realTimings = newTimings();
    const simTimings = newTimings();
    const t0 = performance.now();
    for (
      const { seed, length } of planSequences(lane, ref, {
        runtime,
        recordMode,
        subsetSeed: SUBSET_SEED,
        defaultSubset: SUBSET_SEQUENCES,
        override: envCount("XENCHAN_FIDELITY_SEQUENCES"),
      })
    ) {
      const ops = laneSequence(lane, seed, length);
      operations += ops.length;
      const { real, sim } = await recordLockstep(
        ops,
        ffiTarget(realTimings),
        simTarget(startState, simTimings),
      );
      sequences.push({ seed, length, trace: real });
      const d = firstDivergence(real, sim);
      if (d) divergent.push({ seed, index: d.index, real: d.expected, sim: d.actual });
    }
    const seconds = Math.round((performance.now() - t0) / 100) / 10;
    const { xen, linux } = hostVersions();
    const fixture: LaneFixture = {
      version: FIXTURE_VERSION,
      lane: lane.name,
      recordedOn: `Xen ${xen}, Linux ${linux} PV dom0, ${runtime}`,
      startState,
      sequences,
    };
    await closeSparePeer();
    if (recordMode) writeRecording(lane, runtime, fixture);
    return { fixture, operations, divergent, seconds, real: realTimings, sim: simTimings };
  })();
  running.set(lane.name, p);
  return p;
}

/** Whether `ops` still diverges: run on live Xen and on the simulator in lockstep, compare. */
async function divergesLive(ops: readonly Op[], start: Dom0StartState): Promise<boolean> {
  const { real, sim } = await recordLockstep(ops, ffiTarget(), simTarget(start));
  return firstDivergence(real, sim) !== null;
}

/** The lanes this run covers: XENCHAN_FIDELITY_LANES (names joined by commas), default all. */
const LANES = [DOM0_LOOPBACK, DOM0_KILL].filter((l) => {
  const only = process.env.XENCHAN_FIDELITY_LANES;
  return !only || only.split(",").map((s) => s.trim()).includes(l.name);
});

for (const lane of LANES) {
  describe(`fidelity on real Xen: ${lane.name}`, { skip }, () => {
    it(`the simulator answers as real Xen in lockstep, 0 divergences ${laneTag(lane)}`, {
      timeout: RUN_TIMEOUT_MS,
    }, async () => {
      const { fixture, operations, divergent, seconds, real, sim } = await run(lane);
      const s = (ms: number) => (ms / 1000).toFixed(1);
      console.log(
        `start state: ${JSON.stringify(fixture.startState)}; ${fixture.recordedOn}; ` +
          `${fixture.sequences.length} sequences in ${seconds} s: real Xen ${s(real.total)} s ` +
          `(waiting for expected events ${s(real.expected)} s, grace ${s(real.grace)} s, ` +
          `deferred grant ends ${s(real.deferred)} s), simulator ${s(sim.total)} s`,
      );
      const reports: string[] = [];
      const toShrink = envInt("XENCHAN_FIDELITY_SHRINK", 2);
      for (const failure of divergent.slice(0, toShrink)) {
        const ops = laneSequence(lane, failure.seed);
        const prefix = ops.slice(0, Math.min(ops.length, failure.index + 1));
        const budget = envInt("XENCHAN_FIDELITY_BUDGET", 30);
        const minimal = await shrink(prefix, (c) => divergesLive(c, fixture.startState), budget);
        const { real, sim } = await recordLockstep(
          minimal,
          ffiTarget(),
          simTarget(fixture.startState),
        );
        const d = firstDivergence(real, sim) ??
          { index: failure.index, expected: failure.real, actual: failure.sim };
        reports.push(divergenceReport(failure.seed, minimal, d));
      }
      for (const f of divergent.slice(toShrink)) {
        reports.push(
          divergenceReport(f.seed, [], { index: f.index, expected: f.real, actual: f.sim }),
        );
      }
      const line = `${
        summaryLine(fixture.sequences.length, operations, divergent.length)
      } (${lane.name}, ${runtime}, real Xen against the simulator)`;
      console.log(line);
      if (reports.length) console.log(reports.join("\n\n"));
      assert.equal(divergent.length, 0, `${line}\n${reports.join("\n\n")}`);
    });

    it(`real Xen still answers as the reference recording ${laneTag(lane)}`, {
      timeout: RUN_TIMEOUT_MS,
    }, async () => {
      const { fixture: ref, from } = referenceFixture<Dom0StartState>(lane, recordMode, other);
      const { fixture } = await run(lane);
      assert.ok(ref, "no committed fixture: record one (XENCHAN_FIDELITY_RECORD=1)");
      assert.equal(
        ref.version,
        FIXTURE_VERSION,
        `${from} was recorded by engine version ${ref.version}, this is ${FIXTURE_VERSION}: ` +
          "record again (XENCHAN_FIDELITY_RECORD=1) and commit the recording",
      );
      assert.deepEqual(fixture.startState, ref.startState, "the dom0 start state changed");
      const { compared, operations: comparedOps, changed } = compareWithReference(
        ref.sequences,
        fixture.sequences,
      );
      console.log(
        `${
          summaryLine(compared, comparedOps, changed.length)
        } (${lane.name}, ${runtime}, real Xen against ${from})`,
      );
      assert.ok(compared > 0, `no sequence of this run is in ${from}`);
      assert.deepEqual(changed, [], `real Xen's answers changed:\n${changed.join("\n")}`);
    });
  });
}
