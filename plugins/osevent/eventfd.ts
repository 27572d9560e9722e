/**
 * Real eventfds through the FFI layer's libc table (ffi/symbols.ts LIBC:
 * eventfd, read, write, close), for exercising the loops with real file
 * descriptors where there is no Xen (tests, benchmarks, and programs that
 * want to wake a loop), plus EventFdPortSource, an eventfd dressed as an
 * event channel handle. Nothing here touches a runtime's FFI directly.
 *
 * @module
 */
import { loadXenLibraries, type XenLibraries } from "../../ffi/load.ts";
import { ClosedHandleError, XenCallError } from "../errors.ts";
import type { PendingPortSource } from "./types.ts";

const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;
const EAGAIN = 11;

/**
 * A nonblocking eventfd (eventfd(2)): readable (POLLIN) while its counter
 * is non-zero. Owned by the creator: close() it. Not for use after close.
 */
export class EventFd implements Disposable {
  /** The descriptor; -1 after close. */
  fd: number;
  readonly #libs: XenLibraries;
  readonly #word = new BigUint64Array(1);

  /** Wraps an open eventfd; use EventFd.open(). */
  constructor(libs: XenLibraries, fd: number) {
    this.#libs = libs;
    this.fd = fd;
  }

  /**
   * Creates an eventfd with counter `initial`. Rejects with XenCallError
   * ("eventfd", e.g. EMFILE), LibraryNotFoundError if the FFI libraries do
   * not load.
   */
  static async open(initial = 0): Promise<EventFd> {
    const libs = await loadXenLibraries();
    const fd = libs.libc.symbols.eventfd(initial, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) throw new XenCallError("eventfd", libs.errno());
    return new EventFd(libs, fd);
  }

  /** Adds `n` to the counter (write(2)). Throws XenCallError, ClosedHandleError. */
  signal(n = 1n): void {
    this.#check();
    this.#word[0] = n;
    if (this.#libs.libc.symbols.write(this.fd, this.#word, 8n) !== 8n) {
      throw new XenCallError("write", this.#libs.errno());
    }
  }

  /** Reads and resets the counter; 0n when it was zero. Throws XenCallError, ClosedHandleError. */
  drain(): bigint {
    this.#check();
    if (this.#libs.libc.symbols.read(this.fd, this.#word, 8n) === 8n) return this.#word[0];
    const errno = this.#libs.errno();
    if (errno === EAGAIN) return 0n;
    throw new XenCallError("read", errno);
  }

  /** Closes the descriptor. Idempotent; never throws. */
  close(): void {
    if (this.fd < 0) return;
    this.#libs.libc.symbols.close(this.fd);
    this.fd = -1;
  }

  /** Calls close() (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }

  #check(): void {
    if (this.fd < 0) throw new ClosedHandleError("eventfd");
  }
}

/**
 * An eventfd that behaves like an event channel handle with one port:
 * notify() makes `port` pending (once, however many times it is called,
 * until read), tryPending() returns it and masks it, unmask() re-enables
 * it. Useful to run EventContext.watchEventChannels without Xen.
 */
export class EventFdPortSource implements PendingPortSource, Disposable {
  readonly #efd: EventFd;
  #masked = false;
  #queued = false;
  /** Ports handed out so far. */
  reads = 0;

  /** Wraps `efd` (the source owns it from now on) as a handle for `port`. */
  constructor(efd: EventFd, readonly port: number) {
    this.#efd = efd;
  }

  /** Creates one over a new eventfd. Rejects like EventFd.open. */
  static async open(port: number): Promise<EventFdPortSource> {
    return new EventFdPortSource(await EventFd.open(), port);
  }

  /** The eventfd's descriptor. Throws ClosedHandleError once closed. */
  get fd(): number {
    if (this.#efd.fd < 0) throw new ClosedHandleError("eventfd port source");
    return this.#efd.fd;
  }

  /** Whether close() has run. */
  get closed(): boolean {
    return this.#efd.fd < 0;
  }

  /** Makes the port pending (delivered once until unmasked if masked). Throws ClosedHandleError. */
  notify(): void {
    if (this.#masked) {
      this.#queued = true;
      return;
    }
    this.#efd.signal();
  }

  /** The port if pending (then masked), else null. Throws ClosedHandleError, XenCallError. */
  tryPending(): number | null {
    if (this.#efd.drain() === 0n) return null;
    this.#masked = true;
    this.reads++;
    return this.port;
  }

  /** Unmasks; a notify that came while masked is delivered now. Throws ClosedHandleError. */
  unmask(port: number): void {
    if (port !== this.port || !this.#masked) return;
    this.#masked = false;
    if (this.#queued) {
      this.#queued = false;
      this.#efd.signal();
    }
  }

  /** Closes the eventfd. Idempotent. */
  close(): void {
    this.#efd.close();
  }

  /** Calls close() (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}
