/**
 * A real Linux eventfd (eventfd(2)) over the libc symbols of ffi/symbols.ts.
 *
 * The descriptor is always created EFD_NONBLOCK | EFD_CLOEXEC: reads and
 * writes never block the JavaScript thread, and waiting goes through the one
 * process-wide FdPoller (ffi/poller.ts), so the event loop keeps running
 * while a wait is in flight. Counter values are bigint (the kernel counter is
 * a uint64_t).
 *
 * Kernel semantics kept as they are (fs/eventfd.c):
 * - write adds n to the counter; the counter never exceeds 2^64 - 2, and a
 *   write that would push it past that fails with EAGAIN (nonblocking).
 * - read returns the counter and resets it to 0, or, with EFD_SEMAPHORE,
 *   returns 1 and decrements it; a read of a zero counter fails with EAGAIN.
 *
 * Not safe to share across Workers; after fork the child shares the counter
 * (it is one kernel object) but must not use this wrapper's waits.
 *
 * @module
 */
import { ClosedHandleError, XenCallError, XenUsageError } from "../core/errors.ts";
import { checkBoolean, checkOptions, describe } from "../core/validate.ts";
import { type LibcLibrary, loadLibc } from "./load.ts";
import { sharedPoller } from "./poller.ts";

/** EFD_SEMAPHORE: each read returns 1 and decrements the counter. */
export const EFD_SEMAPHORE = 0o1;
/** EFD_NONBLOCK (= O_NONBLOCK on x86 and arm64): always set by this module. */
export const EFD_NONBLOCK = 0o4000;
/** EFD_CLOEXEC (= O_CLOEXEC on x86 and arm64): always set by this module. */
export const EFD_CLOEXEC = 0o2000000;

const POLLIN = 0x001;
const POLLERR = 0x008;
const POLLHUP = 0x010;
const POLLNVAL = 0x020;
const EAGAIN = 11;
const EINTR = 4;
/** The largest value the kernel counter may hold: 0xfffffffffffffffe. */
export const EVENTFD_MAX = 0xfffffffffffffffen;

/** Options for creating an eventfd. */
export interface EventFdOptions {
  /** Initial counter value, 0..0xffffffff (eventfd's `unsigned int initval`). Default 0. */
  readonly initval?: number;
  /** EFD_SEMAPHORE: each read() returns 1n and decrements the counter. Default false. */
  readonly semaphore?: boolean;
}

/** Options for waiting on an eventfd. */
export interface EventFdWaitOptions {
  /** Aborting stops the wait: wait() rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

/**
 * One open eventfd. The object owns the descriptor: close() (or `using`)
 * closes it, after cancelling every wait still in flight. Methods are
 * synchronous except the waits; none of them blocks the event loop. Several
 * concurrent waits on one eventfd are allowed (each read races the others:
 * the loser waits again).
 */
export class EventFd implements Disposable {
  readonly #libs: LibcLibrary;
  readonly #fd: number;
  readonly #word = new BigUint64Array(1);
  readonly #waits = new Set<AbortController>();
  #closed = false;

  /** Whether reads are in EFD_SEMAPHORE mode. */
  readonly semaphore: boolean;

  /**
   * Creates an eventfd (eventfd(initval, EFD_NONBLOCK | EFD_CLOEXEC
   * [| EFD_SEMAPHORE])), loading libc through ffi/load.ts on first use.
   * Rejects with XenUsageError for an initval that is not a uint32,
   * XenCallError("eventfd") with errno (EMFILE, ENFILE, ENOMEM, ...) when the
   * kernel refuses, LibraryNotFoundError when libc cannot be loaded (only
   * libc: ffi/load.ts loadLibc, so an eventfd works without the Xen
   * libraries), and Deno's NotCapable without --allow-ffi. The caller owns
   * the result.
   */
  static async create(options?: EventFdOptions): Promise<EventFd> {
    checkEventFdOptions(options);
    return new EventFd(await loadLibc(), options);
  }

  /**
   * Synchronous form of create() for callers that already hold the loaded
   * libraries. Throws XenUsageError or XenCallError("eventfd") like create().
   */
  constructor(libs: LibcLibrary, options?: EventFdOptions) {
    options = checkEventFdOptions(options);
    this.#libs = libs;
    this.semaphore = options.semaphore ?? false;
    const flags = EFD_NONBLOCK | EFD_CLOEXEC | (this.semaphore ? EFD_SEMAPHORE : 0);
    const fd = libs.libc.symbols.eventfd(options.initval ?? 0, flags);
    if (fd < 0) throw new XenCallError("eventfd", libs.errno());
    this.#fd = fd;
  }

  /** The descriptor, for poll(2)/epoll loops. Throws ClosedHandleError after close(). */
  get fd(): number {
    this.#live();
    return this.#fd;
  }

  /** Whether close() has run. */
  get closed(): boolean {
    return this.#closed;
  }

  #live(): void {
    if (this.#closed) throw new ClosedHandleError("eventfd");
  }

