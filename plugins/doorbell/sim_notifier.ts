/**
 * A pure JavaScript notifier with Linux eventfd semantics (fs/eventfd.c):
 * a uint64 counter, waiters woken in FIFO order. It imports nothing
 * runtime-specific and needs no permissions.
 *
 * @module
 */
import { ClosedHandleError } from "../../core/errors.ts";
import { checkBigint, checkBoolean, checkOptions, checkWaitOptions } from "../../core/validate.ts";
import type { NotifierWaitOptions, WaitableNotifier } from "./notifier.ts";

/** The largest counter value an eventfd holds: 2^64 - 2. */
const COUNTER_MAX = 0xfffffffffffffffen;

/** Options for a SimNotifier. */
export interface SimNotifierOptions {
  /** Initial counter, a bigint in 0n..2^64 - 2 (default 0n). */
  readonly initial?: bigint;
  /** EFD_SEMAPHORE semantics: each read returns 1n and decrements. Default false. */
  readonly semaphore?: boolean;
}

interface Waiter {
  readonly resolve: (value: bigint) => void;
  readonly reject: (error: unknown) => void;
  readonly cleanup: () => void;
}

/**
 * A simulated eventfd. notify() adds 1 (dropped at the 2^64 - 2 ceiling, as
 * a nonblocking eventfd write fails with EAGAIN there); read()/wait() consume
 * as described on WaitableNotifier. Waiters are served in arrival order: in
 * normal mode the first waiter takes the whole counter, in semaphore mode
 * each waiter takes 1n while the counter lasts.
 */
export class SimNotifier implements WaitableNotifier {
  /** Always "sim". */
  readonly kind = "sim" as const;
  /** Whether reads are in semaphore mode. */
  readonly semaphore: boolean;
  #counter: bigint;
  #signals = 0;
  #closed = false;
  readonly #waiters: Waiter[] = [];

  /**
   * Creates the notifier. Throws XenUsageError for options that are not an
   * object, an initial value that is not a bigint in range, or a
   * non-boolean semaphore.
   */
  constructor(options?: SimNotifierOptions) {
    options = checkOptions("options", options);
    const initial = options.initial ?? 0n;
    this.#counter = checkBigint("options.initial", initial, 0n, COUNTER_MAX);
    this.semaphore = options.semaphore === undefined
      ? false
      : checkBoolean("options.semaphore", options.semaphore);
  }

  /** Whether close() has run. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The counter now, without consuming it. Throws ClosedHandleError after close(). */
  get count(): bigint {
    this.#live();
    return this.#counter;
  }

  /** How many times notify() ran (including saturated ones), for tests and traces. */
  get signals(): number {
    return this.#signals;
  }

  #live(): void {
    if (this.#closed) throw new ClosedHandleError("sim notifier");
  }

  /**
   * Adds 1 to the counter and wakes waiters (asynchronously: their promises
   * settle in a later microtask, so no waiter code runs inside notify()).
   * Throws ClosedHandleError after close().
   */
  notify(): void {
    this.#live();
    this.#signals++;
    if (this.#counter < COUNTER_MAX) this.#counter++;
    this.#serve();
  }

  #take(): bigint | null {
    if (this.#counter === 0n) return null;
    if (this.semaphore) {
      this.#counter--;
      return 1n;
    }
    const value = this.#counter;
    this.#counter = 0n;
    return value;
  }

  #serve(): void {
    while (this.#waiters.length > 0 && this.#counter > 0n) {
      const waiter = this.#waiters.shift()!;
      waiter.cleanup();
      waiter.resolve(this.#take()!);
    }
  }

  /** The counter if non-zero (consumed as described above), else null. Throws ClosedHandleError. */
  read(): bigint | null {
    this.#live();
    return this.#take();
  }

  /**
   * Waits for a non-zero counter and consumes it. Rejects with the signal's
   * reason on abort, ClosedHandleError if closed before or during the wait,
   * XenUsageError for options that are not `{ signal?: AbortSignal }`.
   */
  wait(options?: NotifierWaitOptions): Promise<bigint> {
    try {
      options = checkWaitOptions("options", options);
      this.#live();
      options.signal?.throwIfAborted();
    } catch (error) {
      return Promise.reject(error);
    }
    const now = this.#waiters.length === 0 ? this.#take() : null;
    if (now !== null) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const signal = options.signal;
      const onAbort = () => {
        const index = this.#waiters.indexOf(waiter);
        if (index >= 0) this.#waiters.splice(index, 1);
        reject(signal!.reason);
      };
      const waiter: Waiter = {
        resolve,
        reject,
        cleanup: () => signal?.removeEventListener("abort", onAbort),
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** Rejects every wait with ClosedHandleError and refuses further use. Idempotent; never throws. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const waiter of this.#waiters.splice(0)) {
      waiter.cleanup();
      waiter.reject(new ClosedHandleError("sim notifier"));
    }
  }

  /** Same as close(). */
  [Symbol.dispose](): void {
    this.close();
  }
}
