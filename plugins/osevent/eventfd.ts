/**
 * EventFdPortSource: a real eventfd (ffi/eventfd.ts) dressed as a one-port
 * event channel handle, for exercising the loops with real file
 * descriptors where there is no Xen (tests, benchmarks). Nothing here
 * touches a runtime's FFI directly.
 *
 * @module
 */
import { EventFd } from "../../ffi/mod.ts";
import { ClosedHandleError, XenUsageError } from "../../core/errors.ts";
import { checkPort, describe } from "../../core/validate.ts";
import type { PendingPortSource } from "./types.ts";

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

  /**
   * Wraps `efd` (the source owns it from now on) as a handle for `port`.
   * Throws XenUsageError for a port that is not a uint32 port number or an
   * `efd` that is not an EventFd.
   */
  constructor(efd: EventFd, readonly port: number) {
    if (!(efd instanceof EventFd)) {
      throw new XenUsageError(`efd must be an EventFd, got ${describe(efd)}`);
    }
    checkPort(port);
    this.#efd = efd;
  }

  /** Creates one over a new eventfd. Rejects like EventFd.create, and XenUsageError for a bad port. */
  static async open(port: number): Promise<EventFdPortSource> {
    checkPort(port);
    return new EventFdPortSource(await EventFd.create(), port);
  }

  /** The eventfd's descriptor. Throws ClosedHandleError once closed. */
  get fd(): number {
    if (this.#efd.closed) throw new ClosedHandleError("eventfd port source");
    return this.#efd.fd;
  }

  /** Whether close() has run. */
  get closed(): boolean {
    return this.#efd.closed;
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
    if (this.#efd.read() === null) return null;
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
