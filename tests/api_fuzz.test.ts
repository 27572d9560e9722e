/**
 * A seeded property test over the whole public API on the simulator: random
 * sequences of calls, each argument either well-formed (drawn from what the
 * run holds: bound ports, live domids, mappings, generators) or wrong-shaped
 * (null, undefined, a bigint for a number, a quoted number, NaN, a symbol,
 * an array, a function, an object with junk fields). Every failure, thrown
 * or rejected, must be a XenError; after everything is closed nothing may
 * be left (no ports bound, no mappings, no shares, no grants, no context
 * waiters, timeouts or fd watches, no reader on a handle).
 *
 * Reproduce a failure with XENCHAN_FUZZ_SEED=<seed printed> (and
 * XENCHAN_FUZZ_RUNS to change the number of runs). XENCHAN_FUZZ_SURVEY=1
 * lists every distinct non-XenError failure (one line each) instead of
 * stopping at the first run that has one.
 */
import { it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import fc from "fast-check";
import {
  type EventChannels,
  type GrantMapping,
  type GrantShare,
  type GrantTable,
  openEventChannels,
  openGrantShare,
  openGrantTable,
  selectBackend,
  type SharedGrant,
  XenError,
} from "../mod.ts";
import { gntstName, QueuePortState, SimHypervisor } from "../sim/mod.ts";
import { describe } from "../core/validate.ts";
import type { EventChannelDriver } from "../core/driver.ts";
import {
  attachRuntimeLoop,
  attachSimClockLoop,
  type DiskEjectEnable,
  type DomainDeathEnable,
  EventContext,
  eventMask,
  EVENTMASK_ALL,
  EventType,
  eventTypeName,
  type FdWatch,
  shutdownReasonName,
  simDomainSource,
  type TimeoutWatch,
  virtualTimers,
} from "../plugins/osevent/mod.ts";
import {
  doorbellValue,
  EventChannelNotifier,
  IvshmemDoorbell,
  MemoryRegion,
  SimNotifier,
} from "../plugins/doorbell/mod.ts";
import {
  abiAfterReset,
  abiMaxPorts,
  createAbi,
  type EventAbi,
  negotiateAbi,
} from "../plugins/abi/mod.ts";

const SEED = Number(process.env.XENCHAN_FUZZ_SEED ?? 0x5eed_2026);
const RUNS = Number(process.env.XENCHAN_FUZZ_RUNS ?? 250);
const MIN_CALLS = 10_000;

/** Wrong-shaped values, mixed with a few that happen to be right. */
const junk: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null),
  fc.constant(undefined),
  fc.integer({ min: -3, max: 70_000 }),
  fc.constantFrom(NaN, Infinity, -Infinity, -0, 1.5, 2 ** 32, 2 ** 53),
  fc.bigInt({ min: -2n, max: 1n << 66n }),
  fc.constantFrom("5", "0", "", "xyz", "fifo", "2l", "sim", "poweroff", "xvda"),
  fc.string({ maxLength: 4 }),
  fc.boolean(),
  fc.constant(Symbol("junk")),
  fc.constant(() => undefined),
  fc.constant({}),
  fc.constant([]),
  fc.array(fc.integer({ min: -1, max: 40 }), { maxLength: 3 }),
  fc.constant([null]),
  fc.constant([{ domid: "0", ref: 8n }]),
  fc.constant({ domid: 1n, ref: "8", writable: "yes", signal: 5, mask: "x", kind: "sim" }),
  fc.constant({ source: null, dest: 5, len: 8 }),
  fc.constant(new Uint8Array(3)),
  fc.constant(new Map()),
);

type Arg = { readonly valid: number } | { readonly junk: unknown };

const arg: fc.Arbitrary<Arg> = fc.oneof(
  { weight: 3, arbitrary: fc.nat(1000).map((valid) => ({ valid })) },
  { weight: 2, arbitrary: junk.map((value) => ({ junk: value })) },
);

interface Call {
  readonly op: number;
  readonly args: readonly Arg[];
}

/** Everything one run holds. */
class World {
  readonly hv = new SimHypervisor({
    allocation: "random",
    seed: 7,
    dom0: { maxEventChannels: 255 },
  });
  readonly domids: number[] = [0];
  readonly evtchns: EventChannels[] = [];
  readonly drivers: EventChannelDriver[] = [];
  readonly tables: GrantTable[] = [];
  readonly shares: GrantShare[] = [];
  readonly mappings: GrantMapping[] = [];
  readonly shared: SharedGrant[] = [];
  readonly ports: number[] = [];
  readonly contexts: EventContext[] = [];
  readonly gens: (DomainDeathEnable | DiskEjectEnable)[] = [];
  readonly fdWatches: FdWatch[] = [];
  readonly timeouts: TimeoutWatch[] = [];
  readonly watches: { close(): void; pause(): void; resume(): void }[] = [];
  readonly notifiers: SimNotifier[] = [];
  readonly doorbells: IvshmemDoorbell[] = [];
  readonly regions: MemoryRegion[] = [];
  readonly abis: EventAbi[] = [];
  readonly queues: QueuePortState[] = [];
  readonly unsubscribe: (() => void)[] = [];
  readonly waits: Promise<unknown>[] = [];
  readonly failures: unknown[] = [];
  readonly ctx: EventContext;

  constructor() {
    this.domids.push(this.hv.createDomain());
    this.ctx = new EventContext({ clock: this.hv.clock, domains: simDomainSource(this.hv) });
    attachSimClockLoop(this.ctx);
    this.contexts.push(this.ctx);
    // A second context in the poll-loop style (no hooks), so fd watches register.
    this.contexts.push(
      new EventContext({ clock: this.hv.clock, domains: simDomainSource(this.hv) }),
    );
  }

