/**
 * `xenchan watch`: binds the ports the user names and prints one line per
 * event as it arrives, unmasking each, until interrupted (SIGINT/SIGTERM),
 * `--count N` events or `--timeout S`. Waiting is EventChannels.ports():
 * a poll of the handle's fd off the JavaScript thread, never a busy loop.
 * Every port is unbound when it stops.
 *
 * @module
 */
import {
  type EventChannels,
  openEventChannels,
  selectBackend,
  SimHypervisor,
  type XenBackend,
  XenCallError,
} from "../mod.ts";
import {
  backendOption,
  type CommandSpec,
  intOption,
  listOption,
  type ParsedValues,
  secondsOption,
  UsageError,
} from "./args.ts";
import { openErrorHint } from "./facts.ts";
import type { Output } from "./io.ts";

/**
 * Xen's number of virtual IRQs per vCPU: NR_VIRQS in
 * xen/include/public/xen.h (24 in Xen 4.17; VIRQ_TIMER 0 .. VIRQ_ARCH_7 23).
 */
export const NR_VIRQS = 24;

/** The watch command's arguments. */
export const WATCH_SPEC: CommandSpec = {
  name: "watch",
  summary: "bind ports (unbound, interdomain, VIRQ) and print events as they arrive",
  options: {
    backend: { type: "string" },
    unbound: { type: "string", multiple: true },
    interdomain: { type: "string", multiple: true },
    virq: { type: "string", multiple: true },
    count: { type: "string" },
    timeout: { type: "string" },
    "simulate-notify": { type: "string" },
    interval: { type: "string" },
  },
  help: `Usage: xenchan watch [--backend auto|sim|ffi] PORTS... [--count N] [--timeout S]

Binds event channel ports and prints one line per event as it arrives
(each port is unmasked after its line), until Ctrl-C / SIGTERM, --count
events, or --timeout seconds. Waits without busy looping. Unbinds every
port on the way out.

Ports (repeatable, at least one):
  --unbound DOMID          allocate a port that DOMID may bind to (printed)
  --interdomain DOMID:PORT bind to PORT, which DOMID offered to this domain
  --virq N                 bind virtual IRQ N, 0..23 (for example 3, VIRQ_DOM_EXC)

Options:
  --backend B           auto (default), sim or ffi
  --count N             stop after N events
  --timeout S           stop after S seconds (exit 1 if --count was not reached)
  --simulate-notify N   simulator only: a simulated peer notifies each
                        --unbound 0 port N times, and the simulator raises
                        each --virq N times (to see watch work without Xen)

Off Xen (or with --backend sim) watch runs on the built-in simulator, where
no other domain exists: nothing arrives there unless --simulate-notify is
given, and watch says so on stderr.
  --interval S          seconds between simulated notifications (default 0.1)
  -h, --help            show this help

Exit status: 0 when stopped by a signal, by --count, or by --timeout alone;
1 when --timeout came before --count, or on an error; 2 for bad arguments.`,
};

/** One port to bind. */
export type PortRequest =
  | { readonly kind: "unbound"; readonly domid: number }
  | { readonly kind: "interdomain"; readonly domid: number; readonly port: number }
  | { readonly kind: "virq"; readonly virq: number };

/** Options of runWatch. */
export interface WatchOptions {
  readonly backend: "auto" | "sim" | "ffi";
  readonly ports: readonly PortRequest[];
  /** Stop after this many events (undefined: no limit). */
  readonly count?: number;
  /** Stop after this many ms (undefined: no limit). */
  readonly timeoutMs?: number;
  /** Simulator only: notifications per --unbound 0 port and per --virq. */
  readonly simulateNotify?: number;
  /** Milliseconds between simulated notifications. */
  readonly intervalMs: number;
}

