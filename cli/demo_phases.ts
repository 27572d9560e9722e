/**
 * The demo's phases that every scenario runs the same way: the step
 * deadline (within), set-up of the back end in dom0 (withBackEnd), the back
 * end's request loop (serveRequests), the exchange's timing and clean-up
 * (exchangePhase), and the crash with the wait for its unmap-notify event
 * (crashAndAwaitUnmapNotify). What differs between scenarios (where the
 * front end runs, how it crashes, domain death) is in each scenario's file.
 *
 * @module
 */
import { type EventChannels, openEventChannels, openGrantShare, type XenBackend } from "../mod.ts";
import type { DemoReport, UnmapNotify } from "./demo_report.ts";
import { LIVE_OFFSET, SharedRing } from "./ring.ts";
import { type EndStats, runBackEnd } from "./split_driver.ts";

/** An AbortSignal that aborts with a clear message after `ms`; call clear() when done. */
function stepDeadline(ms: number, what: string): { signal: AbortSignal; clear(): void } {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new Error(`timed out after ${ms} ms waiting for ${what}`)),
    ms,
  );
  return { signal: controller.signal, clear: () => clearTimeout(timer) };
}

/**
 * Runs `run` with a signal that aborts after `ms` with the Error "timed out
 * after `ms` ms waiting for `what`"; resolves or rejects as `run` does. The
 * timer is cleared when `run` settles. Reentrant.
 */
export async function within<T>(
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

/** The back end (dom0) as withBackEnd sets it up. */
export interface BackEnd {
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
export async function withBackEnd<T>(
  backend: XenBackend | "ffi",
  frontDomid: number,
  run: (back: BackEnd) => Promise<T>,
): Promise<T> {
  using evtchn = await openEventChannels({ backend });
  using shr = await openGrantShare({ backend });
  // `using` keeps the share reachable while `run` works on its page: dropped, the GC backstop
  // would unshare it under the front end.
  using share = shr.sharePages(frontDomid, 1);
  const page = share.pages[0];
  const ring = new SharedRing(page);
  ring.init();
  const port = evtchn.bindUnboundPort(frontDomid);
  try {
    return await run({ evtchn, ring, ref: share.refs[0], port, live: () => page[LIVE_OFFSET] });
  } finally {
    // Also keeps the share reachable while `run` uses only its page: a collector would
    // otherwise let the leak backstop unshare the ring under the front end.
    if (!share.released) share.unshare();
  }
}

/**
 * The back end's loop (runBackEnd) on `back`: answers `requests` requests,
 * resolving with its stats. Rejects as runBackEnd does (for example when
 * `signal` aborts).
 */
export function serveRequests(
  back: BackEnd,
  requests: number,
  signal: AbortSignal,
): Promise<EndStats> {
  return runBackEnd({ evtchn: back.evtchn, port: back.port, ring: back.ring, requests, signal });
}

/**
 * The exchange's timing and clean-up: runs `run` (both ends' loops,
 * resolving with [front end stats, back end stats]) and times it; then,
 * when `settleMs` > 0, waits that long for a last in-flight notification to
 * land, and discards the events left pending on the back end's handle.
 * Resolves with the report's exchange record. Rejects with what `run`
 * rejects with (nothing is drained then).
 */
export async function exchangePhase(
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

/**
 * The crash and its unmap-notify event: reads the live byte, calls `crash`,
 * then waits up to `timeoutMs` for an event on the back end's handle (timed
 * from the crash) and unmasks it. A missing event (timeout or failure) is
 * not an error: eventPort stays null for the checks to report. Rejects only
 * with what `crash` throws.
 */
export async function crashAndAwaitUnmapNotify(
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