  pick<T>(list: readonly T[], n: number): T | undefined {
    return list.length === 0 ? undefined : list[n % list.length];
  }
}

type Kind = (w: World, n: number) => unknown;

/** Mostly live domids; now and then one that was destroyed. */
const pickDomid: Kind = (w, n) => w.pick(n % 7 === 0 ? w.domids : w.hv.domids(), n);
const pickPort: Kind = (w, n) => (n % 5 === 0 ? n % 70 : w.pick(w.ports, n) ?? n % 70);
const pickRef: Kind = (w, n) => w.pick(w.shared.flatMap((s) => [...s.refs]), n) ?? 8 + (n % 8);

const pickBackend: Kind = (w, n) => (n % 3 === 0 ? "sim" : w.hv.backend(w.pick(w.hv.domids(), n)!));

const K = {
  domid: pickDomid,
  port: pickPort,
  ref: pickRef,
  count: (_w, n) => 1 + (n % 3),
  small: (_w, n) => n % 8,
  virq: (_w, n) => n % 24,
  ms: (_w, n) => n % 40,
  access: (_w, n) => (n % 3 === 0 ? undefined : { writable: n % 2 === 0 }),
  notify: (w, n) =>
    n % 3 === 0 ? { notifyOffset: n % 4096 } : { notifyPort: pickPort(w, n), writable: true },
  grants: (w, n) => [{ domid: pickDomid(w, n), ref: pickRef(w, n) }],
  refs: (w, n) => [pickRef(w, n), pickRef(w, n + 1)],
  segments: (w, n) => [{
    source: { ref: pickRef(w, n), domid: pickDomid(w, n), offset: 0 },
    dest: { local: new Uint8Array(16) },
    len: n % 17,
  }],
  wait: (_w, n) => (n % 2 === 0 ? undefined : { signal: new AbortController().signal }),
  backend: (w, n) => (n % 3 === 0 ? "sim" : w.hv.backend(w.pick(w.hv.domids(), n)!)),
  openOptions: (w, n) => (n % 4 === 0 ? undefined : { backend: pickBackend(w, n) }),
  mask: (_w, n) =>
    n % 3 === 0
      ? EVENTMASK_ALL
      : eventMask([EventType.DOMAIN_SHUTDOWN, EventType.DOMAIN_DEATH, EventType.DISK_EJECT][n % 3]),
  selector: (w, n) =>
    [undefined, { domid: pickDomid(w, n) }, { forUser: n % 3 }, () => n % 2 === 0][n % 4],
  callbacks: (_w, n) =>
    [{}, { eventOccurs: () => {}, mask: eventMask(EventType.DISK_EJECT) }, {
      disaster: () => {},
    }][n % 3],
  fn: () => () => {},
  fds: (_w, n) => [[], [{ fd: 0, events: 0, revents: 0 }], new Uint8Array(16)][n % 3],
  now: (w) => w.hv.now(),
  deadline: (w, n) => w.hv.now() + (n % 30),
  reason: (_w, n) => ["poweroff", "reboot", "crash", "suspend"][n % 4],
  vdev: (_w, n) => ["xvda", "hdc"][n % 2],
  gen: (w, n) => w.pick(w.gens, n),
  evtchn: (w, n) => w.pick(w.evtchns, n),
  ctxOptions: (w, n) => (n % 2 === 0 ? undefined : { clock: w.hv.clock }),
  watchOptions: (_w, n) => (n % 2 === 0 ? undefined : { autoUnmask: true, maxPortsPerWakeup: 4 }),
  abiKind: (_w, n) => ["2l", "fifo", "3l"][n % 3],
  abiOptions: (_w, n) => (n % 2 === 0 ? undefined : { maxPorts: 64 + n }),
  notifiers: (w, n) => w.notifiers.slice(0, 1 + (n % 2)),
  peer: (_w, n) => n % 4,
  addr: (_w, n) => [0, 4, 8, 12, 0x20][n % 5],
  size: (_w, n) => [1, 2, 4, 8][n % 4],
  data: (_w, n) => (n % 2 === 0 ? BigInt(n) : n),
  regionOps: () => ({ write: () => {}, read: () => 0n }),
  notifierOptions: (_w, n) => (n % 2 === 0 ? undefined : { initial: BigInt(n % 3) }),
  fault: (w, n) => (n % 2 === 0 ? undefined : { domid: pickDomid(w, n), count: 1 }),
} satisfies Record<string, Kind>;

type Target<T> = (w: World, n: number) => T | undefined;

interface Op {
  readonly name: string;
  /** The object the call is made on (picked from the world), or undefined for none needed. */
  readonly target?: Target<unknown>;
  readonly args: readonly Kind[];
  /** Runs the call; its result is kept by `keep`. */
  readonly run: (w: World, self: never, a: readonly unknown[]) => unknown;
  /** Files the result in the world (e.g. a new handle). */
  readonly keep?: (w: World, result: never) => void;
}

const on = <T>(list: (w: World) => readonly T[]): Target<T> => (w, n) => w.pick(list(w), n);
const firstDoorbell: Target<IvshmemDoorbell> = on((w) => w.doorbells);