/** Converts parsed arguments. Throws UsageError for bad values or when no port is given. */
export function watchOptions(values: ParsedValues): WatchOptions {
  const domid = (text: string, what: string) => {
    const n = /^\d+$/.test(text) ? Number(text) : Number.NaN;
    if (!Number.isSafeInteger(n) || n > 0x7fef) {
      throw new UsageError(`xenchan watch: ${what}: '${text}' is not a domain id (0..32751)`);
    }
    return n;
  };
  const ports: PortRequest[] = [
    ...listOption(values.unbound).map((d): PortRequest => ({
      kind: "unbound",
      domid: domid(d, "--unbound"),
    })),
    ...listOption(values.interdomain).map((spec): PortRequest => {
      const m = /^(\d+):(\d+)$/.exec(spec);
      if (!m) throw new UsageError(`xenchan watch: --interdomain takes DOMID:PORT, got '${spec}'`);
      return {
        kind: "interdomain",
        domid: domid(m[1], "--interdomain"),
        port: intOption("watch", "interdomain PORT", m[2], 0, 1, 0xffffffff),
      };
    }),
    ...listOption(values.virq).map((v): PortRequest => {
      const virq = /^\s*[+-]?\d+\s*$/.test(v) ? Number(v) : Number.NaN;
      if (!Number.isInteger(virq) || virq < 0 || virq >= NR_VIRQS) {
        throw new UsageError(
          `xenchan watch: --virq must be an integer from 0 to ${NR_VIRQS - 1} ` +
            `(Xen's VIRQs, NR_VIRQS = ${NR_VIRQS}), got '${v}'\n` +
            "Run 'xenchan watch --help' for usage.",
        );
      }
      return { kind: "virq", virq };
    }),
  ];
  if (ports.length === 0) {
    throw new UsageError(
      "xenchan watch: name at least one port (--unbound DOMID, --interdomain DOMID:PORT or --virq N)\n" +
        "Run 'xenchan watch --help' for usage.",
    );
  }
  return {
    backend: backendOption("watch", values.backend),
    ports,
    count: values.count === undefined ? undefined : intOption("watch", "count", values.count, 0, 1),
    timeoutMs: values.timeout === undefined
      ? undefined
      : secondsOption("watch", "timeout", values.timeout, 0),
    simulateNotify: values["simulate-notify"] === undefined
      ? undefined
      : intOption("watch", "simulate-notify", values["simulate-notify"], 0, 1, 1_000_000),
    intervalMs: secondsOption("watch", "interval", values.interval, 100),
  };
}

/** What the caller (the entry, or a test) may supply. */
export interface WatchContext {
  /** Aborting stops the watch cleanly (the entry wires SIGINT/SIGTERM to it). */
  readonly signal?: AbortSignal;
  /**
   * Use this backend instead of resolving options.backend (tests pass a
   * simulated domain's process). With it, --simulate-notify is refused:
   * the caller drives the peers.
   */
  readonly backend?: XenBackend;
  /** Called once every port is bound, with the local ports in request order. */
  readonly onReady?: (ports: readonly number[]) => void;
}

function describe(request: PortRequest): string {
  switch (request.kind) {
    case "unbound":
      return `unbound, for d${request.domid}`;
    case "interdomain":
      return `interdomain, d${request.domid} port ${request.port}`;
    case "virq":
      return `VIRQ ${request.virq}`;
  }
}

function bindOne(evtchn: EventChannels, request: PortRequest): number {
  switch (request.kind) {
    case "unbound":
      return evtchn.bindUnboundPort(request.domid);
    case "interdomain":
      return evtchn.bindInterdomain(request.domid, request.port);
    case "virq":
      return evtchn.bindVirq(request.virq);
  }
}

function bindError(request: PortRequest, error: unknown, simulated: boolean): string {
  let text = `cannot bind ${describe(request)}: ${(error as Error)?.message ?? String(error)}`;
  if (error instanceof XenCallError && simulated) {
    if (error.code === "ESRCH") text += " (the simulator here has only domain 0)";
    if (error.code === "EINVAL" && request.kind === "interdomain") {
      text += " (no such unbound port offered to this domain on the simulator)";
    }
  }
  return text;
}

/**
 * Simulated peers for --simulate-notify: for each `unbound` port for d0 a
 * second simulated dom0 process binds to it and notifies; each VIRQ is
 * raised by the simulator. Returns a stop function. Throws what binding
 * throws.
 */
async function startSimulatedPeers(
  hv: SimHypervisor,
  requests: readonly PortRequest[],
  ports: readonly number[],
  times: number,
  intervalMs: number,
  out: Output,
): Promise<() => void> {
  const peer = await openEventChannels({ backend: hv.backend(0) });
  const actions: (() => void)[] = [];
  requests.forEach((request, i) => {
    if (request.kind === "unbound" && request.domid === 0) {
      const peerPort = peer.bindInterdomain(0, ports[i]);
      actions.push(() => peer.notify(peerPort));
    } else if (request.kind === "virq") {
      actions.push(() => hv.raiseVirq(0, request.virq));
    }
  });
  if (actions.length === 0) {
    out.err(
      "xenchan watch: --simulate-notify drives only --unbound 0 and --virq ports; nothing to notify",
    );
  }
  let round = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const tick = () => {
    for (const action of actions) action();
    if (++round < times) timer = setTimeout(tick, intervalMs);
  };
  if (actions.length > 0) timer = setTimeout(tick, intervalMs);
  return () => {
    clearTimeout(timer);
    peer.close();
  };
}

/**
 * Runs the watch. Resolves to the exit status (see the help text); errors
 * (a bind that fails, an unusable backend) are printed to `out.err` and
 * give 1.
 */
