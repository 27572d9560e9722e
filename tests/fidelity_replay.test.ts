/**
 * Replays the traces recorded on real Xen (tests/fidelity/fixtures/, written
 * by tests/dom0/fidelity_dom0.test.ts) against the simulator, with no VM: a
 * fresh simulated dom0 per sequence, started in the recorded start state.
 * The traces must be identical (the normalisation is in tests/fidelity/run.ts
 * and README "Fidelity"). A divergence fails with the shortest prefix of the
 * sequence that diverges (on the host only the recorded sequence has a real
 * answer; the dom0 test shrinks further with ddmin against live Xen).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { divergenceReport, FIXTURE_VERSION, summaryLine } from "./fidelity/compare.ts";
import { fixturePath, readFixture, replayOnSim } from "./fidelity/fixture_io.ts";
import {
  DOM0_KILL,
  DOM0_LOOPBACK,
  DOMU,
  type DomUStartState,
  laneSequence,
  type LaneSpec,
  laneTag,
  simDomUTarget,
  simTarget,
} from "./fidelity/lanes.ts";
import type { RunTarget } from "./fidelity/run.ts";
import {
  DOM0_XENSTORE,
  replayXsOnSim,
  xsLaneSequence,
  type XsStartState,
} from "./fidelity/xs_lane.ts";

/** The lanes replayed on a simulated dom0 (and, for domU, a simulated guest). */
const DOM0_LANES: readonly [LaneSpec, (start: DomUStartState) => RunTarget][] = [
  [DOM0_LOOPBACK, simTarget],
  [DOM0_KILL, simTarget],
  [DOMU, simDomUTarget],
];

for (const [lane, target] of DOM0_LANES) {
  describe(`fidelity replay: ${lane.name}`, () => {
    // 10,000 simulated operations: a few seconds, more on a loaded machine (Bun's default is 5 s).
    it(`the simulator reproduces every trace recorded on real Xen ${laneTag(lane)}`, {
      timeout: 120_000,
    }, async () => {
      const fixture = readFixture<DomUStartState>(lane);
      assert.ok(fixture, `missing fixture ${fixturePath(lane)}`);
      assert.equal(fixture.version, FIXTURE_VERSION, "fixture recorded by another engine version");
      assert.equal(fixture.lane, lane.name);
      const result = await replayOnSim(lane, fixture.startState, fixture.sequences, target);
      const line = summaryLine(result.sequences, result.operations, result.failures.length);
      console.log(`${line} (${lane.name}; recorded on ${fixture.recordedOn})`);
      const reports = result.failures.slice(0, 5).map((f) => {
        const ops = laneSequence(lane, f.seed).slice(0, f.divergence.index + 1);
        return divergenceReport(f.seed, ops, f.divergence);
      });
      assert.equal(result.failures.length, 0, `${line}\n${reports.join("\n\n")}`);
      assert.ok(result.sequences >= 200, `only ${result.sequences} sequences recorded`);
      assert.ok(
        fixture.sequences.every((s) => s.length >= 50),
        "every recorded sequence has at least 50 operations",
      );
    });
  });
}

describe("fidelity replay: XenStore", () => {
  // 10,000 simulated XenStore requests: a few seconds.
  it(
    `the simulated xenstored reproduces every trace recorded on C xenstored ${
      laneTag(DOM0_XENSTORE)
    }`,
    { timeout: 300_000 },
    async () => {
      const fixture = readFixture<XsStartState>(DOM0_XENSTORE);
      assert.ok(fixture, `missing fixture ${fixturePath(DOM0_XENSTORE)}`);
      assert.equal(fixture.version, FIXTURE_VERSION, "fixture recorded by another engine version");
      assert.equal(fixture.lane, DOM0_XENSTORE.name);
      const result = await replayXsOnSim(DOM0_XENSTORE, fixture.sequences);
      const line = summaryLine(result.sequences, result.operations, result.failures.length);
      console.log(`${line} (${DOM0_XENSTORE.name}; recorded on ${fixture.recordedOn})`);
      const reports = result.failures.slice(0, 5).map((f) => {
        const ops = xsLaneSequence(DOM0_XENSTORE, f.seed).slice(0, f.divergence.index + 1);
        return divergenceReport(f.seed, ops, f.divergence);
      });
      assert.equal(result.failures.length, 0, `${line}\n${reports.join("\n\n")}`);
      assert.ok(result.sequences >= 200, `only ${result.sequences} sequences recorded`);
      assert.ok(
        fixture.sequences.every((s) => s.length >= 50),
        "every recorded sequence has at least 50 operations",
      );
    },
  );
});
