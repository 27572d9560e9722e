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
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { basename } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type EventChannels,
  type GrantShare,
  openEventChannels,
  openGrantShare,
  openGrantTable,
  selectBackend,
  SimHypervisor,
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
import { childCommand, kernelEventAbi, openErrorHint, runtimeLabel } from "./facts.ts";
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

/** Unmasks and discards events already pending on a handle; returns how many. */
function drain(evtchn: EventChannels): number {
  let n = 0;
  for (let port = evtchn.tryPending(); port !== null; port = evtchn.tryPending()) {
    evtchn.unmask(port);
    n++;
  }
  return n;
}

function exchangeChecks(n: number, front: EndStats, back: EndStats): DemoCheck[] {
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

function crashChecks(
  backPort: number,
  liveBefore: number,
  liveAfter: number,
  eventPort: number | null,
): DemoCheck[] {
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

/** The demo on a private SimHypervisor: both ends in this process. */
async function simDemo(options: DemoOptions, reason: string): Promise<DemoReport> {
  const t0 = performance.now();
  const hv = new SimHypervisor();
  const frontDomid = hv.createDomain();
  const backProc = hv.backend(0);
  const frontProc = hv.backend(frontDomid);
  const abi = `d0 ${hv.domainInfo(0)?.abi}, d${frontDomid} ${hv.domainInfo(frontDomid)?.abi} ` +
    "(simulated: Xen offers 2-level and FIFO, and each domain asks for FIFO, as Linux does)";
  using ctx = new EventContext({ clock: hv.clock, domains: simDomainSource(hv) });
  attachSimClockLoop(ctx);
  ctx.enableDomainDeath(frontDomid, "demo front end");

  // back end (dom0): ring page + unbound port for the front end's domain
  using backEvt = await openEventChannels({ backend: backProc });
  using shr: GrantShare = await openGrantShare({ backend: backProc });
  const share = shr.sharePages(frontDomid, 1);
  const backRing = new SharedRing(share.pages[0]);
  backRing.init();
  const backPort = backEvt.bindUnboundPort(frontDomid);

  // front end (domU): bind, map with unmap notification
  const frontEvt = await openEventChannels({ backend: frontProc });
  const frontGnt = await openGrantTable({ backend: frontProc });
  const front = await within(
    options.timeoutMs,
    "the bind-time event",
    (signal) => attachFrontEnd(frontEvt, frontGnt, 0, backPort, share.refs[0], signal),
  );

  const tx = performance.now();
  const [frontStats, backStats] = await within(
    options.timeoutMs,
    "the exchange",
    (signal) =>
      Promise.all([
        runFrontEnd({
          evtchn: frontEvt,
          port: front.port,
          ring: front.ring,
          requests: options.requests,
          signal,
        }),
        runBackEnd({
          evtchn: backEvt,
          port: backPort,
          ring: backRing,
          requests: options.requests,
          signal,
        }),
      ]),
  );
  const exchangeMs = performance.now() - tx;
  drain(backEvt);

  // the crash: Linux-style teardown of the front end's process (mappings first)
  const liveBefore = share.pages[0][LIVE_OFFSET];
  const tc = performance.now();
  frontProc.crash();
  let eventPort: number | null = null;
  let eventMs: number | null = null;
  try {
    eventPort = await within(
      options.timeoutMs,
      "the unmap-notify event",
      (signal) => backEvt.pending({ signal }),
    );
    eventMs = performance.now() - tc;
    backEvt.unmask(eventPort);
  } catch {
    // reported by the check below
  }
  const liveAfter = share.pages[0][LIVE_OFFSET];

  // the domain dies: DOMAIN_DEATH through the osevent layer
  hv.destroy(frontDomid);
  let death: DemoReport["death"];
  try {
    const ev = await within(
      options.timeoutMs,
      "DOMAIN_DEATH",
      (signal) =>
        ctx.eventWait(eventMask(EventType.DOMAIN_DEATH), { domid: frontDomid }, { signal }),
    );
    death = {
      status: "received",
      detail: `DOMAIN_DEATH for domain ${ev.domid} (forUser ${JSON.stringify(ev.forUser)})`,
    };
  } catch (error) {
    death = { status: "missing", detail: (error as Error).message };
  }

  const checks = [
    ...exchangeChecks(options.requests, frontStats, backStats),
    ...crashChecks(backPort, liveBefore, liveAfter, eventPort),
    {
      name: "DOMAIN_DEATH through the osevent layer",
      ok: death.status === "received",
      detail: death.detail,
    },
  ];
  return {
    backend: "sim",
    reason,
    runtime: runtimeLabel(),
    setup: {
      backDomid: 0,
      frontDomid,
      ref: share.refs[0],
      backPort,
      frontPort: front.port,
      frontEnd: `simulated process ${frontProc.pid} of domain ${frontDomid}, in this process`,
      abi,
    },
    exchange: { requests: options.requests, front: frontStats, back: backStats, ms: exchangeMs },
    crash: {
      how:
        `the simulator killed process ${frontProc.pid} of d${frontDomid} (SimDomainBackend.crash(): ` +
        "mappings torn down first, as Linux does)",
      liveBefore,
      liveAfter,
      eventPort,
      eventMs,
    },
    death,
    parts: [
      ["event channels, grant share/map", "simulator (sim/, SimHypervisor)"],
      ["front end", `simulated domain ${frontDomid}, same JS process`],
      ["crash + unmap notification", "simulator (simulated Linux process teardown)"],
      [
        "DOMAIN_DEATH",
        "simulator domain destroy -> osevent (EventContext, simDomainSource, sim clock loop)",
      ],
    ],
    checks,
    skipped: [],
    ok: checks.every((c) => c.ok),
    ms: performance.now() - t0,
  };
}

/** Collects a child's stdout lines; `next(prefix)` waits for the next line with that prefix. */
class ChildLines {
  readonly #lines: string[] = [];
  readonly #waiters = new Set<() => void>();
  #partial = "";
  #ended = false;
  stderr = "";

  constructor(child: ChildProcess) {
    child.stdout?.setEncoding("utf8");
    child.stderr?.setEncoding("utf8");
    child.stdout?.on("data", (chunk: string) => {
      const parts = (this.#partial + chunk).split("\n");
      this.#partial = parts.pop() ?? "";
      this.#lines.push(...parts);
      this.#wake();
    });
    child.stderr?.on("data", (chunk: string) => (this.stderr += chunk));
    child.on("exit", () => {
      this.#ended = true;
      this.#wake();
    });
    child.on("error", (error) => {
      // spawn failed (for example the runtime binary vanished): no exit event follows
      this.stderr += error.message;
      this.#ended = true;
      this.#wake();
    });
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Resolves with the text after `prefix ` of the next such line; rejects on an `error` line, exit or abort. */
  next(prefix: string, signal: AbortSignal): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        while (this.#lines.length > 0) {
          const line = this.#lines.shift()!;
          if (line.startsWith(`${prefix} `)) {
            return finish(() => resolve(line.slice(prefix.length + 1)));
          }
          if (line.startsWith("error ")) {
            return finish(() => reject(new Error(`front end failed: ${line.slice(6)}`)));
          }
        }
        if (this.#ended) {
          finish(() =>
            reject(new Error(`front end exited before '${prefix}': ${this.stderr.trim()}`))
          );
        }
      };
      const onAbort = () => finish(() => reject(signal.reason));
      const finish = (settle: () => void) => {
        this.#waiters.delete(check);
        signal.removeEventListener("abort", onAbort);
        settle();
      };
      this.#waiters.add(check);
      signal.addEventListener("abort", onAbort, { once: true });
      check();
    });
  }
}

