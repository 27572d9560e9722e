/**
 * The differential fidelity engine on real Xen (dom0 loopback lane): measures
 * what the real dom0 kernel holds, records the lane's sequences on the FFI
 * backend, replays them on a fresh simulated dom0 started in the measured
 * state, shrinks any divergence against live Xen (ddmin, each candidate run
 * on both), and compares the recording with the committed fixture so a change
 * in real Xen's answers fails here. The recording is written to
 * $XENCHAN_OUT/fidelity/<lane>.<runtime>.json, which the harness brings back
 * to the host (.xen/runs/test_xen/out/fidelity/) to be committed as
 * tests/fidelity/fixtures/<lane>.json.
 *
 * Knobs: XENCHAN_FIDELITY_SEQUENCES (default the lane's 200),
 * XENCHAN_FIDELITY_SHRINK (divergent sequences shrunk on live Xen, default 2),
 * XENCHAN_FIDELITY_BUDGET (oracle runs per shrink, default 30).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import process from "node:process";
import { openEventChannels, XenCallError } from "../../mod.ts";
import {
  divergenceReport,
  firstDivergence,
  FIXTURE_VERSION,
  type LaneFixture,
  type RecordedSequence,
  shrink,
  summaryLine,
} from "../fidelity/compare.ts";
import { readFixture, replayOnSim } from "../fidelity/fixture_io.ts";
import {
  DOM0_LOOPBACK,
  type Dom0StartState,
  ffiTarget,
  laneSequence,
  laneTag,
  simTarget,
} from "../fidelity/lanes.ts";
import type { Op } from "../fidelity/ops.ts";
import { recordTrace } from "../fidelity/run.ts";

const inDom0 = process.env.XENCHAN_DOM0 === "1";
const skip = inDom0 ? false : "runs only inside the Xen dom0 booted by scripts/test_xen.mjs";
const lane = DOM0_LOOPBACK;
const runtime = "Bun" in globalThis ? "bun" : "deno";

function envInt(name: string, fallback: number): number {
  const n = Number(process.env[name] ?? "");
  return Number.isInteger(n) && n > 0 ? n : fallback;
}

/**
 * What the dom0 kernel holds: binds unbound ports until 64 came back (Xen
 * hands out the lowest free port, so every lower port not returned is
 * held), then tries every VIRQ (EEXIST: the kernel bound it on vCPU 0).
 * Closing the handle frees everything again.
 */
async function measureStartState(): Promise<Dom0StartState> {
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

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return "?";
  }
}

interface Recording {
  readonly fixture: LaneFixture;
  readonly operations: number;
}

let recording: Promise<Recording> | undefined;

/** Records the lane once per process (both tests use it). */
function record(): Promise<Recording> {
  recording ??= (async () => {
    const startState = await measureStartState();
    const count = envInt("XENCHAN_FIDELITY_SEQUENCES", lane.sequences);
    const sequences: RecordedSequence[] = [];
    let operations = 0;
    const t0 = performance.now();
    for (let i = 0; i < count; i++) {
      const seed = lane.seedBase + i;
      const ops = laneSequence(lane, seed);
      operations += ops.length;
      sequences.push({ seed, length: ops.length, trace: await recordTrace(ops, ffiTarget()) });
    }
    const seconds = Math.round((performance.now() - t0) / 100) / 10;
    const xen = ["major", "minor"].map((f) => readText(`/sys/hypervisor/version/${f}`)).join(".") +
      readText("/sys/hypervisor/version/extra");
    const fixture: LaneFixture = {
      version: FIXTURE_VERSION,
      lane: lane.name,
      recordedOn: `Xen ${xen}, Linux ${
        readText("/proc/sys/kernel/osrelease")
      } PV dom0, ${runtime}, ${seconds} s`,
      startState,
      sequences,
    };
    const out = process.env.XENCHAN_OUT;
    if (out) {
      mkdirSync(`${out}/fidelity`, { recursive: true });
      const file = `${out}/fidelity/${lane.name.replaceAll(" ", "_")}.${runtime}.json`;
      writeFileSync(file, JSON.stringify(fixture) + "\n");
    }
    return { fixture, operations };
  })();
  return recording;
}

/** Whether `ops` still diverges: run on live Xen and on the simulator, compare. */
async function divergesLive(ops: readonly Op[], start: Dom0StartState): Promise<boolean> {
  const real = await recordTrace(ops, ffiTarget());
  const sim = await recordTrace(ops, simTarget(start));
  return firstDivergence(real, sim) !== null;
}

describe("fidelity on real Xen", { skip }, () => {
  it(`the simulator replays the sequences recorded on real Xen with 0 divergences ${laneTag(lane)}`, async () => {
    const { fixture } = await record();
    const result = await replayOnSim(lane, fixture.startState, fixture.sequences);
    console.log(`start state: ${JSON.stringify(fixture.startState)}; ${fixture.recordedOn}`);
    const reports: string[] = [];
    const toShrink = envInt("XENCHAN_FIDELITY_SHRINK", 2);
    for (const failure of result.failures.slice(0, toShrink)) {
      const ops = laneSequence(lane, failure.seed);
      const prefix = ops.slice(0, Math.min(ops.length, failure.divergence.index + 1));
      const budget = envInt("XENCHAN_FIDELITY_BUDGET", 30);
      const minimal = await shrink(prefix, (c) => divergesLive(c, fixture.startState), budget);
      const real = await recordTrace(minimal, ffiTarget());
      const sim = await recordTrace(minimal, simTarget(fixture.startState));
      const d = firstDivergence(real, sim) ?? failure.divergence;
      reports.push(divergenceReport(failure.seed, minimal, d));
    }
    for (const failure of result.failures.slice(toShrink)) {
      reports.push(divergenceReport(failure.seed, [], failure.divergence));
    }
    const line = `${
      summaryLine(result.sequences, result.operations, result.failures.length)
    } (${lane.name}, ${runtime})`;
    console.log(line);
    if (reports.length) console.log(reports.join("\n\n"));
    assert.equal(result.failures.length, 0, `${line}\n${reports.join("\n\n")}`);
  });

  it(`real Xen still answers as the committed fixture recorded ${laneTag(lane)}`, async () => {
    const committed = readFixture(lane);
    assert.ok(committed, "no committed fixture: copy the recording from the harness output");
    const { fixture } = await record();
    assert.deepEqual(fixture.startState, committed.startState, "the dom0 start state changed");
    const bySeed = new Map(committed.sequences.map((s) => [s.seed, s]));
    const changed: string[] = [];
    let compared = 0;
    for (const rec of fixture.sequences) {
      const old = bySeed.get(rec.seed);
      if (!old || old.length !== rec.length) continue;
      compared++;
      const d = firstDivergence(old.trace, rec.trace);
      if (d) changed.push(`seed ${rec.seed} op ${d.index}: was ${d.expected}, now ${d.actual}`);
    }
    console.log(
      `compared ${compared} sequences with the committed fixture, ${changed.length} changed`,
    );
    assert.ok(compared > 0, "no sequence of the recording is in the committed fixture");
    assert.deepEqual(changed, [], `real Xen's answers changed:\n${changed.join("\n")}`);
  });
});
