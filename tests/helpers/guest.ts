/**
 * Guest domains and the XenStore daemon for dom0 tests. Inside a dom0 booted
 * for guests (scripts/test_xen.mjs; /init sets XENCHAN_GUESTS=1 and names the
 * helpers), these wrap the dom0 helpers scripts/xen/sh/xenchan-guest and
 * scripts/xen/sh/xenchan-xenstored through node:child_process, so they work
 * under Deno and Bun. Anywhere else whyNoGuests() gives the reason to skip.
 *
 * A guest is a fresh 1-vCPU PV domain booted from the harness's guest image:
 * busybox, glibc, libxen* and the chosen runtime, the project copy under
 * /xenchan (its cwd), /dev/xen/{evtchn,gntdev,gntalloc}; its environment has
 * XENCHAN_GUEST=1 and XENCHAN_DOMID=<its domid>. A command's output is its
 * stdout and stderr together, read from the guest console.
 *
 * @module
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import process from "node:process";

/** The runtime inside the guest image ("none": busybox only). */
export type GuestRuntime = "deno" | "bun" | "none";

/** The XenStore daemons the harness dom0 can run. */
export type XenstoredName = "oxenstored" | "cxenstored";

/** Options of runInGuest() and startGuest(). */
export interface GuestOptions {
  /** Runtime in the guest (default "deno"). */
  readonly runtime?: GuestRuntime;
  /** Guest memory in MB (default: deno 448, bun 480, none 128). */
  readonly memMb?: number;
  /** Domain name, [A-Za-z0-9_-]+ (default: a unique one). */
  readonly name?: string;
  /** Seconds from create to the command's end (run) or start (start); default 180. */
  readonly timeoutS?: number;
  /**
   * What the toolstack does when the guest powers off, reboots or crashes
   * (xl on_poweroff / on_reboot / on_crash): "destroy" (default) or
   * "preserve" (the shut-down domain stays until destroy()).
   */
  readonly onShutdown?: "destroy" | "preserve";
}

/** What xenchan-guest measured for one guest. */
export interface GuestStats {
  readonly name: string;
  readonly domid: number;
  readonly runtime: GuestRuntime;
  readonly memoryMb: number;
  readonly status: number;
  /** `xl create` until the domain was built (paused). */
  readonly createS: number;
  /** Unpause until the command started. */
  readonly bootS: number | null;
  /** Command start to end. */
  readonly scriptS: number | null;
  readonly totalS: number;
  /** Xen's free memory while the guest ran. */
  readonly freeMemoryMb: number | null;
}

/** A finished guest command. */
export interface GuestResult {
  /** The command's exit status (124: timeout, 125: harness failure, see stderr). */
  readonly status: number;
  /** The command's output (stdout and stderr together, from the guest console). */
  readonly output: string;
  /** The helper's own messages (errors, the stats line). */
  readonly stderr: string;
  /** The stats, or null when the helper failed before it could measure. */
  readonly stats: GuestStats | null;
}

/** A guest started by startGuest() whose command may still run. */
export interface RunningGuest extends AsyncDisposable {
  readonly name: string;
  readonly domid: number;
  /** The command's output so far (never waits). */
  output(): Promise<string>;
  /**
   * Polls output() until `pattern` matches, resolving with the match;
   * rejects after `timeoutMs` (default 60 s) with the output so far.
   */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Waits for the command's end (the guest powers off and is destroyed). */
  wait(timeoutS?: number): Promise<GuestResult>;
  /** Destroys the guest now (idempotent). */
  destroy(): Promise<void>;
}

const guestHelper = process.env.XENCHAN_GUEST_HELPER ?? "";
const storeHelper = process.env.XENCHAN_XENSTORED_HELPER ?? "";

/**
 * Why guests cannot be used here, or null when they can: needs the harness
 * dom0 booted with guests (XENCHAN_DOM0=1, XENCHAN_GUESTS=1, the helpers in
 * place). Does not check that a xenstored runs (the helpers do, with a clear
 * error). Never throws.
 */
export function whyNoGuests(): string | null {
  if (process.env.XENCHAN_DOM0 !== "1") {
    return "runs only inside the Xen dom0 booted by scripts/test_xen.mjs";
  }
  if (process.env.XENCHAN_GUESTS !== "1" || !guestHelper || !storeHelper) {
    return "this dom0 was booted without guest support (runInDom0 guests: false)";
  }
  if (!existsSync(guestHelper) || !existsSync(storeHelper)) {
    return `guest helpers missing (${guestHelper}, ${storeHelper})`;
  }
  return null;
}

