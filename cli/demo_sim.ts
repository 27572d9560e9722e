/**
 * The demo's simulator scenario: both ends in this process, on a private
 * SimHypervisor. dom0 is the back end, a new simulated domU the front end;
 * the crash is the simulator's Linux-style teardown of the front end's
 * process (mappings first), and the domain's destruction reaches the back
 * end as DOMAIN_DEATH through the osevent layer (EventContext,
 * simDomainSource, the sim clock loop). Nothing here is real Xen, and the
 * report's "what ran where" table says so.
 *
 * @module
 */
import {
  type EventChannels,
  openEventChannels,
  openGrantTable,
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
  type BackEnd,
  crashAndAwaitUnmapNotify,
  exchangePhase,
  serveRequests,
  withBackEnd,
  within,
} from "./demo_phases.ts";
import {
  crashRecord,
  type DemoCheck,
  type DemoPart,
  type DemoReport,
  finishReport,
  setupRecord,
} from "./demo_report.ts";
import type { DemoOptions, DemoScenario } from "./demo_scenario.ts";
import type { SharedRing } from "./ring.ts";
import { attachFrontEnd, runFrontEnd } from "./split_driver.ts";

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

/** Which parts were real: none, on the simulator. */
function simParts(frontDomid: number): DemoPart[] {
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

/**
 * The simulator scenario (DemoScenario): runs on a "sim" selection, for
 * any options. Its run() stages a private SimHypervisor with one new
 * domain for the front end, so the process-wide default simulator is left
 * untouched; it rejects only on a step timeout (the bind-time event, the
 * exchange) or a programming error.
 */
export const SIM_SCENARIO: DemoScenario = {
  name: "simulator",
  kind: "sim",
  applies: () => true,
  run: simDemo,
};
