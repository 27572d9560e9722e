/**
 * The lanes of the fidelity engine: which operations a lane generates, how
 * long its sequences are, and how it reaches each backend: the dom0
 * loopback lane (one dom0 process talks to itself, domid 0 on both sides),
 * the dom0 kill lane (a second dom0 process, killed mid-sequence) and the
 * domU lane (dom0 and a guest agent). The XenStore lane is in xs_lane.ts.
 *
 * @module
 */
import { spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { type OpenOptions, SimHypervisor } from "../../mod.ts";
import { PeerExecutor } from "../helpers/peer.ts";
import type { PeerCommand, PeerOutcome } from "../helpers/peer.ts";
import {
  DOM0_KILL_WEIGHTS,
  DOM0_LOOPBACK_WEIGHTS,
  DOMU_PEER_DOMIDS,
  DOMU_WEIGHTS,
  generateSequence,
  type Op,
  type OpWeights,
} from "./ops.ts";
import type { PeerLink, RunTarget, RunTimings } from "./run.ts";

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
  /** The peer domids dom0's operations draw from (default: the loopback lane's). */
  readonly peerDomids?: readonly number[];
  /**
   * The runtime that runs every sequence in dom0 (default "deno"); the other
   * runs a seeded subset. Bun for the kill lane: it starts a peer process
   * per kill, and Bun starts in a fraction of Deno's time.
   */
  readonly fullRuntime?: "deno" | "bun";
  /** Sequences the other runtime runs (default 30). */
  readonly subsetSequences?: number;
  /**
   * When set: outside recording mode every runtime re-runs only this many
   * sequences (a seeded subset of the committed fixture's) in dom0, so a lane
   * whose full run takes ten minutes and more under TCG still fits every CI
   * boot; recording (XENCHAN_FIDELITY_RECORD=1) runs all of them under
   * `fullRuntime`. The host replay always covers the whole fixture.
   */
  readonly checkSequences?: number;
}

/** The dom0 loopback lane. */
export const DOM0_LOOPBACK: LaneSpec = {
  name: "dom0 loopback",
  weights: DOM0_LOOPBACK_WEIGHTS,
  length: 50,
  sequences: 200,
  seedBase: 0x5eed0000,
};

/**
 * The dom0 kill lane: the loopback operations plus a second dom0 process
 * (the peer) that binds to the first one's ports, maps its grants (with
 * unmap notifications) and is killed with SIGKILL while holding them; the
 * first process records what it observes (notifications, cleared bytes,
 * ports left without a peer).
 */
export const DOM0_KILL: LaneSpec = {
  name: "dom0 kill",
  weights: DOM0_KILL_WEIGHTS,
  length: 50,
  sequences: 200,
  seedBase: 0x5e6a0000,
  fullRuntime: "bun",
  // Deno took over 25 minutes for fewer than 200 sequences in the harness dom0 (its child
  // processes start slowly under TCG); Bun ran 30 in 110 s, all 200 in 578 s.
  subsetSequences: 8,
  checkSequences: 30,
};

/**
 * The domU lane: dom0 and a real PV guest. The guest runs the peer agent
 * (tests/fixtures/domu_agent.ts) and executes the peer operations sent
 * through XenStore (tests/helpers/peer_rpc.ts); dom0's operations name the
 * guest with the GUEST domid operand. A sequence ends by closing the
 * agent's handles (a kill restarts the agent, seconds in a guest, so kills
 * are rare here).
 */
export const DOMU: LaneSpec = {
  name: "domU",
  weights: DOMU_WEIGHTS,
  length: 50,
  sequences: 200,
  seedBase: 0x5e700000,
  peerDomids: DOMU_PEER_DOMIDS,
  // One sequence takes about 8 s under Deno and 4 s under Bun in the harness (an RPC to the
  // guest per peer operation): Bun records all 200, every other run checks 20.
  fullRuntime: "bun",
  subsetSequences: 10,
  checkSequences: 20,
};

/** The start state of the domU lane: dom0's, and the ports the guest kernel holds. */
export interface DomUStartState extends Dom0StartState {
  readonly guestKernelPorts: readonly number[];
}

/** The test-name tag of a lane, counted by scripts/lib/junit.mjs. */
export function laneTag(lane: { readonly name: string }): string {
  return `[fidelity:${lane.name}]`;
}

/** The operations of sequence `index` of `lane`. */
export function laneSequence(lane: LaneSpec, seed: number, length = lane.length): Op[] {
  return generateSequence({ seed, length, weights: lane.weights, peerDomids: lane.peerDomids });
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
    spawnPeer: () => {
      const backend = hv.backend(0);
      const executor = new PeerExecutor({ backend });
      return Promise.resolve({
        call: (cmd) => executor.execute(cmd),
        kill: () => Promise.resolve(backend.crash()),
      });
    },
    peerPendingMs: 1,
  };
}

/**
 * A fresh simulated dom0 and guest for one domU sequence: the guest is a
 * new domain whose kernel holds `start.guestKernelPorts`, the peer a
 * process in it (kill: its crash). Throws XenUsageError for a start state
 * the simulator refuses.
 */
