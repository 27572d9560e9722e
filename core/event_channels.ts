/**
 * The public event channel handle, written once over any backend's
 * EventChannelDriver.
 *
 * @module
 */
import { type BackendKind, type EventChannelDriver, POLLERR, POLLIN, POLLNVAL } from "./driver.ts";
import { ClosedHandleError, XenUsageError } from "./errors.ts";
import { checkDomid, checkInteger, checkPort, checkWaitOptions } from "./validate.ts";
import {
  type Backstop,
  describeObject,
  guard,
  INSPECT_DENO,
  INSPECT_NODE,
  leakReport,
  unguard,
} from "./lifetimes.ts";

/** Options for waiting on a handle. */
export interface WaitOptions {
  /** Aborting stops the wait: pending() rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

/** What a handle currently holds, for leak checks. */
export interface EventChannelHoldings {
  /** Ports bound through this handle and not yet unbound, ascending. */
  readonly ports: number[];
  /** Whether a pending() or ports() reader is waiting. */
  readonly reading: boolean;
}

/**
 * An open event channel handle (xenevtchn_handle).
 *
 * Many ports may be bound to one handle. A port returned by pending() is
 * masked until unmask(port); a notify that arrives while it is masked is
 * delivered once after the unmask. One reader per handle: a second
 * concurrent pending() or ports() is refused. Close it (or `using`) to unbind
 * every port; after close every method throws ClosedHandleError. The handle
 * also reads closed (holding nothing) once the backend closed it (the
 * simulator does when the process crashes or its domain is destroyed). A
 * handle garbage-collected while open is closed by the backstop and
 * reported (core/lifetimes.ts).
 *
 * Not safe to share across Workers or after fork (the C library's rule).
 */
export class EventChannels implements Disposable, AsyncDisposable {
  /** The backend behind this handle: "ffi" (real Xen) or "sim". */
  readonly backend: BackendKind;
  readonly #driver: EventChannelDriver;
  readonly #ports = new Set<number>();
  #reading = false;
  #closed = false;

  /** Wraps an open driver; the handle owns it from now on. */
  constructor(backend: BackendKind, driver: EventChannelDriver) {
    this.backend = backend;
    this.#driver = driver;
    guard(this, eventChannelsBackstop(backend, driver, this.#ports), this);
  }

  /** True once closed, here or by the backend (then the bookkeeping catches up). */
  #sync(): boolean {
    if (!this.#closed && this.#driver.closed) {
      this.#closed = true;
      this.#ports.clear();
      unguard(this);
    }
    return this.#closed;
  }

  #live(): EventChannelDriver {
    if (this.#sync()) throw new ClosedHandleError("event channel handle");
    return this.#driver;
  }

  /** The pollable file descriptor (a virtual number on the simulator). */
  get fd(): number {
    return this.#live().fd;
  }

  /** Whether the handle is closed: close() ran, or the backend closed it. */
  get closed(): boolean {
    return this.#sync();
  }

  /**
   * Sends an event on a port bound through this handle (xenevtchn_notify).
   * Throws XenCallError (ENOTCONN for a port this handle did not bind),
   * XenUsageError for a port that is not a uint32, ClosedHandleError.
   */
  notify(port: number): void {
    this.#live().notify(checkPort(port));
  }

  /**
   * Allocates a new unbound port that `remoteDomid` may bind to
   * (xenevtchn_bind_unbound_port). Returns the local port. Throws
   * XenCallError (EACCES after restrict(); ENOSPC: no free port; Xen does
   * not check that the domain exists),
   * XenUsageError, ClosedHandleError.
   */
  bindUnboundPort(remoteDomid: number): number {
    return this.#track(this.#live().bindUnboundPort(checkDomid(remoteDomid)));
  }

  /**
   * Binds a local port to `remotePort` of `remoteDomid`, which must be
   * unbound and offered to this domain (xenevtchn_bind_interdomain). Returns
   * the local port; Xen marks it pending once at bind. Throws XenCallError
   * (EINVAL: remote port not unbound for us; ESRCH: no such domain),
   * XenUsageError, ClosedHandleError.
   */
  bindInterdomain(remoteDomid: number, remotePort: number): number {
    const driver = this.#live();
    return this.#track(driver.bindInterdomain(checkDomid(remoteDomid), checkPort(remotePort)));
  }

  /**
   * Binds a virtual IRQ (xenevtchn_bind_virq) and returns its local port.
   * Throws XenCallError (EINVAL: bad virq; EEXIST: already bound),
   * XenUsageError, ClosedHandleError.
   */
  bindVirq(virq: number): number {
    return this.#track(this.#live().bindVirq(checkInteger("virq", virq, 0, 0xffffffff)));
  }

  #track(port: number): number {
    this.#ports.add(port);
    return port;
  }

  /**
   * Unbinds a port bound through this handle (xenevtchn_unbind). Throws
   * XenCallError (ENOTCONN: not bound here), XenUsageError, ClosedHandleError.
   */
  unbind(port: number): void {
    this.#live().unbind(checkPort(port));
    this.#ports.delete(port);
  }

  /**
   * Re-enables delivery on a port returned by pending() (xenevtchn_unmask).
   * A port this handle does not hold is ignored, as the kernel does.
   * Throws XenUsageError, ClosedHandleError.
   */
  unmask(port: number): void {
    this.#live().unmask(checkPort(port));
  }

  /**
   * Restricts the handle to interdomain binds with `domid`, for good
   * (xenevtchn_restrict). Ports bound earlier stay bound. Throws
   * XenCallError, XenUsageError, ClosedHandleError.
   */
  restrict(domid: number): void {
    this.#live().restrict(checkDomid(domid));
  }