const OPS: readonly Op[] = [
  // ---- mod.ts -------------------------------------------------------------
  {
    name: "openEventChannels",
    args: [K.openOptions],
    run: (_w, _s, a) => openEventChannels(a[0] as never),
    keep: (w, h: EventChannels) => w.evtchns.push(h),
  },
  {
    name: "openGrantTable",
    args: [K.openOptions],
    run: (_w, _s, a) => openGrantTable(a[0] as never),
    keep: (w, h: GrantTable) => w.tables.push(h),
  },
  {
    name: "openGrantShare",
    args: [K.openOptions],
    run: (_w, _s, a) => openGrantShare(a[0] as never),
    keep: (w, h: GrantShare) => w.shares.push(h),
  },
  { name: "selectBackend", args: [K.backend], run: (_w, _s, a) => selectBackend(a[0] as never) },
  // ---- EventChannels ----------------------------------------------------------
  ...evtchnOps(),
  // ---- the simulator's event channel driver (sim/mod.ts SimEventChannelDriver) --
  ...driverOps(),
  // ---- GrantTable / GrantShare ------------------------------------------------
  ...grantOps(),
  // ---- the simulator ----------------------------------------------------------
  ...simOps(),
  // ---- plugins/osevent --------------------------------------------------------
  ...oseventOps(),
  // ---- plugins/doorbell -------------------------------------------------------
  ...doorbellOps(),
  // ---- plugins/abi ------------------------------------------------------------
  ...abiOps(),
];

function evtchnOps(): Op[] {
  const h = on((w) => w.evtchns);
  const port = (w: World, p: unknown) => {
    if (typeof p === "number") w.ports.push(p);
  };
  return [
    {
      name: "notify",
      target: h,
      args: [K.port],
      run: (_w, s: EventChannels, a) => s.notify(a[0] as never),
    },
    {
      name: "bindUnboundPort",
      target: h,
      args: [K.domid],
      run: (_w, s: EventChannels, a) => s.bindUnboundPort(a[0] as never),
      keep: port,
    },
    {
      name: "bindInterdomain",
      target: h,
      args: [K.domid, K.port],
      run: (_w, s: EventChannels, a) => s.bindInterdomain(a[0] as never, a[1] as never),
      keep: port,
    },
    {
      name: "bindVirq",
      target: h,
      args: [K.virq],
      run: (_w, s: EventChannels, a) => s.bindVirq(a[0] as never),
      keep: port,
    },
    {
      name: "unbind",
      target: h,
      args: [K.port],
      run: (_w, s: EventChannels, a) => s.unbind(a[0] as never),
    },
    {
      name: "unmask",
      target: h,
      args: [K.port],
      run: (_w, s: EventChannels, a) => s.unmask(a[0] as never),
    },
    {
      name: "restrict",
      target: h,
      args: [K.domid],
      run: (_w, s: EventChannels, a) => s.restrict(a[0] as never),
    },
    {
      name: "pending",
      target: h,
      args: [K.wait],
      run: (_w, s: EventChannels, a) => s.pending(a[0] as never),
    },
    { name: "tryPending", target: h, args: [], run: (_w, s: EventChannels) => s.tryPending() },
    {
      name: "pendingSync",
      target: h,
      args: [(_w, n) => (n % 2 === 0 ? 0 : undefined)],
      run: (_w, s: EventChannels, a) => s.pendingSync(a[0] as never),
    },
    {
      name: "ports",
      target: h,
      args: [K.wait],
      run: (_w, s: EventChannels, a) => s.ports(a[0] as never).next(),
    },
    { name: "holdings", target: h, args: [], run: (_w, s: EventChannels) => s.holdings() },
    { name: "evtchn.close", target: h, args: [], run: (_w, s: EventChannels) => s.close() },
  ];
}

function driverOps(): Op[] {
  const d = on((w) => w.drivers);
  const keepPort = (w: World, p: unknown) => {
    if (typeof p === "number") w.ports.push(p);
  };
  return [
    {
      name: "driver.open",
      args: [K.domid],
      run: (w, _s, a) => w.hv.backend(a[0] as never).openEventChannels(),
      keep: (w, drv: EventChannelDriver) => w.drivers.push(drv),
    },
    {
      name: "driver.bindUnboundPort",
      target: d,
      args: [K.domid],
      run: (_w, s: EventChannelDriver, a) => s.bindUnboundPort(a[0] as never),
      keep: keepPort,
    },
    {
      name: "driver.bindInterdomain",
      target: d,
      args: [K.domid, K.port],
      run: (_w, s: EventChannelDriver, a) => s.bindInterdomain(a[0] as never, a[1] as never),
      keep: keepPort,
    },
    {
      name: "driver.bindVirq",
      target: d,
      args: [K.virq],
      run: (_w, s: EventChannelDriver, a) => s.bindVirq(a[0] as never),
      keep: keepPort,
    },
    {
      name: "driver.notify/unbind/unmask/restrict",
      target: d,
      args: [K.port, K.small],
      run: (_w, s: EventChannelDriver, a) => {
        const which = typeof a[1] === "number" ? a[1] % 4 : 0;
        if (which === 0) return s.notify(a[0] as never);
        if (which === 1) return s.unbind(a[0] as never);
        if (which === 2) return s.unmask(a[0] as never);
        return s.restrict(a[0] as never);
      },
    },
    {
      name: "driver.pollNow/pending",
      target: d,
      args: [() => 0],
      run: (_w, s: EventChannelDriver, a) => (s.pollNow(a[0] as never) ? s.pending() : 0),
    },
    {
      name: "driver.waitReadable",
      target: d,
      args: [(_w, n) => (n % 2 === 0 ? undefined : new AbortController().signal)],
      run: (_w, s: EventChannelDriver, a) => s.waitReadable(a[0] as never),
    },
    { name: "driver.close", target: d, args: [], run: (_w, s: EventChannelDriver) => s.close() },
  ];
}

