/**
 * Event channel handles as an event source: the handle's fd is registered
 * with the context's OS-event registry (POLLIN), so whatever loop serves
 * the context (the application's poll loop, its hooks, or a built-in loop
 * with its single poller) also serves the handle. When the fd is readable
 * the watch reads every pending port without blocking (tryPending, which
 * polls before each xenevtchn_pending as xenevtchn.h requires) and
 * generates one EVTCHN_PORT event per port.
 *
 * With 1,000 watched handles there are 1,000 registrations but, with the
 * built-in Deno/Bun loop, still one poll(2) in flight for all of them.
 *
 * The watch is the handle's one reader: do not call pending()/ports() on a
 * watched handle. Internal to plugins/osevent/ (EventContext exposes it).
 *
 * @module
 */
import { ClosedHandleError, XenCallError, XenUsageError } from "../../core/errors.ts";
import { checkBoolean, checkInteger, describe } from "../../core/validate.ts";
import type { FdWatch } from "./registry.ts";
import type { EventSink } from "./sink.ts";
import { EventType, type PendingPortSource, POLLIN, POLLNVAL } from "./types.ts";

const EBADF = 9;

/** Options of EventContext.watchEventChannels. */
export interface EventChannelWatchOptions {
  /** The forUser of every EVTCHN_PORT event of this handle (default undefined). */
  readonly forUser?: unknown;
  /** The domid events carry (default -1: "this process's domain"). */
  readonly domid?: number;
  /**
   * Unmask each port right after reading it, before the event is delivered
   * (default false: the port stays masked until the application calls
   * handle.unmask(port), as after EventChannels.pending()).
   */
  readonly autoUnmask?: boolean;
  /** Most ports read per readiness report before yielding to the loop (default 256). */
  readonly maxPortsPerWakeup?: number;
}

/** A watched event channel handle. Closing the watch leaves the handle open. */
export class EventChannelWatch implements Disposable {
  readonly handle: PendingPortSource;
  readonly #sink: EventSink;
  readonly #fdWatch: FdWatch;
  readonly #forUser: unknown;
  readonly #domid: number;
  readonly #autoUnmask: boolean;
  readonly #max: number;
  readonly #onClose: (watch: EventChannelWatch) => void;
  #ports = 0;

  /**
   * Registers `handle.fd` for POLLIN. Throws OsEventRegError when the
   * application's fdRegister hook refuses, ClosedHandleError for a closed
   * handle, XenUsageError for bad options.
   */
  constructor(
    sink: EventSink,
    handle: PendingPortSource,
    options: EventChannelWatchOptions,
    onClose: (watch: EventChannelWatch) => void,
  ) {
    if (handle.closed) throw new ClosedHandleError("event channel handle");
    const max = options.maxPortsPerWakeup ?? 256;
    if (!Number.isInteger(max) || max < 1) {
      throw new XenUsageError(
        `maxPortsPerWakeup must be a positive integer, got ${describe(max)}`,
      );
    }
    this.handle = handle;
    this.#sink = sink;
    this.#forUser = options.forUser;
    this.#domid = options.domid === undefined
      ? -1
      : checkInteger("options.domid", options.domid, -1, 0xffff);
    this.#autoUnmask = options.autoUnmask === undefined
      ? false
      : checkBoolean("options.autoUnmask", options.autoUnmask);
    this.#max = max;
    this.#onClose = onClose;
    this.#fdWatch = sink.registry.registerFd(
      handle.fd,
      POLLIN,
      (_fd, revents) => this.#ready(revents),
    );
  }

  /** Whether the watch is registered. */
  get active(): boolean {
    return this.#fdWatch.live;
  }

  /** Whether delivery is paused (registered with events 0). */
  get paused(): boolean {
    return this.#fdWatch.live && this.#fdWatch.events === 0;
  }

  /** Ports delivered so far. */
  get delivered(): number {
    return this.#ports;
  }

  /**
   * Stops reading without deregistering (the fd stays registered with
   * events 0). Throws OsEventRegError if the fdModify hook refuses,
   * XenUsageError once closed.
   */
  pause(): void {
    this.#fdWatch.modify(0);
  }

  /** Resumes after pause(). Throws like pause(). */
  resume(): void {
    this.#fdWatch.modify(POLLIN);
  }

  /**
   * Deregisters the fd (the handle stays open and owned by the caller).
   * Idempotent. Rethrows an exception of the fdDeregister hook.
   */
  close(): void {
    if (!this.#fdWatch.live) return;
    this.#onClose(this);
    this.#fdWatch.deregister();
  }

  /** Calls close() (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }

  #ready(revents: number): void {
    if (this.handle.closed) {
      this.close();
      return;
    }
    if (revents & POLLNVAL) {
      this.close();
      this.#sink.disaster(
        EventType.EVTCHN_PORT,
        `event channel fd ${this.#fdWatch.fd} is not open (POLLNVAL)`,
        EBADF,
      );
      return;
    }
    for (let i = 0; i < this.#max && this.#fdWatch.live && this.#fdWatch.events !== 0; i++) {
      let port: number | null;
      try {
        port = this.handle.tryPending();
        if (port !== null && this.#autoUnmask) this.handle.unmask(port);
      } catch (error) {
        this.close();
        if (error instanceof ClosedHandleError) return;
        const errno = error instanceof XenCallError ? error.errno : 0;
        this.#sink.disaster(
          EventType.EVTCHN_PORT,
          `reading pending ports of event channel fd ${this.#fdWatch.fd} failed: ${
            (error as Error)?.message ?? error
          }`,
          errno,
          error,
        );
        return;
      }
      if (port === null) return;
      this.#ports++;
      this.#sink.emit({
        type: EventType.EVTCHN_PORT,
        domid: this.#domid,
        forUser: this.#forUser,
        port,
        handle: this.handle,
      });
    }
  }
}
