/**
 * `xenchan domains`: lists the domains (id, name, state, memory) and, with
 * --follow, prints their lifecycle events (DOMAIN_SHUTDOWN with the reason,
 * DOMAIN_DEATH) as they happen, through the osevent API
 * (EventContext.enableDomainDeath) over the real source (xenDomainSource).
 *
 * Real Xen (the default): domain information from libxenctrl
 * (openDomainControl), which needs root in a Xen dom0, and events from the
 * @releaseDomain XenStore watch (--source xenstore, the default); or, with
 * --source libxl, both from libxl itself (openLibxlSource: libxenlight
 * driven through xenchan's osevent hooks, needs xenstored running). --simulate instead
 * runs on a private simulator with a few demo domains, and --follow there
 * plays a scripted lifecycle (poweroff, reboot, crash, destroy before
 * shutdown), saying plainly that none of it is real.
 *
 * @module
 */
import {
  type DomainInfo,
  openDomainControl,
  openXenStore,
  SimHypervisor,
  XenCallError,
  type XenStore,
} from "../mod.ts";
import {
  attachRuntimeLoop,
  attachSimClockLoop,
  type DomainDeathEnable,
  EventContext,
  type EventContextOptions,
  eventMask,
  EventType,
  type LibxlContext,
  type LibxlDomainSource,
  openLibxlSource,
  type ReleaseDomainWatcher,
  shutdownReasonName,
  simDomainInfo,
  simReleaseDomainWatch,
  xenDomainSource,
} from "../plugins/osevent/mod.ts";
import {
  type CommandSpec,
  intOption,
  type ParsedValues,
  secondsOption,
  UsageError,
} from "./args.ts";
import { type Output, table } from "./io.ts";

/** The domains command's arguments. */
export const DOMAINS_SPEC: CommandSpec = {
  name: "domains",
  summary: "list domains (id, name, state, memory); --follow prints lifecycle events",
  options: {
    follow: { type: "boolean", short: "f" },
    simulate: { type: "boolean" },
    count: { type: "string" },
    timeout: { type: "string" },
    interval: { type: "string" },
    source: { type: "string" },
  },
  help: `Usage: xenchan domains [--simulate | --source xenstore|libxl]
                       [--follow [--count N] [--timeout S]] [--interval S]

Lists the domains: id, name, state and memory (Mem in MiB, as xl list).
With --follow it then prints each lifecycle event as it happens:
DOMAIN_SHUTDOWN with its reason (poweroff, reboot, suspend, crash,
watchdog, soft_reset) and DOMAIN_DEATH, until Ctrl-C / SIGTERM, --count
events or --timeout seconds. New domains are picked up as they appear.

Real Xen needs root in a Xen dom0: domain information comes from
libxenctrl (libxenmisc4.17 on Debian 12), lifecycle events from the
@releaseDomain XenStore watch, as libxl does.

With --source libxl, the list and the events come from libxl itself
(libxenlight, driven through xenchan's osevent hooks: its XenStore watch
fd and timeouts are served by xenchan's poller, nothing blocks); it needs
xenstored running in dom0.

Options:
  --source S      where real Xen domains and events come from: xenstore
                  (libxenctrl + the @releaseDomain watch, the default) or
                  libxl
  --simulate      run on a private simulator with demo domains instead of
                  real Xen; with --follow it plays a scripted lifecycle
                  (nothing shown is real)
  -f, --follow    print lifecycle events as they happen
  --count N       with --follow: stop after N events
  --timeout S     with --follow: stop after S seconds (exit 1 if --count
                  was not reached)
  --interval S    seconds between looks for new domains (default 1), and
                  with --simulate between scripted steps (default 0.2)
  -h, --help      show this help

Exit status: 0 on success (stopped by a signal, --count or --timeout
alone); 1 when real Xen is not usable, on an error, or when --timeout came
before --count; 2 for bad arguments.`,
};

/** Options of runDomains. */
export interface DomainsOptions {
  readonly follow: boolean;
  readonly simulate: boolean;
  readonly count?: number;
  readonly timeoutMs?: number;
  /** Milliseconds between looks for new domains (and simulated steps). */
  readonly intervalMs: number;
  /** Where real Xen domains and events come from (default "xenstore"). */
  readonly source: "xenstore" | "libxl";
}