function grantOps(): Op[] {
  const t = on((w) => w.tables);
  const g = on((w) => w.shares);
  const keepMapping = (w: World, m: GrantMapping) => w.mappings.push(m);
  const keepShare = (w: World, s: SharedGrant) => w.shared.push(s);
  return [
    {
      name: "mapGrantRef",
      target: t,
      args: [K.domid, K.ref, K.access],
      run: (_w, s: GrantTable, a) => s.mapGrantRef(a[0] as never, a[1] as never, a[2] as never),
      keep: keepMapping,
    },
    {
      name: "mapGrantRefs",
      target: t,
      args: [K.grants, K.access],
      run: (_w, s: GrantTable, a) => s.mapGrantRefs(a[0] as never, a[1] as never),
      keep: keepMapping,
    },
    {
      name: "mapDomainGrantRefs",
      target: t,
      args: [K.domid, K.refs, K.access],
      run: (_w, s: GrantTable, a) =>
        s.mapDomainGrantRefs(a[0] as never, a[1] as never, a[2] as never),
      keep: keepMapping,
    },
    {
      name: "mapGrantRefNotify",
      target: t,
      args: [K.domid, K.ref, K.notify],
      run: (_w, s: GrantTable, a) =>
        s.mapGrantRefNotify(a[0] as never, a[1] as never, a[2] as never),
      keep: keepMapping,
    },
    {
      name: "unmap",
      target: t,
      args: [(w, n) => w.pick(w.mappings, n)],
      run: (_w, s: GrantTable, a) => s.unmap(a[0] as never),
    },
    {
      name: "mapping.unmap",
      target: on((w) => w.mappings),
      args: [],
      run: (_w, s: GrantMapping) => s.unmap(),
    },
    {
      name: "setMaxGrants",
      target: t,
      args: [(_w, n) => 1 + (n % 64)],
      run: (_w, s: GrantTable, a) => s.setMaxGrants(a[0] as never),
    },
    {
      name: "grantCopy",
      target: t,
      args: [K.segments],
      run: (_w, s: GrantTable, a) => s.grantCopy(a[0] as never),
    },
    { name: "table.close", target: t, args: [], run: (_w, s: GrantTable) => s.close() },
    {
      name: "sharePages",
      target: g,
      args: [K.domid, K.count, K.access],
      run: (_w, s: GrantShare, a) => s.sharePages(a[0] as never, a[1] as never, a[2] as never),
      keep: keepShare,
    },
    {
      name: "sharePageNotify",
      target: g,
      args: [K.domid, K.notify],
      run: (_w, s: GrantShare, a) => s.sharePageNotify(a[0] as never, a[1] as never),
      keep: keepShare,
    },
    {
      name: "unshare",
      target: g,
      args: [(w, n) => w.pick(w.shared, n)],
      run: (_w, s: GrantShare, a) => s.unshare(a[0] as never),
    },
    {
      name: "shared.unshare",
      target: on((w) => w.shared),
      args: [],
      run: (_w, s: SharedGrant) => s.unshare(),
    },
    { name: "share.holdings", target: g, args: [], run: (_w, s: GrantShare) => s.holdings() },
    { name: "share.close", target: g, args: [], run: (_w, s: GrantShare) => s.close() },
  ];
}

function simOps(): Op[] {
  const hv = (w: World) => w.hv;
  const run2 =
    (f: (hv: SimHypervisor, a: readonly unknown[]) => unknown) =>
    (w: World, _s: never, a: readonly unknown[]) => f(hv(w), a);
  return [
    {
      name: "new SimHypervisor",
      args: [(_w, n) => (n % 2 === 0 ? undefined : { seed: n, allocation: "random" })],
      run: (_w, _s, a) => new SimHypervisor(a[0] as never).stats(),
    },
    {
      name: "createDomain",
      args: [(_w, n) => (n % 2 === 0 ? undefined : { maxEventChannels: 64 + n, abi: "2l" })],
      run: run2((h, a) => h.createDomain(a[0] as never)),
      keep: (w, d: number) => w.domids.push(d),
    },
    {
      name: "shutdown",
      args: [K.domid, K.reason],
      run: run2((h, a) => h.shutdown(a[0] as never, a[1] as never)),
    },
    {
      name: "destroy",
      args: [(w, n) => w.domids[1 + (n % Math.max(1, w.domids.length - 1))] ?? 0],
      run: run2((h, a) => h.destroy(a[0] as never)),
    },
    { name: "crashDomain", args: [K.domid], run: run2((h, a) => h.crashDomain(a[0] as never)) },
    {
      name: "ejectDisk",
      args: [K.domid, K.vdev],
      run: run2((h, a) => h.ejectDisk(a[0] as never, a[1] as never)),
    },
    {
      name: "raiseVirq",
      args: [K.domid, K.virq],
      run: run2((h, a) => h.raiseVirq(a[0] as never, a[1] as never)),
    },
    {
      name: "onDomainEvent",
      args: [K.fn],
      run: run2((h, a) => h.onDomainEvent(a[0] as never)),
      keep: (w, off: () => void) => w.unsubscribe.push(off),
    },
    { name: "backend", args: [K.domid], run: run2((h, a) => h.backend(a[0] as never)) },
    {
      name: "backend.crash",
      args: [K.domid],
      run: run2((h, a) => h.backend(a[0] as never).crash()),
    },
    { name: "domainInfo", args: [K.domid], run: run2((h, a) => h.domainInfo(a[0] as never)) },
    { name: "eventState", args: [K.domid], run: run2((h, a) => h.eventState(a[0] as never)) },
    {
      name: "portStatus",
      args: [K.domid, K.port],
      run: run2((h, a) => h.portStatus(a[0] as never, a[1] as never)),
    },
    {
      name: "grantStatus",
      args: [K.domid, K.ref],
      run: run2((h, a) => h.grantStatus(a[0] as never, a[1] as never)),
    },
    {
      name: "pageOut",
      args: [K.domid, K.ref, (_w, n) => (n % 2 === 0 ? undefined : { pageInAfterMs: n % 9 })],
      run: run2((h, a) => h.pageOut(a[0] as never, a[1] as never, a[2] as never)),
    },
    {
      name: "pageIn",
      args: [K.domid, K.ref],
      run: run2((h, a) => h.pageIn(a[0] as never, a[1] as never)),
    },
    {
      name: "stats",
      args: [(w, n) => (n % 2 === 0 ? undefined : K.domid(w, n))],
      run: run2((h, a) => h.stats(a[0] as never)),
    },
    { name: "advance", args: [K.ms], run: run2((h, a) => h.advance(a[0] as never)) },
    {
      name: "clock.setTimer",
      args: [K.fn, K.ms],
      run: run2((h, a) => h.clock.setTimer(a[0] as never, a[1] as never)),
    },
    {
      name: "clock.clearTimer",
      args: [K.small],
      run: run2((h, a) => h.clock.clearTimer(a[0] as never)),
    },
    {
      name: "faults.failNextAllocation",
      args: [K.fault],
      run: run2((h, a) => h.faults.failNextAllocation(a[0] as never)),
    },
    {
      name: "new QueuePortState",
      args: [(_w, n) => 2 + (n % 100)],
      run: (_w, _s, a) => new QueuePortState(a[0] as never),
      keep: (w, q: QueuePortState) => w.queues.push(q),
    },
    {
      name: "QueuePortState.setPending",
      target: on((w) => w.queues),
      args: [(_w, n) => 1 + (n % 8)],
      run: (_w, s: QueuePortState, a) => s.setPending(a[0] as never),
    },
    {
      name: "QueuePortState.scan",
      target: on((w) => w.queues),
      args: [K.small, K.fn],
      run: (_w, s: QueuePortState, a) => s.scan(a[0] as never, a[1] as never),
    },
    {
      name: "gntstName",
      args: [(_w, n) => -(n % 12)],
      run: (_w, _s, a) => gntstName(a[0] as never),
    },
  ];
}