/** Resolves with the child's exit; rejects with the signal's reason on abort. */
function exitOf(
  child: ChildProcess,
  abort: AbortSignal,
): Promise<{ code: number | null; signal: string | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(abort.reason);
    abort.addEventListener("abort", onAbort, { once: true });
    child.once("exit", (code, signal) => {
      abort.removeEventListener("abort", onAbort);
      resolve({ code, signal });
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The demo on real Xen, dom0 loopback: the front end is a child process. */
async function ffiDemo(options: DemoOptions, reason: string): Promise<DemoReport> {
  const t0 = performance.now();
  using backEvt = await openEventChannels({ backend: "ffi" });
  using shr = await openGrantShare({ backend: "ffi" });
  const share = shr.sharePages(0, 1);
  const backRing = new SharedRing(share.pages[0]);
  backRing.init();
  const backPort = backEvt.bindUnboundPort(0);

  const script = fileURLToPath(new URL("./demo_front.ts", import.meta.url));
  const command = childCommand(script, [
    "--ref",
    String(share.refs[0]),
    "--port",
    String(backPort),
    "--requests",
    String(options.requests),
    "--timeout-ms",
    String(options.timeoutMs),
  ]);
  const [exe, ...args] = command;
  const shown = [basename(exe), ...args.slice(0, args.indexOf(script) + 1)]
    .map((word) => word === script ? "cli/demo_front.ts" : word).join(" ");
  const child = spawn(exe, args, { stdio: ["ignore", "pipe", "pipe"] });
  const lines = new ChildLines(child);
  try {
    const ready = JSON.parse(
      await within(
        options.timeoutMs,
        "the front end to start",
        (signal) => lines.next("ready", signal),
      ),
    ) as { pid: number; port: number; runtime: string };

    const tx = performance.now();
    const backStats = await within(
      options.timeoutMs,
      "the exchange",
      (signal) =>
        runBackEnd({
          evtchn: backEvt,
          port: backPort,
          ring: backRing,
          requests: options.requests,
          signal,
        }),
    );
    const frontStats = JSON.parse(
      await within(
        options.timeoutMs,
        "the front end's result",
        (signal) => lines.next("done", signal),
      ),
    ) as EndStats;
    const exchangeMs = performance.now() - tx;
    await sleep(50); // let a last in-flight notification land before draining it
    drain(backEvt);

    // the crash: SIGKILL; the dom0 kernel tears the mapping down (clear byte + event)
    const liveBefore = share.pages[0][LIVE_OFFSET];
    const tc = performance.now();
    child.kill("SIGKILL");
    let eventPort: number | null = null;
    let eventMs: number | null = null;
    try {
      eventPort = await within(
        options.timeoutMs,
        "the unmap-notify event",
        (signal) => backEvt.pending({ signal }),
      );
      eventMs = performance.now() - tc;
      backEvt.unmask(eventPort);
    } catch {
      // reported by the check below
    }
    const exit = await within(
      options.timeoutMs,
      "the front end to exit",
      (signal) => exitOf(child, signal),
    );
    const liveAfter = share.pages[0][LIVE_OFFSET];

    const abi = kernelEventAbi();
    const death: DemoReport["death"] = {
      status: "skipped",
      detail: "no domain dies in dom0 loopback, and xenchan's osevent layer has no real domain " +
        "event source (it would need xenstore's @releaseDomain watch); not faked",
    };
    const checks = [
      ...exchangeChecks(options.requests, frontStats, backStats),
      ...crashChecks(backPort, liveBefore, liveAfter, eventPort),
      {
        name: "front end process killed",
        ok: exit.signal === "SIGKILL",
        detail: `exit: ${exit.signal ?? `code ${exit.code}`}`,
      },
    ];
    return {
      backend: "ffi",
      reason,
      runtime: runtimeLabel(),
      setup: {
        backDomid: 0,
        frontDomid: 0,
        ref: share.refs[0],
        backPort,
        frontPort: ready.port,
        frontEnd: `child process pid ${ready.pid} (${ready.runtime}: ${shown}), dom0 loopback`,
        abi: abi.ok
          ? `${abi.value} (dom0 kernel, ${abi.source})`
          : `unknown (${abi.reason}); Linux uses FIFO whenever Xen offers it`,
      },
      exchange: { requests: options.requests, front: frontStats, back: backStats, ms: exchangeMs },
      crash: {
        how: `SIGKILL to pid ${ready.pid}; the real dom0 kernel (gntdev) tore its mapping down`,
        liveBefore,
        liveAfter,
        eventPort,
        eventMs,
      },
      death,
      parts: [
        ["event channels, grant share/map", "REAL Xen (libxenevtchn / libxengnttab through FFI)"],
        ["front end", `REAL separate process (pid ${ready.pid}) in dom0 (loopback, domid 0)`],
        [
          "crash + unmap notification",
          "REAL (SIGKILL; cleared by the dom0 kernel, event through Xen)",
        ],
        ["DOMAIN_DEATH", "SKIPPED (no domain dies in loopback; not simulated, not faked)"],
      ],
      checks,
      skipped: [`DOMAIN_DEATH: ${death.detail}`],
      ok: checks.every((c) => c.ok),
      ms: performance.now() - t0,
    };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
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