/** Converts parsed arguments. Throws UsageError for bad values, or --count/--timeout without --follow. */
export function domainsOptions(values: ParsedValues): DomainsOptions {
  const follow = values.follow === true;
  const simulate = values.simulate === true;
  for (const name of ["count", "timeout"] as const) {
    if (values[name] !== undefined && !follow) {
      throw new UsageError(
        `xenchan domains: --${name} needs --follow\nRun 'xenchan domains --help' for usage.`,
      );
    }
  }
  const source = values.source ?? "xenstore";
  if (source !== "xenstore" && source !== "libxl") {
    throw new UsageError(
      `xenchan domains: --source must be xenstore or libxl, got '${
        String(source)
      }'\nRun 'xenchan domains --help' for usage.`,
    );
  }
  if (simulate && values.source !== undefined) {
    throw new UsageError(
      `xenchan domains: --source is for real Xen, not with --simulate\nRun 'xenchan domains --help' for usage.`,
    );
  }
  return {
    follow,
    simulate,
    source,
    count: values.count === undefined
      ? undefined
      : intOption("domains", "count", values.count, 0, 1),
    timeoutMs: values.timeout === undefined
      ? undefined
      : secondsOption("domains", "timeout", values.timeout, 0),
    intervalMs: secondsOption("domains", "interval", values.interval, simulate ? 200 : 1000),
  };
}

/** One line of the table. */
export interface DomainRow {
  readonly domid: number;
  readonly name: string;
  readonly state: string;
  /** Mem in MiB, or undefined when unknown (the simulator models no memory). */
  readonly memoryMib?: number;
}

/**
 * Where the command reads domains from: real Xen, the simulator, or a
 * test's fakes. `rows()` lists the domains now; `contextOptions` and
 * `attachLoop` make the EventContext for --follow; `script`, when present,
 * drives simulated domains (calling `created` after it creates one) and
 * returns a stop function; `close` releases
 * everything (idempotent).
 */
export interface DomainsWorld {
  readonly description: string;
  readonly simulated: boolean;
  rows(): Promise<DomainRow[]>;
  readonly contextOptions: EventContextOptions;
  attachLoop(ctx: EventContext): Promise<void>;
  script?(intervalMs: number, out: Output, created: () => void): () => void;
  /** Lines to print after the table (what is not available, what is simulated). */
  readonly notes: readonly string[];
  close(): void | Promise<void>;
}

/** The state word of a real domain, from its XEN_DOMINF_* flags. */
export function domainState(info: DomainInfo): string {
  if (info.flags.dying) return "dying";
  if (info.flags.shutdown) return `shutdown (${shutdownReasonName(info.shutdownReason ?? -1)})`;
  if (info.flags.paused) return "paused";
  if (info.flags.running) return "running";
  if (info.flags.blocked) return "blocked";
  return "runnable";
}

/** What the real world needs of XenStore: the @releaseDomain watch and reading names. */
export interface DomainXenStore extends ReleaseDomainWatcher {
  /** The value at `path`, or undefined when it cannot be read. Never rejects. */
  read(path: string): Promise<string | undefined>;
  close(): void;
}

/**
 * Opens dom0's XenStore for the domains command (openXenStore, backend
 * "ffi"), or resolves null when no XenStore can be reached here (no daemon,
 * no permission): then names are not shown and --follow polls the domain
 * list instead of watching @releaseDomain. Never rejects. The caller owns
 * the handle and closes it.
 */
async function openDomainXenStore(): Promise<DomainXenStore | null> {
  let xs: XenStore;
  try {
    xs = await openXenStore({ backend: "ffi" });
  } catch {
    return null;
  }
  return {
    watch: (path, options) => xs.watch(path, options),
    read: (path) => xs.read(path).then((v) => v, () => undefined),
    close: () => xs.close(),
  };
}

/**
 * A stand-in for the @releaseDomain watch without a XenStore client: an
 * event at once, then one every `intervalMs`, until the signal aborts.
 * The source then reads the domain list each time (a poll).
 */
export function pollingReleaseWatch(intervalMs: number): ReleaseDomainWatcher {
  return {
    async *watch(path: string, options: { readonly signal?: AbortSignal } = {}) {
      const signal = options.signal;
      while (!signal?.aborted) {
        yield { path, token: "poll" };
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, intervalMs);
          signal?.addEventListener("abort", done, { once: true });
          function done() {
            clearTimeout(timer);
            signal?.removeEventListener("abort", done);
            resolve();
          }
        });
      }
    },
  };
}