function oseventOps(): Op[] {
  const c = on((w) => w.contexts);
  const ctxRun =
    (f: (c: EventContext, a: readonly unknown[]) => unknown) =>
    (_w: World, s: EventContext, a: readonly unknown[]) => f(s, a);
  return [
    {
      name: "new EventContext",
      args: [K.ctxOptions],
      run: (_w, _s, a) => new EventContext(a[0] as never),
      keep: (w, ctx: EventContext) => w.contexts.push(ctx),
    },
    {
      name: "beforepoll",
      target: c,
      args: [K.fds, (_w, n) => (n % 3) - 1, K.now],
      run: ctxRun((s, a) => s.beforepoll(a[0] as never, a[1] as never, a[2] as never)),
    },
    {
      name: "afterpoll",
      target: c,
      args: [K.fds, K.now, (_w, n) => (n % 2 === 0 ? undefined : n % 3)],
      run: ctxRun((s, a) => s.afterpoll(a[0] as never, a[1] as never, a[2] as never)),
    },
    {
      name: "registerHooks",
      target: c,
      args: [() => ({
        fdRegister: () => 1,
        fdModify: () => undefined,
        fdDeregister: () => {},
        timeoutRegister: () => 2,
        timeoutModify: () => undefined,
      })],
      run: ctxRun((s, a) => s.registerHooks(a[0] as never)),
    },
    {
      name: "occurredFd",
      target: c,
      args: [() => ({ kind: "fd" }), K.small, K.small, K.small],
      run: ctxRun((s, a) =>
        s.occurredFd(a[0] as never, a[1] as never, a[2] as never, a[3] as never)
      ),
    },
    {
      name: "occurredTimeout",
      target: c,
      args: [() => ({ kind: "timeout" })],
      run: ctxRun((s, a) => s.occurredTimeout(a[0] as never)),
    },
    {
      name: "eventCheck",
      target: c,
      args: [K.mask, K.selector],
      run: ctxRun((s, a) => s.eventCheck(a[0] as never, a[1] as never)),
    },
    {
      name: "eventWait",
      target: c,
      args: [K.mask, K.selector, K.wait],
      run: ctxRun((s, a) => s.eventWait(a[0] as never, a[1] as never, a[2] as never)),
    },
    {
      name: "events",
      target: c,
      args: [K.mask, K.selector, K.wait],
      run: ctxRun((s, a) => s.events(a[0] as never, a[1] as never, a[2] as never).next()),
    },
    {
      name: "registerCallbacks",
      target: c,
      args: [K.callbacks],
      run: ctxRun((s, a) => s.registerCallbacks(a[0] as never)),
    },
    {
      name: "enableDomainDeath",
      target: c,
      args: [K.domid, K.small],
      run: ctxRun((s, a) => s.enableDomainDeath(a[0] as never, a[1])),
      keep: (w, gen: DomainDeathEnable) => w.gens.push(gen),
    },
    {
      name: "disableDomainDeath",
      target: c,
      args: [K.gen],
      run: ctxRun((s, a) => s.disableDomainDeath(a[0] as never)),
    },
    {
      name: "enableDiskEject",
      target: c,
      args: [K.domid, K.vdev, K.small],
      run: ctxRun((s, a) => s.enableDiskEject(a[0] as never, a[1] as never, a[2])),
      keep: (w, gen: DiskEjectEnable) => w.gens.push(gen),
    },
    {
      name: "disableDiskEject",
      target: c,
      args: [K.gen],
      run: ctxRun((s, a) => s.disableDiskEject(a[0] as never)),
    },
    {
      name: "generator.disable",
      target: on((w) => w.gens),
      args: [],
      run: (_w, s: DomainDeathEnable) => s.disable(),
    },
    {
      name: "watchEventChannels",
      target: c,
      args: [K.evtchn, K.watchOptions],
      run: ctxRun((s, a) => s.watchEventChannels(a[0] as never, a[1] as never)),
      keep: (w, watch: World["watches"][number]) => w.watches.push(watch),
    },
    {
      name: "watch.pause/resume/close",
      target: on((w) => w.watches),
      args: [K.small],
      run: (_w, s: World["watches"][number], a) =>
        [() => s.pause(), () => s.resume(), () => s.close()]
          [Number(a[0] === 1) + Number(a[0] === 2) * 2]?.(),
    },
    {
      name: "addFdWatch",
      target: c,
      args: [K.small, (_w, n) => n % 2, K.fn],
      run: ctxRun((s, a) => s.addFdWatch(a[0] as never, a[1] as never, a[2] as never)),
      keep: (w, watch: FdWatch) => w.fdWatches.push(watch),
    },
    {
      name: "fdWatch.modify",
      target: on((w) => w.fdWatches),
      args: [K.small],
      run: (_w, s: FdWatch, a) => s.modify(a[0] as never),
    },
    {
      name: "fdWatch.deregister",
      target: on((w) => w.fdWatches),
      args: [],
      run: (_w, s: FdWatch) => s.deregister(),
    },
    {
      name: "addTimeout",
      target: c,
      args: [K.deadline, K.fn],
      run: ctxRun((s, a) => s.addTimeout(a[0] as never, a[1] as never)),
      keep: (w, t: TimeoutWatch) => w.timeouts.push(t),
    },
    {
      name: "timeout.deregister",
      target: on((w) => w.timeouts),
      args: [],
      run: (_w, s: TimeoutWatch) => s.deregister(),
    },
    {
      name: "reportDisaster",
      target: c,
      args: [(_w, n) => [0, 1, 2][n % 3], (_w, n) => `fuzz ${n}`, K.small],
      run: ctxRun((s, a) => s.reportDisaster(a[0] as never, a[1] as never, a[2] as never)),
    },
    { name: "ctx.stats", target: c, args: [], run: ctxRun((s) => s.stats()) },
    {
      name: "ctx.close",
      target: (w, n) => (n % 4 === 0 ? w.pick(w.contexts, n) : undefined),
      args: [],
      run: ctxRun((s) => s.close()),
    },
    {
      name: "attachSimClockLoop",
      target: c,
      args: [(_w, n) => (n % 2 === 0 ? undefined : { onError: () => {} })],
      run: ctxRun((s, a) => attachSimClockLoop(s, a[0] as never)),
    },
    {
      name: "attachRuntimeLoop (wrong shapes only)",
      args: [() => null, () => null],
      run: (_w, _s, a) => attachRuntimeLoop(a[0] as never, a[1] as never),
    },
    {
      name: "simDomainSource",
      args: [(w) => w.hv],
      run: (_w, _s, a) => simDomainSource(a[0] as never),
    },
    {
      name: "virtualTimers",
      args: [(w) => w.hv.clock],
      run: (_w, _s, a) => virtualTimers(a[0] as never),
    },
    {
      name: "eventMask",
      args: [(_w, n) => (n % 5) + 1, (_w, n) => 16 - (n % 2) * 15],
      run: (_w, _s, a) => eventMask(a[0] as never, a[1] as never),
    },
    { name: "eventTypeName", args: [K.small], run: (_w, _s, a) => eventTypeName(a[0] as never) },
    {
      name: "shutdownReasonName",
      args: [K.small],
      run: (_w, _s, a) => shutdownReasonName(a[0] as never),
    },
  ];
}