  /**
   * Adds `n` to the counter (write(2) of 8 bytes) and wakes every waiter.
   * Returns true when added, false when the kernel refused with EAGAIN
   * because the counter would exceed 2^64 - 2 (nothing is added; the counter
   * is non-zero, so readers are already woken: QEMU's event_notifier_set
   * treats this case as success). Writing 0n is allowed and adds nothing.
   * Throws XenUsageError when `n` is not a bigint in 0n..0xfffffffffffffffen,
   * XenCallError("write") with errno for any other failure,
   * ClosedHandleError after close().
   */
  signal(n: bigint = 1n): boolean {
    this.#live();
    if (typeof n !== "bigint" || n < 0n || n > EVENTFD_MAX) {
      throw new XenUsageError(
        `eventfd signal value must be a bigint in 0n..${EVENTFD_MAX}n, got ${String(n)}`,
      );
    }
    this.#word[0] = n;
    for (;;) {
      const written = Number(this.#libs.libc.symbols.write(this.#fd, this.#word, 8n));
      if (written === 8) return true;
      const errno = this.#libs.errno();
      if (written < 0 && errno === EINTR) continue;
      if (written < 0 && errno === EAGAIN) return false;
      throw new XenCallError("write", written < 0 ? errno : 5, `eventfd write returned ${written}`);
    }
  }

  /**
   * Reads the counter (read(2) of 8 bytes) without waiting: returns its
   * value and resets it to 0, or in semaphore mode returns 1n and decrements
   * it. Returns null when the counter is 0 (EAGAIN). Throws
   * XenCallError("read") with errno for any other failure, ClosedHandleError
   * after close().
   */
  read(): bigint | null {
    this.#live();
    for (;;) {
      const got = Number(this.#libs.libc.symbols.read(this.#fd, this.#word, 8n));
      if (got === 8) return this.#word[0];
      const errno = this.#libs.errno();
      if (got < 0 && errno === EINTR) continue;
      if (got < 0 && errno === EAGAIN) return null;
      throw new XenCallError("read", got < 0 ? errno : 5, `eventfd read returned ${got}`);
    }
  }

  /**
   * poll(fd, POLLIN, 0): true when the counter is non-zero now. Never waits,
   * never changes the counter. Throws XenCallError("poll"), ClosedHandleError.
   */
  readable(): boolean {
    this.#live();
    return (sharedPoller(this.#libs).pollNow(this.#fd, POLLIN) & POLLIN) !== 0;
  }

  /**
   * Resolves with the poll revents (POLLIN) once the counter is non-zero,
   * through the shared FdPoller: a counter already non-zero resolves at
   * once; otherwise the JavaScript event loop keeps running meanwhile (the
   * poller may, after one turn of the loop, wait for at most its inline
   * budget on this thread: FdPoller.wait).
   * Resolves with 0 when `signal` aborts or close() runs meanwhile. Does not
   * change the counter. Throws ClosedHandleError when already closed.
   */
  waitReadable(options: EventFdWaitOptions = {}): Promise<number> {
    this.#live();
    const poller = sharedPoller(this.#libs);
    if (options.signal?.aborted !== true) {
      // Ready now: no wait to set up.
      const now = poller.readyNow(this.#fd, POLLIN);
      if (now !== 0) return Promise.resolve(now);
    }
    const cancel = new AbortController();
    const onAbort = () => cancel.abort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    if (options.signal?.aborted) cancel.abort();
    this.#waits.add(cancel);
    return poller.wait(this.#fd, POLLIN, cancel.signal).finally(() => {
      this.#waits.delete(cancel);
      options.signal?.removeEventListener("abort", onAbort);
    });
  }

  /**
   * Waits until the counter is non-zero, then reads it (see read()): the
   * value, or 1n in semaphore mode. Never blocks the event loop. Rejects
   * with the signal's reason on abort, ClosedHandleError if the eventfd is
   * (or gets) closed, XenCallError("read"/"poll") on a kernel failure.
   */
  async wait(options: EventFdWaitOptions = {}): Promise<bigint> {
    for (;;) {
      options.signal?.throwIfAborted();
      const now = this.read();
      if (now !== null) return now;
      const revents = await this.waitReadable(options);
      if (this.#closed) throw new ClosedHandleError("eventfd");
      options.signal?.throwIfAborted();
      if (revents & (POLLNVAL | POLLERR | POLLHUP)) {
        throw new XenCallError("poll", 9, `eventfd ${this.#fd} revents 0x${revents.toString(16)}`);
      }
    }
  }

  /**
   * Cancels every wait in flight (they settle with ClosedHandleError or 0
   * as documented above) and closes the descriptor. Idempotent; never
   * throws (a failing close(2) is ignored: the descriptor is gone anyway).
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const cancel of this.#waits) cancel.abort();
    this.#waits.clear();
    this.#libs.libc.symbols.close(this.#fd);
  }

  /** Same as close(). */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** XenUsageError unless `value` is undefined or `{ initval?: uint32, semaphore?: boolean }`. */
function checkEventFdOptions(value: EventFdOptions | undefined): EventFdOptions {
  const options = checkOptions("options", value);
  const initval = options.initval ?? 0;
  if (!Number.isInteger(initval) || initval < 0 || initval > 0xffffffff) {
    throw new XenUsageError(
      `eventfd initval must be an integer in 0..0xffffffff, got ${describe(initval)}`,
    );
  }
  if (options.semaphore !== undefined) checkBoolean("options.semaphore", options.semaphore);
  return options;
}
