/**
 * `xenchan demo`: a split-driver exchange between two domains, then the
 * front end crashes and the back end watches it go.
 *
 * The back end (dom0) shares a ring page and offers an unbound port; the
 * front end binds to the port and maps the page with unmap notification
 * (its live byte and its port); they exchange N requests and responses over
 * the ring (cli/ring.ts, Xen's ring.h protocol) with event channel
 * notifications; the front end's process crashes, and the back end sees the
 * live byte cleared and an event on its port; finally the front end's
 * domain is destroyed and the back end receives DOMAIN_DEATH through the
 * osevent layer.
 *
 * On the simulator (the default off Xen) both ends run in this process:
 * dom0 is the back end, a new simulated domU the front end. On real Xen
 * (`--backend ffi`, or "auto" in a dom0) it is dom0 loopback: the front end
 * is a child process of the same runtime (cli/demo_front.ts), killed with
 * SIGKILL, so the unmap notification is the real kernel's. No domain dies
 * in loopback, and xenchan's osevent layer has no real domain event source
 * (that needs xenstore), so the DOMAIN_DEATH step is reported as skipped
 * there: never faked.
 *
 * Both backends run the same phases in order: set-up of the back end,
 * attaching the front end, the exchange, the crash and its unmap-notify
 * event, domain death, then the checks and the report. What is the same on
 * both is one function used by both: withBackEnd (set-up), exchangePhase
 * (the exchange's timing and clean-up), crashAndAwaitUnmapNotify (the wait
 * for the event and its timing), finishReport (the checks and the report).
 * The rest is each backend's own (simDemo, ffiDemo); the child process is
 * driven through cli/demo_child.ts.
 *
 * @module
 */
import {
  type EventChannels,
  openEventChannels,
  openGrantShare,
  openGrantTable,
  selectBackend,
  SimHypervisor,
  type XenBackend,
} from "../mod.ts";
import {
  attachSimClockLoop,
  EventContext,
  eventMask,
  EventType,
  simDomainSource,
} from "../plugins/osevent/mod.ts";
import {
  backendOption,
  type CommandSpec,
  intOption,
  type ParsedValues,
  secondsOption,
} from "./args.ts";
import { type ChildExit, ChildFrontEnd } from "./demo_child.ts";
import { kernelEventAbi, openErrorHint, runtimeLabel } from "./facts.ts";
import { grouped, type Output } from "./io.ts";
import { LIVE_OFFSET, RING_SIZE, SharedRing } from "./ring.ts";
import { attachFrontEnd, type EndStats, runBackEnd, runFrontEnd } from "./split_driver.ts";

/** The demo command's arguments. */
export const DEMO_SPEC: CommandSpec = {
  name: "demo",
  summary: "split-driver exchange between two domains, then a front-end crash",
  options: {
    backend: { type: "string" },
    requests: { type: "string" },
    timeout: { type: "string" },
    json: { type: "boolean" },
  },
  help: `Usage: xenchan demo [--backend auto|sim|ffi] [--requests N] [--timeout S] [--json]

A split driver in miniature. The back end (dom0) shares a ring page and
offers an unbound event channel port; the front end binds to the port and
maps the page with unmap notification; they exchange N requests and
responses over the ring (Xen's ring.h protocol) with event notifications.
Then the front end's process crashes: the back end sees the live byte in
the page cleared and an event on its port. Then the front end's domain is
destroyed and the back end receives DOMAIN_DEATH through the osevent layer.

Backends:
  sim   both ends in this process: dom0 back end, a new simulated domU
        front end (the default when this is not a Xen dom0)
  ffi   real Xen, dom0 loopback: the front end is a child process that is
        killed with SIGKILL, so the unmap notification is real. No domain
        dies in loopback: the DOMAIN_DEATH step is skipped and says so.
  auto  ffi in a Xen dom0, sim elsewhere (default)

Options:
  --backend B   auto (default), sim or ffi
  --requests N  requests to exchange (default 1000)
  --timeout S   seconds to wait for any one step (default 30)
  --json        print the report as one JSON object instead of text
  -h, --help    show this help

Exit status: 0 when every check passed, 1 when one failed.`,
};