function doorbellOps(): Op[] {
  return [
    {
      name: "new SimNotifier",
      args: [K.notifierOptions],
      run: (_w, _s, a) => new SimNotifier(a[0] as never),
      keep: (w, s: SimNotifier) => w.notifiers.push(s),
    },
    {
      name: "notifier.notify/read",
      target: on((w) => w.notifiers),
      args: [K.small],
      run: (_w, s: SimNotifier, a) => (a[0] === 1 ? s.notify() : s.read()),
    },
    {
      name: "notifier.wait",
      target: on((w) => w.notifiers),
      args: [K.wait],
      run: (_w, s: SimNotifier, a) => s.wait(a[0] as never),
    },
    {
      name: "notifier.close",
      target: on((w) => w.notifiers),
      args: [],
      run: (_w, s: SimNotifier) => s.close(),
    },
    {
      name: "new IvshmemDoorbell",
      args: [(_w, n) => (n % 2 === 0 ? undefined : { onWrite: () => {}, position: n % 3 })],
      run: (_w, _s, a) => new IvshmemDoorbell(a[0] as never),
      keep: (w, d: IvshmemDoorbell) => w.doorbells.push(d),
    },
    {
      name: "ivshmem.setPeer",
      target: firstDoorbell,
      args: [K.peer, K.notifiers],
      run: (_w, s: IvshmemDoorbell, a) => s.setPeer(a[0] as never, a[1] as never),
    },
    {
      name: "ivshmem.removePeer",
      target: firstDoorbell,
      args: [K.peer],
      run: (_w, s: IvshmemDoorbell, a) => s.removePeer(a[0] as never),
    },
    {
      name: "ivshmem.vectors",
      target: firstDoorbell,
      args: [K.peer],
      run: (_w, s: IvshmemDoorbell, a) => s.vectors(a[0] as never),
    },
    {
      name: "ivshmem.ring",
      target: firstDoorbell,
      args: [K.peer, K.small],
      run: (_w, s: IvshmemDoorbell, a) => s.ring(a[0] as never, a[1] as never),
    },
    {
      name: "ivshmem.write",
      target: firstDoorbell,
      args: [K.addr, K.data, K.size],
      run: (_w, s: IvshmemDoorbell, a) => s.write(a[0] as never, a[1] as never, a[2] as never),
    },
    {
      name: "ivshmem.read",
      target: firstDoorbell,
      args: [K.addr, K.size],
      run: (_w, s: IvshmemDoorbell, a) => s.read(a[0] as never, a[1] as never),
    },
    {
      name: "ivshmem.close",
      target: firstDoorbell,
      args: [],
      run: (_w, s: IvshmemDoorbell) => s.close(),
    },
    {
      name: "doorbellValue",
      args: [K.peer, K.small],
      run: (_w, _s, a) => doorbellValue(a[0] as never, a[1] as never),
    },
    {
      name: "new MemoryRegion",
      args: [() => "bar", (_w, n) => 16 + (n % 64), K.regionOps],
      run: (_w, _s, a) => new MemoryRegion(a[0] as never, a[1] as never, a[2] as never),
      keep: (w, r: MemoryRegion) => w.regions.push(r),
    },
    {
      name: "region.addEventfd",
      target: on((w) => w.regions),
      args: [K.addr, K.size, (_w, n) => n % 2 === 0, K.data, (w, n) => w.pick(w.notifiers, n)],
      run: (_w, s: MemoryRegion, a) =>
        s.addEventfd(a[0] as never, a[1] as never, a[2] as never, a[3] as never, a[4] as never),
    },
    {
      name: "region.delEventfd",
      target: on((w) => w.regions),
      args: [K.addr, K.size, (_w, n) => n % 2 === 0, K.data, (w, n) => w.pick(w.notifiers, n)],
      run: (_w, s: MemoryRegion, a) =>
        s.delEventfd(a[0] as never, a[1] as never, a[2] as never, a[3] as never, a[4] as never),
    },
    {
      name: "region.match/write/read",
      target: on((w) => w.regions),
      args: [K.addr, K.data, K.size],
      run: (_w, s: MemoryRegion, a) => [
        s.match(a[0] as never, a[1] as never, a[2] as never),
        s.write(a[0] as never, a[1] as never, a[2] as never),
        s.read(a[0] as never, a[2] as never),
      ],
    },
    {
      name: "new EventChannelNotifier",
      args: [K.evtchn, K.port],
      run: (_w, _s, a) => new EventChannelNotifier(a[0] as never, a[1] as never).notify(),
    },
  ];
}