export function simDomUTarget(start: DomUStartState, timings?: RunTimings): RunTarget {
  const hv = new SimHypervisor({
    dom0: { kernelPorts: start.kernelPorts, kernelVirqs: start.kernelVirqs },
  });
  // A guest created by xl has libxl's seeded console and XenStore grants (refs 0 and 1) to dom0.
  const guest = hv.createDomain({ kernelPorts: start.guestKernelPorts, toolstackGrants: true });
  return {
    options: { backend: hv.backend(0) },
    waitMs: 0,
    graceMs: 0,
    deferredEnd: () => {},
    beforeGrant: () => {},
    timings,
    spawnPeer: () => {
      const backend = hv.backend(guest);
      const executor = new PeerExecutor({ backend });
      return Promise.resolve({
        call: (cmd) => executor.execute(cmd),
        kill: () => Promise.resolve(backend.crash()),
      });
    },
    peerPendingMs: 1,
    peerDomid: guest,
    peerEnd: "close",
  };
}

/** When the guest kernel's pending deferred grant ends surely completed (performance.now()). */
let guestGrantsQuietAt = 0;

/**
 * The real domU target: dom0 through the FFI backend, the guest agent
 * through `peer` (a link whose kill restarts the agent and resolves once
 * the fresh one answers; spawn hands out the same link). Waits for
 * deferred grant ends in both kernels as ffiTarget does in dom0's.
 */
export function ffiDomUTarget(
  peer: PeerLink,
  guestDomid: number,
  timings?: RunTimings,
): RunTarget {
  return {
    ...ffiTarget(timings),
    spawnPeer: () => Promise.resolve(peer),
    peerPendingMs: REAL_PEER_PENDING_MS,
    peerDomid: guestDomid,
    peerEnd: "close",
    peerDeferredEnd: () => {
      guestGrantsQuietAt = performance.now() + DEFERRED_GRANT_SETTLE_MS;
    },
    beforePeerGrant: () => {
      const left = guestGrantsQuietAt - performance.now();
      if (left <= 0) return;
      sleepSync(Math.ceil(left));
      if (timings) timings.deferred += left;
    },
  };
}

/** How long the real peer waits for each further event while draining (ms). */
export const REAL_PEER_PENDING_MS = 40;

/** The peer's program (a child process in dom0). */
const PEER_CHILD = fileURLToPath(new URL("./peer_child.ts", import.meta.url));

/**
 * Starts tests/fidelity/peer_child.ts under this runtime and resolves once
 * it is ready. Rejects when it exits first.
 */
function spawnChildPeer(): Promise<PeerLink> {
  const args = "Bun" in globalThis ? [PEER_CHILD] : ["run", "-A", "--no-check", PEER_CHILD];
  const child = spawn(process.execPath, args, { stdio: ["pipe", "pipe", "inherit"] });
  const waiting: ((line: string | null) => void)[] = [];
  const lines: string[] = [];
  let buffered = "";
  let ended = false;
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  const deliver = (line: string | null) => {
    const w = waiting.shift();
    if (w) w(line);
    else if (line !== null) lines.push(line);
  };
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (d: string) => {
    buffered += d;
    for (let i = buffered.indexOf("\n"); i >= 0; i = buffered.indexOf("\n")) {
      deliver(buffered.slice(0, i));
      buffered = buffered.slice(i + 1);
    }
  });
  child.stdout!.on("end", () => {
    ended = true;
    while (waiting.length) deliver(null);
  });
  const nextLine = () =>
    new Promise<string | null>((resolve) => {
      if (lines.length) resolve(lines.shift()!);
      else if (ended) resolve(null);
      else waiting.push(resolve);
    });
  const link: PeerLink = {
    async call(cmd: PeerCommand): Promise<PeerOutcome> {
      child.stdin!.write(JSON.stringify(cmd) + "\n");
      const line = await nextLine();
      if (line === null) throw new Error(`peer process ${child.pid} ended`);
      return JSON.parse(line) as PeerOutcome;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
  return nextLine().then((line) => {
    if (line !== "ready") throw new Error(`peer process did not start: ${line}`);
    return link;
  });
}

/** The next real peer, started while the previous one ran (startup is seconds under TCG). */
let sparePeer: Promise<PeerLink> | undefined;

/** Takes the spare peer process (or starts one) and starts the next spare. */
function takeChildPeer(): Promise<PeerLink> {
  const peer = sparePeer ?? spawnChildPeer();
  sparePeer = spawnChildPeer();
  sparePeer.catch(() => {});
  return peer;
}

/** Kills the spare peer process, if any (at the end of a lane's run). Never throws. */
export async function closeSparePeer(): Promise<void> {
  const spare = sparePeer;
  sparePeer = undefined;
  await spare?.then((p) => p.kill(), () => {});
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
    spawnPeer: takeChildPeer,
    peerPendingMs: REAL_PEER_PENDING_MS,
  };
}
