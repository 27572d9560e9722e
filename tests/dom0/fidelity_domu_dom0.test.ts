/**
 * The differential fidelity engine on real Xen, domU lane: dom0 (this
 * process, FFI backend) and a real PV guest running the peer agent
 * (tests/fixtures/domu_agent.ts under this runtime, reached through
 * XenStore: tests/helpers/peer_rpc.ts). One guest serves the whole run (the
 * vCPU rule allows one at a time). The test measures the ports dom0's and
 * the guest's kernels hold, then runs the sequences (tests/fidelity/ops.ts
 * DOMU_WEIGHTS) in lockstep with a fresh simulated dom0 and guest per
 * sequence (lanes.ts simDomUTarget), and compares each real trace with the
 * simulator's (0 divergences) and with the committed fixture
 * tests/fidelity/fixtures/domU.json (real Xen's answers must not change).
 * The guest's domid is written `G` in the traces (it differs between boots
 * and from the simulator's). Recording, reference and knobs as in
 * fidelity_dom0.test.ts (XENCHAN_FIDELITY_RECORD, _SEQUENCES, and
 * XENCHAN_FIDELITY_DOMU_SEQUENCES for this lane alone). Recording, Bun runs
 * all 200 sequences and Deno a seeded subset (lanes.ts DOMU); otherwise each
 * runtime checks DOMU.checkSequences of the committed fixture's sequences
 * (a full run takes about 13 min under Bun, 27 under Deno: too long for every
 * boot; the host replay covers all of them).
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { openXenStore, type XenStore } from "../../mod.ts";
import {
  divergenceReport,
  firstDivergence,
  FIXTURE_VERSION,
  type LaneFixture,
  type RecordedSequence,
  summaryLine,
} from "../fidelity/compare.ts";
import {
  compareWithReference,
  envCount,
  hostVersions,
  measureDom0StartState,
  planSequences,
  referenceFixture,
  writeRecording,
} from "../fidelity/dom0_plan.ts";
import {
  DOMU,
  type DomUStartState,
  ffiDomUTarget,
  laneSequence,
  laneTag,
  simDomUTarget,
} from "../fidelity/lanes.ts";
import { newTimings, type PeerLink, recordLockstep } from "../fidelity/run.ts";
import { type RunningGuest, startGuest, whyNoGuests } from "../helpers/guest.ts";
import type { Peer } from "../helpers/peer.ts";
import { connectRpcPeer } from "../helpers/peer_rpc.ts";

const skip = whyNoGuests() ?? false;
const lane = DOMU;
const runtime = "Bun" in globalThis ? "bun" : "deno";
const other = runtime === "bun" ? "deno" : "bun";
const recordMode = process.env.XENCHAN_FIDELITY_RECORD === "1";
const SUBSET_SEQUENCES = 30;
const SUBSET_SEED = 0x5b5e9;
const RUN_TIMEOUT_MS = 1_500_000;

type Fixture = LaneFixture<DomUStartState>;

/** The guest kernel's ports: the agent binds 32 unbound ports, then closes its handles. */
async function measureGuest(peer: Peer): Promise<number[]> {
  const free = new Set<number>();
  for (let i = 0; i < 32; i++) free.add(await peer.bindUnbound(0));
  await peer.close();
  const top = Math.max(...free);
  const held: number[] = [];
  for (let p = 1; p < top; p++) if (!free.has(p)) held.push(p);
  return held;
}

function agentCommand(): string {
  const run = runtime === "deno" ? "deno run -A" : "bun run";
  return `while :; do ${run} tests/fixtures/domu_agent.ts; s=$?; echo "agent exit $s"; ` +
    `[ $s -eq 137 ] || exit $s; done`;
}

interface Run {
  readonly fixture: Fixture;
  readonly operations: number;
  readonly divergent: { seed: number; index: number; real?: string; sim?: string }[];
  readonly seconds: number;
  readonly guestDomid: number;
}

let xs: XenStore | undefined;
let guest: RunningGuest | undefined;
let running: Promise<Run> | undefined;