function abiOps(): Op[] {
  const abi = on((w) => w.abis);
  return [
    {
      name: "createAbi",
      args: [K.abiKind, K.abiOptions],
      run: (_w, _s, a) => createAbi(a[0] as never, a[1] as never),
      keep: (w, x: EventAbi) => w.abis.push(x),
    },
    {
      name: "abiMaxPorts",
      args: [K.abiKind, (_w, n) => [32, 64][n % 2]],
      run: (_w, _s, a) => abiMaxPorts(a[0] as never, a[1] as never),
    },
    {
      name: "negotiateAbi",
      args: [K.abiKind, (_w, n) => [["2l"], ["2l", "fifo"]][n % 2]],
      run: (_w, _s, a) => negotiateAbi(a[0] as never, a[1] as never),
    },
    { name: "abiAfterReset", args: [K.abiKind], run: (_w, _s, a) => abiAfterReset(a[0] as never) },
    {
      name: "abi.setPending/mask/unmask",
      target: abi,
      args: [(_w, n) => 1 + (n % 60), K.small],
      run: (_w, s: EventAbi, a) => {
        const port = a[0] as never;
        const which = typeof a[1] === "number" ? a[1] % 4 : 0;
        if (which === 0) return s.setPending(port);
        if (which === 1) return s.mask(port);
        if (which === 2) return s.unmask(port);
        return s.isPending(port);
      },
    },
    {
      name: "abi.bindToVcpu",
      target: abi,
      args: [(_w, n) => 1 + (n % 60), () => 0],
      run: (_w, s: EventAbi, a) => s.bindToVcpu(a[0] as never, a[1] as never),
    },
    {
      name: "abi.setPriority",
      target: abi,
      args: [(_w, n) => 1 + (n % 60), (_w, n) => n % 16],
      run: (_w, s: EventAbi, a) => s.setPriority(a[0] as never, a[1] as never),
    },
    {
      name: "abi.setUpcallMask",
      target: abi,
      args: [() => 0, (_w, n) => n % 2 === 0],
      run: (_w, s: EventAbi, a) => s.setUpcallMask(a[0] as never, a[1] as never),
    },
    {
      name: "abi.scan",
      target: abi,
      args: [() => 0, K.fn, (_w, n) => (n % 2 === 0 ? undefined : n % 5)],
      run: (_w, s: EventAbi, a) => s.scan(a[0] as never, a[1] as never, a[2] as never),
    },
  ];
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof (v as { then?: unknown } | null)?.then === "function";
}

async function settle(w: World, what: string, p: PromiseLike<unknown>, keep?: Op["keep"]) {
  try {
    const value = await p;
    keep?.(w, value as never);
  } catch (error) {
    if (!(error instanceof XenError)) w.failures.push({ what, error });
  }
}

