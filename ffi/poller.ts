/**
 * One poller for every file descriptor the process waits on.
 *
 * However many handles are open, at most one poll(2) is in flight: Deno runs
 * it as a nonblocking FFI call, Bun in one Worker. A private eventfd wakes it
 * when the set of waiters changes. Nothing but poll runs off the main thread.
 *
 * Before a wait is handed to that poll (the "parked" path, which costs two
 * thread hand-offs per wake-up), it is tried inline: the caller looks first
 * (readyNow: a ready fd needs no wait at all); otherwise, when it is the only
 * wait in flight and its fd has a budget, wait() first lets the event loop turn
 * once (a setImmediate), so that whatever the caller set going before it waits
 * (promises it just resolved, their continuations, I/O callbacks) runs first,
 * and only then the calling thread looks again, yields the CPU once
 * (sched_yield(2): a peer woken on this CPU answers meanwhile) and waits in
 * ppoll(2) for a bounded time (the inline budget), as Linux socket busy polling
 * does, but sleeping in the kernel instead of spinning, so it costs no CPU time
 * while it waits. Without that turn a loop that wakes a consumer and then waits
 * again (a pump: vchan's, the xenbus reader's) would hold the consumer's reply
 * back for a whole budget, and the peer, which waits for that reply, could not
 * make the fd ready meanwhile. The budget is learned per fd from recent wait
 * times (twice their moving average; only waits that outlast their inline
 * budget and are parked are timed, so an inline hit reads no clock, which in a
 * Xen PV dom0 under emulation costs as much as a system call), capped by
 * `inlineWaitMaxUs` (default 2000 µs, environment XENCHAN_INLINE_WAIT_US, or
 * setInlineWait(); 0 turns it off), and it is 0 for an fd whose waits take
 * longer than the cap. Waits nobody makes never wait inline. The event loop is
 * held for at most one budget per turn by wait(); tryInline(), the synchronous
 * form, allows at most INLINE_SLICE_MS of inline waiting between two turns of
 * the loop and only looks after that.
 *
 * @module
 */
import process from "node:process";
import { setImmediate } from "node:timers";
import { ClosedHandleError, XenCallError, XenUsageError } from "../core/errors.ts";
import type { LibcLibrary } from "./load.ts";

const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;
const POLLIN = 0x001;
const EINTR = 4;
const POLLFD_SIZE = 8;
const MAX_CONSECUTIVE_POLL_FAILURES = 100;
/** The default cap of the inline budget, in microseconds. */
export const INLINE_WAIT_DEFAULT_US = 2000;
/** The largest inline budget setInlineWait accepts, in microseconds (one second). */
export const INLINE_WAIT_LIMIT_US = 1_000_000;
/** Inline waiting allowed between two turns of the event loop, in milliseconds. */
export const INLINE_SLICE_MS = 10;
/** Weight of the newest wait time in an fd's moving average. */
const EWMA_WEIGHT = 0.25;
/** Fds with learned wait times kept before the table is reset. */
const MAX_TRACKED_FDS = 1024;

/** Counters of how waits ended, for benchmarks and tests (monotonic since creation). */
export interface PollerStats {
  /** Waits whose fd was ready at once (no waiting at all). */
  readonly ready: number;
  /** Waits that ended inside the inline budget. */
  readonly inlineHits: number;
  /** Inline waits whose budget ran out (they were then parked). */
  readonly inlineMisses: number;
  /** Waits handed to the background poll (including the inline misses). */
  readonly parked: number;
}

/** What the poller learned about one fd: the moving average of its wait times (µs). */
interface FdHistory {
  averageUs: number;
}

interface Waiter {
  readonly fd: number;
  readonly events: number;
  readonly resolve: (revents: number) => void;
  readonly reject: (error: unknown) => void;
  readonly cleanup: () => void;
}

/** Shared readiness waiting over many fds; see the module comment. */
export class FdPoller {
  readonly #libs: LibcLibrary;
  readonly #wakeFd: number;
  readonly #waiters = new Set<Waiter>();
  #running = false;
  #inFlight = false;
  #closed = false;
  #word = new BigUint64Array(1);
  /** One struct pollfd for the calls on this thread (pollNow, the inline wait). */
  readonly #one = new Uint8Array(POLLFD_SIZE);
  readonly #oneView = new DataView(this.#one.buffer);
  /** struct timespec {tv_sec, tv_nsec} as four 32-bit halves (no BigInt per call). */
  readonly #timeout = new Int32Array(4);
  readonly #history = new Map<number, FdHistory>();
  #inlineMaxUs: number;
  #inlineMs = 0;
  #turnPending = false;
  #missFd = -1;
  #missBudgetUs = 0;
  #ready = 0;
  #hits = 0;
  #misses = 0;
  #parked = 0;

