/**
 * BuiltinLoop: an implementation of the application hooks (OsEventHooks)
 * that needs no code from the user. Every fd registration becomes a wait on
 * one FdWaiter (for Deno and Bun: the process-wide FdPoller, so however
 * many fds are registered there is one poll(2) in flight), and every
 * timeout a timer on a LoopTimers (real timers, or the simulator's virtual
 * clock). Readiness and expiry are reported back with occurredFd /
 * occurredTimeout from a later turn of the JavaScript event loop, never
 * from inside a hook, so the reentrancy rule holds by construction.
 *
 * The factories are in runtime_loop.ts (Deno, Bun) and sim_clock_loop.ts.
 *
 * @module
 */
import { ClosedHandleError, XenUsageError } from "../../core/errors.ts";
import { checkFunction, checkObject, checkString, describe } from "../../core/validate.ts";
import type { EventContext } from "./context.ts";
import { DisasterError } from "./errors.ts";
import type { OsEventHooks, OsEventRef } from "./types.ts";

/** Waits for readiness of one fd; FdPoller (ffi/poller.ts) is one. */
export interface FdWaiter {
  /**
   * Resolves with revents once any of `events` (or POLLERR/POLLHUP/POLLNVAL)
   * is ready on `fd`, or with 0 when `signal` aborts; rejects when waiting
   * itself failed (e.g. poll(2) keeps failing).
   */
  wait(fd: number, events: number, signal?: AbortSignal): Promise<number>;
}

/** Timers for a loop; `ms` is relative and >= 0. */
export interface LoopTimers {
  /** Runs `fn` once after `ms`; returns an id for clear. */
  set(fn: () => void, ms: number): unknown;
  /** Cancels a timer that has not run; harmless otherwise. */
  clear(id: unknown): void;
}

/** Options of BuiltinLoop. */
export interface BuiltinLoopOptions {
  /** A name for messages ("deno", "bun", "sim-clock"). */
  readonly name: string;
  /** Where fds wait; without one, fd registrations are refused (OsEventRegError for the caller). */
  readonly fdWaiter?: FdWaiter;
  readonly timers: LoopTimers;
  /**
   * Receives exceptions thrown by the application's eventOccurs while this
   * loop dispatched (default: globalThis.reportError, i.e. an uncaught
   * error). DisasterError and ClosedHandleError are not passed here: the
   * context already reports them to its waiters and callers.
   */
  readonly onError?: (error: unknown) => void;
}

/** What a loop is doing now, for tests and benchmarks. */
export interface BuiltinLoopStats {
  /** fd registrations held. */
  readonly fds: number;
  /** fd registrations with a wait in flight on the FdWaiter. */
  readonly waits: number;
  /** Timers held (armed, not yet reported). */
  readonly timeouts: number;
  /** occurredFd calls made. */
  readonly fdReports: number;
  /** occurredTimeout calls made. */
  readonly timeoutReports: number;
}

interface FdToken {
  readonly fd: number;
  events: number;
  readonly ref: OsEventRef;
  live: boolean;
  generation: number;
  abort: AbortController | null;
}

interface TimerToken {
  readonly ref: OsEventRef;
  deadline: number;
  id: unknown;
  fired: boolean;
}

/** See the module comment. */
export class BuiltinLoop {
  /** The loop's name ("deno", "bun", "sim-clock"). */
  readonly name: string;
  readonly #ctx: EventContext;
  readonly #waiter: FdWaiter | undefined;
  readonly #timers: LoopTimers;
  readonly #onError: (error: unknown) => void;
  readonly #fds = new Set<FdToken>();
  readonly #timeouts = new Set<TimerToken>();
  #waits = 0;
  #fdReports = 0;
  #timeoutReports = 0;

  /**
   * Registers this loop as `ctx`'s hooks (so a context can have one built-in
   * loop, and no other hooks). Throws what ctx.registerHooks throws:
   * XenUsageError if hooks are already registered, OsEventRegError,
   * ClosedHandleError, DisasterError; XenUsageError also for a `ctx` that
   * is not an EventContext or malformed options (no name, timers without
   * set/clear, a fdWaiter without wait, a non-function onError).
   */
  constructor(ctx: EventContext, options: BuiltinLoopOptions) {
    checkContext(ctx);
    checkObject("options", options);
    this.name = checkString("options.name", options.name);
    this.#ctx = ctx;
    if (options.fdWaiter !== undefined) {
      checkFunction(
        "options.fdWaiter.wait",
        checkObject("options.fdWaiter", options.fdWaiter).wait,
      );
    }
    this.#waiter = options.fdWaiter;
    checkObject("options.timers", options.timers);
    checkFunction("options.timers.set", options.timers.set);
    checkFunction("options.timers.clear", options.timers.clear);
    this.#timers = options.timers;
    this.#onError = options.onError === undefined
      ? defaultOnError
      : checkFunction("options.onError", options.onError);
    const hooks: OsEventHooks<FdToken | TimerToken> = {
      fdRegister: (fd, events, ref) => this.#fdRegister(fd, events, ref),
      fdModify: (_fd, token, events) => this.#fdModify(token as FdToken, events),
      fdDeregister: (_fd, token) => this.#fdDeregister(token as FdToken),
      timeoutRegister: (deadline, ref) => this.#timeoutRegister(deadline, ref),
      timeoutModify: (token) => this.#timeoutModify(token as TimerToken),
    };
    ctx.registerHooks(hooks);
  }