async function flush(): Promise<void> {
  for (let i = 0; i < 8; i++) await Promise.resolve();
}

let totalCalls = 0;
const perOp = new Map<string, number>();

const SURVEY = process.env.XENCHAN_FUZZ_SURVEY === "1";
const surveyed = new Map<string, string>();

async function runCalls(calls: readonly Call[]): Promise<void> {
  const w = new World();
  w.evtchns.push(await openEventChannels({ backend: w.hv.backend(0) }));
  w.evtchns.push(await openEventChannels({ backend: w.hv.backend(w.domids[1]) }));
  w.tables.push(await openGrantTable({ backend: w.hv.backend(0) }));
  w.shares.push(await openGrantShare({ backend: w.hv.backend(w.domids[1]) }));
  // d1 shares two pages with dom0 and dom0 maps them, so grant ops have real targets.
  const share = w.shares[0].sharePages(0, 2);
  w.shared.push(share);
  w.mappings.push(w.tables[0].mapDomainGrantRefs(w.domids[1], [...share.refs]));
  w.notifiers.push(new SimNotifier());
  w.doorbells.push(new IvshmemDoorbell());
  w.abis.push(createAbi("fifo", { maxPorts: 64 }));
  for (const call of calls) {
    const op = OPS[call.op % OPS.length];
    const n = call.args[0] && "valid" in call.args[0] ? call.args[0].valid : call.op;
    const self = op.target ? op.target(w, n) : null;
    if (self === undefined) continue;
    const args = op.args.map((kind, i) => {
      const a = call.args[i % call.args.length];
      return "valid" in a ? kind(w, a.valid + i) : a.junk;
    });
    totalCalls++;
    perOp.set(op.name, (perOp.get(op.name) ?? 0) + 1);
    const label = `${op.name}(${args.map(describe).join(", ")})`;
    try {
      const result = op.run(w, self as never, args);
      if (isThenable(result)) {
        const settled = settle(w, label, result, op.keep);
        w.waits.push(settled);
        await flush();
      } else {
        op.keep?.(w, result as never);
      }
    } catch (error) {
      if (!(error instanceof XenError)) w.failures.push({ what: label, error });
    }
  }
  if (SURVEY) {
    for (const f of w.failures as { what: string; error: Error }[]) {
      const key = `${f.what.split("(")[0]}: ${String(f.error?.message).slice(0, 80)}`;
      if (!surveyed.has(key)) {
        surveyed.set(key, `${f.what} -> ${f.error?.stack?.split("\n").slice(0, 3).join(" | ")}`);
      }
    }
    w.failures.length = 0;
  }
  await closeAll(w);
}

async function closeAll(w: World): Promise<void> {
  const expectXen = (what: string, f: () => void) => {
    try {
      f();
    } catch (error) {
      if (!(error instanceof XenError)) w.failures.push({ what, error });
    }
  };
  for (const off of w.unsubscribe) off();
  for (const ctx of w.contexts) expectXen("ctx.close", () => ctx.close());
  for (const h of w.evtchns) h.close();
  for (const drv of w.drivers) drv.close();
  for (const t of w.tables) t.close();
  for (const s of w.shares) s.close();
  for (const s of w.notifiers) s.close();
  for (const d of w.doorbells) d.close();
  await flush();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"stuck">((resolve) =>
    timer = setTimeout(() => resolve("stuck"), 2000)
  );
  const done = await Promise.race([Promise.all(w.waits).then(() => "ok" as const), timeout]);
  clearTimeout(timer);
  assert.equal(done, "ok", "a pending call never settled after close");
  assert.deepEqual(w.failures, [], "every failure must be a XenError");
  const stats = w.hv.stats();
  assert.deepEqual(
    {
      handles: stats.handles.total,
      boundPorts: stats.boundPorts,
      openPorts: stats.openPorts,
      activeGrants: stats.activeGrants,
      mappings: stats.mappings,
      shares: stats.shares,
    },
    { handles: 0, boundPorts: 0, openPorts: 0, activeGrants: 0, mappings: 0, shares: 0 },
    "the simulator holds nothing after close",
  );
  for (const h of w.evtchns) assert.deepEqual(h.holdings(), { ports: [], reading: false });
  for (const ctx of w.contexts) {
    const s = ctx.stats();
    assert.deepEqual(
      [s.fdWatches, s.timeouts, s.waiters, s.queued, s.watches, s.enabled],
      [0, 0, 0, 0, 0, 0],
      "a closed context holds nothing",
    );
  }
}

it(`api fuzz: >= ${MIN_CALLS} random calls, every failure a XenError, nothing left (seed ${SEED})`, async () => {
  const call = fc.record({
    op: fc.nat(OPS.length * 8),
    args: fc.array(arg, { minLength: 1, maxLength: 4 }),
  });
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(call, { minLength: 40, maxLength: 60 }), runCalls),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
  } catch (error) {
    console.error(`api fuzz failed; reproduce with XENCHAN_FUZZ_SEED=${SEED}`);
    // The counterexample (the whole call list) is long; the cause says what broke.
    throw (error as Error).cause ?? error;
  }
  if (SURVEY) { for (const v of surveyed.values()) console.log(v); }
  console.log(`api fuzz: ${totalCalls} calls over ${OPS.length} entry points, seed ${SEED}`);
  assert.ok(totalCalls >= MIN_CALLS, `only ${totalCalls} calls were made`);
  const untouched = OPS.filter((op) => !perOp.has(op.name)).map((op) => op.name);
  assert.deepEqual(untouched, [], "every entry point is called at least once");
});
