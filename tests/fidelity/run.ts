/**
 * The executor and trace recorder of the differential fidelity engine: runs
 * an operation sequence (ops.ts) against the public API on one backend and
 * records, for every operation, the call with its resolved arguments, its
 * result (or its error class, C call and errno code), the events delivered
 * in response, and the bytes read back from shared memory.
 *
 * The normalisation, applied while recording (the same on every backend,
 * see also README "Fidelity"):
 * 1. Events: after each operation every open event channel handle is
 *    drained (tryPending); after an operation that can raise an event the
 *    recorder first waits up to `waitMs` (real Xen delivers asynchronously:
 *    Linux spreads interdomain ports over the vCPUs, so the upcall may run
 *    on another vCPU after the hypercall returned). The ports delivered for
 *    one operation are recorded as a sorted list of `e<handle>:<port>`:
 *    which operation an event belongs to is kept, the order within one
 *    operation is not (two vCPUs fill the ring in either order).
 * 2. Errors: the class name, and for XenCallError the C function and errno
 *    code; never the message (its words differ between backends).
 * 3. File descriptors and mapping addresses are not recorded (the
 *    simulator's are virtual). Port numbers, grant refs, GNTST statuses and
 *    memory contents are recorded as they are: they are the behaviour.
 * 4. Engine rules that keep real runs reproducible, applied on every
 *    backend alike: no write through a read-only mapping (real Xen kills
 *    the process with SIGSEGV, the simulator cannot fault); after an unmap
 *    that ends a grant whose share was already released, `settle()` (on real
 *    Xen: wait for Linux's deferred grant-end timer, HZ, so the ref is back
 *    on the free list before the next operation).
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
} from "../../mod.ts";
import {
  type CopySide,
  LITERAL_PORTS,
  LITERAL_REFS,
  type NotifyOperands,
  type Op,
  type Operand,
} from "./ops.ts";

/** The most handles of one kind a sequence opens (later opens are skipped). */
export const MAX_HANDLES = 6;
/** The most events recorded per operation and handle (a runaway guard). */
const MAX_EVENTS_PER_DRAIN = 256;

/** How the recorder reaches one backend for one sequence. */
export interface RunTarget {
  /** Options for every open* call of the sequence (a fresh world per call). */
  readonly options: OpenOptions;
  /** Longest wait for asynchronous delivery after an event-raising operation (0: none). */
  readonly waitMs: number;
  /** Waits until deferred grant releases completed (a no-op on the simulator). */
  settle(): void;
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
}

/** The state of one run: what the slots of later operations resolve against. */
class World {
  readonly evt: EventChannels[] = [];
  readonly shr: GrantShare[] = [];
  readonly tbl: GrantTable[] = [];
  readonly ports: number[] = [];
  readonly refs: number[] = [];
  readonly shares: Tracked<SharedGrant>[] = [];
  readonly maps: Tracked<GrantMapping>[] = [];
  /** Live mappings per granted ref of dom0 (the loopback granter). */
  readonly mapped = new Map<number, number>();
  /** Refs whose share was released while still mapped (Linux defers their end). */
  readonly deferred = new Set<number>();
  settleNeeded = false;

  port(o: Operand): number {
    if ("lit" in o) return o.lit;
    return this.ports.length ? this.ports[o.slot % this.ports.length] : LITERAL_PORTS[1];
  }

  ref(o: Operand): number {
    if ("lit" in o) return o.lit;
    return this.refs.length ? this.refs[o.slot % this.refs.length] : LITERAL_REFS[2];
  }

  addMapping(
    mapping: GrantMapping,
    domids: readonly number[],
    refs: readonly number[],
    w: boolean,
  ) {
    this.maps.push({ value: mapping, writable: w, refs: refs.filter((_, i) => domids[i] === 0) });
    for (const [i, ref] of refs.entries()) {
      if (domids[i] === 0) this.mapped.set(ref, (this.mapped.get(ref) ?? 0) + 1);
    }
  }

