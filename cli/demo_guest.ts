/**
 * The demo's real-guest scenario: the back end in dom0 (this process), the
 * front end in a real PV guest domain. Runs in a dom0 with the toolstack
 * and the guest images of the project's harness (the helper xenchan-guest,
 * named by $XENCHAN_GUEST_HELPER, else found on PATH). The guest runs
 * cli/demo_front.ts under this process's runtime; the back end shares the
 * ring page with the guest and offers an unbound port for it, and writes
 * both to XenStore (/local/domain/<guest>/xenchan/demo/{ring-ref,
 * event-channel}); the front end finds them there, maps the page with unmap
 * notification and binds the port. After the exchange the back end asks
 * the front end to crash (DIR/crash): its process dies by SIGKILL inside
 * the guest, whose kernel clears the live byte and sends the event. Then
 * the guest domain is destroyed and the back end receives DOMAIN_DEATH
 * from the osevent layer over the real source: the XenStore
 * @releaseDomain watch and libxenctrl's domain list (--source xenstore,
 * the default), or libxl's death watch (--source libxl: libxenlight
 * through openLibxlSource, its fds and timers served by xenchan's osevent
 * hooks). The report's parts table names the source that delivered it.
 *
 * @module
 */
import { spawn } from "node:child_process";
import process from "node:process";
import { type DomainControl, openDomainControl, openXenStore, type XenStore } from "../mod.ts";
import {
  attachRuntimeLoop,
  type DomainEventSource,
  EventContext,
  eventMask,
  EventType,
  type LibxlContext,
  type LibxlDomainSource,
  openLibxlSource,
  xenDomainSource,
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
import { kernelEventAbi } from "./facts.ts";
import type { EndStats } from "./split_driver.ts";

/** The guest launcher of the harness dom0. */
function helper(): string {
  return process.env.XENCHAN_GUEST_HELPER || "xenchan-guest";
}

/** Runs the helper to its end; resolves with its status and output. Rejects when it cannot spawn. */
function runHelper(args: readonly string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(helper(), args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (d: string) => (out += d));
    child.stderr.on("data", (d: string) => (err += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, out, err }));
  });
}

/** A started guest: its name and domid. */
interface Guest {
  readonly name: string;
  readonly domid: number;
}

const RUNTIME = "Deno" in globalThis ? "deno" : "bun";

/** Starts the guest with the front end; rejects with the helper's reason. */
async function startFrontGuest(options: DemoOptions, startMs: number): Promise<Guest> {
  const name = `xenchan-demo-${process.pid}`;
  const run = RUNTIME === "deno" ? "deno run -A" : "bun run";
  const dir = "/local/domain/$XENCHAN_DOMID/xenchan/demo";
  // The front end outlives its own crash by nothing: the guest waits to be destroyed.
  const command = `${run} cli/demo_front.ts --xenstore ${dir} --requests ${options.requests} ` +
    `--timeout-ms ${startMs + options.timeoutMs}; echo "front end exit $?"; sleep 3600`;
  const r = await runHelper([
    "start",
    "--runtime",
    RUNTIME,
    "--name",
    name,
    "--timeout",
    String(Math.ceil(startMs / 1000)),
    "--",
    command,
  ]);
  const m = /^domid=(\d+) name=(\S+) /m.exec(r.out);
  if (r.code !== 0 || !m) {
    throw new Error(`xenchan-guest start failed (${r.code}): ${r.err.trim()}`);
  }
  return { name: m[2], domid: Number(m[1]) };
}

/** The guest's console output so far. */
async function consoleOf(guest: Guest): Promise<string> {
  return (await runHelper(["output", guest.name])).out;
}