  /**
   * Waits until a port is pending and returns it, masked (unmask it when done).
   * Polls the fd first and reads only when readable: a port pending now is
   * returned with no async frames and no thread hand-off. Otherwise the event
   * loop keeps running; the FFI backend may, after one turn of the loop (so
   * what the caller set going first has run), hold it for at most the
   * FdPoller's inline budget (its cap, 2 ms by default) while it waits in
   * ppoll(2); the simulator never waits inline. Rejects with the signal's
   * reason on abort, ClosedHandleError if the handle is (or gets) closed,
   * XenCallError (EFBIG: the handle's ring overflowed; drain and unmask),
   * XenUsageError if another reader is already waiting on this handle or for
   * options that are not an object with an optional AbortSignal `signal`.
   */
  pending(options?: WaitOptions): Promise<number> {
    try {
      const { signal } = checkWaitOptions("options", options);
      const driver = this.#live();
      if (this.#reading) {
        throw new XenUsageError("one reader per handle: a pending() is already waiting");
      }
      signal?.throwIfAborted();
      // Ready now: read at once, with no trip through the poller and no async frames.
      const revents = driver.pollNow();
      if (revents & POLLNVAL) throw new ClosedHandleError("event channel file descriptor");
      if (revents & (POLLIN | POLLERR)) return Promise.resolve(driver.pending());
      return this.#waitForPort(driver, signal);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** The waiting part of pending(), once a look found nothing pending. */
  async #waitForPort(driver: EventChannelDriver, signal: AbortSignal | undefined): Promise<number> {
    this.#reading = true;
    try {
      for (;;) {
        signal?.throwIfAborted();
        const revents = await driver.waitReadable(signal);
        if (this.#sync()) throw new ClosedHandleError("event channel handle");
        signal?.throwIfAborted();
        if (revents & POLLNVAL) throw new ClosedHandleError("event channel file descriptor");
        if (revents & (POLLIN | POLLERR)) return driver.pending();
      }
    } finally {
      this.#reading = false;
    }
  }

  /**
   * Returns a pending port if one is ready now, else null; never waits.
   * Throws like pending() (but never XenUsageError for a waiting reader:
   * do not mix it with a concurrent pending()).
   */
  tryPending(): number | null {
    const driver = this.#live();
    return driver.pollNow() & (POLLIN | POLLERR) ? driver.pending() : null;
  }

  /**
   * BLOCKS the calling thread until a port is pending or `timeoutMs` passes
   * (-1, the default: no limit), then returns the port (masked until
   * unmask) or null on timeout. For a Worker or a process with nothing else
   * to do, where it is as fast as C's poll-then-read; on the main thread
   * use pending(), which never blocks. The simulator cannot wait: it
   * returns at once (see EventChannelDriver.pollNow). Throws like pending(),
   * and XenUsageError while a pending() is waiting on this handle.
   */
  pendingSync(timeoutMs = -1): number | null {
    const driver = this.#live();
    if (this.#reading) {
      throw new XenUsageError("one reader per handle: a pending() is already waiting");
    }
    checkInteger("timeoutMs", timeoutMs, -1, 0x7fffffff);
    const revents = driver.pollNow(timeoutMs);
    if (revents & POLLNVAL) throw new ClosedHandleError("event channel file descriptor");
    return revents & (POLLIN | POLLERR) ? driver.pending() : null;
  }

  /**
   * Yields pending ports as they arrive (each masked until unmask) until the
   * signal aborts or the handle closes; both end the iteration quietly.
   * Errors other than those are thrown from the loop. One reader per handle.
   */
  async *ports(options?: WaitOptions): AsyncGenerator<number, void, undefined> {
    options = checkWaitOptions("options", options);
    for (;;) {
      if (this.#sync() || options.signal?.aborted) return;
      try {
        yield await this.pending(options);
      } catch (error) {
        if (this.#sync() || options.signal?.aborted) return;
        throw error;
      }
    }
  }

  /** What this handle holds now (ports bound, whether a reader waits). */
  holdings(): EventChannelHoldings {
    this.#sync();
    return { ports: [...this.#ports].sort((a, b) => a - b), reading: this.#reading };
  }

  /**
   * Closes the handle: any waiting pending() rejects with ClosedHandleError
   * and every port still bound is unbound. Idempotent; never throws.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#ports.clear();
    unguard(this);
    this.#driver.close();
  }

  /** For Deno.inspect / console.log: backend, fd, ports, reader, closed. */
  [INSPECT_DENO](): string {
    return this.#describe();
  }

  /** For node:util inspect / Bun.inspect: as the Deno hook. */
  [INSPECT_NODE](): string {
    return this.#describe();
  }

  #describe(): string {
    const { ports, reading } = this.holdings();
    return describeObject("EventChannels", {
      backend: this.backend,
      fd: this.#driver.fd,
      ports,
      reading,
      closed: this.#closed,
    });
  }

  [Symbol.dispose](): void {
    this.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

/** The backstop of one handle: closes the driver if still open (no reference to the handle). */
function eventChannelsBackstop(
  backend: BackendKind,
  driver: EventChannelDriver,
  ports: ReadonlySet<number>,
): Backstop {
  return {
    release() {
      if (driver.closed) return null;
      const held = [...ports].sort((a, b) => a - b);
      const facts = { kind: "EventChannels", backend, fd: driver.fd, ports: held } as const;
      const empty = { ranges: 0, pages: 0, refs: [] };
      try {
        driver.close();
      } catch (error) {
        return leakReport({ ...facts, ...empty, error });
      }
      return leakReport({ ...facts, ...empty });
    },
  };
}
