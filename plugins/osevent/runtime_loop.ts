/**
 * The built-in loops for Deno and Bun: a BuiltinLoop whose fds all wait on
 * the process-wide FdPoller (ffi/poller.ts: on Deno one nonblocking poll(2)
 * call, on Bun one Worker), and whose timeouts are real timers. However
 * many handles are watched, by however many contexts, there is one poll in
 * flight.
 *
 * @example
 * ```ts
 * using ctx = new EventContext();
 * await attachRuntimeLoop(ctx);
 * const watch = ctx.watchEventChannels(evtchn);
 * const ev = await ctx.eventWait(eventMask(EventType.EVTCHN_PORT));
 * ```
 *
 * @module
 */
import { loadLibc, sharedPoller } from "../../ffi/mod.ts";
import { XenUsageError } from "../../core/errors.ts";
import { checkFunction, checkObject, checkOptions } from "../../core/validate.ts";
import type { EventContext } from "./context.ts";
import { BuiltinLoop, checkContext, type FdWaiter, REAL_TIMERS } from "./loop.ts";

/** Options of attachRuntimeLoop. */
export interface RuntimeLoopOptions {
  /**
   * Where fds wait (default: the process-wide FdPoller). Tests pass an
   * instrumented poller; anything else defeats the one-poller design.
   */
  readonly poller?: FdWaiter;
  /** See BuiltinLoopOptions.onError. */
  readonly onError?: (error: unknown) => void;
}

/** "deno", "bun", or undefined on any other runtime. Throws nothing. */
export function runtimeName(): "deno" | "bun" | undefined {
  if ("Deno" in globalThis) return "deno";
  if ("Bun" in globalThis) return "bun";
  return undefined;
}

/**
 * Attaches the loop of the running runtime (Deno or Bun) to `ctx` as its
 * hooks. Loads the FFI libraries (libc's poll) unless `options.poller` is
 * given. Rejects with XenUsageError on another runtime, when `ctx`
 * already has hooks or is not an EventContext, for options that are not an
 * object (or a poller without wait()), LibraryNotFoundError when the libraries cannot be
 * loaded, and whatever ctx.registerHooks throws.
 */
export async function attachRuntimeLoop(
  ctx: EventContext,
  options?: RuntimeLoopOptions,
): Promise<BuiltinLoop> {
  checkContext(ctx);
  options = checkOptions("options", options);
  if (options.poller !== undefined) {
    checkFunction("options.poller.wait", checkObject("options.poller", options.poller).wait);
  }
  const name = runtimeName();
  if (!name) {
    throw new XenUsageError(
      "the built-in loop needs Deno or Bun; use attachSimClockLoop or your own hooks",
    );
  }
  const poller = options.poller ?? sharedPoller(await loadLibc());
  return new BuiltinLoop(ctx, {
    name,
    fdWaiter: poller,
    timers: REAL_TIMERS,
    onError: options.onError,
  });
}

/** attachRuntimeLoop, refusing (XenUsageError) anywhere but Deno. */
export function attachDenoLoop(
  ctx: EventContext,
  options: RuntimeLoopOptions = {},
): Promise<BuiltinLoop> {
  if (runtimeName() !== "deno") {
    return Promise.reject(new XenUsageError("attachDenoLoop needs Deno"));
  }
  return attachRuntimeLoop(ctx, options);
}

/** attachRuntimeLoop, refusing (XenUsageError) anywhere but Bun. */
export function attachBunLoop(
  ctx: EventContext,
  options: RuntimeLoopOptions = {},
): Promise<BuiltinLoop> {
  if (runtimeName() !== "bun") return Promise.reject(new XenUsageError("attachBunLoop needs Bun"));
  return attachRuntimeLoop(ctx, options);
}