/** Waits (polling the console) for the front end's `<word> {json}` line. */
async function frontLine(guest: Guest, word: string, ms: number): Promise<string> {
  return await within(ms, `the guest front end's ${word} line`, async (signal) => {
    const re = new RegExp(`^${word} (\\{.*\\})$`, "m");
    for (;;) {
      const text = await consoleOf(guest);
      const hit = re.exec(text);
      if (hit) return hit[1];
      const bad = /^error (.*)$/m.exec(text);
      if (bad) throw new Error(`the front end in the guest failed: ${bad[1]}`);
      if (signal.aborted) throw signal.reason;
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
  });
}

/** The DOMAIN_DEATH source of a run: what it is made of, and how to close it. */
interface DeathSource {
  readonly source: DomainEventSource;
  /** The parts table's words for it. */
  readonly how: string;
  /** Releases it (after the EventContext over it is closed). Never rejects. */
  close(): Promise<void>;
}

/**
 * Opens the DOMAIN_DEATH source `options.source` names over `xs`: libxl's
 * (openLibxlSource), or the XenStore @releaseDomain watch with
 * libxenctrl's domain list (the default). Rejects with what opening
 * throws (LibxlError, LibraryNotFoundError, XenCallError); nothing stays
 * open then. The caller owns the result (close()).
 */
async function openDeathSource(options: DemoOptions, xs: XenStore): Promise<DeathSource> {
  if (options.source === "libxl") {
    const libxl: LibxlDomainSource<LibxlContext> = await openLibxlSource<LibxlContext>();
    return {
      source: libxl,
      how: `REAL (xl destroy -> libxl death watch (${libxl.libxl.libraryPath}, ` +
        "driven by xenchan's osevent hooks) -> osevent)",
      close: () => libxl.close().catch(() => {}),
    };
  }
  const control: DomainControl = await openDomainControl();
  return {
    source: xenDomainSource({ xenstore: xs, domains: control }),
    how: "REAL (xl destroy -> @releaseDomain watch + libxenctrl -> osevent)",
    close: () => {
      control.close();
      return Promise.resolve();
    },
  };
}

/** Which parts were real: all of them; `death` names the DOMAIN_DEATH source. */
function guestParts(guest: Guest, death: string): DemoPart[] {
  return [
    ["event channels, grant share/map", "REAL Xen (libxenevtchn / libxengnttab through FFI)"],
    ["front end", `REAL guest domain ${guest.domid} (${RUNTIME} in a PV domU)`],
    ["ring ref + port handover", "REAL XenStore (dom0 socket, the guest's /dev/xen/xenbus)"],
    ["crash + unmap notification", "REAL (SIGKILL in the guest; its kernel cleared the byte)"],
    ["DOMAIN_DEATH", death],
  ];
}

/** Destroys the guest and waits up to `ms` for its DOMAIN_DEATH from `ctx`. */
async function destroyAndAwaitDeath(
  guest: Guest,
  ctx: EventContext,
  ms: number,
): Promise<DemoReport["death"]> {
  const r = await runHelper(["destroy", guest.name]);
  if (r.code !== 0) return { status: "missing", detail: `destroy failed: ${r.err.trim()}` };
  try {
    const ev = await within(
      ms,
      "DOMAIN_DEATH",
      (signal) =>
        ctx.eventWait(eventMask(EventType.DOMAIN_DEATH), { domid: guest.domid }, { signal }),
    );
    return {
      status: "received",
      detail: `DOMAIN_DEATH for domain ${ev.domid} (forUser ${JSON.stringify(ev.forUser)})`,
    };
  } catch (error) {
    return { status: "missing", detail: (error as Error).message };
  }
}

function deathCheck(death: DemoReport["death"]): DemoCheck {
  return {
    name: "real DOMAIN_DEATH through the osevent layer",
    ok: death.status === "received",
    detail: death.detail,
  };
}

/** The demo with the front end in a real guest. */
async function guestDemo(options: DemoOptions, reason: string): Promise<DemoReport> {
  const t0 = performance.now();
  const startMs = Math.max(options.timeoutMs, 180_000); // a guest boot under emulation
  const xs: XenStore = await openXenStore({ backend: "ffi" });
  let deathSource: DeathSource;
  try {
    deathSource = await openDeathSource(options, xs);
  } catch (error) {
    xs.close();
    throw error;
  }
  const ctx = new EventContext({ domains: deathSource.source });
  let guest: Guest | undefined;
  try {
    await attachRuntimeLoop(ctx);
    guest = await startFrontGuest(options, startMs);
    const g = guest;
    const dir = `/local/domain/${g.domid}/xenchan/demo`;
    ctx.enableDomainDeath(g.domid, "demo front end");
    const report = await withBackEnd("ffi", g.domid, async (back: BackEnd) => {
      await xs.write(`${dir}/ring-ref`, String(back.ref));
      await xs.write(`${dir}/event-channel`, String(back.port));
      const ready = JSON.parse(await frontLine(g, "ready", startMs)) as {
        pid: number;
        port: number;
      };
      const exchange = await exchangePhase(back, options.requests, 200, async () => {
        const backStats = await within(
          options.timeoutMs,
          "the exchange",
          (signal) => serveRequests(back, options.requests, signal),
        );
        const front = JSON.parse(await frontLine(g, "done", options.timeoutMs)) as EndStats;
        return [front, backStats];
      });
      const seen = await crashAndAwaitUnmapNotify(back, options.timeoutMs, () => {
        xs.write(`${dir}/crash`, "1").catch(() => {});
      });
      const crash = crashRecord(
        `SIGKILL to pid ${ready.pid} in guest ${g.domid}; the guest's kernel (gntdev) ` +
          "tore its mapping down",
        seen,
        back.live(),
      );
      const death = await destroyAndAwaitDeath(g, ctx, options.timeoutMs);
      const abi = kernelEventAbi();
      return finishReport(t0, {
        backend: "ffi",
        reason,
        setup: setupRecord(
          back,
          g.domid,
          ready.port,
          `process pid ${ready.pid} (${RUNTIME}) in real guest domain ${g.domid}`,
          abi.ok ? `${abi.value} (dom0 kernel, ${abi.source})` : `unknown (${abi.reason})`,
        ),
        exchange,
        crash,
        death,
        parts: guestParts(g, deathSource.how),
        skipped: [],
      }, deathCheck(death));
    });
    return report;
  } finally {
    if (guest) await runHelper(["destroy", guest.name]).catch(() => {});
    ctx.close();
    await deathSource.close();
    xs.close();
  }
}

/**
 * The real-guest scenario (DemoScenario): on an "ffi" selection with
 * --guest. Its run() rejects when the guest cannot start (the helper's
 * reason), when opening the real libraries, devices or XenStore fails, or
 * on a step's timeout, or (--source libxl) when libxl cannot be opened
 * (LibxlError, LibraryNotFoundError); the guest is destroyed and every
 * handle, the libxl context included, closed either way.
 */
export const GUEST_SCENARIO: DemoScenario = {
  name: "dom0 <-> real guest",
  kind: "ffi",
  libxlSource: true,
  applies: (options) => options.guest === true,
  run: guestDemo,
};
