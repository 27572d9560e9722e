/**
 * The demo's report model: what a scenario measured and saw (the set-up,
 * the exchange, the crash, the domain's death), which parts of it were real
 * and which simulated, the checks made of it, and how finishReport turns a
 * scenario's findings into the report. It is the `--json` output as it
 * stands and the input of cli/demo_print.ts. Data and plain functions
 * only: no backend, no printing.
 *
 * @module
 */
import type { BackendKind } from "../mod.ts";
import { runtimeLabel } from "./facts.ts";
import { LIVE_OFFSET } from "./ring.ts";
import type { EndStats } from "./split_driver.ts";

/** One check of the demo: it passes only if every check is ok. */
export interface DemoCheck {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

/** One row of the "what ran where" table: [what, where it ran (REAL, simulated, SKIPPED)]. */
export type DemoPart = readonly [string, string];

/** What the demo did and saw (the --json output). */
export interface DemoReport {
  readonly backend: BackendKind;
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
  readonly parts: readonly DemoPart[];
  readonly checks: readonly DemoCheck[];
  readonly skipped: readonly string[];
  readonly ok: boolean;
  readonly ms: number;
}

/** A report's scenario-specific part: everything finishReport does not add. */
export type DemoFindings = Omit<DemoReport, "runtime" | "checks" | "ok" | "ms">;

/** What the back end saw of the crash up to its unmap-notify event (see cli/demo_phases.ts). */
export interface UnmapNotify {
  readonly liveBefore: number;
  readonly eventPort: number | null;
  readonly eventMs: number | null;
}

/**
 * The report's crash record: `how` it crashed, what the back end saw
 * (`seen`), and the live byte read after the event (`liveAfter`). Pure;
 * never throws.
 */
export function crashRecord(
  how: string,
  seen: UnmapNotify,
  liveAfter: number,
): DemoReport["crash"] {
  return {
    how,
    liveBefore: seen.liveBefore,
    liveAfter,
    eventPort: seen.eventPort,
    eventMs: seen.eventMs,
  };
}

/** Where the back end's half of the set-up stands: its ring page's grant ref and its port. */
export interface BackEndSetup {
  readonly ref: number;
  readonly port: number;
}

/**
 * The report's setup record; the back end is dom0. `back` gives the grant
 * ref and the back end's port, `frontPort` the port the front end bound,
 * `frontEnd` how it runs, `abi` the event delivery ABI text. Pure; never
 * throws.
 */
export function setupRecord(
  back: BackEndSetup,
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

/**
 * The checks and the report: the exchange and crash checks of `findings`
 * (the same for every scenario), then `last` (the scenario's own final
 * check); the report adds the runtime, `ok` (every check passed) and the
 * milliseconds since `t0` (a performance.now() reading). Never throws.
 */
export function finishReport(t0: number, findings: DemoFindings, last: DemoCheck): DemoReport {
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
