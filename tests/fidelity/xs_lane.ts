/**
 * The "dom0 xenstore" lane of the fidelity engine: XenStore sequences
 * (xs_ops.ts) run by one dom0 process over several connections, on C
 * xenstored 4.17 (which the simulated xenstored models; the dom0 test
 * switches the harness dom0 to cxenstored for it) and on the simulator.
 *
 * @module
 */
import { openXenStore, SimHypervisor } from "../../mod.ts";
import { firstDivergence, type RecordedSequence } from "./compare.ts";
import type { ReplayResult } from "./fixture_io.ts";
import type { ReplayFailure } from "./fixture_io.ts";
import { DOM0_XENSTORE_WEIGHTS, generateXsSequence, type XsOp, type XsWeights } from "./xs_ops.ts";
import { recordXsTrace, type XsTarget } from "./xs_run.ts";

/** A XenStore lane: its name, generator mix and default size. */
export interface XsLaneSpec {
  /** Words after "fidelity:" in the test tag. */
  readonly name: string;
  readonly weights: XsWeights;
  readonly length: number;
  readonly sequences: number;
  /** Seed of sequence i is seedBase + i. */
  readonly seedBase: number;
}

/** What the xenstore lane records about the daemon it ran on. */
export interface XsStartState {
  /** The daemon: "cxenstored" on real Xen (the simulator models it). */
  readonly daemon: string;
}

/** The dom0 xenstore lane. */
export const DOM0_XENSTORE: XsLaneSpec = {
  name: "dom0 xenstore",
  weights: DOM0_XENSTORE_WEIGHTS,
  length: 50,
  sequences: 200,
  seedBase: 0x5e5f0000,
};

/** The operations of the sequence of `seed` of `lane`. */
export function xsLaneSequence(lane: XsLaneSpec, seed: number, length = lane.length): XsOp[] {
  return generateXsSequence({ seed, length, weights: lane.weights });
}

/**
 * A fresh simulated xenstored for one sequence: a new SimHypervisor, one
 * simulated dom0 process whose connections are the sequence's. Never throws.
 */
export function simXsTarget(): XsTarget {
  const hv = new SimHypervisor();
  const backend = hv.backend(0);
  return { open: () => openXenStore({ backend }), settle: microtaskTurns };
}

/**
 * The simulated daemon answers and fires watches in microtasks, so its
 * events are with the iterators a few microtask turns after the round
 * trips; SIM_SETTLE_TURNS is many more than that (the host replay checks
 * the outcome against real Xen's trace either way).
 */
const SIM_SETTLE_TURNS = 32;

async function microtaskTurns(): Promise<void> {
  for (let i = 0; i < SIM_SETTLE_TURNS; i++) await Promise.resolve();
}

/** The real daemon through the FFI backend's XenStore transport (the socket as xs_open). */
export function ffiXsTarget(): XsTarget {
  return { open: () => openXenStore({ backend: "ffi" }) };
}

/**
 * Replays recorded XenStore sequences on a fresh simulated xenstored each
 * and compares the traces. Throws only for an engine error.
 */
export async function replayXsOnSim(
  lane: XsLaneSpec,
  sequences: readonly RecordedSequence[],
): Promise<ReplayResult> {
  const failures: ReplayFailure[] = [];
  let operations = 0;
  for (const rec of sequences) {
    const ops = xsLaneSequence(lane, rec.seed, rec.length);
    operations += ops.length;
    const trace = await recordXsTrace(ops, rec.seed, simXsTarget());
    const divergence = firstDivergence(rec.trace, trace);
    if (divergence) failures.push({ seed: rec.seed, divergence });
  }
  return { sequences: sequences.length, operations, failures };
}
