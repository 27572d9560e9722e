/**
 * The built-in loop on the simulator's virtual clock: timeouts are timers
 * of a VirtualClock (sim/clock.ts), so they fire when the test advances
 * virtual time (hv.advance / hv.clock.advance). A timeout already due
 * ("as soon as possible", e.g. the domain event deferral) needs no time to
 * pass and fires from a microtask. Pure TypeScript; no permissions.
 *
 * fds: the simulator's descriptors are virtual, so by default this loop
 * refuses fd registrations (OsEventRegError for whoever asked). Pass
 * `fdWaiter` (for example the FdPoller) to serve real fds as well.
 *
 * @example
 * ```ts
 * const hv = new SimHypervisor();
 * using ctx = new EventContext({ clock: hv.clock, domains: simDomainSource(hv) });
 * attachSimClockLoop(ctx);
 * ctx.enableDomainDeath(domid, "mine");
 * hv.destroy(domid);
 * const ev = await ctx.eventWait(eventMask(EventType.DOMAIN_DEATH));
 * ```
 *
 * @module
 */
import { XenUsageError } from "../../core/errors.ts";
import type { EventContext } from "./context.ts";
import { BuiltinLoop, checkContext, type FdWaiter, type LoopTimers } from "./loop.ts";
import { checkFunction, checkObject, checkOptions } from "../../core/validate.ts";
import type { Clock } from "./types.ts";

/** The parts of sim/clock.ts VirtualClock this loop uses. */
export interface VirtualTimerClock extends Clock {
  setTimer(fn: () => void, ms: number): number;
  clearTimer(id: number): boolean;
}

/** Options of attachSimClockLoop. */
export interface SimClockLoopOptions {
  /** Serves real fds too (default: fd registrations are refused). */
  readonly fdWaiter?: FdWaiter;
  /** See BuiltinLoopOptions.onError. */
  readonly onError?: (error: unknown) => void;
}

/**
 * Timers on a virtual clock; due-now timers run from a microtask. Throws
 * XenUsageError for a clock without setTimer()/clearTimer().
 */
export function virtualTimers(clock: VirtualTimerClock): LoopTimers {
  checkObject("clock", clock);
  checkFunction("clock.setTimer", clock.setTimer);
  checkFunction("clock.clearTimer", clock.clearTimer);
  return {
    set(fn: () => void, ms: number): unknown {
      if (ms <= 0) {
        const cell = { cancelled: false };
        queueMicrotask(() => {
          if (!cell.cancelled) fn();
        });
        return cell;
      }
      return clock.setTimer(fn, ms);
    },
    clear(id: unknown): void {
      if (typeof id === "number") clock.clearTimer(id);
      else if (id && typeof id === "object") (id as { cancelled: boolean }).cancelled = true;
    },
  };
}

/**
 * Attaches the virtual-clock loop to `ctx` as its hooks. `ctx` must have
 * been created with the VirtualClock as its clock (e.g. `{ clock: hv.clock }`),
 * else XenUsageError (as for a `ctx` that is not an EventContext or options
 * that are not an object); also throws what ctx.registerHooks throws.
 */
export function attachSimClockLoop(
  ctx: EventContext,
  options?: SimClockLoopOptions,
): BuiltinLoop {
  checkContext(ctx);
  options = checkOptions("options", options);
  const clock = ctx.clock as Partial<VirtualTimerClock>;
  if (typeof clock.setTimer !== "function" || typeof clock.clearTimer !== "function") {
    throw new XenUsageError(
      "attachSimClockLoop needs a context created with the simulator's clock: new EventContext({ clock: hv.clock })",
    );
  }
  return new BuiltinLoop(ctx, {
    name: "sim-clock",
    fdWaiter: options.fdWaiter,
    timers: virtualTimers(clock as VirtualTimerClock),
    onError: options.onError,
  });
}
