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
 * This file is the command: its arguments, and runDemo, which selects the
 * backend, picks the scenario from DEMO_SCENARIOS and prints its report.
 * The rest, one concern a file:
 *   cli/demo_scenario.ts  the DemoScenario interface and DemoOptions
 *   cli/demo_sim.ts       the simulator scenario: both ends in this process
 *   cli/demo_loopback.ts  real Xen, dom0 loopback: the front end is a child
 *                         process (cli/demo_child.ts, cli/demo_front.ts)
 *                         killed with SIGKILL; DOMAIN_DEATH is skipped there,
 *                         never faked
 *   cli/demo_phases.ts    the phases every scenario runs the same way
 *   cli/demo_report.ts    the report model (what was measured and seen,
 *                         which parts were real) and its checks
 *   cli/demo_print.ts     the text summary
 *
 * @module
 */
import { selectBackend } from "../mod.ts";
import {
  backendOption,
  type CommandSpec,
  intOption,
  type ParsedValues,
  secondsOption,
  UsageError,
} from "./args.ts";
import { GUEST_SCENARIO } from "./demo_guest.ts";
import { LOOPBACK_SCENARIO } from "./demo_loopback.ts";
import { printDemo } from "./demo_print.ts";
import type { DemoReport } from "./demo_report.ts";
import type { DemoOptions, DemoScenario } from "./demo_scenario.ts";
import { SIM_SCENARIO } from "./demo_sim.ts";
import { openErrorHint } from "./facts.ts";
import type { Output } from "./io.ts";

export type { DemoCheck, DemoPart, DemoReport } from "./demo_report.ts";
export type { DemoOptions, DemoScenario } from "./demo_scenario.ts";
export { printDemo } from "./demo_print.ts";

/** The demo command's arguments. */
export const DEMO_SPEC: CommandSpec = {
  name: "demo",
  summary: "split-driver exchange between two domains, then a front-end crash",
  options: {
    backend: { type: "string" },
    requests: { type: "string" },
    timeout: { type: "string" },
    json: { type: "boolean" },
    guest: { type: "boolean" },
    source: { type: "string" },
  },
  help: `Usage: xenchan demo [--backend auto|sim|ffi] [--guest [--source xenstore|libxl]]
                   [--requests N] [--timeout S] [--json]

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
  ffi with --guest: the front end runs in a real PV guest domain (needs a
        dom0 with the toolstack and the guest images of the project's
        harness: xenchan-guest); it finds the ring ref and the port in
        XenStore, its process is killed inside the guest, and the guest's
        destruction gives a real DOMAIN_DEATH. With --source libxl that
        DOMAIN_DEATH comes from libxl's death watch (libxenlight, driven by
        xenchan's osevent hooks) instead of the @releaseDomain XenStore
        watch and libxenctrl's domain list.

Options:
  --backend B   auto (default), sim or ffi
  --guest       real Xen: the front end in a real guest domain
  --source S    with --guest: where DOMAIN_DEATH comes from, xenstore
                (default) or libxl
  --requests N  requests to exchange (default 1000)
  --timeout S   seconds to wait for any one step (default 30)
  --json        print the report as one JSON object instead of text
  -h, --help    show this help

Exit status: 0 when every check passed, 1 when one failed, 2 for a usage
error (--source libxl without --guest, or on the simulator).`,
};

/**
 * Converts parsed arguments. Throws UsageError for bad values, naming the
 * option and the value: --source other than xenstore or libxl, and
 * --source libxl without --guest or with --backend sim (libxl is only the
 * real-guest scenario's source; runDemo refuses it also when "auto" picks
 * the simulator).
 */
export function demoOptions(values: ParsedValues): DemoOptions {
  const backend = backendOption("demo", values.backend);
  const source = values.source ?? "xenstore";
  if (source !== "xenstore" && source !== "libxl") {
    throw new UsageError(
      `xenchan demo: --source must be xenstore or libxl, got '${String(source)}'`,
    );
  }
  if (source === "libxl" && (values.guest !== true || backend === "sim")) {
    throw new UsageError(
      `xenchan demo: --source libxl is only for the real-guest scenario ` +
        `(--guest on real Xen), not ${
          backend === "sim" ? "with --backend sim" : "without --guest"
        }\nRun 'xenchan demo --help' for usage.`,
    );
  }
  return {
    backend,
    requests: intOption("demo", "requests", values.requests, 1000, 1, 10_000_000),
    timeoutMs: secondsOption("demo", "timeout", values.timeout, 30_000),
    json: values.json === true,
    guest: values.guest === true,
    source,
  };
}

/**
 * The scenarios, in the order they are tried: runDemo runs the first whose
 * kind is the selected backend's and which applies to the options. Each
 * kind ends with a scenario that applies to all options. A new scenario
 * (a dom0 back end with its front end in a real guest domain, say) goes
 * before the catch-all of its kind.
 */
export const DEMO_SCENARIOS: readonly DemoScenario[] = [
  SIM_SCENARIO,
  GUEST_SCENARIO,
  LOOPBACK_SCENARIO,
];

/**
 * The scenario runDemo runs for a `kind` selection and `options`: the first
 * of `scenarios` (default DEMO_SCENARIOS) of that kind that applies.
 * Returns undefined when none does (not the case for DEMO_SCENARIOS). Pure;
 * never throws (runDemo checks options.source against the scenario).
 */
export function demoScenario(
  kind: DemoScenario["kind"],
  options: DemoOptions,
  scenarios: readonly DemoScenario[] = DEMO_SCENARIOS,
): DemoScenario | undefined {
  return scenarios.find((s) => s.kind === kind && s.applies(options));
}

/**
 * Runs the demo on the chosen backend and prints the summary (or JSON).
 * Resolves to 0 when every check passed, 1 otherwise (a step that fails
 * outright, for example a timeout, is printed and gives 1). Throws
 * UsageError (exit 2 through main) when options.source is "libxl" and the
 * scenario for the selected backend cannot take it (the simulator or dom0
 * loopback, e.g. "auto" off Xen); nothing was opened then. Rejects
 * otherwise only for programming errors.
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
  const scenario = demoScenario(selection.kind, options);
  if (scenario === undefined) {
    out.err(`xenchan demo: no scenario for the ${selection.kind} backend with these options`);
    return 1;
  }
  if (options.source === "libxl" && scenario.libxlSource !== true) {
    throw new UsageError(
      `xenchan demo: --source libxl needs the real-guest scenario on real Xen; the ` +
        `${selection.kind} backend (${selection.reason}) runs the ${scenario.name} scenario, ` +
        `which has no libxl source\nRun 'xenchan demo --help' for usage.`,
    );
  }
  let report: DemoReport;
  try {
    report = await scenario.run(options, selection.reason);
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