function run(): Promise<Run> {
  running ??= (async () => {
    xs = await openXenStore({ backend: "ffi" });
    guest = await startGuest(agentCommand(), { runtime, timeoutS: 240 });
    let peer: Peer;
    try {
      peer = await connectRpcPeer(xs, guest.domid);
    } catch (error) {
      throw new Error(
        `agent in d${guest.domid}: ${(error as Error).message}\n${await guest.output()}`,
      );
    }
    const link: PeerLink = { call: (cmd) => peer.call(cmd), kill: () => peer.kill() };
    const startState: DomUStartState = {
      ...await measureDom0StartState(),
      guestKernelPorts: await measureGuest(peer),
    };
    const { fixture: ref } = referenceFixture<DomUStartState>(lane, recordMode, other);
    const sequences: RecordedSequence[] = [];
    const divergent: Run["divergent"] = [];
    let operations = 0;
    const timings = newTimings();
    const t0 = performance.now();
    for (
      const { seed, length } of planSequences(lane, ref, {
        runtime,
        recordMode,
        subsetSeed: SUBSET_SEED,
        defaultSubset: SUBSET_SEQUENCES,
        override: envCount("XENCHAN_FIDELITY_DOMU_SEQUENCES") ??
          envCount("XENCHAN_FIDELITY_SEQUENCES"),
      })
    ) {
      const ops = laneSequence(lane, seed, length);
      operations += ops.length;
      const { real, sim } = await recordLockstep(
        ops,
        ffiDomUTarget(link, guest.domid, timings),
        simDomUTarget(startState),
      );
      sequences.push({ seed, length, trace: real });
      const d = firstDivergence(real, sim);
      if (d) divergent.push({ seed, index: d.index, real: d.expected, sim: d.actual });
    }
    const seconds = Math.round((performance.now() - t0) / 100) / 10;
    const { xen, linux } = hostVersions();
    const fixture: Fixture = {
      version: FIXTURE_VERSION,
      lane: lane.name,
      recordedOn: `Xen ${xen}, Linux ${linux} PV dom0 and a 1-vCPU PV guest, ${runtime}`,
      startState,
      sequences,
    };
    if (recordMode) writeRecording(lane, runtime, fixture);
    return { fixture, operations, divergent, seconds, guestDomid: guest.domid };
  })();
  return running;
}

describe("fidelity on real Xen: dom0 and a guest", { skip }, () => {
  after(async () => {
    await guest?.destroy();
    xs?.close();
  });

  it(`the simulator answers as real Xen with a guest, 0 divergences ${laneTag(lane)}`, {
    timeout: RUN_TIMEOUT_MS,
  }, async () => {
    const { fixture, operations, divergent, seconds, guestDomid } = await run();
    console.log(
      `start state: ${JSON.stringify(fixture.startState)}; guest d${guestDomid}; ` +
        `${fixture.recordedOn}; ${fixture.sequences.length} sequences in ${seconds} s`,
    );
    const reports = divergent.map((f) =>
      divergenceReport(
        f.seed,
        laneSequence(lane, f.seed).slice(0, f.index + 1),
        { index: f.index, expected: f.real, actual: f.sim },
      )
    );
    const line = `${
      summaryLine(fixture.sequences.length, operations, divergent.length)
    } (${lane.name}, ${runtime}, real Xen against the simulator)`;
    console.log(line);
    if (reports.length) console.log(reports.slice(0, 5).join("\n\n"));
    assert.equal(divergent.length, 0, `${line}\n${reports.slice(0, 5).join("\n\n")}`);
  });

  it(`real Xen still answers as the reference recording ${laneTag(lane)}`, {
    timeout: RUN_TIMEOUT_MS,
  }, async () => {
    const { fixture: ref, from } = referenceFixture<DomUStartState>(lane, recordMode, other);
    const { fixture } = await run();
    assert.ok(ref, "no committed fixture: record one (XENCHAN_FIDELITY_RECORD=1)");
    assert.equal(ref.version, FIXTURE_VERSION, `${from} was recorded by another engine version`);
    assert.deepEqual(fixture.startState, ref.startState, "the start state changed");
    const { compared, operations: comparedOps, changed } = compareWithReference(
      ref.sequences,
      fixture.sequences,
    );
    console.log(
      `${summaryLine(compared, comparedOps, changed.length)} (${lane.name}, ${runtime}, ` +
        `real Xen against ${from})`,
    );
    assert.ok(compared > 0, `no sequence of this run is in ${from}`);
    assert.deepEqual(changed, [], `real Xen's answers changed:\n${changed.join("\n")}`);
  });
});