  /** Counts for tests and benchmarks. Throws nothing. */
  stats(): BuiltinLoopStats {
    return {
      fds: this.#fds.size,
      waits: this.#waits,
      timeouts: this.#timeouts.size,
      fdReports: this.#fdReports,
      timeoutReports: this.#timeoutReports,
    };
  }

  #fdRegister(fd: number, events: number, ref: OsEventRef): FdToken {
    if (!this.#waiter) {
      throw new XenUsageError(`the ${this.name} loop watches no file descriptors (fd ${fd})`);
    }
    const token: FdToken = { fd, events, ref, live: true, generation: 0, abort: null };
    this.#fds.add(token);
    this.#arm(token);
    return token;
  }

  #fdModify(token: FdToken, events: number): undefined {
    token.events = events;
    this.#arm(token);
    return undefined;
  }

  #fdDeregister(token: FdToken): void {
    token.live = false;
    token.generation++;
    token.abort?.abort();
    token.abort = null;
    this.#fds.delete(token);
  }

  #arm(token: FdToken): void {
    token.abort?.abort();
    token.abort = null;
    const generation = ++token.generation;
    if (!token.live || token.events === 0) return; // events 0: registered, silent
    const abort = new AbortController();
    token.abort = abort;
    this.#waits++;
    this.#waiter!.wait(token.fd, token.events, abort.signal).then(
      (revents) => {
        this.#waits--;
        this.#ready(token, generation, revents);
      },
      (error) => {
        this.#waits--;
        if (generation !== token.generation || !token.live) return;
        this.#report(() =>
          this.#ctx.reportDisaster(
            0,
            `the ${this.name} loop could not wait for fd ${token.fd}: ${
              (error as Error)?.message ?? error
            }`,
            (error as { errno?: number })?.errno ?? 0,
            error,
          )
        );
      },
    );
  }

  #ready(token: FdToken, generation: number, revents: number): void {
    if (generation !== token.generation || !token.live || revents === 0) return;
    this.#fdReports++;
    this.#report(() => this.#ctx.occurredFd(token.ref, token.fd, token.events, revents));
    // Level-triggered: wait again unless the dispatch re-armed (modify) or deregistered it.
    if (generation === token.generation && token.live) this.#arm(token);
  }

  #timeoutRegister(deadline: number, ref: OsEventRef): TimerToken {
    const token: TimerToken = { ref, deadline, id: undefined, fired: false };
    this.#timeouts.add(token);
    this.#schedule(token);
    return token;
  }

  #timeoutModify(token: TimerToken): undefined {
    if (token.fired) return undefined; // raced with our own occurredTimeout: fine
    this.#timers.clear(token.id);
    token.deadline = 0;
    this.#schedule(token);
    return undefined;
  }

  #schedule(token: TimerToken): void {
    const left = Math.max(0, token.deadline - this.#ctx.clock.now());
    token.id = this.#timers.set(() => this.#expire(token), left);
  }

  #expire(token: TimerToken): void {
    if (token.fired) return;
    if (token.deadline > this.#ctx.clock.now()) {
      this.#schedule(token); // a timer clamped to the platform maximum
      return;
    }
    token.fired = true;
    this.#timeouts.delete(token);
    this.#timeoutReports++;
    this.#report(() => this.#ctx.occurredTimeout(token.ref));
  }

  #report(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      if (error instanceof DisasterError || error instanceof ClosedHandleError) return;
      this.#onError(error);
    }
  }
}

function defaultOnError(error: unknown): void {
  const report = (globalThis as { reportError?: (e: unknown) => void }).reportError;
  if (typeof report === "function") report(error);
  else {queueMicrotask(() => {
      throw error;
    });}
}

/** Real timers (setTimeout), clamped to the platform's 2^31-1 ms maximum. */
export const REAL_TIMERS: LoopTimers = Object.freeze({
  set(fn: () => void, ms: number): unknown {
    return setTimeout(fn, Math.min(ms, 0x7fffffff));
  },
  clear(id: unknown): void {
    clearTimeout(id as ReturnType<typeof setTimeout>);
  },
});

/**
 * XenUsageError unless `ctx` looks like an EventContext (registerHooks,
 * occurredFd, occurredTimeout). Used by every loop attach function before
 * it does anything else.
 */
export function checkContext(ctx: unknown): void {
  const c = checkObject("ctx", ctx) as Partial<Record<string, unknown>>;
  for (const name of ["registerHooks", "occurredFd", "occurredTimeout"]) {
    if (typeof c[name] !== "function") {
      throw new XenUsageError(`ctx must be an EventContext, got ${describe(ctx)}`);
    }
  }
}
