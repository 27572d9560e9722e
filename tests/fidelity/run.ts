/**
 * The executor and trace recorder of the differential fidelity engine: runs
 * an operation sequence (ops.ts) against the public API on one backend and
 * records, for every operation, the call with its resolved arguments, its
 * result (or its error class, C call and errno code), the events delivered
 * in response, and the bytes read back from shared memory.
 *
 * The normalisation, applied while recording (the same on every backend,
 * see also README "Fidelity"):
 * 1. Grant refs are renamed by first appearance within the sequence: the
 *    refs of the first share are `g0`, `g1`, ..., the next new ref handed
 *    out gets the next name, and a ref handed out again (Linux's free list
 *    is LIFO) keeps its name. Linux takes refs from one free list shared by
 *    the whole dom0 kernel, so which numbers a sequence gets first depends on
 *    the order earlier sequences (and the kernel) left that list in: history
 *    outside the sequence. What the sequence itself does with the list (a
 *    freed ref comes back first, a ref whose end was deferred does not come
 *    back while mapped) survives the renaming and is compared. Literal refs
 *    are only values that can never be granted (ops.ts LITERAL_REFS) and are
 *    kept as numbers. Port numbers are NOT renamed: Xen hands out the lowest
 *    free port of the domain, which is history-free once every handle of the
 *    previous sequence is closed, so they must match exactly.
 * 2. Events: after each operation every open event channel handle is
 *    drained (tryPending). Which operation an event belongs to is kept, the
 *    order within one operation is not (two vCPUs fill the ring in either
 *    order): the ports delivered for one operation are recorded as a sorted
 *    list of `e<handle>:<port>`. Real Xen delivers asynchronously (the upcall
 *    may run on another vCPU after the hypercall returned, and the event Xen
 *    raises on a new interdomain port can take more than 40 ms under TCG), so
 *    on real Xen the recorder is run in lockstep with the simulator
 *    (recordLockstep): it waits up to RunTarget.waitMs for exactly the events
 *    the simulator delivered for the same operation, then RunTarget.graceMs
 *    more after an operation that succeeded and can raise an event. The
 *    simulator's answer only decides how long to wait, never what is
 *    recorded: an event the simulator misses arrives on real Xen anyway (in
 *    this entry or a later one) and one it invents is recorded as missing,
 *    so both still diverge.
 * 3. Errors: the class name, and for XenCallError the C function and errno
 *    code; never the message (its words differ between backends).
 * 4. File descriptors and mapping addresses are not recorded (the
 *    simulator's are virtual). GNTST statuses and memory contents are
 *    recorded as they are.
 * 5. Engine rules that keep real runs reproducible, applied on every
 *    backend alike: no write through a read-only mapping (real Xen kills
 *    the process with SIGSEGV, the simulator cannot fault); when a grant's
 *    end was deferred by the kernel (its share released while mapped) and
 *    the last mapping went, the next operation that allocates, frees or
 *    resolves a grant ref first waits (RunTarget.beforeGrant) for Linux's
 *    deferred-end timer (HZ) to put the ref back on the free list, also
 *    across sequences.
 * 6. The simulator's one documented limitation (README Limitations): it
 *    cannot map several refs as one range unless they are adjacent pages of
 *    one share, in order. The recorder decides that condition from its own
 *    bookkeeping; for such a multi-ref map real Xen's map is made (so its
 *    acceptance or error is still checked) and unmapped at once, and an
 *    accepted map is recorded as `simlimit`, as is the simulator's
 *    limitation error for the same condition.
 *
 * @module
 */
import {
  type EventChannels,
  type GrantCopySegment,
  type GrantMapping,
  type GrantShare,
  type GrantTable,
  openEventChannels,
  openGrantShare,
  openGrantTable,
  type OpenOptions,
  type SharedGrant,
  XenCallError,
  XenError,
  XenUsageError,
} from "../../mod.ts";
import {
  type CopySide,
  GUEST,
  LITERAL_PORTS,
  NO_REF,
  type NotifyOperands,
  type Op,
  type Operand,
  type PeerOp,
} from "./ops.ts";
import type { PeerCommand, PeerOutcome } from "../helpers/peer.ts";

/** The most handles of one kind a sequence opens (later opens are skipped). */
export const MAX_HANDLES = 6;
/** The most events recorded per operation and handle (a runaway guard). */
const MAX_EVENTS_PER_DRAIN = 256;

/** How the recorder reaches one backend for one sequence. */
export interface RunTarget {
  /** Options for every open* call of the sequence (a fresh world per call). */
  readonly options: OpenOptions;
  /** Longest wait for each event the lockstep simulator delivered (ms; 0: no waits). */
  readonly waitMs: number;
  /** Extra wait after an operation that succeeded and can raise an event (ms). */
  readonly graceMs: number;
  /** Called right after the last mapping of a deferred grant went (its end is pending). */
  deferredEnd(): void;
  /** Called before every grant operation: waits until pending deferred ends completed. */
  beforeGrant(): void;
  /** Where the time went, summed over every recorder on this target (optional). */
  readonly timings?: RunTimings;
  /** Starts the peer process of a lane with peer operations (absent: they are skipped). */
  readonly spawnPeer?: () => Promise<PeerLink>;
  /** How long the peer waits for each further event when draining (ms). */
  readonly peerPendingMs?: number;
  /**
   * The peer's domain (default 0: a second dom0 process). Another domid
   * (the domU lane) gives the peer its own port and ref lists, and GUEST
   * operands resolve to it.
   */
  readonly peerDomid?: number;
  /** How a sequence ends a live peer: "kill" (default) or "close" (its handles only). */
  readonly peerEnd?: "kill" | "close";
  /** Called when the last dom0 mapping of a peer ref whose share the peer released went. */
  peerDeferredEnd?(): void;
  /** Called before the peer shares: waits until the peer kernel's deferred ends completed. */
  beforePeerGrant?(): void;
}