  /** A mapping went away (unmap or its handle closed): ends deferred grants. */
  dropMapping(t: Tracked<GrantMapping>): void {
    for (const ref of t.refs) {
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

/**
 * Runs `ops` on `target` and returns the trace: one entry per operation and
 * a final `teardown` entry (every table handle closed, then every share
 * handle, then every event channel handle, with the events that raised).
 * Every handle the run opened is closed before it returns, also when an
 * operation threw something unexpected (which is then rethrown).
 */
export async function recordTrace(ops: readonly Op[], target: RunTarget): Promise<TraceEntry[]> {
  const world = new World();
  const trace: TraceEntry[] = [];
  try {
    for (const op of ops) {
      const [call, out] = await execute(world, op, target.options);
      const events = drain(world, EVENTFUL.has(op.kind) ? target.waitMs : 0);
      if (world.settleNeeded) {
        world.settleNeeded = false;
        target.settle();
      }
      trace.push(entry(call, out, events));
    }
  } finally {
    trace.push(teardown(world, target));
  }
  return trace;
}

function entry(call: string, out: string, events: string[]): TraceEntry {
  return events.length ? `${call} => ${out} | ev ${events.join(",")}` : `${call} => ${out}`;
}

function teardown(world: World, target: RunTarget): TraceEntry {
  const events: string[] = [];
  for (const t of world.tbl) t.close();
  for (const m of world.maps) world.dropMapping(m);
  events.push(...drain(world, world.tbl.length ? target.waitMs : 0));
  if (world.settleNeeded) target.settle();
  for (const s of world.shr) s.close();
  events.push(...drain(world, world.shr.length ? target.waitMs : 0));
  for (const e of world.evt) e.close();
  return entry("teardown", "ok", events.sort());
}

/** After an event arrived, how much longer the recorder waits for the rest (ms). */
const GRACE_MS = 10;

/**
 * Drains every open event channel handle. With `waitMs` > 0 it first waits
 * on each handle in turn until a deadline `waitMs` away (the wait on one
 * handle lets the others' events queue in their rings meanwhile); once an
 * event arrived the deadline shrinks to GRACE_MS after it. Then it takes
 * whatever is ready until a pass over all handles finds nothing. Returns
 * the sorted list of `e<handle>:<port>` (or `e<handle>!<error>`).
 */
function drain(world: World, waitMs: number): string[] {
  const got: string[] = [];
  const open = world.evt.map((h, i) => [h, i] as const).filter(([h]) => !h.closed);
  if (waitMs > 0 && open.length > 0) {
    let deadline = performance.now() + waitMs;
    for (const [h, i] of open) {
      for (let n = 0; n < MAX_EVENTS_PER_DRAIN; n++) {
        const left = Math.max(0, Math.ceil(deadline - performance.now()));
        const port = pendingOrError(h, left, got, i);
        if (port === null) break;
        got.push(`e${i}:${port}`);
        deadline = Math.min(deadline, performance.now() + GRACE_MS);
      }
    }
  }
  for (let progress = true, rounds = 0; progress && rounds < MAX_EVENTS_PER_DRAIN; rounds++) {
    progress = false;
    for (const [h, i] of open) {
      const port = pendingOrError(h, 0, got, i);
      if (port === null) continue;
      got.push(`e${i}:${port}`);
      progress = true;
    }
  }
  return got.sort();
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

async function execute(world: World, op: Op, options: OpenOptions): Promise<Outcome> {
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

function eventOp(world: World, op: Op): Outcome {
  const h = pick(world.evt, (op as { h: number }).h, liveHandle);
  if (!h) return [`${op.kind}`, "skip"];
  const name = `e${world.evt.indexOf(h)}`;
  switch (op.kind) {
    case "evtClose":
      return attempt(`${name}.close()`, () => h.close());
    case "bindUnbound":
      return attempt(
        `${name}.bindUnboundPort(${op.domid})`,
        () => bound(world, h.bindUnboundPort(op.domid)),
      );
    case "bindInterdomain": {
      const port = world.port(op.port);
      return attempt(
        `${name}.bindInterdomain(${op.domid},${port})`,
        () => bound(world, h.bindInterdomain(op.domid, port)),
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
  world.refs.push(...share.refs);
  world.shares.push({ value: share, writable, refs: share.refs });
  return `r${world.shares.length - 1}=[${share.refs.join(",")}]`;
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
          `${name}.sharePages(${op.domid},${op.count},{w:${op.writable}})`,
          () =>
            shareResult(
              world,
              s.sharePages(op.domid, op.count, { writable: op.writable }),
              op.writable,
              s,
            ),
        );
      }
      const o = notifyOptions(world, op.notify, op.writable);
      return attempt(
        `${name}.sharePageNotify(${op.domid},${notifyText(o)})`,
        () => shareResult(world, s.sharePageNotify(op.domid, o), op.writable, s),
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
      const ref = world.ref(op.ref);
      return attempt(
        `${name}.mapGrantRef(${op.domid},${ref},{w:${op.writable}})`,
        () =>
          done(
            t.mapGrantRef(op.domid, ref, { writable: op.writable }),
            [op.domid],
            [ref],
            op.writable,
          ),
      );
    }
    case "mapRefs": {
      const grants = op.grants.map((g) => ({ domid: g.domid, ref: world.ref(g.ref) }));
      const text = grants.map((g) => `${g.domid}:${g.ref}`).join(",");
      return attempt(
        `${name}.mapGrantRefs([${text}],{w:${op.writable}})`,
        () =>
          done(
            t.mapGrantRefs(grants, { writable: op.writable }),
            grants.map((g) => g.domid),
            grants.map((g) => g.ref),
            op.writable,
          ),
      );
    }
    case "mapDomain": {
      const refs = op.refs.map((r) => world.ref(r));
      return attempt(
        `${name}.mapDomainGrantRefs(${op.domid},[${refs.join(",")}],{w:${op.writable}})`,
        () =>
          done(
            t.mapDomainGrantRefs(op.domid, refs, { writable: op.writable }),
            refs.map(() => op.domid),
            refs,
            op.writable,
          ),
      );
    }
    case "mapNotify": {
      const ref = world.ref(op.ref);
      const o = notifyOptions(world, op.notify, op.writable);
      return attempt(
        `${name}.mapGrantRefNotify(${op.domid},${ref},${notifyText(o)})`,
        () => done(t.mapGrantRefNotify(op.domid, ref, o), [op.domid], [ref], op.writable),
      );
    }
  }
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
  const text = segments.map((s) => `${sideText(s.source)}->${sideText(s.dest)}:${s.len}`).join(
    ",",
  );
  return attempt(`t${world.tbl.indexOf(t)}.grantCopy([${text}])`, () => {
    const statuses = t.grantCopy(segments);
    return `[${statuses.join(",")}] ${dests.map((d) => hex(d.subarray(0, 8))).join(",")}`.trim();
  });
}

function sideText(s: GrantCopySegment["source"]): string {
  return "local" in s ? `L${s.local.length}` : `${s.domid}:${s.ref}@${s.offset}`;
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
