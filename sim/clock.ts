/**
 * A virtual clock for the simulator. Time only moves when `advance` is
 * called (by a test, or by a simulated blocking call such as the kernel's
 * retry of a paged-out grant). Timers fire synchronously inside `advance`, in
 * due-time order, ties in scheduling order. Deterministic; never spins.
 *
 * @module
 */
import { XenUsageError } from "../core/errors.ts";
import { checkFunction, describe } from "../core/validate.ts";

interface Timer {
  readonly id: number;
  readonly due: number;
  readonly seq: number;
  readonly fn: () => void;
}

/** A deterministic millisecond clock with timers. */
export class VirtualClock {
  #now = 0;
  #seq = 0;
  #timers: Timer[] = [];
  #advancing = false;

  /** The current virtual time in milliseconds (starts at 0). Throws nothing. */
  now(): number {
    return this.#now;
  }

  /**
   * Schedules `fn` to run once when the clock reaches now + `ms`. Returns a
   * timer id for `clearTimer`. `ms` must be a finite number >= 0 and `fn` a
   * function, else XenUsageError. `fn` runs inside a later `advance` call; if it throws, the
   * exception propagates out of that `advance` (later timers stay queued).
   */
  setTimer(fn: () => void, ms: number): number {
    checkFunction("fn", fn);
    if (!(typeof ms === "number" && Number.isFinite(ms) && ms >= 0)) {
      throw new XenUsageError(`timer delay must be a finite number >= 0, got ${describe(ms)}`);
    }
    const timer = { id: ++this.#seq, due: this.#now + ms, seq: this.#seq, fn };
    this.#insert(timer);
    return timer.id;
  }

  /** Cancels a timer; returns false if it already fired or never existed. */
  clearTimer(id: number): boolean {
    const i = this.#timers.findIndex((t) => t.id === id);
    if (i < 0) return false;
    this.#timers.splice(i, 1);
    return true;
  }

  /** Number of timers still scheduled. */
  pendingTimers(): number {
    return this.#timers.length;
  }

  /** Due time of the earliest timer, or undefined when none is scheduled. */
  nextDue(): number | undefined {
    return this.#timers[0]?.due;
  }

  /**
   * Moves time forward by `ms` (finite, >= 0), firing every timer that falls
   * due, each with `now()` equal to its due time. Timers scheduled by a
   * firing timer run in the same call if they fall due. Reentrant calls
   * (advance from inside a timer) throw XenUsageError, as do bad arguments.
   */
  advance(ms: number): void {
    if (!(typeof ms === "number" && Number.isFinite(ms) && ms >= 0)) {
      throw new XenUsageError(`advance needs a finite number >= 0, got ${describe(ms)}`);
    }
    if (this.#advancing) throw new XenUsageError("VirtualClock.advance is not reentrant");
    const target = this.#now + ms;
    this.#advancing = true;
    try {
      while (this.#timers.length > 0 && this.#timers[0].due <= target) {
        const timer = this.#timers.shift()!;
        this.#now = timer.due;
        timer.fn();
      }
      this.#now = target;
    } finally {
      this.#advancing = false;
    }
  }

  /** True while `advance` is running timers (a blocking call must not advance then). */
  get advancing(): boolean {
    return this.#advancing;
  }

  #insert(timer: Timer): void {
    let lo = 0;
    let hi = this.#timers.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const t = this.#timers[mid];
      if (t.due < timer.due || (t.due === timer.due && t.seq < timer.seq)) lo = mid + 1;
      else hi = mid;
    }
    this.#timers.splice(lo, 0, timer);
  }
}