/**
 * The second dom0 process of the kill lane: PeerCommands executed by a
 * PeerExecutor (tests/helpers/peer.ts) in another process.
 */
export interface PeerLink {
  /** Runs one command there; rejects only when the process is unreachable. */
  call(cmd: PeerCommand): Promise<PeerOutcome>;
  /**
   * Kills the process (SIGKILL; on the simulator its crash) and resolves
   * once it is gone and its kernel released its handles. Idempotent.
   */
  kill(): Promise<void>;
}

/** Milliseconds a recording spent, summed: in all, and waiting (rule 2 and rule 5). */
export interface RunTimings {
  total: number;
  expected: number;
  grace: number;
  deferred: number;
}

/** Fresh zeroed timings. */
export function newTimings(): RunTimings {
  return { total: 0, expected: 0, grace: 0, deferred: 0 };
}

/** One recorded operation: `call => result | ev ...`. */
export type TraceEntry = string;

/** Operations that may raise an event, so the recorder waits for delivery after them. */
const EVENTFUL: ReadonlySet<Op["kind"]> = new Set([
  "notify",
  "bindInterdomain",
  "unmask",
  "unshare",
  "shrClose",
  "unmap",
  "tblClose",
  "evtClose",
  "unbind",
  "peerBindInterdomain",
  "peerNotify",
  "peerUnbind",
  "peerMap",
  "peerRelease",
  "peerKill",
]);