  /**
   * Creates the wake eventfd. `inlineWaitMaxUs` caps the inline budget
   * (default: XENCHAN_INLINE_WAIT_US when set and readable, else
   * INLINE_WAIT_DEFAULT_US; 0 = never wait inline). Throws
   * XenCallError("eventfd") on failure, XenUsageError for a cap that is not
   * an integer from 0 to INLINE_WAIT_LIMIT_US.
   */
  constructor(libs: LibcLibrary, inlineWaitMaxUs: number = defaultInlineWaitUs()) {
    this.#inlineMaxUs = checkInlineUs("inlineWaitMaxUs", inlineWaitMaxUs);
    this.#libs = libs;
    const fd = libs.libc.symbols.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) throw new XenCallError("eventfd", libs.errno());
    this.#wakeFd = fd;
  }

  /** Number of waits in flight (for leak checks and benchmarks). */
  get waiting(): number {
    return this.#waiters.size;
  }

  /** The cap of the inline budget in microseconds (0: inline waiting is off). */
  get inlineWaitMaxUs(): number {
    return this.#inlineMaxUs;
  }

  /**
   * Sets the cap of the inline budget (0 turns inline waiting off) and
   * forgets the wait times learned so far. Applies to waits started after
   * the call. Throws XenUsageError unless `maxUs` is an integer from 0 to
   * INLINE_WAIT_LIMIT_US; the old cap stays then.
   */
  setInlineWait(maxUs: number): void {
    this.#inlineMaxUs = checkInlineUs("maxUs", maxUs);
    this.#history.clear();
  }

  /** How waits ended so far (see PollerStats). Never throws. */
  get stats(): PollerStats {
    return {
      ready: this.#ready,
      inlineHits: this.#hits,
      inlineMisses: this.#misses,
      parked: this.#parked,
    };
  }

  /**
   * Resolves with the revents of `fd` once any of `events` (or POLLERR,
   * POLLHUP, POLLNVAL) is ready, or with 0 when `signal` aborts. Several
   * waits on one fd are allowed. The fd must stay open until the promise
   * settles: cancel with `signal` before closing it. Rejects with
   * ClosedHandleError after close() (also when close() runs before a
   * deferred inline wait started), XenCallError("poll") when poll keeps
   * failing.
   *
   * It does not look first: callers that may find the fd ready look with
   * readyNow() (pending() and EventFd do), so a ready fd costs no hand-off.
   * Unless `inline` is false, when no other wait is in flight and the fd
   * has an inline budget, it lets the event loop turn once and then runs
   * tryInline(fd, events) (which looks, and may block this thread for at
   * most the budget); only if that misses is the wait parked in the
   * background poll. Otherwise (or with `inline` false) the wait is parked
   * at once. The call itself never blocks.
   */
  wait(fd: number, events: number, signal?: AbortSignal, inline = true): Promise<number> {
    if (this.#closed) return Promise.reject(new ClosedHandleError("fd poller"));
    if (signal?.aborted) return Promise.resolve(0);
    if (!inline || this.#waiters.size > 0 || this.#budgetUs(fd) === 0) {
      return this.#park(fd, events, signal);
    }
    // Let what the caller just set going run before this thread may block.
    return new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      if (this.#closed) throw new ClosedHandleError("fd poller");
      if (signal?.aborted) return 0;
      const revents = this.tryInline(fd, events);
      return revents !== 0 ? revents : this.#park(fd, events, signal);
    });
  }

  /**
   * The revents of `fd` when any of `events` (or POLLERR, POLLHUP, POLLNVAL)
   * is ready now, else 0 (also when poll fails: a wait reports that). Never
   * waits. Throws ClosedHandleError after close().
   */
  readyNow(fd: number, events: number): number {
    if (this.#closed) throw new ClosedHandleError("fd poller");
    const revents = this.#pollOne(fd, events, 0);
    if (revents <= 0) return 0;
    this.#ready++;
    return revents;
  }

  /**
   * The inline part of wait(), synchronous: returns the revents of `fd` when
   * any of `events` (or POLLERR, POLLHUP, POLLNVAL) is ready now or becomes
   * ready within the inline budget, else 0. Waits (yields the CPU once,
   * then BLOCKS this thread in ppoll(2), using no CPU) only when no other
   * wait is in flight, the budget learned for `fd` is not 0 and the event
   * loop has not been held for INLINE_SLICE_MS since its last turn;
   * otherwise it only looks. Work the caller queued before calling it
   * (microtasks, callbacks) waits until it returns: use wait() unless
   * nothing else can be pending. A poll failure reads as 0 (the parked wait
   * reports it). Throws ClosedHandleError after close().
   */
  tryInline(fd: number, events: number): number {
    const now = this.readyNow(fd, events);
    const budgetUs = this.#waiters.size === 0 && this.#inlineMs < INLINE_SLICE_MS
      ? this.#budgetUs(fd)
      : 0;
    if (now !== 0 || budgetUs === 0) return now;
    // Give the CPU to whoever is runnable first: a peer just woken on this
    // CPU (a 1-vCPU dom0) answers during the yield, and no timer is armed.
    this.#libs.libc.symbols.sched_yield();
    const revents = this.#pollOne(fd, events, budgetUs); // returns at once if ready by now
    // No clock is read here: in a Xen PV dom0 under emulation a clock read
    // costs as much as a system call (bench/wait_costs.ts). A hit counts as
    // its whole budget against the slice; only a miss (then parked) is learned.
    this.#inlineMs += budgetUs / 1000;
    this.#scheduleTurn();
    if (revents > 0) {
      this.#hits++;
      return revents;
    }
    this.#misses++;
    this.#missFd = fd;
    this.#missBudgetUs = budgetUs;
    return 0;
  }

  /**
   * The inline budget for `fd` in microseconds: twice the moving average of
   * its recent waits, at most the cap; 0 when inline waiting is off, when
   * nothing is known yet or when its waits take longer than the cap.
   */
  #budgetUs(fd: number): number {
    const cap = this.#inlineMaxUs;
    if (cap === 0) return 0;
    const known = this.#history.get(fd);
    if (known === undefined || known.averageUs > cap) return 0;
    return Math.min(cap, Math.max(10, Math.ceil(2 * known.averageUs)));
  }

  /** Folds one wait time into `fd`'s moving average. */
  #learn(fd: number, us: number): void {
    if (this.#inlineMaxUs === 0) return;
    const known = this.#history.get(fd);
    if (known !== undefined) {
      known.averageUs += EWMA_WEIGHT * (us - known.averageUs);
      return;
    }
    if (this.#history.size >= MAX_TRACKED_FDS) this.#history.clear();
    this.#history.set(fd, { averageUs: us });
  }

  /** Resets the inline allowance once the event loop has turned. */
  #scheduleTurn(): void {
    if (this.#turnPending) return;
    this.#turnPending = true;
    setImmediate(() => {
      this.#turnPending = false;
      this.#inlineMs = 0;
    });
  }

  /**
   * poll/ppoll of one fd on this thread: the revents, 0 on timeout or
   * EINTR, -1 on another failure (the parked poll reports it then).
   * `budgetUs` 0 never waits.
   */
  #pollOne(fd: number, events: number, budgetUs: number): number {
    writePollFd(this.#oneView, 0, fd, events);
    const c = this.#libs.libc.symbols;
    let result: number;
    if (budgetUs === 0) result = c.poll(this.#one, 1n, 0);
    else {
      const t = this.#timeout;
      t[0] = Math.floor(budgetUs / 1e6);
      t[1] = 0;
      t[2] = (budgetUs % 1e6) * 1000;
      t[3] = 0;
      result = c.ppoll(this.#one, 1n, t, null);
    }
    if (result < 0) return this.#libs.errno() === EINTR ? 0 : -1;
    return result === 0 ? 0 : this.#oneView.getInt16(6, true);
  }

  /**
   * Hands the wait to the background poll. Its wait time, learned when it
   * settles, includes the budget of the inline attempt that just missed on
   * this fd, if any.
   */
  #park(fd: number, events: number, signal: AbortSignal | undefined): Promise<number> {
    this.#parked++;
    const began = performance.now() - (this.#missFd === fd ? this.#missBudgetUs / 1000 : 0);
    this.#missFd = -1;
    return new Promise<number>((resolve, reject) => {
      const onAbort = () => this.#settle(waiter, 0);
      const waiter: Waiter = {
        fd,
        events,
        resolve: (revents) => {
          if (revents !== 0) this.#learn(fd, (performance.now() - began) * 1000);
          resolve(revents);
        },
        reject,
        cleanup: () => signal?.removeEventListener("abort", onAbort),
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.add(waiter);
      this.#wake();
      if (!this.#running) void this.#run();
    });
  }

  /**
   * poll(fd, events, timeoutMs) on the calling thread: the revents, 0 on
   * timeout. 0 (the default) never waits; anything else BLOCKS the calling
   * thread (for Workers and dedicated processes). EINTR is retried.
   * Throws XenCallError("poll") on other failures.
   */
  pollNow(fd: number, events: number, timeoutMs = 0): number {
    const entry = this.#one, view = this.#oneView;
    for (;;) {
      writePollFd(view, 0, fd, events);
      const result = this.#libs.libc.symbols.poll(entry, 1n, timeoutMs);
      if (result >= 0) return result === 0 ? 0 : view.getInt16(6, true);
      const errno = this.#libs.errno();
      if (errno !== EINTR) throw new XenCallError("poll", errno);
    }
  }

  /**
   * Closes the poller: every wait in flight rejects with ClosedHandleError,
   * later waits are refused, and the wake eventfd is closed once no poll is
   * in flight. Idempotent. The shared poller is never closed.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const error = new ClosedHandleError("fd poller");
    for (const w of this.#waiters) {
      this.#waiters.delete(w);
      w.cleanup();
      w.reject(error);
    }
    if (this.#running) this.#wake();
    else this.#libs.libc.symbols.close(this.#wakeFd);
  }

  #settle(waiter: Waiter, revents: number): void {
    if (!this.#waiters.delete(waiter)) return;
    waiter.cleanup();
    waiter.resolve(revents);
    this.#wake();
  }

  /** Interrupts the poll in flight so it picks up a changed set of waiters. */
  #wake(): void {
    if (!this.#inFlight) return;
    this.#word[0] = 1n;
    this.#libs.libc.symbols.write(this.#wakeFd, this.#word, 8n);
  }

  #drainWake(): void {
    this.#libs.libc.symbols.read(this.#wakeFd, this.#word, 8n);
  }

  async #run(): Promise<void> {
    this.#running = true;
    let failures = 0;
    try {
      while (this.#waiters.size > 0) {
        const batch = [...this.#waiters];
        const fds = new Uint8Array(POLLFD_SIZE * (batch.length + 1));
        const view = new DataView(fds.buffer);
        writePollFd(view, 0, this.#wakeFd, POLLIN);
        batch.forEach((w, i) => writePollFd(view, i + 1, w.fd, w.events));
        this.#inFlight = true;
        const result = await this.#libs.runtime.pollAsync(fds, batch.length + 1, -1).finally(() => {
          this.#inFlight = false;
        });
        this.#drainWake();
        failures = result < 0 ? failures + 1 : 0;
        if (failures >= MAX_CONSECUTIVE_POLL_FAILURES) throw new XenCallError("poll", EINTR);
        batch.forEach((w, i) => {
          const revents = view.getInt16((i + 1) * POLLFD_SIZE + 6, true);
          if (revents !== 0) this.#settle(w, revents);
        });
        // Let the consumers just woken run and wait again, so that their fds
        // join the next poll instead of interrupting it a moment later.
        if (this.#waiters.size > 0) await new Promise((resolve) => setImmediate(resolve));
      }
    } catch (error) {
      for (const w of this.#waiters) {
        this.#waiters.delete(w);
        w.cleanup();
        w.reject(error);
      }
    } finally {
      this.#running = false;
      if (this.#closed) this.#libs.libc.symbols.close(this.#wakeFd);
    }
  }
}

function writePollFd(view: DataView, index: number, fd: number, events: number): void {
  view.setInt32(index * POLLFD_SIZE, fd, true);
  view.setInt16(index * POLLFD_SIZE + 4, events, true);
  view.setInt16(index * POLLFD_SIZE + 6, 0, true);
}

/** Throws XenUsageError unless `value` is an integer from 0 to INLINE_WAIT_LIMIT_US. */
function checkInlineUs(what: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > INLINE_WAIT_LIMIT_US) {
    throw new XenUsageError(
      `${what} must be an integer from 0 to ${INLINE_WAIT_LIMIT_US} (microseconds), got ${
        String(value)
      }`,
    );
  }
  return value;
}

/**
 * XENCHAN_INLINE_WAIT_US when it is set, readable (Deno: --allow-env) and a
 * valid cap, else INLINE_WAIT_DEFAULT_US. Never throws.
 */
function defaultInlineWaitUs(): number {
  let text: string | undefined;
  try {
    text = process.env.XENCHAN_INLINE_WAIT_US;
  } catch {
    return INLINE_WAIT_DEFAULT_US;
  }
  if (text === undefined || text.trim() === "") return INLINE_WAIT_DEFAULT_US;
  const value = Number(text);
  return Number.isInteger(value) && value >= 0 && value <= INLINE_WAIT_LIMIT_US
    ? value
    : INLINE_WAIT_DEFAULT_US;
}

let shared: FdPoller | undefined;

/** The process-wide poller (created on first use). */
export function sharedPoller(libs: LibcLibrary): FdPoller {
  shared ??= new FdPoller(libs);
  return shared;
}