export async function runWatch(
  options: WatchOptions,
  out: Output,
  context: WatchContext = {},
): Promise<number> {
  let backend: XenBackend;
  let hv: SimHypervisor | undefined;
  if (context.backend) {
    if (options.simulateNotify !== undefined) {
      out.err("xenchan watch: --simulate-notify cannot be used with a caller-supplied backend");
      return 1;
    }
    backend = context.backend;
  } else {
    let selection: Awaited<ReturnType<typeof selectBackend>>;
    try {
      selection = await selectBackend(options.backend);
      backend = selection.backend;
    } catch (error) {
      out.err(
        `xenchan watch: the ${options.backend} backend is not available: ${
          (error as Error).message
        }`,
      );
      return 1;
    }
    if (selection.kind === "sim") {
      // a private simulator, so simulated peers and VIRQs are ours to drive
      hv = new SimHypervisor();
      backend = hv.backend(0);
      const why = options.backend === "sim"
        ? "--backend sim"
        : `no Xen here: ${selection.reason.replace(/^simulator, because /, "")}`;
      out.err(
        options.simulateNotify === undefined
          ? `xenchan watch: running on the built-in simulator (${why}); no other domain exists ` +
            "there, so nothing will arrive: add --simulate-notify N for a simulated peer that " +
            "notifies --unbound 0 ports and raises each --virq"
          : `xenchan watch: running on the built-in simulator (${why}); the events below come ` +
            "from --simulate-notify, not from Xen",
      );
    } else if (options.simulateNotify !== undefined) {
      out.err("xenchan watch: --simulate-notify needs the simulator (--backend sim)");
      return 1;
    }
  }

  let evtchn: EventChannels;
  try {
    evtchn = await openEventChannels({ backend });
  } catch (error) {
    out.err(
      `xenchan watch: cannot open an event channel handle: ${(error as Error).message}${
        openErrorHint(error)
      }`,
    );
    return 1;
  }
  const stops: (() => void)[] = [];
  try {
    const byPort = new Map<number, PortRequest>();
    const ports: number[] = [];
    for (const request of options.ports) {
      let port: number;
      try {
        port = bindOne(evtchn, request);
      } catch (error) {
        out.err(`xenchan watch: ${bindError(request, error, backend.kind === "sim")}`);
        return 1;
      }
      ports.push(port);
      byPort.set(port, request);
      out.log(`bound port ${port} (${describe(request)})`);
    }
    out.log(
      `watching ${ports.length} port${ports.length === 1 ? "" : "s"} on ${backend.description}` +
        `${options.count ? `, until ${options.count} events` : ""}` +
        `${options.timeoutMs ? `, for at most ${options.timeoutMs / 1000} s` : ""}; Ctrl-C to stop`,
    );

    const controller = new AbortController();
    const stopWith = (why: string) => {
      if (!controller.signal.aborted) controller.abort(why);
    };
    if (context.signal?.aborted) stopWith("signal");
    const onSignal = () => stopWith("signal");
    context.signal?.addEventListener("abort", onSignal, { once: true });
    stops.push(() => context.signal?.removeEventListener("abort", onSignal));
    if (options.timeoutMs !== undefined) {
      const timer = setTimeout(() => stopWith("timeout"), options.timeoutMs);
      stops.push(() => clearTimeout(timer));
    }
    if (hv && options.simulateNotify !== undefined) {
      stops.push(
        await startSimulatedPeers(
          hv,
          options.ports,
          ports,
          options.simulateNotify,
          options.intervalMs,
          out,
        ),
      );
    }
    context.onReady?.(ports);

    const t0 = performance.now();
    let events = 0;
    for await (const port of evtchn.ports({ signal: controller.signal })) {
      events++;
      const request = byPort.get(port);
      const seconds = ((performance.now() - t0) / 1000).toFixed(3);
      out.log(
        `+${seconds}s event ${events}: port ${port} (${
          request ? describe(request) : "unknown port"
        })`,
      );
      evtchn.unmask(port);
      if (options.count !== undefined && events >= options.count) stopWith("count");
    }
    const why = controller.signal.reason ?? "signal";
    out.log(
      `stopped (${
        why === "count" ? `${events} events` : why === "timeout" ? "timeout" : "interrupted"
      }); ` +
        `${events} event${events === 1 ? "" : "s"}, unbinding ${ports.length} port${
          ports.length === 1 ? "" : "s"
        }`,
    );
    for (const port of ports) evtchn.unbind(port);
    return why === "timeout" && options.count !== undefined ? 1 : 0;
  } finally {
    for (const stop of stops) stop();
    evtchn.close();
  }
}
