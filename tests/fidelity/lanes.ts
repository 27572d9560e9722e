/**
 * The lanes of the fidelity engine: which operations a lane generates, how
 * long its sequences are, and how it reaches each backend. Today: the dom0
 * loopback lane (one dom0 process talks to itself, domid 0 on both sides).
 * A dom0 <-> domU lane and XenStore operations plug in as further LaneSpecs
 * with their own weights (their op kinds join the Op union in ops.ts and an
 * executor branch in run.ts).
 *
 * @module
 */
import { type OpenOptions, SimHypervisor } from "../../mod.ts";
import { DOM0_LOOPBACK_WEIGHTS, generateSequence, type Op, type OpWeights } from "./ops.ts";
import type { RunTarget, RunTimings } from "./run.ts";

/** What a real dom0 kernel holds before any user-space program runs (measured, see fixtures). */
export interface Dom0StartState {
  /** Event channel ports the kernel holds (timers, IPIs, VIRQs, xenbus, console). */
  readonly kernelPorts: readonly number[];
  /** VIRQs the kernel bound on vCPU 0 (bindVirq answers EEXIST for them). */
  readonly kernelVirqs: readonly number[];
}

/** One lane: its name, test tag, generator mix and default size. */
export interface LaneSpec {
  /** Words after "fidelity:" in the test tag, e.g. "dom0 loopback". */
  readonly name: string;
  readonly weights: OpWeights;
  /** Operations per sequence. */
  readonly length: number;
  /** Sequences recorded by default. */
  readonly sequences: number;
  /** Seed of sequence i is seedBase + i. */
  readonly seedBase: number;
}

/** The dom0 loopback lane. */
export const DOM0_LOOPBACK: LaneSpec = {
  name: "dom0 loopback",
  weights: DOM0_LOOPBACK_WEIGHTS,
  length: 50,
  sequences: 200,
  seedBase: 0x5eed0000,
};

/** The test-name tag of a lane, counted by scripts/lib/junit.mjs. */
export function laneTag(lane: { readonly name: string }): string {
  return `[fidelity:${lane.name}]`;
}

/** The operations of sequence `index` of `lane`. */
export function laneSequence(lane: LaneSpec, seed: number, length = lane.length): Op[] {
  return generateSequence({ seed, length, weights: lane.weights });
}

/**
 * A fresh simulated dom0 for one sequence, started in the measured state:
 * a new SimHypervisor per call, so sequences never share state. Throws
 * XenUsageError for a start state the simulator refuses.
 */
export function simTarget(start: Dom0StartState, timings?: RunTimings): RunTarget {
  const hv = new SimHypervisor({
    dom0: { kernelPorts: start.kernelPorts, kernelVirqs: start.kernelVirqs },
  });
  return {
    options: { backend: hv.backend(0) },
    waitMs: 0,
    graceMs: 0,
    deferredEnd: () => {},
    beforeGrant: () => {},
    timings,
  };
}

/** Linux's deferred grant-end timer fires every HZ (1 s) while ends are pending; a margin more. */
export const DEFERRED_GRANT_SETTLE_MS = 1500;
/** Longest wait on real Xen for each event the lockstep simulator delivered (ms). */
export const REAL_DELIVERY_WAIT_MS = 2000;
/** Extra wait on real Xen after an operation that succeeded and can raise an event (ms). */
export const REAL_GRACE_MS = 4;

/** Blocks the calling thread for `ms` (Atomics.wait; fine in a test process). */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * When the last pending deferred grant end has surely completed
 * (performance.now() time). Module-wide: the kernel's free list outlives a
 * sequence, so a sequence that ends with an end pending makes the next
 * one's first grant operation wait.
 */
let grantsQuietAt = 0;

/**
 * The real backend (dom0 loopback through the FFI), with asynchronous
 * delivery waits and lazy waits for Linux's deferred grant ends: they are
 * paid only when a grant operation comes before the timer surely fired.
 * `timings`, if given, accumulates where the time went.
 */
export function ffiTarget(timings?: RunTimings): RunTarget {
  const options: OpenOptions = { backend: "ffi" };
  return {
    options,
    waitMs: REAL_DELIVERY_WAIT_MS,
    graceMs: REAL_GRACE_MS,
    deferredEnd: () => {
      grantsQuietAt = performance.now() + DEFERRED_GRANT_SETTLE_MS;
    },
    beforeGrant: () => {
      const left = grantsQuietAt - performance.now();
      if (left <= 0) return;
      sleepSync(Math.ceil(left));
      if (timings) timings.deferred += left;
    },
    timings,
  };
}
