/**
 * The demo's front end as a child process (real Xen, dom0 loopback): how
 * `xenchan demo` starts cli/demo_front.ts, reads its `ready` / `done` /
 * `error` lines, kills it and waits for its exit.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { basename } from "node:path";
import { fileURLToPath } from "node:url";
import { childCommand } from "./facts.ts";

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
function exitOf(child: ChildProcess, abort: AbortSignal): Promise<ChildExit> {
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

/** How a child process ended: its exit code, or the signal that killed it. */
export interface ChildExit {
  readonly code: number | null;
  readonly signal: string | null;
}

/** What the front end needs to attach: the back end's grant ref and port, and its work. */
export interface FrontEndArgs {
  readonly ref: number;
  readonly port: number;
  readonly requests: number;
  readonly timeoutMs: number;
}

/**
 * cli/demo_front.ts running in a child process of this runtime (Deno
 * `run -A`, Bun `run`), its stdout piped. Owns the child: disposing it
 * sends SIGKILL if the child is still running. Single-threaded use only.
 */
export class ChildFrontEnd implements Disposable {
  /** The command line as shown to the user: runtime name, its flags, "cli/demo_front.ts". */
  readonly shown: string;
  readonly #child: ChildProcess;
  readonly #lines: ChildLines;

  /**
   * Spawns the front end. A spawn failure reported as the child's `error`
   * event (for example the runtime binary vanished) surfaces as a rejection
   * of next(); one that spawn() throws propagates from here.
   */
  constructor(args: FrontEndArgs) {
    // demo_front.ts in the sources, demo_front.js in the built npm package: this file's own
    // extension tells which.
    const ext = /\.[jt]s$/.exec(import.meta.url)?.[0] ?? ".ts";
    const script = fileURLToPath(new URL(`./demo_front${ext}`, import.meta.url));
    const [exe, ...rest] = childCommand(script, [
      "--ref",
      String(args.ref),
      "--port",
      String(args.port),
      "--requests",
      String(args.requests),
      "--timeout-ms",
      String(args.timeoutMs),
    ]);
    this.shown = [basename(exe), ...rest.slice(0, rest.indexOf(script) + 1)]
      .map((word) => word === script ? "cli/demo_front.ts" : word).join(" ");
    this.#child = spawn(exe, rest, { stdio: ["ignore", "pipe", "pipe"] });
    this.#lines = new ChildLines(this.#child);
  }

  /**
   * Resolves with the text after `prefix ` of the child's next such stdout
   * line. Rejects with Error("front end failed: ...") on an `error` line,
   * Error("front end exited before '<prefix>': <stderr>") when the child
   * ends first, or the signal's reason on abort.
   */
  next(prefix: string, signal: AbortSignal): Promise<string> {
    return this.#lines.next(prefix, signal);
  }

  /** Sends SIGKILL (the demo's crash). */
  kill(): void {
    this.#child.kill("SIGKILL");
  }

  /** Resolves with the child's exit (at once if it already ended); rejects with the signal's reason on abort. */
  exit(signal: AbortSignal): Promise<ChildExit> {
    return exitOf(this.#child, signal);
  }

  /** Kills the child with SIGKILL if it is still running. */
  [Symbol.dispose](): void {
    if (this.#child.exitCode === null && this.#child.signalCode === null) {
      this.#child.kill("SIGKILL");
    }
  }
}