/** What realWorld needs of domain information (ffi DomainControl, or a test's fake). */
export interface DomainInfoReader {
  list(): readonly DomainInfo[];
  info(domid: number): DomainInfo | undefined;
  close(): void;
  readonly libraryPath?: string;
}

/**
 * The world of a real dom0 (or of fakes with the same shape): rows from
 * `control`, names from `xenstore` (/local/domain/<id>/name) when given,
 * events from xenDomainSource over the XenStore watch (or a poll of the list
 * every `intervalMs` without one). Takes ownership of both handles.
 */
export function realWorld(
  control: DomainInfoReader,
  xenstore: DomainXenStore | null,
  intervalMs: number,
): DomainsWorld {
  const watcher = xenstore ?? pollingReleaseWatch(intervalMs);
  const source = xenDomainSource({ xenstore: watcher, domains: control });
  const notes = xenstore ? [] : [
    "names: not shown (this build has no XenStore client);" +
    ` --follow polls the domain list every ${
      intervalMs / 1000
    } s instead of watching @releaseDomain`,
  ];
  let closed = false;
  return {
    description: `real Xen (${control.libraryPath ?? "libxenctrl"})`,
    simulated: false,
    notes,
    async rows() {
      const rows: DomainRow[] = [];
      for (const d of control.list()) {
        const name = (await xenstore?.read(`/local/domain/${d.domid}/name`)) ??
          (d.domid === 0 && xenstore ? "Domain-0" : "-");
        rows.push({
          domid: d.domid,
          name,
          state: domainState(d),
          memoryMib: Math.floor(d.memoryKb / 1024),
        });
      }
      return rows;
    },
    contextOptions: { domains: source },
    async attachLoop(ctx) {
      await attachRuntimeLoop(ctx);
    },
    close() {
      if (closed) return;
      closed = true;
      xenstore?.close();
      control.close();
    },
  };
}

/** The state word of a domain as libxl reports it. */
export function libxlDomainState(
  info: Pick<
    ReturnType<LibxlContext["listDomains"]>[number],
    "dying" | "shutdown" | "shutdownReason" | "paused" | "running" | "blocked"
  >,
): string {
  if (info.dying) return "dying";
  if (info.shutdown) return `shutdown (${shutdownReasonName(info.shutdownReason ?? -1)})`;
  if (info.paused) return "paused";
  if (info.running) return "running";
  if (info.blocked) return "blocked";
  return "runnable";
}

/**
 * The world of a real dom0 seen through libxl (--source libxl): rows from
 * libxl_list_domain and libxl_domid_to_name, events from the libxl source.
 * Takes ownership of `source` (closed, asynchronously, by close()).
 */
export function libxlWorld(source: LibxlDomainSource<LibxlContext>): DomainsWorld {
  const libxl = source.libxl;
  return {
    description: `real Xen through libxl (${libxl.libraryPath}, driven by xenchan's osevent hooks)`,
    simulated: false,
    notes: [],
    rows() {
      return Promise.resolve(
        libxl.listDomains().map((d) => ({
          domid: d.domid,
          name: libxl.domainName(d.domid) ?? "-",
          state: libxlDomainState(d),
          memoryMib: Number(d.currentMemkb / 1024n),
        })),
      );
    },
    contextOptions: { domains: source },
    async attachLoop(ctx) {
      await attachRuntimeLoop(ctx);
    },
    close() {
      return source.close();
    },
  };
}

/**
 * A private simulator with three demo domains. Its script (for --follow)
 * powers off demo-1, reboots demo-2 (destroyed and built again under a new
 * domid), crashes demo-3, and destroys a new demo-4 before it shuts down,
 * one step every interval.
 */