/** The text recorded for a thrown value. */
export function errorText(error: unknown): string {
  if (error instanceof XenCallError) return `!${error.name}:${error.call}:${error.code}`;
  if (error instanceof XenError) return `!${error.name}`;
  return `!${(error as Error)?.name ?? typeof error}`;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

interface Tracked<T> {
  readonly value: T;
  readonly writable: boolean;
  readonly refs: readonly number[];
  /** The peer domain's refs a dom0 mapping holds (domU lane). */
  readonly peerRefs?: readonly number[];
}

/** The state of one run: what the slots of later operations resolve against. */
class World {
  readonly evt: EventChannels[] = [];
  readonly shr: GrantShare[] = [];
  readonly tbl: GrantTable[] = [];
  readonly ports: number[] = [];
  readonly refs: number[] = [];
  /** Names of the refs handed out so far, by first appearance (normalisation rule 1). */
  readonly refNames = new Map<number, string>();
  readonly shares: Tracked<SharedGrant>[] = [];
  readonly maps: Tracked<GrantMapping>[] = [];
  /** Live mappings per granted ref of dom0 (the loopback granter). */
  readonly mapped = new Map<number, number>();
  /** Refs whose share was released while still mapped (Linux defers their end). */
  readonly deferred = new Set<number>();
  settleNeeded = false;
  /** The peer process (kill lane), while it lives. */
  peer: PeerLink | undefined;
  /** Peer processes started so far. */
  peers = 0;
  /** The peer's mappings: its id, the refs (dom0's), whether writable and released. */
  readonly peerMaps: { id: number; refs: number[]; writable: boolean; released: boolean }[] = [];
  /** The peer's domain (0: a dom0 process sharing dom0's lists). */
  peerDomid = 0;
  /** The peer domain's ports and refs (domU lane; in dom0 the peer uses `ports`/`refs`). */
  readonly peerPorts: number[] = [];
  readonly peerRefs: number[] = [];
  readonly peerRefNames = new Map<number, string>();
  /** The peer's shares (domU lane): id, refs, released. */
  readonly peerShares: { id: number; refs: number[]; released: boolean }[] = [];
  /** Live dom0 mappings per peer-domain ref, and those whose share the peer released. */
  readonly peerMapped = new Map<number, number>();
  readonly peerDeferred = new Set<number>();
  peerSettleNeeded = false;

  /** Whether the peer is in another domain, with its own lists. */
  get separate(): boolean {
    return this.peerDomid !== 0;
  }

  /** A domid operand: GUEST is the peer's domain. */
  dom(d: number): number {
    return d === GUEST ? this.peerDomid : d;
  }

  /** The trace text of a domid operand. */
  domText(d: number): string {
    return d === GUEST ? "G" : String(d);
  }

  /** Whether a resolved domid names the peer's separate domain. */
  isPeerDomain(domid: number): boolean {
    return this.separate && domid === this.peerDomid;
  }

  /** A port of the peer's domain (domU lane), else a port of dom0. */
  peerPort(o: Operand): number {
    if (!this.separate) return this.port(o);
    if ("lit" in o) return o.lit;
    return this.peerPorts.length
      ? this.peerPorts[o.slot % this.peerPorts.length]
      : LITERAL_PORTS[1];
  }

  /** A ref of the peer's domain (domU lane). */
  peerRef(o: Operand): number {
    if ("lit" in o) return o.lit;
    return this.peerRefs.length ? this.peerRefs[o.slot % this.peerRefs.length] : NO_REF;
  }

  /** The text of a peer-domain ref: `h<n>` by first appearance (rule 1), else the number. */
  peerRefText(ref: number): string {
    return this.peerRefNames.get(ref) ?? String(ref);
  }

  /** The ref a map towards `domid` uses, and its text. */
  refFor(domid: number, o: Operand): [number, string] {
    if (this.isPeerDomain(domid)) {
      const r = this.peerRef(o);
      return [r, this.peerRefText(r)];
    }
    const r = this.ref(o);
    return [r, this.refText(r)];
  }

  /** The peer released its shares (close or kill): refs dom0 still maps are deferred. */
  peerSharesGone(): void {
    for (const s of this.peerShares) {
      if (s.released) continue;
      s.released = true;
      for (const r of s.refs) if ((this.peerMapped.get(r) ?? 0) > 0) this.peerDeferred.add(r);
    }
    for (const m of this.peerMaps) {
      if (m.released) continue;
      m.released = true;
      this.dropRefs(m.refs);
    }
  }

  port(o: Operand): number {
    if ("lit" in o) return o.lit;
    return this.ports.length ? this.ports[o.slot % this.ports.length] : LITERAL_PORTS[1];
  }

  ref(o: Operand): number {
    if ("lit" in o) return o.lit;
    return this.refs.length ? this.refs[o.slot % this.refs.length] : NO_REF;
  }

  /** Records refs handed out by a share and names the new ones. */
  handedOut(refs: readonly number[]): void {
    for (const r of refs) if (!this.refNames.has(r)) this.refNames.set(r, `g${this.refNames.size}`);
    this.refs.push(...refs);
  }

  /** The trace text of a ref: its name if it was handed out in this sequence, else the number. */
  refText(ref: number): string {
    return this.refNames.get(ref) ?? String(ref);
  }

  /**
   * Whether the simulator can map `refs` of `domids` as one range: fewer
   * than two refs, any foreign domid (such a map fails on both backends
   * before the layout matters), refs not granted here (likewise), or
   * adjacent pages of the share that holds the first ref, in order
   * (normalisation rule 6).
   */
  mappable(domids: readonly number[], refs: readonly number[]): boolean {
    if (refs.length < 2 || domids.some((d) => d !== 0)) return true;
    for (let k = this.shares.length - 1; k >= 0; k--) {
      const t = this.shares[k];
      const i = t.refs.indexOf(refs[0]);
      if (i < 0 || (t.value.released && !this.deferred.has(refs[0]))) continue;
      return refs.every((r, j) => t.refs[i + j] === r);
    }
    return true;
  }

  addMapping(
    mapping: GrantMapping,
    domids: readonly number[],
    refs: readonly number[],
    w: boolean,
  ) {
    const peerRefs = refs.filter((_, i) => this.isPeerDomain(domids[i]));
    this.maps.push({
      value: mapping,
      writable: w,
      refs: refs.filter((_, i) => domids[i] === 0),
      peerRefs,
    });
    for (const [i, ref] of refs.entries()) {
      if (domids[i] === 0) this.mapped.set(ref, (this.mapped.get(ref) ?? 0) + 1);
    }
    for (const ref of peerRefs) this.peerMapped.set(ref, (this.peerMapped.get(ref) ?? 0) + 1);
  }

  /** A mapping went away (unmap or its handle closed): ends deferred grants. */
  dropMapping(t: Tracked<GrantMapping>): void {
    this.dropRefs(t.refs);
    for (const ref of t.peerRefs ?? []) {
      const n = (this.peerMapped.get(ref) ?? 1) - 1;
      if (n > 0) {
        this.peerMapped.set(ref, n);
        continue;
      }
      this.peerMapped.delete(ref);
      if (this.peerDeferred.delete(ref)) this.peerSettleNeeded = true;
    }
  }

  /** Mappings of dom0's `refs` went away (by either process): ends deferred grants. */
  dropRefs(refs: readonly number[]): void {
    for (const ref of refs) {
      const n = (this.mapped.get(ref) ?? 1) - 1;
      if (n > 0) {
        this.mapped.set(ref, n);
        continue;
      }
      this.mapped.delete(ref);
      if (this.deferred.delete(ref)) this.settleNeeded = true;
    }
  }

  /** A share went away: refs still mapped are deferred by the kernel. */
  dropShare(t: Tracked<SharedGrant>): void {
    for (const ref of t.refs) if ((this.mapped.get(ref) ?? 0) > 0) this.deferred.add(ref);
  }
}

/**
 * Resolves a slot: slots with `slot % 8 === 7` pick among every item (so
 * closed handles and released ranges are used too, for their errors); the
 * others pick among the live items when there are any.
 */
function pick<T>(list: readonly T[], slot: number, live?: (item: T) => boolean): T | undefined {
  const pool = live && slot % 8 !== 7 ? list.filter(live) : list;
  const from = pool.length ? pool : list;
  return from.length ? from[Math.floor(slot / 8) % from.length] : undefined;
}

const liveHandle = (h: { readonly closed: boolean }) => !h.closed;
const liveRange = (t: Tracked<SharedGrant | GrantMapping>) => !t.value.released;

/** Grant operations that may allocate, free or resolve a ref (they wait for deferred ends). */
const GRANT_REF_OPS: ReadonlySet<Op["kind"]> = new Set([
  "shrClose",
  "share",
  "shareNotify",
  "unshare",
  "map",
  "mapRefs",
  "mapDomain",
  "mapNotify",
  "copy",
  "peerMap",
]);

/** The events of a trace entry (`e<handle>:<port>` texts), in recorded order. */
export function entryEvents(entry: TraceEntry): string[] {
  const at = entry.lastIndexOf(" | ev ");
  return at < 0 ? [] : entry.slice(at + 6).split(",");
}

/**
 * Records one sequence on one backend, operation by operation, so that two
 * backends can be driven in lockstep (recordLockstep). Not reentrant: one
 * step at a time. `finish` closes everything the run opened.
 */
export class TraceRecorder {
  readonly #world = new World();
  readonly #target: RunTarget;
  /** The entries recorded so far. */
  readonly trace: TraceEntry[] = [];
  #finished = false;

  /** A recorder over a fresh world on `target`. */
  constructor(target: RunTarget) {
    this.#target = target;
    this.#world.peerDomid = target.peerDomid ?? 0;
  }

  /**
   * Runs one operation and records its entry. `expected` are the events to
   * wait for (normalisation rule 2; the lockstep simulator's events for the
   * same operation), waiting at most target.waitMs. Returns the entry.
   * Throws only for an engine error (an operation's own errors are recorded).
   */
  async step(op: Op, expected: readonly string[] = []): Promise<TraceEntry> {
    const t0 = performance.now();
    const world = this.#world;
    if (GRANT_REF_OPS.has(op.kind)) this.#target.beforeGrant();
    const [call, out] = await execute(world, op, this.#target);
    const succeeded = EVENTFUL.has(op.kind) && !out.startsWith("!") && !out.startsWith("skip");
    const events = drain(world, this.#target, expected, succeeded);
    if (world.settleNeeded) {
      world.settleNeeded = false;
      this.#target.deferredEnd();
    }
    if (world.peerSettleNeeded) {
      world.peerSettleNeeded = false;
      this.#target.peerDeferredEnd?.();
    }
    const e = entry(call, out, events);
    this.trace.push(e);
    if (this.#target.timings) this.#target.timings.total += performance.now() - t0;
    return e;
  }

  /**
   * Kills the peer if one lives (the kill lane's sequences end so), as a
   * `peerKill` step waiting for `expected`; returns its entry, or null when
   * no peer lives (nothing is recorded).
   */
  async endPeer(expected: readonly string[] = []): Promise<TraceEntry | null> {
    if (!this.#world.peer) return null;
    const kind = this.#target.peerEnd === "close" ? "peerClose" : "peerKill";
    return await this.step({ kind }, expected);
  }

  /** Kills the peer without recording (cleanup after an engine error). Never throws. */
  async abandonPeer(): Promise<void> {
    const peer = this.#world.peer;
    this.#world.peer = undefined;
    await peer?.kill().catch(() => {});
  }

  /**
   * Records the final `teardown` entry: every table handle closed, then
   * every share handle, then every event channel handle, with the events
   * that raised (waiting for `expected` as step does). Idempotent: a second
   * call records nothing and returns the first entry.
   */
  finish(expected: readonly string[] = []): TraceEntry {
    if (this.#finished) return this.trace[this.trace.length - 1];
    this.#finished = true;
    const t0 = performance.now();
    const world = this.#world;
    const target = this.#target;
    const events: string[] = [];
    for (const t of world.tbl) t.close();
    for (const m of world.maps) world.dropMapping(m);
    if (world.peerSettleNeeded) {
      world.peerSettleNeeded = false;
      target.peerDeferredEnd?.();
    }
    events.push(...drain(world, target, [], world.tbl.length > 0));
    if (world.settleNeeded) {
      world.settleNeeded = false;
      target.deferredEnd();
    }
    if (world.shr.length) target.beforeGrant();
    for (const s of world.shr) s.close();
    events.push(...drain(world, target, expected, world.shr.length > 0, events));
    for (const e of world.evt) e.close();
    const e = entry("teardown", "ok", events.sort());
    this.trace.push(e);
    if (target.timings) target.timings.total += performance.now() - t0;
    return e;
  }
}

/**
 * Runs `ops` on `target` alone and returns the trace: one entry per
 * operation and a final `teardown` entry. Without a lockstep partner no
 * event is waited for, which is exact on the simulator (it delivers
 * synchronously). Every handle the run opened is closed before it returns,
 * also when an operation threw something unexpected (which is rethrown).
 */
export async function recordTrace(ops: readonly Op[], target: RunTarget): Promise<TraceEntry[]> {
  const rec = new TraceRecorder(target);
  try {
    for (const op of ops) await rec.step(op);
    await rec.endPeer();
  } finally {
    await rec.abandonPeer();
    rec.finish();
  }
  return rec.trace;
}

/** The traces of one sequence run in lockstep. */
export interface LockstepTraces {
  readonly real: readonly TraceEntry[];
  readonly sim: readonly TraceEntry[];
}

/**
 * Runs `ops` on `sim` and `real` in lockstep: each operation first on the
 * simulator, then on real Xen, which waits for the events the simulator
 * delivered (normalisation rule 2). Returns both traces. Every handle both
 * runs opened is closed before it returns; an engine error is rethrown.
 */
export async function recordLockstep(
  ops: readonly Op[],
  real: RunTarget,
  sim: RunTarget,
): Promise<LockstepTraces> {
  const r = new TraceRecorder(real);
  const s = new TraceRecorder(sim);
  try {
    for (const op of ops) await r.step(op, entryEvents(await s.step(op)));
    const simKill = await s.endPeer();
    await r.endPeer(simKill ? entryEvents(simKill) : []);
    r.finish(entryEvents(s.finish()));
  } finally {
    await s.abandonPeer();
    await r.abandonPeer();
    s.finish();
    r.finish();
  }
  return { real: r.trace, sim: s.trace };
}

function entry(call: string, out: string, events: string[]): TraceEntry {
  return events.length ? `${call} => ${out} | ev ${events.join(",")}` : `${call} => ${out}`;
}

/**
 * Drains every open event channel handle and returns the sorted list of
 * `e<handle>:<port>` (or `e<handle>!<error>`) it took. First whatever is
 * ready; then, with target.waitMs > 0, it waits for each event of `expected`
 * not yet taken (nor in `seen`), on that event's handle, until a deadline
 * waitMs away (or the handle is closed); then, when `eventful`, it waits
 * target.graceMs more for anything else (the wait on one handle lets the
 * others' events queue meanwhile) and takes what is ready once more.
 */
function drain(
  world: World,
  target: RunTarget,
  expected: readonly string[],
  eventful: boolean,
  seen: readonly string[] = [],
): string[] {
  const got: string[] = [];
  const open = world.evt.map((h, i) => [h, i] as const).filter(([h]) => !h.closed);
  sweep(open, got);
  if (target.waitMs > 0 && open.length > 0) {
    const t0 = performance.now();
    const deadline = t0 + target.waitMs;
    for (;;) {
      const missing = firstMissing(expected, [...seen, ...got]);
      if (missing === undefined) break;
      const h = world.evt[missing];
      const left = Math.ceil(deadline - performance.now());
      if (!h || h.closed || left <= 0) break;
      const port = pendingOrError(h, left, got, missing);
      if (port !== null) got.push(`e${missing}:${port}`);
      else if (got.at(-1)?.startsWith(`e${missing}!`)) break;
      sweep(open, got);
    }
    const t1 = performance.now();
    if (target.timings) target.timings.expected += t1 - t0;
    if (eventful && target.graceMs > 0) {
      const graceEnd = t1 + target.graceMs;
      for (const [h, i] of open) {
        for (let n = 0; n < MAX_EVENTS_PER_DRAIN; n++) {
          const left = Math.ceil(graceEnd - performance.now());
          if (left <= 0) break;
          const port = pendingOrError(h, left, got, i);
          if (port === null) break;
          got.push(`e${i}:${port}`);
        }
      }
      sweep(open, got);
      if (target.timings) target.timings.grace += performance.now() - t1;
    }
  }
  return got.sort();
}

/** The handle index of the first event of `expected` not covered by `have` (a multiset). */
function firstMissing(expected: readonly string[], have: readonly string[]): number | undefined {
  const left = new Map<string, number>();
  for (const e of have) left.set(e, (left.get(e) ?? 0) + 1);
  for (const e of expected) {
    const n = left.get(e) ?? 0;
    if (n > 0) {
      left.set(e, n - 1);
      continue;
    }
    const m = /^e(\d+):/.exec(e);
    if (m) return Number(m[1]);
  }
  return undefined;
}

/** Takes whatever is ready on the open handles until a pass finds nothing. */
function sweep(open: readonly (readonly [EventChannels, number])[], got: string[]): void {
  for (let progress = true, rounds = 0; progress && rounds < MAX_EVENTS_PER_DRAIN; rounds++) {
    progress = false;
    for (const [h, i] of open) {
      const port = pendingOrError(h, 0, got, i);
      if (port === null) continue;
      got.push(`e${i}:${port}`);
      progress = true;
    }
  }
}

/** pendingSync(timeout) on one handle; an error is recorded as an event text and ends it. */
function pendingOrError(h: EventChannels, timeoutMs: number, got: string[], i: number) {
  if (h.closed) return null;
  try {
    return timeoutMs > 0 ? h.pendingSync(timeoutMs) : h.tryPending();
  } catch (error) {
    got.push(`e${i}${errorText(error)}`);
    return null;
  }
}

type Outcome = readonly [call: string, out: string];

async function execute(world: World, op: Op, target: RunTarget): Promise<Outcome> {
  const options = target.options;
  switch (op.kind) {
    case "evtOpen":
      if (world.evt.length >= MAX_HANDLES) return ["evtOpen", "skip"];
      world.evt.push(await openEventChannels(options));
      return [`evtOpen`, `e${world.evt.length - 1}`];
    case "shrOpen":
      if (world.shr.length >= MAX_HANDLES) return ["shrOpen", "skip"];
      world.shr.push(await openGrantShare(options));
      return [`shrOpen`, `s${world.shr.length - 1}`];
    case "tblOpen":
      if (world.tbl.length >= MAX_HANDLES) return ["tblOpen", "skip"];
      world.tbl.push(await openGrantTable(options));
      return [`tblOpen`, `t${world.tbl.length - 1}`];
    default:
      if (op.kind.startsWith("peer")) return await peerOp(world, op as PeerOp, target);
      return executeSync(world, op);
  }
}

function attempt(call: string, f: () => string | void): Outcome {
  try {
    return [call, f() ?? "ok"];
  } catch (error) {
    return [call, errorText(error)];
  }
}

function bound(world: World, port: number): string {
  world.ports.push(port);
  return `=${port}`;
}

function executeSync(world: World, op: Op): Outcome {
  switch (op.kind) {
    case "evtOpen":
    case "shrOpen":
    case "tblOpen":
      throw new Error("unreachable: opens are asynchronous");
    case "evtClose":
    case "bindUnbound":
    case "bindInterdomain":
    case "bindVirq":
    case "notify":
    case "unmask":
    case "unbind":
    case "restrict":
      return eventOp(world, op);
    default:
      return grantOp(world, op);
  }
}

/** The text of a peer's outcome: its value, or its error's class and errno name. */
function peerText(r: PeerOutcome, value: (v: unknown) => string = () => "ok"): string {
  if (!r.ok) return `!${r.error.name}${r.error.code ? `:${r.error.code}` : ""}`;
  return value(r.value);
}

/** Most events one peerDrain takes (a runaway guard). */
const MAX_PEER_DRAIN = 32;

/**
 * The peer's operations (kill lane). The peer's ports join the port list
 * and its mappings of dom0's refs count as mappings for the deferred-end
 * rule (normalisation rule 5), like the first process's. Operations while
 * no peer lives are recorded as `nopeer`; a killed peer's mappings are
 * released by its kernel.
 */
async function peerOp(world: World, op: PeerOp, target: RunTarget): Promise<Outcome> {
  if (!target.spawnPeer) return [op.kind, "skip"];
  if (op.kind === "peerSpawn") {
    if (world.peer) return ["P.spawn()", "alive"];
    world.peer = await target.spawnPeer();
    world.peers++;
    return ["P.spawn()", `P${world.peers - 1}`];
  }
  const live = world.peer;
  if (!live) return [`P.${op.kind[4].toLowerCase()}${op.kind.slice(5)}`, "nopeer"];
  // A peer process that died by itself is recorded (`!PeerDied`) and counts as killed.
  const peer: PeerLink = {
    call: (cmd) =>
      live.call(cmd).catch(async (error) => {
        await live.kill();
        if (world.peer === live) world.peer = undefined;
        for (const m of world.peerMaps) {
          if (m.released) continue;
          m.released = true;
          world.dropRefs(m.refs);
        }
        throw error;
      }),
    kill: () => live.kill(),
  };
  try {
    return await peerStep(world, op, target, peer);
  } catch (error) {
    if (world.peer === live) throw error;
    return [`P.${op.kind.slice(4)}`, `!PeerDied`];
  }
}

async function peerStep(
  world: World,
  op: Exclude<PeerOp, { kind: "peerSpawn" }>,
  target: RunTarget,
  peer: PeerLink,
): Promise<Outcome> {
  switch (op.kind) {
    case "peerKill": {
      world.peer = undefined;
      await peer.kill();
      world.peerSharesGone();
      return ["P.kill()", "ok"];
    }
    case "peerClose": {
      const r = await peer.call({ op: "close" });
      world.peerSharesGone();
      return ["P.close()", peerText(r)];
    }
    case "peerBindUnbound":
      return [
        `P.bindUnboundPort(${op.domid})`,
        peerText(await peer.call({ op: "bindUnbound", domid: op.domid }), (v) => {
          (world.separate ? world.peerPorts : world.ports).push(v as number);
          return `=${v}`;
        }),
      ];
    case "peerBindInterdomain": {
      const port = world.port(op.port);
      return [
        `P.bindInterdomain(0,${port})`,
        peerText(await peer.call({ op: "bindInterdomain", domid: 0, port }), (v) => {
          (world.separate ? world.peerPorts : world.ports).push(v as number);
          return `=${v}`;
        }),
      ];
    }
    case "peerNotify": {
      const port = world.peerPort(op.port);
      return [`P.notify(${port})`, peerText(await peer.call({ op: "notify", port }))];
    }
    case "peerUnbind": {
      const port = world.peerPort(op.port);
      return [`P.unbind(${port})`, peerText(await peer.call({ op: "unbind", port }))];
    }
    case "peerShare": {
      target.beforePeerGrant?.();
      const n = op.notify ? peerNotifyOptions(world, op.notify, op.writable) : undefined;
      const call = `P.share(0,${n ? notifyText(n) : `{w:${op.writable}}`})`;
      const notify = n ? { offset: n.notifyOffset, port: n.notifyPort } : undefined;
      const r = await peer.call({ op: "share", domid: 0, count: 1, writable: op.writable, notify });
      return [
        call,
        peerText(r, (v) => {
          const { id, refs } = v as { id: number; refs: number[] };
          for (const ref of refs) {
            if (!world.peerRefNames.has(ref)) {
              world.peerRefNames.set(ref, `h${world.peerRefNames.size}`);
            }
          }
          world.peerRefs.push(...refs);
          world.peerShares.push({ id, refs: [...refs], released: false });
          return `ps${world.peerShares.length - 1}=[${refs.map((x) => world.peerRefText(x))}]`;
        }),
      ];
    }
    case "peerDrain": {
      const got: number[] = [];
      for (let i = 0; i < MAX_PEER_DRAIN; i++) {
        const r = await peer.call({ op: "pending", timeoutMs: target.peerPendingMs ?? 1 });
        if (!r.ok) return ["P.drain()", `[${got.sort((a, b) => a - b).join(",")}] ${peerText(r)}`];
        if (r.value === null) break;
        got.push(r.value as number);
        const u = await peer.call({ op: "unmask", port: r.value as number });
        if (!u.ok) return ["P.drain()", `[${got.join(",")}] unmask ${peerText(u)}`];
      }
      return ["P.drain()", `[${got.sort((a, b) => a - b).join(",")}]`];
    }
    case "peerMap": {
      const ref = world.ref(op.ref);
      const n = op.notify ? peerNotifyOptions(world, op.notify, op.writable) : undefined;
      const call = `P.map(0,${world.refText(ref)},${n ? notifyText(n) : `{w:${op.writable}}`})`;
      const notify = n ? { offset: n.notifyOffset, port: n.notifyPort } : undefined;
      const r = await peer.call({
        op: "map",
        domid: 0,
        refs: [ref],
        writable: op.writable,
        notify,
      });
      return [
        call,
        peerText(r, (v) => {
          world.peerMaps.push({
            id: v as number,
            refs: [ref],
            writable: op.writable,
            released: false,
          });
          world.mapped.set(ref, (world.mapped.get(ref) ?? 0) + 1);
          return `pm${world.peerMaps.length - 1}`;
        }),
      ];
    }
    case "peerPoke":
    case "peerPeek":
    case "peerRelease": {
      const m = pick(world.peerMaps, op.m, (x) => !x.released);
      if (!m) return [`P.${op.kind[4].toLowerCase()}${op.kind.slice(5)}`, "skip"];
      const name = `pm${world.peerMaps.indexOf(m)}`;
      if (op.kind === "peerRelease") {
        const call = `${name}.unmap()`;
        if (m.released) return [call, "released"];
        const r = await peer.call({ op: "release", id: m.id });
        if (r.ok) {
          m.released = true;
          world.dropRefs(m.refs);
        }
        return [call, peerText(r)];
      }
      const call = op.kind === "peerPoke"
        ? `${name}.poke(${op.offset},${op.value})`
        : `${name}.peek(${op.offset})`;
      if (m.released) return [call, "released"];
      if (op.kind === "peerPeek") {
        const r = await peer.call({ op: "read", id: m.id, offset: op.offset, length: 8 });
        return [call, peerText(r, (v) => hex(Uint8Array.from(v as number[])))];
      }
      if (!m.writable) return [call, "skip read-only"];
      const bytes = Array.from({ length: 8 }, (_, i) => (op.value + i) & 0xff);
      return [call, peerText(await peer.call({ op: "write", id: m.id, offset: op.offset, bytes }))];
    }
  }
}

function eventOp(world: World, op: Op): Outcome {
  const h = pick(world.evt, (op as { h: number }).h, liveHandle);
  if (!h) return [`${op.kind}`, "skip"];
  const name = `e${world.evt.indexOf(h)}`;
  switch (op.kind) {
    case "evtClose":
      return attempt(`${name}.close()`, () => h.close());
    case "bindUnbound":
      return attempt(
        `${name}.bindUnboundPort(${world.domText(op.domid)})`,
        () => bound(world, h.bindUnboundPort(world.dom(op.domid))),
      );
    case "bindInterdomain": {
      const domid = world.dom(op.domid);
      const port = world.isPeerDomain(domid) ? world.peerPort(op.port) : world.port(op.port);
      return attempt(
        `${name}.bindInterdomain(${world.domText(op.domid)},${port})`,
        () => bound(world, h.bindInterdomain(domid, port)),
      );
    }
    case "bindVirq":
      return attempt(`${name}.bindVirq(${op.virq})`, () => bound(world, h.bindVirq(op.virq)));
    case "notify": {
      const port = world.port(op.port);
      return attempt(`${name}.notify(${port})`, () => h.notify(port));
    }
    case "unmask": {
      const port = world.port(op.port);
      return attempt(`${name}.unmask(${port})`, () => h.unmask(port));
    }
    case "unbind": {
      const port = world.port(op.port);
      return attempt(`${name}.unbind(${port})`, () => h.unbind(port));
    }
    case "restrict":
      return attempt(`${name}.restrict(${op.domid})`, () => h.restrict(op.domid));
    default:
      throw new Error(`unreachable: ${op.kind}`);
  }
}

function notifyOptions(world: World, n: NotifyOperands, writable: boolean) {
  return {
    writable,
    notifyOffset: n.offset,
    notifyPort: n.port === undefined ? undefined : world.port(n.port),
  };
}

/** The notify options of a peer operation: its port is one of the peer's domain. */
function peerNotifyOptions(world: World, n: NotifyOperands, writable: boolean) {
  return {
    writable,
    notifyOffset: n.offset,
    notifyPort: n.port === undefined ? undefined : world.peerPort(n.port),
  };
}

function notifyText(o: { writable: boolean; notifyOffset?: number; notifyPort?: number }) {
  return `{w:${o.writable},off:${o.notifyOffset ?? "-"},port:${o.notifyPort ?? "-"}}`;
}

function shareResult(
  world: World,
  share: SharedGrant,
  writable: boolean,
  owner: GrantShare,
): string {
  owners.set(share, owner);
  world.handedOut(share.refs);
  world.shares.push({ value: share, writable, refs: share.refs });
  return `r${world.shares.length - 1}=[${share.refs.map((r) => world.refText(r)).join(",")}]`;
}

function mapResult(
  world: World,
  mapping: GrantMapping,
  domids: readonly number[],
  refs: readonly number[],
  writable: boolean,
): string {
  world.addMapping(mapping, domids, refs, writable);
  return `m${world.maps.length - 1} pages=${mapping.count}`;
}

function grantOp(world: World, op: Op): Outcome {
  switch (op.kind) {
    case "shrClose": {
      const s = pick(world.shr, op.s, liveHandle);
      if (!s) return ["shrClose", "skip"];
      const name = `s${world.shr.indexOf(s)}`;
      return attempt(`${name}.close()`, () => {
        if (!s.closed) {
          for (const t of world.shares) if (isOwnedLive(s, t.value)) world.dropShare(t);
        }
        s.close();
      });
    }
    case "share":
    case "shareNotify": {
      const s = pick(world.shr, op.s, liveHandle);
      if (!s) return [op.kind, "skip"];
      const name = `s${world.shr.indexOf(s)}`;
      if (op.kind === "share") {
        return attempt(
          `${name}.sharePages(${world.domText(op.domid)},${op.count},{w:${op.writable}})`,
          () =>
            shareResult(
              world,
              s.sharePages(world.dom(op.domid), op.count, { writable: op.writable }),
              op.writable,
              s,
            ),
        );
      }
      const o = notifyOptions(world, op.notify, op.writable);
      return attempt(
        `${name}.sharePageNotify(${world.domText(op.domid)},${notifyText(o)})`,
        () => shareResult(world, s.sharePageNotify(world.dom(op.domid), o), op.writable, s),
      );
    }
    case "unshare": {
      const t = pick(world.shares, op.r, liveRange);
      if (!t) return ["unshare", "skip"];
      return attempt(`r${world.shares.indexOf(t)}.unshare()`, () => {
        if (!t.value.released) world.dropShare(t);
        t.value.unshare();
      });
    }
    case "tblClose": {
      const t = pick(world.tbl, op.t, liveHandle);
      if (!t) return ["tblClose", "skip"];
      return attempt(`t${world.tbl.indexOf(t)}.close()`, () => {
        if (!t.closed) {
          for (const m of world.maps) if (isOwnedLive(t, m.value)) world.dropMapping(m);
        }
        t.close();
      });
    }
    case "map":
    case "mapRefs":
    case "mapDomain":
    case "mapNotify":
      return mapOp(world, op);
    case "unmap": {
      const m = pick(world.maps, op.r, liveRange);
      if (!m) return ["unmap", "skip"];
      return attempt(`m${world.maps.indexOf(m)}.unmap()`, () => {
        if (!m.value.released) world.dropMapping(m);
        m.value.unmap();
      });
    }
    case "setMaxGrants": {
      const t = pick(world.tbl, op.t, liveHandle);
      if (!t) return ["setMaxGrants", "skip"];
      return attempt(`t${world.tbl.indexOf(t)}.setMaxGrants(${op.count})`, () => {
        t.setMaxGrants(op.count);
      });
    }
    case "copy":
      return copyOp(world, op);
    case "poke":
    case "peek":
      return memoryOp(world, op);
    default:
      throw new Error(`unreachable: ${op.kind}`);
  }
}

/** Whether `range` is a live range of `handle` (holdings are not per range, so ask the range). */
function isOwnedLive(
  handle: GrantShare | GrantTable,
  range: SharedGrant | GrantMapping,
): boolean {
  return !handle.closed && !range.released && owners.get(range) === handle;
}

/** Which handle made each range (the public API does not expose it). */
const owners = new WeakMap<object, GrantShare | GrantTable>();

function mapOp(
  world: World,
  op: Extract<Op, { kind: "map" | "mapRefs" | "mapDomain" | "mapNotify" }>,
): Outcome {
  const t = pick(world.tbl, op.t, liveHandle);
  if (!t) return [op.kind, "skip"];
  const name = `t${world.tbl.indexOf(t)}`;
  const done = (m: GrantMapping, domids: number[], refs: number[], w: boolean) => {
    owners.set(m, t);
    return mapResult(world, m, domids, refs, w);
  };
  switch (op.kind) {
    case "map": {
      const domid = world.dom(op.domid);
      const [ref, refText] = world.refFor(domid, op.ref);
      return attempt(
        `${name}.mapGrantRef(${world.domText(op.domid)},${refText},{w:${op.writable}})`,
        () =>
          done(
            t.mapGrantRef(domid, ref, { writable: op.writable }),
            [domid],
            [ref],
            op.writable,
          ),
      );
    }
    case "mapRefs": {
      const grants = op.grants.map((g) => ({ domid: g.domid, ref: world.ref(g.ref) }));
      const text = grants.map((g) => `${g.domid}:${world.refText(g.ref)}`).join(",");
      const domids = grants.map((g) => g.domid);
      const refs = grants.map((g) => g.ref);
      return attempt(
        `${name}.mapGrantRefs([${text}],{w:${op.writable}})`,
        () =>
          mapOrLimit(
            world,
            domids,
            refs,
            () => t.mapGrantRefs(grants, { writable: op.writable }),
            (m) => done(m, domids, refs, op.writable),
          ),
      );
    }
    case "mapDomain": {
      const refs = op.refs.map((r) => world.ref(r));
      return attempt(
        `${name}.mapDomainGrantRefs(${op.domid},[${
          refs.map((r) => world.refText(r)).join(",")
        }],{w:${op.writable}})`,
        () =>
          mapOrLimit(
            world,
            refs.map(() => op.domid),
            refs,
            () => t.mapDomainGrantRefs(op.domid, refs, { writable: op.writable }),
            (m) => done(m, refs.map(() => op.domid), refs, op.writable),
          ),
      );
    }
    case "mapNotify": {
      const domid = world.dom(op.domid);
      const [ref, refText] = world.refFor(domid, op.ref);
      const o = notifyOptions(world, op.notify, op.writable);
      return attempt(
        `${name}.mapGrantRefNotify(${world.domText(op.domid)},${refText},${notifyText(o)})`,
        () => done(t.mapGrantRefNotify(domid, ref, o), [domid], [ref], op.writable),
      );
    }
  }
}

/**
 * Normalisation rule 6: a multi-ref map the simulator cannot make (refs not
 * adjacent pages of one share, World.mappable) is made and unmapped at once,
 * and recorded as `simlimit` if the backend accepted it, or if it refused it
 * with the simulator's limitation error; any other error is thrown (and
 * recorded) as it is. Other maps are recorded by `done`.
 */
function mapOrLimit(
  world: World,
  domids: readonly number[],
  refs: readonly number[],
  map: () => GrantMapping,
  done: (m: GrantMapping) => string,
): string {
  if (world.mappable(domids, refs)) return done(map());
  let m: GrantMapping;
  try {
    m = map();
  } catch (error) {
    if (error instanceof XenUsageError && /simulator limitation/.test(error.message)) {
      return "simlimit";
    }
    throw error;
  }
  m.unmap();
  return "simlimit";
}

function copyOp(world: World, op: Extract<Op, { kind: "copy" }>): Outcome {
  const t = pick(world.tbl, op.t, liveHandle);
  if (!t) return ["copy", "skip"];
  const dests: Uint8Array[] = [];
  const side = (s: CopySide, source: boolean, salt: number) => {
    if ("local" in s) {
      const buf = new Uint8Array(s.local);
      if (source) { for (let i = 0; i < buf.length; i++) buf[i] = (salt * 31 + i * 7 + 1) & 0xff; }
      else dests.push(buf);
      return { local: buf };
    }
    return { ref: world.ref(s.ref), domid: s.domid, offset: s.offset };
  };
  const segments: GrantCopySegment[] = op.segments.map((seg, i) => ({
    source: side(seg.source, true, i + 1),
    dest: side(seg.dest, false, i + 1),
    len: seg.len,
  }));
  const text = segments.map((s) =>
    `${sideText(world, s.source)}->${sideText(world, s.dest)}:${s.len}`
  ).join(
    ",",
  );
  return attempt(`t${world.tbl.indexOf(t)}.grantCopy([${text}])`, () => {
    const statuses = t.grantCopy(segments);
    return `[${statuses.join(",")}] ${dests.map((d) => hex(d.subarray(0, 8))).join(",")}`.trim();
  });
}

function sideText(world: World, s: GrantCopySegment["source"]): string {
  return "local" in s ? `L${s.local.length}` : `${s.domid}:${world.refText(s.ref)}@${s.offset}`;
}

function memoryOp(world: World, op: Extract<Op, { kind: "poke" | "peek" }>): Outcome {
  const list: readonly Tracked<SharedGrant | GrantMapping>[] = op.side === "share"
    ? world.shares
    : world.maps;
  const t = pick(list, op.r, liveRange);
  const prefix = op.side === "share" ? "r" : "m";
  if (!t) return [`${op.kind}(${op.side})`, "skip"];
  const call = `${prefix}${list.indexOf(t)}.${op.kind}(${op.page},${op.offset}${
    op.kind === "poke" ? `,${op.value}` : ""
  })`;
  const range = t.value;
  if (range.released) return [call, "released"];
  const page = range.pages[op.page];
  if (!page) return [call, "nopage"];
  if (op.kind === "peek") return [call, hex(page.subarray(op.offset, op.offset + 8))];
  if (op.side === "map" && !t.writable) return [call, "skip read-only"];
  for (let i = 0; i < 8; i++) page[op.offset + i] = (op.value + i) & 0xff;
  return [call, "ok"];
}
