/**
 * The seam between the demo command (cli/demo.ts) and its scenarios: the
 * options every scenario gets and the interface each one implements. A
 * scenario is one way to stage the same split driver: where the back end
 * runs, where the front end runs, how it crashes, what is real. There are
 * three (cli/demo_sim.ts: both ends simulated in this process;
 * cli/demo_loopback.ts: real Xen, front end in a dom0 child process;
 * cli/demo_guest.ts: real Xen, front end in a real guest domain, chosen
 * with --guest and placed before the loopback one in cli/demo.ts's table).
 * Another is one more DemoScenario in that table, placed before the one it
 * should win over.
 *
 * @module
 */
import type { BackendKind } from "../mod.ts";
import type { DemoReport } from "./demo_report.ts";

/** Options of runDemo, as demoOptions converts them; every scenario gets all of them. */
export interface DemoOptions {
  readonly backend: "auto" | "sim" | "ffi";
  readonly requests: number;
  readonly timeoutMs: number;
  readonly json: boolean;
  /** Run the front end in a real guest domain (cli/demo_guest.ts; needs the harness dom0). */
  readonly guest?: boolean;
  /**
   * Where DOMAIN_DEATH comes from: "xenstore" (default: the @releaseDomain
   * watch and libxenctrl's domain list) or "libxl" (libxenlight's death
   * watch, driven by the osevent hooks). Only a scenario with
   * `libxlSource: true` takes "libxl"; runDemo refuses it elsewhere.
   */
  readonly source?: "xenstore" | "libxl";
}

/** One staging of the demo, run on one kind of backend. */
export interface DemoScenario {
  /** A short name for messages, e.g. "simulator" or "dom0 loopback". */
  readonly name: string;
  /** The backend kind it runs on; runDemo considers it only when selectBackend picked this kind. */
  readonly kind: BackendKind;
  /**
   * Whether it can take libxl as its domain event source (options.source
   * "libxl"); runDemo refuses that option with a UsageError for a scenario
   * without it.
   */
  readonly libxlSource?: boolean;
  /**
   * Whether this scenario takes `options` (for example a guest scenario
   * would take them only when a guest domain is named). Pure, never
   * throws; the first scenario of the right kind that applies runs.
   */
  applies(options: DemoOptions): boolean;
  /**
   * Runs the whole demo: set-up, attach, exchange, crash and its
   * unmap-notify event, domain death, checks. `reason` is why the backend
   * was chosen (selectBackend's reason), copied into the report.
   * Resolves with the report whether or not its checks passed (a missing
   * event is a failed check, not a rejection). Rejects when a step fails
   * outright: opening the backend (LibraryNotFoundError, XenCallError), a
   * step's timeout (Error "timed out after N ms waiting for ..."), the
   * front end failing to start. Every handle, mapping and child process it
   * made is released when it settles, either way. Reentrant: each call
   * opens its own handles and stages its own domains or child process.
   */
  run(options: DemoOptions, reason: string): Promise<DemoReport>;
}