/** Options of runDemo. */
export interface DemoOptions {
  readonly backend: "auto" | "sim" | "ffi";
  readonly requests: number;
  readonly timeoutMs: number;
  readonly json: boolean;
}

/** Converts parsed arguments. Throws UsageError for bad values. */
export function demoOptions(values: ParsedValues): DemoOptions {
  return {
    backend: backendOption("demo", values.backend),
    requests: intOption("demo", "requests", values.requests, 1000, 1, 10_000_000),
    timeoutMs: secondsOption("demo", "timeout", values.timeout, 30_000),
    json: values.json === true,
  };
}

/** One check of the demo: it passes only if every check is ok. */
export interface DemoCheck {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

/** What the demo did and saw (the --json output). */
export interface DemoReport {
  readonly backend: "sim" | "ffi";
  /** Why this backend. */
  readonly reason: string;
  readonly runtime: string;
  readonly setup: {
    readonly backDomid: number;
    readonly frontDomid: number;
    readonly ref: number;
    readonly backPort: number;
    readonly frontPort: number;
    /** How the front end runs ("simulated process ..." or "child process pid ..."). */
    readonly frontEnd: string;
    /** The event delivery ABI of each side, and how it is known. */
    readonly abi: string;
  };
  readonly exchange: {
    readonly requests: number;
    readonly front: EndStats;
    readonly back: EndStats;
    readonly ms: number;
  };
  readonly crash: {
    readonly how: string;
    readonly liveBefore: number;
    readonly liveAfter: number;
    /** The port the back end's event arrived on, or null. */
    readonly eventPort: number | null;
    /** Milliseconds from the crash to the event, or null. */
    readonly eventMs: number | null;
  };
  readonly death: { readonly status: "received" | "skipped" | "missing"; readonly detail: string };
  /** [what, where it ran], for the "which parts were real" table. */
  readonly parts: readonly (readonly [string, string])[];
  readonly checks: readonly DemoCheck[];
  readonly skipped: readonly string[];
  readonly ok: boolean;
  readonly ms: number;
}

/** An AbortSignal that aborts with a clear message after `ms`; call clear() when done. */
function stepDeadline(ms: number, what: string): { signal: AbortSignal; clear(): void } {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new Error(`timed out after ${ms} ms waiting for ${what}`)),
    ms,
  );
  return { signal: controller.signal, clear: () => clearTimeout(timer) };
}

