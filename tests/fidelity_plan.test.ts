/**
 * Which recorded sequences a dom0 fidelity run re-runs (tests/fidelity/dom0_plan.ts): the rules
 * that decide how long the dom0 step takes, checked on the host.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { FIXTURE_VERSION, type RecordedSequence } from "./fidelity/compare.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import {
  compareWithReference,
  type PlannedLane,
  planSequences,
  recordingPath,
  referenceFixture,
  writeRecording,
} from "./fidelity/dom0_plan.ts";

const lane: PlannedLane = { sequences: 200, seedBase: 1000, length: 50 };
const base = { recordMode: false, subsetSeed: 7, defaultSubset: 30 } as const;
const ref = {
  version: FIXTURE_VERSION,
  sequences: Array.from({ length: 200 }, (_, i) => ({ seed: 1000 + i, length: 50, trace: [] })),
};

describe("fidelity: the dom0 plan", () => {
  it("runs every sequence under the lane's full runtime and the same seeded subset under the other", () => {
    assert.equal(planSequences(lane, ref, { ...base, runtime: "deno" }).length, 200);
    const bun = planSequences(lane, ref, { ...base, runtime: "bun" });
    assert.equal(bun.length, 30);
    assert.deepEqual(bun, planSequences(lane, ref, { ...base, runtime: "bun" }));
    assert.deepEqual(bun.map((s) => s.seed), [...bun.map((s) => s.seed)].sort((a, b) => a - b));
    assert.ok(bun.every((s) => s.seed >= 1000 && s.seed < 1200 && s.length === 50));
    const bunFull = { ...lane, fullRuntime: "bun" as const, subsetSequences: 8 };
    assert.equal(planSequences(bunFull, ref, { ...base, runtime: "bun" }).length, 200);
    assert.equal(planSequences(bunFull, ref, { ...base, runtime: "deno" }).length, 8);
  });

  it("checks only checkSequences outside recording, and records all under the full runtime", () => {
    const checked = {
      ...lane,
      fullRuntime: "bun" as const,
      subsetSequences: 10,
      checkSequences: 20,
    };
    assert.equal(planSequences(checked, ref, { ...base, runtime: "bun" }).length, 20);
    assert.equal(planSequences(checked, ref, { ...base, runtime: "deno" }).length, 20);
    const recording = { ...base, recordMode: true };
    assert.equal(planSequences(checked, ref, { ...recording, runtime: "bun" }).length, 200);
    assert.equal(planSequences(checked, ref, { ...recording, runtime: "deno" }).length, 10);
    assert.equal(planSequences(checked, ref, { ...base, runtime: "deno", override: 3 }).length, 3);
  });

  it("takes the reference's sequences, or the lane's seeds without a usable reference", () => {
    const short = { version: FIXTURE_VERSION, sequences: ref.sequences.slice(5, 9) };
    assert.deepEqual(
      planSequences(lane, short, { ...base, runtime: "deno" }).map((s) => s.seed),
      [1005, 1006, 1007, 1008],
    );
    const old = { version: FIXTURE_VERSION - 1, sequences: short.sequences };
    assert.equal(planSequences(lane, old, { ...base, runtime: "deno" }).length, 200);
    assert.equal(planSequences(lane, null, { ...base, runtime: "deno" })[0].seed, 1000);
  });

  it("compares a run with a reference by seed and length and names what changed", () => {
    const seq = (seed: number, length: number, trace: string[]): RecordedSequence => ({
      seed,
      length,
      trace,
    });
    const reference = [seq(1, 2, ["a", "b"]), seq(2, 2, ["c", "d"]), seq(3, 2, ["e", "f"])];
    const run = [seq(1, 2, ["a", "b"]), seq(2, 2, ["c", "X"]), seq(3, 3, ["e", "f", "g"])];
    const result = compareWithReference(reference, run);
    assert.equal(result.compared, 2);
    assert.equal(result.operations, 4);
    assert.equal(result.changed.length, 1);
    assert.match(result.changed[0], /^seed 2 op 1: /);
  });

  it("writes a recording where the other runtime's reference reads it back; else the committed fixture", () => {
    const saved = process.env.XENCHAN_OUT;
    const out = mkdtempSync(join(tmpdir(), "xenchan-fidelity-"));
    try {
      const lane = { name: "dom0 loopback" };
      process.env.XENCHAN_OUT = out;
      assert.equal(recordingPath(lane, "bun"), `${out}/fidelity/dom0_loopback.bun.json.gz`);
      const recording = { version: FIXTURE_VERSION, lane: lane.name, sequences: ref.sequences };
      writeRecording(lane, "bun", recording);
      const fromBun = referenceFixture(lane, true, "bun");
      assert.equal(fromBun.from, "bun's recording of this boot");
      assert.deepEqual(fromBun.fixture, recording);
      const committed = referenceFixture(lane, false, "bun");
      assert.equal(committed.from, "the committed fixture");
      assert.equal(committed.fixture?.lane, "dom0 loopback");
      assert.equal(referenceFixture(lane, true, "deno").from, "the committed fixture");
      delete process.env.XENCHAN_OUT;
      assert.equal(recordingPath(lane, "bun"), null);
    } finally {
      if (saved === undefined) delete process.env.XENCHAN_OUT;
      else process.env.XENCHAN_OUT = saved;
      rmSync(out, { recursive: true, force: true });
    }
  });
});