export function simulatedWorld(): DomainsWorld {
  const hv = new SimHypervisor();
  const names = new Map<number, string>([[0, "Domain-0"]]);
  const create = (name: string) => {
    const domid = hv.createDomain();
    names.set(domid, name);
    return domid;
  };
  const demo = [create("demo-1"), create("demo-2"), create("demo-3")];
  const info = simDomainInfo(hv);
  const source = xenDomainSource({ xenstore: simReleaseDomainWatch(hv), domains: info });
  return {
    description: "the simulator (--simulate: demo domains, nothing here is real Xen)",
    simulated: true,
    notes: ["memory: the simulator models no guest memory"],
    rows() {
      return Promise.resolve(
        info.list().map((d) => ({
          domid: d.domid,
          name: names.get(d.domid) ?? "-",
          state: d.flags.shutdown
            ? `shutdown (${shutdownReasonName(d.shutdownReason ?? -1)})`
            : "running",
        })),
      );
    },
    contextOptions: { clock: hv.clock, domains: source },
    attachLoop(ctx) {
      attachSimClockLoop(ctx);
      return Promise.resolve();
    },
    script(intervalMs, out, created) {
      const [d1, d2, d3] = demo;
      let extra = -1;
      const steps: [string, () => void][] = [
        ["demo-1 powers off", () => hv.shutdown(d1, "poweroff")],
        ["the toolstack destroys demo-1", () => hv.destroy(d1)],
        ["demo-2 reboots", () => hv.shutdown(d2, "reboot")],
        ["the toolstack destroys demo-2", () => hv.destroy(d2)],
        ["the toolstack builds demo-2 again", () => {
          create("demo-2");
          created();
        }],
        ["demo-3 crashes", () => hv.shutdown(d3, "crash")],
        ["the toolstack destroys demo-3 (on_crash=destroy)", () => hv.destroy(d3)],
        ["demo-4 is created", () => {
          extra = create("demo-4");
          created();
        }],
        ["demo-4 is destroyed before it shuts down", () => hv.destroy(extra)],
      ];
      let next = 0;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const tick = () => {
        const [what, act] = steps[next++];
        out.err(`simulator: ${what}`);
        act();
        if (next < steps.length) timer = setTimeout(tick, intervalMs);
        else out.err("simulator: script finished; still following (Ctrl-C to stop)");
      };
      timer = setTimeout(tick, intervalMs);
      return () => clearTimeout(timer);
    },
    close() {},
  };
}

/** What the caller (the entry, or a test) may supply. */
export interface DomainsContext {
  /** Aborting stops --follow cleanly (the entry wires SIGINT/SIGTERM to it). */
  readonly signal?: AbortSignal;
  /** Use this world instead of real Xen or the simulator (tests). Closed by runDomains. */
  readonly world?: DomainsWorld;
  /** Called once --follow is set up (every listed domain enabled). */
  readonly onReady?: () => void;
}

function printTable(rows: readonly DomainRow[], out: Output): void {
  const lines = table(
    ["ID", "Name", "State", "Mem(MiB)"],
    rows.map((r) => [
      String(r.domid),
      r.name,
      r.state,
      r.memoryMib === undefined ? "-" : String(r.memoryMib),
    ]),
    [0, 3],
  );
  for (const line of lines) out.log(line);
}

async function openWorld(options: DomainsOptions, out: Output): Promise<DomainsWorld | null> {
  if (options.simulate) return simulatedWorld();
  if (options.source === "libxl") {
    try {
      return libxlWorld(await openLibxlSource<LibxlContext>());
    } catch (error) {
      const hint = (error as Error)?.name === "LibxlError"
        ? "\nlibxl needs root in a Xen dom0 with xenstored running."
        : (error as Error)?.name === "LibraryNotFoundError"
        ? "\nOr run 'xenchan domains --simulate' to try it on the simulator."
        : "";
      out.err(`xenchan domains: cannot open libxl: ${(error as Error).message}${hint}`);
      return null;
    }
  }
  try {
    const control = await openDomainControl();
    let xenstore: DomainXenStore | null = null;
    try {
      xenstore = await openDomainXenStore();
    } catch (error) {
      out.err(`xenchan domains: XenStore is not usable: ${(error as Error).message}`);
    }
    return realWorld(control, xenstore, options.intervalMs);
  } catch (error) {
    let hint = "";
    if (error instanceof XenCallError && error.code === "ENOENT") {
      hint =
        "\nThis is not a Xen dom0. Run 'xenchan domains --simulate' to try it on the simulator.";
    } else if (
      error instanceof XenCallError && (error.code === "EACCES" || error.code === "EPERM")
    ) {
      hint = "\nRun it as root in dom0.";
    } else if ((error as Error)?.name === "LibraryNotFoundError") {
      hint = "\nOr run 'xenchan domains --simulate' to try it on the simulator.";
    }
    out.err(`xenchan domains: cannot read domain information: ${(error as Error).message}${hint}`);
    return null;
  }
}

/**
 * Runs the command. Resolves to the exit status (see the help text);
 * errors are printed to `out.err` and give 1. Everything opened is closed
 * before it resolves.
 */