interface Spawned {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs argv to its end; resolves with its exit code (-1 when killed) and output. */
export function runCommand(argv: readonly string[]): Promise<Spawned> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (d: string) => (stdout += d));
    child.stderr.on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

let counter = 0;

function guestArgs(command: string, options: GuestOptions): string[] {
  const name = options.name ?? `xenchan-t${process.pid}-${++counter}`;
  const args = ["--runtime", options.runtime ?? "deno", "--name", name];
  if (options.memMb !== undefined) args.push("--mem", String(options.memMb));
  if (options.timeoutS !== undefined) args.push("--timeout", String(options.timeoutS));
  if (options.onShutdown !== undefined) args.push("--on-shutdown", options.onShutdown);
  return [...args, "--", command];
}

function parseStats(stderr: string): GuestStats | null {
  const m = /^xenchan-guest: stats (\{.*\})$/m.exec(stderr);
  return m ? JSON.parse(m[1]) as GuestStats : null;
}

function result(r: Spawned): GuestResult {
  return { status: r.code, output: r.stdout, stderr: r.stderr, stats: parseStats(r.stderr) };
}

/**
 * Runs `command` (a sh command line, cwd /xenchan) in a fresh guest and
 * destroys the guest. Resolves with its status and output; a harness failure
 * (no xenstored, the vCPU rule, xl failing, a timeout) resolves with status
 * 125 or 124 and the reason in stderr. Rejects only when the helper cannot be
 * spawned. Call whyNoGuests() first.
 */
export async function runInGuest(
  command: string,
  options: GuestOptions = {},
): Promise<GuestResult> {
  return result(await runCommand([guestHelper, "run", ...guestArgs(command, options)]));
}

/**
 * Creates a guest and starts `command` in it; resolves once the command has
 * started, with a handle to follow and end it (dispose it to destroy the
 * guest). Rejects with the helper's message when the guest cannot be started.
 */
export async function startGuest(
  command: string,
  options: GuestOptions = {},
): Promise<RunningGuest> {
  const r = await runCommand([guestHelper, "start", ...guestArgs(command, options)]);
  const m = /^domid=(\d+) name=(\S+) /m.exec(r.stdout);
  if (r.code !== 0 || !m) {
    throw new Error(`xenchan-guest start failed (exit ${r.code}): ${r.stderr.trim()}`);
  }
  const domid = Number(m[1]);
  const name = m[2];
  const output = async () => (await runCommand([guestHelper, "output", name])).stdout;
  const destroy = async () => {
    await runCommand([guestHelper, "destroy", name]);
  };
  return {
    name,
    domid,
    output,
    async waitForOutput(pattern: RegExp, timeoutMs = 60_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const text = await output();
        const hit = text.match(pattern);
        if (hit) return hit;
        if (Date.now() > end) {
          throw new Error(`guest ${name}: no ${pattern} in ${timeoutMs} ms; output:\n${text}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    },
    async wait(timeoutS = 180) {
      return result(
        await runCommand([guestHelper, "wait", name, "--timeout", String(timeoutS)]),
      );
    },
    destroy,
    [Symbol.asyncDispose]: destroy,
  };
}

/** The XenStore daemon running now, or null when none runs. */
export async function runningXenstored(): Promise<XenstoredName | null> {
  const r = await runCommand([storeHelper, "status"]);
  const name = r.stdout.trim();
  return name === "oxenstored" || name === "cxenstored" ? name : null;
}

/**
 * Makes `name` the running XenStore daemon: nothing when it runs already,
 * else stops the other one (which fails while guests exist) and starts it
 * (with xen-init-dom0 and xenconsoled). Rejects with the helper's message on
 * failure.
 */
export async function useXenstored(name: XenstoredName): Promise<void> {
  if (await runningXenstored() === name) return;
  for (const argv of [[storeHelper, "stop"], [storeHelper, "start", name]]) {
    const r = await runCommand(argv);
    if (r.code !== 0) {
      throw new Error(`${argv.slice(1).join(" ")} failed (exit ${r.code}): ${r.stderr.trim()}`);
    }
  }
}
