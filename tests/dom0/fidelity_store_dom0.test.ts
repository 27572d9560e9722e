/**
 * The differential fidelity engine on real Xen, dom0 xenstore lane: the
 * XenStore sequences of tests/fidelity/xs_ops.ts run through the FFI
 * backend's XenStore transport on C xenstored 4.17 (the daemon the
 * simulated xenstored models; this test switches the harness dom0 to it
 * and back), each followed by the same sequence on a fresh simulated
 * xenstored, and each real trace is compared
 *   - with the simulator's (0 divergences; a divergence is shrunk with ddmin,
 *     every candidate run on both daemons), and
 *   - with the committed fixture tests/fidelity/fixtures/dom0_xenstore.json
 *     (real Xen's answers must not have changed).
 * The normalisation is written down in tests/fidelity/xs_run.ts.
 *
 * Recording (XENCHAN_FIDELITY_RECORD=1): the recording is written, gzipped,
 * to $XENCHAN_OUT/fidelity/dom0_xenstore.<runtime>.json.gz (on the host
 * .xen/runs/test_xen/out/fidelity/; `gunzip -c` it into the fixture to
 * commit it), and a runtime that finds the other runtime's recording of
 * this boot compares with it instead of the committed fixture.
 * Knobs: XENCHAN_FIDELITY_SEQUENCES (default: all under Deno, a seeded
 * subset of SUBSET_SEQUENCES under Bun), XENCHAN_FIDELITY_SHRINK,
 * XENCHAN_FIDELITY_BUDGET (as in fidelity_dom0.test.ts).
 */
import { after, before, describe, it } from "node:test";
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
  planSequences,
  referenceFixture,
  writeRecording,
} from "../fidelity/dom0_plan.ts";
import { laneTag } from "../fidelity/lanes.ts";
import {
  DOM0_XENSTORE,
  ffiXsTarget,
  simXsTarget,
  xsLaneSequence,
  type XsStartState,
} from "../fidelity/xs_lane.ts";
import type { XsOp } from "../fidelity/xs_ops.ts";
import { recordXsTrace } from "../fidelity/xs_run.ts";
import {
  runningXenstored,
  useXenstored,
  whyNoGuests,
  type XenstoredName,
} from "../helpers/guest.ts";

const skip = whyNoGuests() ?? false;
const lane = DOM0_XENSTORE;
const DAEMON: XenstoredName = "cxenstored";
const runtime = "Bun" in globalThis ? "bun" : "deno";
const other = runtime === "bun" ? "deno" : "bun";
const recordMode = process.env.XENCHAN_FIDELITY_RECORD === "1";
/** Sequences Bun runs by default (a seeded subset; Deno runs them all). */
const SUBSET_SEQUENCES = 40;
const SUBSET_SEED = 0x5b5e8;
const RUN_TIMEOUT_MS = 1_500_000;

type Fixture = LaneFixture<XsStartState>;

interface Run {
  readonly fixture: Fixture;
  readonly operations: number;
  readonly divergent: { seed: number; index: number; real?: string; sim?: string }[];
  readonly seconds: number;
}

let running: Promise<Run> | undefined;

function run(): Promise<Run> {
  running ??= (async () => {
    const { fixture: ref } = referenceFixture<XsStartState>(lane, recordMode, other);
    const sequences: RecordedSequence[] = [];
    const divergent: Run["divergent"] = [];
    let operations = 0;
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
      const ops = xsLaneSequence(lane, seed, length);
      operations += ops.length;
      const real = await recordXsTrace(ops, seed, ffiXsTarget());
      const sim = await recordXsTrace(ops, seed, simXsTarget());
      sequences.push({ seed, length, trace: real });
      const d = firstDivergence(real, sim);
      if (d) divergent.push({ seed, index: d.index, real: d.expected, sim: d.actual });
    }
    const seconds = Math.round((performance.now() - t0) / 100) / 10;
    const { xen, linux } = hostVersions();
    const fixture: Fixture = {
      version: FIXTURE_VERSION,
      lane: lane.name,
      recordedOn: `Xen ${xen}, Linux ${linux} PV dom0, ${DAEMON} over its socket, ${runtime}`,
      startState: { daemon: DAEMON },
      sequences,
    };
    if (recordMode) writeRecording(lane, runtime, fixture);
    return { fixture, operations, divergent, seconds };
  })();
  return running;
}

async function divergesLive(ops: readonly XsOp[], seed: number): Promise<boolean> {
  const real = await recordXsTrace(ops, seed, ffiXsTarget());
  const sim = await recordXsTrace(ops, seed, simXsTarget());
  return firstDivergence(real, sim) !== null;
}

describe("fidelity on real Xen: XenStore", { skip }, () => {
  let previous: XenstoredName | null = null;
  before(async () => {
    previous = await runningXenstored();
    await useXenstored(DAEMON);
  });
  after(async () => {
    if (previous && previous !== DAEMON) await useXenstored(previous);
  });

  it(`the simulated xenstored answers as ${DAEMON}, 0 divergences ${laneTag(lane)}`, {
    timeout: RUN_TIMEOUT_MS,
  }, async () => {
    const { fixture, operations, divergent, seconds } = await run();
    console.log(`${fixture.recordedOn}; ${fixture.sequences.length} sequences in ${seconds} s`);
    const reports: string[] = [];
    const toShrink = envInt("XENCHAN_FIDELITY_SHRINK", 2);
    for (const failure of divergent.slice(0, toShrink)) {
      const ops = xsLaneSequence(lane, failure.seed);
      const prefix = ops.slice(0, Math.min(ops.length, failure.index + 1));
      const budget = envInt("XENCHAN_FIDELITY_BUDGET", 60);
      const minimal = await shrink(prefix, (c) => divergesLive(c, failure.seed), budget);
      const real = await recordXsTrace(minimal, failure.seed, ffiXsTarget());
      const sim = await recordXsTrace(minimal, failure.seed, simXsTarget());
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
    } (${lane.name}, ${runtime}, real ${DAEMON} against the simulator)`;
    console.log(line);
    if (reports.length) console.log(reports.join("\n\n"));
    assert.equal(divergent.length, 0, `${line}\n${reports.join("\n\n")}`);
  });

  it(`real ${DAEMON} still answers as the reference recording ${laneTag(lane)}`, {
    timeout: RUN_TIMEOUT_MS,
  }, async () => {
    const { fixture: ref, from } = referenceFixture<XsStartState>(lane, recordMode, other);
    const { fixture } = await run();
    assert.ok(ref, "no committed fixture: record one (XENCHAN_FIDELITY_RECORD=1)");
    assert.equal(ref.version, FIXTURE_VERSION, `${from} was recorded by another engine version`);
    assert.deepEqual(fixture.startState, ref.startState, "the daemon changed");
    const { compared, operations: comparedOps, changed } = compareWithReference(
      ref.sequences,
      fixture.sequences,
    );
    console.log(
      `${
        summaryLine(compared, comparedOps, changed.length)
      } (${lane.name}, ${runtime}, real ${DAEMON} against ${from})`,
    );
    assert.ok(compared > 0, `no sequence of this run is in ${from}`);
    assert.deepEqual(changed, [], `real ${DAEMON}'s answers changed:\n${changed.join("\n")}`);
  });
});