/** Runs `run` with a signal that aborts after `ms` (see stepDeadline); resolves or rejects as it does. */
async function within<T>(
  ms: number,
  what: string,
  run: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const d = stepDeadline(ms, what);
  try {
    return await run(d.signal);
  } finally {
    d.clear();
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Unmasks and discards events already pending on a handle; returns how many. */
function drain(evtchn: EventChannels): number {
  let n = 0;
  for (let port = evtchn.tryPending(); port !== null; port = evtchn.tryPending()) {
    evtchn.unmask(port);
    n++;
  }
  return n;
}

// ---- phases shared by both backends ----

/** The back end (dom0) as withBackEnd sets it up. */
interface BackEnd {
  readonly evtchn: EventChannels;
  readonly ring: SharedRing;
  /** The grant ref of the shared ring page. */
  readonly ref: number;
  /** The unbound port offered to the front end's domain. */
  readonly port: number;
  /** Reads the ring page's live byte (LIVE_OFFSET) now. */
  live(): number;
}

/**
 * Set-up of the back end: opens an event channel handle and a grant share
 * handle on `backend`, shares one page with `frontDomid` as the ring
 * (initialised) and binds an unbound port for `frontDomid`; then resolves
 * with what `run` resolves with. Both handles are closed (the share first)
 * when `run` settles or a step here throws. Rejects with what opening,
 * sharing or binding throws (LibraryNotFoundError, XenCallError, ...) or
 * what `run` rejects with.
 */
async function withBackEnd<T>(
  backend: XenBackend | "ffi",
  frontDomid: number,
  run: (back: BackEnd) => Promise<T>,
): Promise<T> {
  using evtchn = await openEventChannels({ backend });
  using shr = await openGrantShare({ backend });
  const share = shr.sharePages(frontDomid, 1);
  const page = share.pages[0];
  const ring = new SharedRing(page);
  ring.init();
  const port = evtchn.bindUnboundPort(frontDomid);
  return await run({ evtchn, ring, ref: share.refs[0], port, live: () => page[LIVE_OFFSET] });
}

/** The back end's loop (runBackEnd) on `back`: answers `requests` requests. Rejects as runBackEnd does. */
function serveRequests(back: BackEnd, requests: number, signal: AbortSignal): Promise<EndStats> {
  return runBackEnd({ evtchn: back.evtchn, port: back.port, ring: back.ring, requests, signal });
}

/**
 * The exchange's timing and clean-up: runs `run` (both ends' loops,
 * resolving with [front end stats, back end stats]) and times it; then,
 * when `settleMs` > 0, waits that long for a last in-flight notification to
 * land, and discards the events left pending on the back end's handle.
 * Rejects with what `run` rejects with.
 */
async function exchangePhase(
  back: BackEnd,
  requests: number,
  settleMs: number,
  run: () => Promise<[EndStats, EndStats]>,
): Promise<DemoReport["exchange"]> {
  const tx = performance.now();
  const [frontStats, backStats] = await run();
  const ms = performance.now() - tx;
  if (settleMs > 0) await sleep(settleMs);
  drain(back.evtchn);
  return { requests, front: frontStats, back: backStats, ms };
}

/** What the back end saw of the crash up to its unmap-notify event. */
interface UnmapNotify {
  readonly liveBefore: number;
  readonly eventPort: number | null;
  readonly eventMs: number | null;
}

/**
 * The crash and its unmap-notify event: reads the live byte, calls `crash`,
 * then waits up to `timeoutMs` for an event on the back end's handle (timed
 * from the crash) and unmasks it. A missing event (timeout or failure) is
 * not an error: eventPort stays null for the checks to report. Rejects only
 * with what `crash` throws.
 */
async function crashAndAwaitUnmapNotify(
  back: BackEnd,
  timeoutMs: number,
  crash: () => void,
): Promise<UnmapNotify> {
  const liveBefore = back.live();
  const tc = performance.now();
  crash();
  let eventPort: number | null = null;
  let eventMs: number | null = null;
  try {
    eventPort = await within(
      timeoutMs,
      "the unmap-notify event",
      (signal) => back.evtchn.pending({ signal }),
    );
    eventMs = performance.now() - tc;
    back.evtchn.unmask(eventPort);
  } catch {
    // reported by the checks
  }
  return { liveBefore, eventPort, eventMs };
}

/** The report's crash record: how it crashed, what the back end saw, the live byte afterwards. */
function crashRecord(how: string, seen: UnmapNotify, liveAfter: number): DemoReport["crash"] {
  return {
    how,
    liveBefore: seen.liveBefore,
    liveAfter,
    eventPort: seen.eventPort,
    eventMs: seen.eventMs,
  };
}

/** The report's setup record; the back end is dom0. */
function setupRecord(
  back: BackEnd,
  frontDomid: number,
  frontPort: number,
  frontEnd: string,
  abi: string,
): DemoReport["setup"] {
  return { backDomid: 0, frontDomid, ref: back.ref, backPort: back.port, frontPort, frontEnd, abi };
}

function exchangeChecks(exchange: DemoReport["exchange"]): DemoCheck[] {
  const { requests: n, front, back } = exchange;
  return [
    {
      name: "every request answered",
      ok: front.requests === n && back.responses === n && front.responses === n,
      detail:
        `${front.requests} requests sent, ${back.responses} answered, ${front.responses} responses read`,
    },
    {
      name: "every response correct (id, order, status, checksum)",
      ok: front.errors.length === 0,
      detail: front.errors.length === 0 ? `${front.responses} verified` : front.errors.join("; "),
    },
    {
      name: "no event without a notification",
      ok: back.eventsReceived <= front.notifiesSent && front.eventsReceived <= back.notifiesSent,
      detail:
        `back end received ${back.eventsReceived} of ${front.notifiesSent} sent to it, front end ` +
        `${front.eventsReceived} of ${back.notifiesSent}`,
    },
  ];
}

function crashChecks(backPort: number, crash: DemoReport["crash"]): DemoCheck[] {
  const { liveBefore, liveAfter, eventPort } = crash;
  return [
    {
      name: "live byte set while the front end runs",
      ok: liveBefore === 1,
      detail: `byte ${LIVE_OFFSET} of the ring page = ${liveBefore}`,
    },
    {
      name: "unmap notification cleared the live byte",
      ok: liveAfter === 0,
      detail: `byte ${LIVE_OFFSET} = ${liveAfter} after the crash`,
    },
    {
      name: "unmap notification sent an event to the back end's port",
      ok: eventPort === backPort,
      detail: eventPort === null
        ? "no event"
        : `event on port ${eventPort} (back end port ${backPort})`,
    },
  ];
}

/** A report's backend-specific part: everything finishReport does not add. */
type DemoFindings = Omit<DemoReport, "runtime" | "checks" | "ok" | "ms">;

/**
 * The checks and the report: the exchange and crash checks of `findings`,
 * then `last` (the backend's own final check); the report adds the runtime,
 * `ok` (every check passed) and the milliseconds since `t0`.
 */
function finishReport(t0: number, findings: DemoFindings, last: DemoCheck): DemoReport {
  const checks = [
    ...exchangeChecks(findings.exchange),
    ...crashChecks(findings.setup.backPort, findings.crash),
    last,
  ];
  return {
    backend: findings.backend,
    reason: findings.reason,
    runtime: runtimeLabel(),
    setup: findings.setup,
    exchange: findings.exchange,
    crash: findings.crash,
    death: findings.death,
    parts: findings.parts,
    checks,
    skipped: findings.skipped,
    ok: checks.every((c) => c.ok),
    ms: performance.now() - t0,
  };
}

// ---- the simulator: both ends in this process ----

/** The front end in this process, attached by attachSimFrontEnd. */
interface SimFrontEnd {
  readonly evtchn: EventChannels;
  readonly port: number;
  readonly ring: SharedRing;
}

/**
 * Attaching the front end on the simulator: opens handles as `frontProc`
 * (a process of the front end's domain), binds to the back end's port and
 * maps its ring page with unmap notification (attachFrontEnd). The handles
 * are not closed: the front end's crash tears them down. Rejects with a
 * timeout Error after `timeoutMs` without the bind-time event, or with what
 * opening or attaching throws.
 */
async function attachSimFrontEnd(
  frontProc: XenBackend,
  back: BackEnd,
  timeoutMs: number,
): Promise<SimFrontEnd> {
  const evtchn = await openEventChannels({ backend: frontProc });
  const grants = await openGrantTable({ backend: frontProc });
  const front = await within(
    timeoutMs,
    "the bind-time event",
    (signal) => attachFrontEnd(evtchn, grants, 0, back.port, back.ref, signal),
  );
  return { evtchn, port: front.port, ring: front.ring };
}

/** The exchange on the simulator: both ends' loops at once, under one deadline. */
function simExchange(
  back: BackEnd,
  front: SimFrontEnd,
  options: DemoOptions,
): Promise<DemoReport["exchange"]> {
  const { requests, timeoutMs } = options;
  return exchangePhase(
    back,
    requests,
    0,
    () =>
      within(timeoutMs, "the exchange", (signal) =>
        Promise.all([
          runFrontEnd({ ...front, requests, signal }),
          serveRequests(back, requests, signal),
        ])),
  );
}

/**
 * Domain death on the simulator: destroys `domid`, then waits up to
 * `timeoutMs` for its DOMAIN_DEATH from `ctx`. A missing event gives status
 * "missing" with the error's message. Rejects only with what destroy throws.
 */
async function destroyAndAwaitDeath(
  hv: SimHypervisor,
  ctx: EventContext,
  domid: number,
  timeoutMs: number,
): Promise<DemoReport["death"]> {
  hv.destroy(domid);
  try {
    const ev = await within(
      timeoutMs,
      "DOMAIN_DEATH",
      (signal) => ctx.eventWait(eventMask(EventType.DOMAIN_DEATH), { domid }, { signal }),
    );
    return {
      status: "received",
      detail: `DOMAIN_DEATH for domain ${ev.domid} (forUser ${JSON.stringify(ev.forUser)})`,
    };
  } catch (error) {
    return { status: "missing", detail: (error as Error).message };
  }
}

/** The simulator's final check: the domain's death came through the osevent layer. */
function deathCheck(death: DemoReport["death"]): DemoCheck {
  return {
    name: "DOMAIN_DEATH through the osevent layer",
    ok: death.status === "received",
    detail: death.detail,
  };
}

/** The event delivery ABI of the two simulated domains. */
function simAbi(hv: SimHypervisor, frontDomid: number): string {
  return `d0 ${hv.domainInfo(0)?.abi}, d${frontDomid} ${hv.domainInfo(frontDomid)?.abi} ` +
    "(simulated: Xen offers 2-level and FIFO, and each domain asks for FIFO, as Linux does)";
}

function simParts(frontDomid: number): DemoReport["parts"] {
  return [
    ["event channels, grant share/map", "simulator (sim/, SimHypervisor)"],
    ["front end", `simulated domain ${frontDomid}, same JS process`],
    ["crash + unmap notification", "simulator (simulated Linux process teardown)"],
    [
      "DOMAIN_DEATH",
      "simulator domain destroy -> osevent (EventContext, simDomainSource, sim clock loop)",
    ],
  ];
}

/** The demo on a private SimHypervisor: both ends in this process. */
async function simDemo(options: DemoOptions, reason: string): Promise<DemoReport> {
  const t0 = performance.now();
  const hv = new SimHypervisor();
  const frontDomid = hv.createDomain();
  const backProc = hv.backend(0);
  const frontProc = hv.backend(frontDomid);
  const abi = simAbi(hv, frontDomid);
  using ctx = new EventContext({ clock: hv.clock, domains: simDomainSource(hv) });
  attachSimClockLoop(ctx);
  ctx.enableDomainDeath(frontDomid, "demo front end");
  return await withBackEnd(backProc, frontDomid, async (back) => {
    const front = await attachSimFrontEnd(frontProc, back, options.timeoutMs);
    const exchange = await simExchange(back, front, options);
    // the crash: Linux-style teardown of the front end's process (mappings first)
    const seen = await crashAndAwaitUnmapNotify(back, options.timeoutMs, () => frontProc.crash());
    const crash = crashRecord(
      `the simulator killed process ${frontProc.pid} of d${frontDomid} (SimDomainBackend.crash(): ` +
        "mappings torn down first, as Linux does)",
      seen,
      back.live(),
    );
    const death = await destroyAndAwaitDeath(hv, ctx, frontDomid, options.timeoutMs);
    const frontEnd = `simulated process ${frontProc.pid} of domain ${frontDomid}, in this process`;
    return finishReport(t0, {
      backend: "sim",
      reason,
      setup: setupRecord(back, frontDomid, front.port, frontEnd, abi),
      exchange,
      crash,
      death,
      parts: simParts(frontDomid),
      skipped: [],
    }, deathCheck(death));
  });
}

// ---- real Xen: dom0 loopback, the front end in a child process ----

/** The child front end's `ready` line. */
interface ChildReady {
  readonly pid: number;
  readonly port: number;
  readonly runtime: string;
}

/** Attaching the front end on real Xen: waits up to `timeoutMs` for the child's `ready` line. Rejects as ChildFrontEnd.next does. */
async function childReady(child: ChildFrontEnd, timeoutMs: number): Promise<ChildReady> {
  return JSON.parse(
    await within(timeoutMs, "the front end to start", (signal) => child.next("ready", signal)),
  ) as ChildReady;
}

/** The exchange on real Xen: the back end's loop here, then the child's stats from its `done` line. */
function ffiExchange(
  back: BackEnd,
  child: ChildFrontEnd,
  options: DemoOptions,
): Promise<DemoReport["exchange"]> {
  const { requests, timeoutMs } = options;
  // settle 50 ms: let a last in-flight notification land before draining it
  return exchangePhase(back, requests, 50, async () => {
    const backStats = await within(
      timeoutMs,
      "the exchange",
      (signal) => serveRequests(back, requests, signal),
    );
    const frontStats = JSON.parse(
      await within(timeoutMs, "the front end's result", (signal) => child.next("done", signal)),
    ) as EndStats;
    return [frontStats, backStats];
  });
}

/** Domain death in loopback: no domain dies, so it is skipped, never faked. */
const LOOPBACK_DEATH: DemoReport["death"] = {
  status: "skipped",
  detail: "no domain dies in dom0 loopback, and xenchan's osevent layer has no real domain " +
    "event source (it would need xenstore's @releaseDomain watch); not faked",
};

/** Real Xen's final check: the child was killed by the crash's SIGKILL. */
function killedCheck(exit: ChildExit): DemoCheck {
  return {
    name: "front end process killed",
    ok: exit.signal === "SIGKILL",
    detail: `exit: ${exit.signal ?? `code ${exit.code}`}`,
  };
}

/** The dom0 kernel's event delivery ABI, from its log. */
function loopbackAbi(): string {
  const abi = kernelEventAbi();
  return abi.ok
    ? `${abi.value} (dom0 kernel, ${abi.source})`
    : `unknown (${abi.reason}); Linux uses FIFO whenever Xen offers it`;
}

function ffiParts(pid: number): DemoReport["parts"] {
  return [
    ["event channels, grant share/map", "REAL Xen (libxenevtchn / libxengnttab through FFI)"],
    ["front end", `REAL separate process (pid ${pid}) in dom0 (loopback, domid 0)`],
    [
      "crash + unmap notification",
      "REAL (SIGKILL; cleared by the dom0 kernel, event through Xen)",
    ],
    ["DOMAIN_DEATH", "SKIPPED (no domain dies in loopback; not simulated, not faked)"],
  ];
}

/** The demo on real Xen, dom0 loopback: the front end is a child process. */
async function ffiDemo(options: DemoOptions, reason: string): Promise<DemoReport> {
  const t0 = performance.now();
  return await withBackEnd("ffi", 0, async (back) => {
    const { requests, timeoutMs } = options;
    using child = new ChildFrontEnd({ ref: back.ref, port: back.port, requests, timeoutMs });
    const ready = await childReady(child, timeoutMs);
    const exchange = await ffiExchange(back, child, options);
    // the crash: SIGKILL; the dom0 kernel tears the mapping down (clear byte + event)
    const seen = await crashAndAwaitUnmapNotify(back, timeoutMs, () => child.kill());
    const exit = await within(timeoutMs, "the front end to exit", (signal) => child.exit(signal));
    const crash = crashRecord(
      `SIGKILL to pid ${ready.pid}; the real dom0 kernel (gntdev) tore its mapping down`,
      seen,
      back.live(),
    );
    const frontEnd =
      `child process pid ${ready.pid} (${ready.runtime}: ${child.shown}), dom0 loopback`;
    return finishReport(t0, {
      backend: "ffi",
      reason,
      setup: setupRecord(back, 0, ready.port, frontEnd, loopbackAbi()),
      exchange,
      crash,
      death: LOOPBACK_DEATH,
      parts: ffiParts(ready.pid),
      skipped: [`DOMAIN_DEATH: ${LOOPBACK_DEATH.detail}`],
    }, killedCheck(exit));
  });
}

function ms(value: number): string {
  return value < 10 ? `${value.toFixed(2)} ms` : `${Math.round(value)} ms`;
}

/** Prints the report as the human-readable summary. */
export function printDemo(r: DemoReport, out: Output): void {
  const { setup, exchange, crash } = r;
  const real = r.backend === "ffi";
  out.log(
    `xenchan demo: split driver, back end d${setup.backDomid} <-> front end d${setup.frontDomid}` +
      (real ? " (dom0 loopback)" : ""),
  );
  out.log(`backend: ${real ? "ffi (REAL Xen)" : "sim (simulator)"}, ${r.runtime}; ${r.reason}`);
  out.log("");
  out.log("setup");
  out.log(
    `  back end  d${setup.backDomid}: shared the ring page as grant ref ${setup.ref}; ` +
      `unbound port ${setup.backPort} offered to d${setup.frontDomid}`,
  );
  out.log(
    `  front end d${setup.frontDomid}: bound port ${setup.frontPort} to it; mapped ref ${setup.ref} ` +
      `with unmap-notify (live byte ${LIVE_OFFSET} = 1, port ${setup.frontPort})`,
  );
  out.log(`  front end runs as: ${setup.frontEnd}`);
  out.log(`  event delivery ABI: ${setup.abi}`);
  out.log("");
  const f = exchange.front;
  const b = exchange.back;
  const bytes = f.bytesWritten + b.bytesWritten;
  const perSecond = exchange.ms > 0 ? (exchange.requests * 1000) / exchange.ms : 0;
  out.log(
    `exchange: ${
      grouped(exchange.requests)
    } requests over a ${RING_SIZE}-slot ring (Xen ring.h protocol)`,
  );
  out.log(
    `  requests ${grouped(f.requests)} sent, ${grouped(b.responses)} answered, ` +
      `${grouped(f.responses)} responses checked, ${f.errors.length} wrong`,
  );
  out.log(
    `  bytes moved through the shared page: ${grouped(bytes)} ` +
      `(requests ${grouped(f.bytesWritten)}, responses ${grouped(b.bytesWritten)})`,
  );
  out.log(
    `  events front -> back: ${grouped(f.notifiesSent)} notifications sent, ` +
      `${grouped(b.eventsReceived)} events received`,
  );
  out.log(
    `  events back -> front: ${grouped(b.notifiesSent)} notifications sent, ` +
      `${grouped(f.eventsReceived)} events received`,
  );
  out.log(`  (ring.h hold-off: a side notifies only when the other asked to be woken)`);
  out.log(`  time: ${ms(exchange.ms)} (${grouped(perSecond)} requests/s)`);
  out.log("");
  out.log("crash of the front end");
  out.log(`  ${crash.how}`);
  out.log(
    `  live byte ${LIVE_OFFSET}: ${crash.liveBefore} before the crash, ${crash.liveAfter} after`,
  );
  out.log(
    crash.eventPort === null
      ? "  unmap-notify event: NOT received"
      : `  unmap-notify event on back-end port ${crash.eventPort}, ${
        ms(crash.eventMs ?? 0)
      } after the crash`,
  );
  out.log(
    r.death.status === "skipped"
      ? "domain death: SKIPPED"
      : `domain destroyed (d${setup.frontDomid})`,
  );
  out.log(`  ${r.death.status === "received" ? "osevent: " : ""}${r.death.detail}`);
  out.log("");
  out.log("what ran where");
  const width = Math.max(...r.parts.map(([what]) => what.length));
  for (const [what, where] of r.parts) out.log(`  ${what.padEnd(width)}  ${where}`);
  out.log("");
  out.log("checks");
  for (const c of r.checks) out.log(`  ${c.ok ? "ok  " : "FAIL"} ${c.name}: ${c.detail}`);
  for (const s of r.skipped) out.log(`  skip ${s}`);
  const passed = r.checks.filter((c) => c.ok).length;
  out.log("");
  out.log(
    `result: ${r.ok ? "PASS" : "FAIL"} (${passed} of ${r.checks.length} checks passed` +
      `${r.skipped.length ? `, ${r.skipped.length} skipped` : ""}) in ${ms(r.ms)}`,
  );
}

/**
 * Runs the demo on the chosen backend and prints the summary (or JSON).
 * Resolves to 0 when every check passed, 1 otherwise (a step that fails
 * outright, for example a timeout, is printed and gives 1). Rejects only
 * for programming errors.
 */
export async function runDemo(options: DemoOptions, out: Output): Promise<number> {
  let selection;
  try {
    selection = await selectBackend(options.backend);
  } catch (error) {
    out.err(
      `xenchan demo: the ${options.backend} backend is not available: ${(error as Error).message}`,
    );
    return 1;
  }
  let report: DemoReport;
  try {
    report = selection.kind === "ffi"
      ? await ffiDemo(options, selection.reason)
      : await simDemo(options, selection.reason);
  } catch (error) {
    out.err(
      `xenchan demo: FAIL: ${(error as Error)?.message ?? String(error)}${openErrorHint(error)}`,
    );
    return 1;
  }
  if (options.json) out.log(JSON.stringify(report));
  else printDemo(report, out);
  return report.ok ? 0 : 1;
}