export async function runDomains(
  options: DomainsOptions,
  out: Output,
  context: DomainsContext = {},
): Promise<number> {
  const world = context.world ?? await openWorld(options, out);
  if (!world) return 1;
  try {
    const rows = await world.rows();
    if (world.simulated) out.log(`domains on ${world.description}`);
    printTable(rows, out);
    for (const note of world.notes) out.err(`xenchan domains: ${note}`);
    if (!options.follow) return 0;
    return await follow(world, rows, options, out, context);
  } catch (error) {
    out.err(`xenchan domains: ${(error as Error)?.message ?? String(error)}`);
    return 1;
  } finally {
    await world.close();
  }
}

async function follow(
  world: DomainsWorld,
  initial: readonly DomainRow[],
  options: DomainsOptions,
  out: Output,
  context: DomainsContext,
): Promise<number> {
  using ctx = new EventContext(world.contextOptions);
  await world.attachLoop(ctx);
  const names = new Map<number, string>();
  const enabled = new Map<number, DomainDeathEnable>();
  const t0 = performance.now();
  const stamp = () => `+${((performance.now() - t0) / 1000).toFixed(3)}s`;
  const label = (domid: number) => `domain ${domid} (${names.get(domid) ?? "-"})`;
  const track = (rows: readonly DomainRow[], announce: boolean) => {
    for (const row of rows) {
      if (row.domid === 0 || enabled.has(row.domid) || row.state === "dying") continue;
      names.set(row.domid, row.name);
      enabled.set(row.domid, ctx.enableDomainDeath(row.domid, row.domid));
      if (announce) out.log(`${stamp()} ${label(row.domid)}: new, ${row.state}`);
    }
  };
  track(initial, false);

  const controller = new AbortController();
  const stopWith = (why: string) => {
    if (!controller.signal.aborted) controller.abort(why);
  };
  const stops: (() => void)[] = [];
  try {
    if (context.signal?.aborted) stopWith("signal");
    const onSignal = () => stopWith("signal");
    context.signal?.addEventListener("abort", onSignal, { once: true });
    stops.push(() => context.signal?.removeEventListener("abort", onSignal));
    if (options.timeoutMs !== undefined) {
      const timer = setTimeout(() => stopWith("timeout"), options.timeoutMs);
      stops.push(() => clearTimeout(timer));
    }
    let looking = false;
    const look = async () => {
      if (looking || controller.signal.aborted) return;
      looking = true;
      try {
        track(await world.rows(), true);
      } catch (error) {
        out.err(`xenchan domains: cannot list domains: ${(error as Error).message}`);
      } finally {
        looking = false;
      }
    };
    const lookTimer = setInterval(look, options.intervalMs);
    stops.push(() => clearInterval(lookTimer));
    out.log(
      `following lifecycle events on ${world.description}` +
        `${options.count ? `, until ${options.count} events` : ""}` +
        `${options.timeoutMs ? `, for at most ${options.timeoutMs / 1000} s` : ""}; Ctrl-C to stop`,
    );
    if (world.script) stops.push(world.script(options.intervalMs, out, () => void look()));
    context.onReady?.();

    const mask = eventMask(EventType.DOMAIN_SHUTDOWN) | eventMask(EventType.DOMAIN_DEATH);
    let events = 0;
    for await (const ev of ctx.events(mask, undefined, { signal: controller.signal })) {
      events++;
      if (ev.type === EventType.DOMAIN_SHUTDOWN) {
        out.log(`${stamp()} ${label(ev.domid)}: shutdown (${ev.shutdownReasonName})`);
      } else if (ev.type === EventType.DOMAIN_DEATH) {
        out.log(`${stamp()} ${label(ev.domid)}: death`);
        enabled.get(ev.domid)?.disable();
        enabled.delete(ev.domid);
      }
      if (options.count !== undefined && events >= options.count) stopWith("count");
      else void look(); // a reboot builds a new domain: pick it up now
    }
    const why = controller.signal.reason ?? "signal";
    out.log(
      `stopped (${
        why === "count" ? "count reached" : why === "timeout" ? "timeout" : "interrupted"
      }); ` +
        `${events} event${events === 1 ? "" : "s"}`,
    );
    return why === "timeout" && options.count !== undefined ? 1 : 0;
  } finally {
    for (const stop of stops) stop();
    for (const gen of enabled.values()) gen.disable();
  }
}
