/**
 * One poller for every file descriptor the process waits on.
 *
 * However many handles are open, at most one poll(2) is in flight: Deno runs
 * it as a nonblocking FFI call, Bun in one Worker. A private eventfd wakes it
 * when the set of waiters changes. Waiting never blocks the JavaScript event
 * loop, and nothing but poll runs off the main thread.
 *
 * @module
 */
import { setImmediate } from "node:timers";
import { ClosedHandleError, XenCallError } from "../core/errors.ts";
import type { LibcLibrary } from "./load.ts";

const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;
const POLLIN = 0x001;
const EINTR = 4;
const POLLFD_SIZE = 8;
const MAX_CONSECUTIVE_POLL_FAILURES = 100;

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

  /** Creates the wake eventfd. Throws XenCallError("eventfd") on failure. */
  constructor(libs: LibcLibrary) {
    this.#libs = libs;
    const fd = libs.libc.symbols.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) throw new XenCallError("eventfd", libs.errno());
    this.#wakeFd = fd;
  }

  /** Number of waits in flight (for leak checks and benchmarks). */
  get waiting(): number {
    return this.#waiters.size;
  }

  /**
   * Resolves with the revents of `fd` once any of `events` (or POLLERR,
   * POLLHUP, POLLNVAL) is ready, or with 0 when `signal` aborts. Several
   * waits on one fd are allowed. The fd must stay open until the promise
   * settles: cancel with `signal` before closing it.
   */
  wait(fd: number, events: number, signal?: AbortSignal): Promise<number> {
    if (this.#closed) return Promise.reject(new ClosedHandleError("fd poller"));
    if (signal?.aborted) return Promise.resolve(0);
    return new Promise((resolve, reject) => {
      const onAbort = () => this.#settle(waiter, 0);
      const waiter: Waiter = {
        fd,
        events,
        resolve,
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
    const entry = new Uint8Array(POLLFD_SIZE);
    const view = new DataView(entry.buffer);
    writePollFd(view, 0, fd, events);
    for (;;) {
      const result = this.#libs.libc.symbols.poll(entry, 1n, timeoutMs);
      if (result >= 0) return view.getInt16(6, true);
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

let shared: FdPoller | undefined;

/** The process-wide poller (created on first use). */
export function sharedPoller(libs: LibcLibrary): FdPoller {
  shared ??= new FdPoller(libs);
  return shared;
}
