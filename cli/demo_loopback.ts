/**
 * The demo's real-Xen scenario, dom0 loopback: the back end in this
 * process and the front end in a child process of the same runtime
 * (cli/demo_child.ts drives cli/demo_front.ts), both in dom0 (domid 0).
 * The crash is SIGKILL, so the unmap notification (live byte cleared,
 * event sent) is the real dom0 kernel's. No domain dies in loopback, and
 * xenchan's osevent layer has no real domain event source (that needs
 * xenstore), so the DOMAIN_DEATH step is reported as skipped: never faked.
 *
 * @module
 */
import {
  type BackEnd,
  crashAndAwaitUnmapNotify,
  exchangePhase,
  serveRequests,
  withBackEnd,
  within,
} from "./demo_phases.ts";
import { type ChildExit, ChildFrontEnd } from "./demo_child.ts";
import {
  crashRecord,
  type DemoCheck,
  type DemoPart,
  type DemoReport,
  finishReport,
  setupRecord,
} from "./demo_report.ts";
import type { DemoOptions, DemoScenario } from "./demo_scenario.ts";
import { kernelEventAbi } from "./facts.ts";
import type { EndStats } from "./split_driver.ts";

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
function loopbackExchange(
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

/** Which parts were real: all but DOMAIN_DEATH, which is skipped. */
function loopbackParts(pid: number): DemoPart[] {
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
async function loopbackDemo(options: DemoOptions, reason: string): Promise<DemoReport> {
  const t0 = performance.now();
  return await withBackEnd("ffi", 0, async (back) => {
    const { requests, timeoutMs } = options;
    using child = new ChildFrontEnd({ ref: back.ref, port: back.port, requests, timeoutMs });
    const ready = await childReady(child, timeoutMs);
    const exchange = await loopbackExchange(back, child, options);
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
      parts: loopbackParts(ready.pid),
      skipped: [`DOMAIN_DEATH: ${LOOPBACK_DEATH.detail}`],
    }, killedCheck(exit));
  });
}

/**
 * The dom0 loopback scenario (DemoScenario): runs on an "ffi" selection,
 * for any options (the real-guest scenario, cli/demo_guest.ts, goes before
 * it in the table and claims the options that name a guest). Its run()
 * rejects with what opening the real libraries or devices throws
 * (LibraryNotFoundError, XenCallError), with a step timeout, or when the
 * child front end fails to start; the child is killed (if still running)
 * and both handles are closed either way.
 */
export const LOOPBACK_SCENARIO: DemoScenario = {
  name: "dom0 loopback",
  kind: "ffi",
  applies: () => true,
  run: loopbackDemo,
};
