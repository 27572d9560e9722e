/**
 * EventContext: xenchan's libxl_ctx for events. It owns the OS-event
 * registry (what must be watched), the domain event generators, the watched
 * event channel handles, the queue of generated events and the callers
 * waiting for them.
 *
 * Three ways to run it (they may be mixed):
 * - poll-loop: beforepoll / poll(2) / afterpoll, then eventCheck;
 * - hooks: registerHooks(your loop's hooks), then occurredFd /
 *   occurredTimeout from your loop;
 * - built-in: attachRuntimeLoop(ctx) (Deno or Bun, one poller for every fd)
 *   or attachSimClockLoop(ctx) (the simulator's virtual clock), then simply
 *   `await ctx.eventWait(...)` or `for await (const ev of ctx.events(...))`.
 *
 * eventWait and events() drive nothing themselves: some loop must run.
 *
 * Disasters (libxl's `disaster` callback; only for unrecoverable failures:
 * a poll that keeps failing, an event channel read that fails, a hook that
 * refuses a registration xenchan needs with nobody to return the error to):
 * - with a disaster handler (registerCallbacks) it is called with the event
 *   type that may be missing (0: any), a message and an errno (0 if none);
 *   the context then carries on, possibly without events of that type.
 *   Calling any context method from inside the handler throws
 *   XenUsageError (close the context after the handler returns);
 * - with no handler the disaster is fatal to the context, not to the
 *   process (a library must not exit): the context deregisters every fd and
 *   timeout, every waiting eventWait / events() rejects with a
 *   DisasterError, the application call that detected it (afterpoll,
 *   occurredFd, occurredTimeout) throws that DisasterError, and so does
 *   every later call except close(). `failure` holds it.
 *
 * Single-threaded; not shareable between Workers.
 *
 * @module
 */
import { ClosedHandleError, XenUsageError } from "../../core/errors.ts";
import {
  checkFiniteNumber,
  checkFunction,
  checkInteger,
  checkObject,
  checkOptions,
  checkString,
  checkWaitOptions,
  describe,
} from "../../core/validate.ts";
import {
  type DiskEjectEnable,
  type DomainDeathEnable,
  DomainEvents,
  type DomainEventSource,
} from "./domain_events.ts";
import { DisasterError } from "./errors.ts";
import { EventQueue, type Waiter, WaiterIndex } from "./event_index.ts";
import { EventChannelWatch, type EventChannelWatchOptions } from "./evtchn_watch.ts";
import {
  type FdCallback,
  type FdWatch,
  OsEventRegistry,
  type RegistryStats,
  type TimeoutCallback,
  type TimeoutWatch,
} from "./registry.ts";
import type { EventSink } from "./sink.ts";
import {
  type BeforePollResult,
  type Clock,
  EVENTMASK_ALL,
  type EventSelector,
  EventType,
  type EventTypeValue,
  type OsEventHooks,
  type OsEventRef,
  type PendingPortSource,
  type PollFds,
  type XenEvent,
} from "./types.ts";

/** Wall-clock milliseconds (gettimeofday, as libxl uses). */
export const SYSTEM_CLOCK: Clock = Object.freeze({ now: () => Date.now() });

/** Construction options. */
export interface EventContextOptions {
  /**
   * The clock deadlines are measured on (default SYSTEM_CLOCK, Date.now()).
   * Pass the simulator's VirtualClock (hv.clock) to run on virtual time;
   * the `now` given to afterpoll must be on this clock.
   */
  readonly clock?: Clock;
  /** Where DOMAIN_SHUTDOWN / DOMAIN_DEATH / DISK_EJECT come from (e.g. simDomainSource(hv)). */
  readonly domains?: DomainEventSource;
  /**
   * The error sink: receives every exception that has no caller to go to,
   * namely what the application's hooks (fdDeregister) or the domain
   * source's unsubscribe throw while the context closes or fails, and what
   * eventOccurs throws outside any dispatching call. Called synchronously,
   * once per exception; an exception it throws itself is dropped. Default:
   * console.error with a "xenchan:" prefix. Never fatal: closing a context
   * must not end the process.
   */
  readonly onError?: (error: unknown) => void;
}

/**
 * The disaster callback: `type` is the event type that may be missing (0:
 * any), `message` what xenchan was doing, `errno` the system error or 0.
 * It must not call the context.
 */
export type DisasterHandler = (type: EventTypeValue | 0, message: string, errno: number) => void;

/** What registerCallbacks takes (libxl_event_hooks). */
export interface EventCallbacks {
  /**
   * Events whose type bit is set are passed to eventOccurs instead of being
   * queued (default: every type when eventOccurs is given, else none).
   */
  readonly mask?: number;
  /**
   * Receives each event of a masked type; the event is the application's.
   * Called after xenchan finished the dispatch that generated it (from
   * afterpoll / occurredFd / occurredTimeout or a built-in loop), so it MAY
   * call the context, including close(). If it throws, the remaining events
   * are still delivered and the first exception is rethrown from that
   * dispatching call (or passed to the context's onError sink when there
   * is none).
   */
  readonly eventOccurs?: (event: XenEvent) => void;
  /** See the module comment. Without it disasters are fatal to the context. */
  readonly disaster?: DisasterHandler;
}

/** Options of eventWait and events. */
export interface EventWaitOptions {
  /** Aborting rejects eventWait with the signal's reason and ends events() quietly. */
  readonly signal?: AbortSignal;
}

/** Counts for leak checks and benchmarks. */
export interface EventContextStats extends RegistryStats {
  /** Events generated and not yet retrieved. */
  readonly queued: number;
  /** Callers waiting in eventWait / events(). */
  readonly waiters: number;
  /** Enabled domain death / disk eject generators. */
  readonly enabled: number;
  /** Watched event channel handles. */
  readonly watches: number;
}

/** See the module comment. */
export class EventContext implements Disposable, AsyncDisposable {
  readonly #clock: Clock;
  readonly #registry: OsEventRegistry;
  readonly #queue = new EventQueue();
  readonly #waiters = new WaiterIndex();
  readonly #domains: DomainEvents | null;
  readonly #watches = new Set<EventChannelWatch>();
  readonly #sink: EventSink;
  readonly #disableDeath = (gen: DomainDeathEnable) => this.disableDomainDeath(gen);
  readonly #disableEject = (gen: DiskEjectEnable) => this.disableDiskEject(gen);
  #callbackMask = 0;
  #eventOccurs: ((event: XenEvent) => void) | null = null;
  #disasterHandler: DisasterHandler | null = null;
  #depth = 0;
  #deferred: XenEvent[] = [];
  #deferredHead = 0;
  #inDisaster = false;
  #closed = false;
  #failure: DisasterError | null = null;
  readonly #onError: (error: unknown) => void;

  /**
   * Creates a context (libxl_ctx_alloc). Subscribes to `options.domains`
   * at once. Throws XenUsageError for a clock without now(), and whatever
   * the source's subscribe throws. The caller owns the context: close it
   * (or `using`).
   */
  constructor(options?: EventContextOptions) {
    options = checkOptions("options", options);
    const clock = options.clock ?? SYSTEM_CLOCK;
    if (typeof (clock as Partial<Clock> | null)?.now !== "function") {
      throw new XenUsageError(`options.clock must have a now() method, got ${describe(clock)}`);
    }
    if (options.domains !== undefined) checkDomainSource(options.domains);
    this.#onError = options.onError === undefined
      ? logError
      : checkFunction("options.onError", options.onError);
    this.#clock = clock;
    this.#registry = new OsEventRegistry(clock);
    const sink: EventSink = {
      registry: this.#registry,
      emit: (event) => this.#emit(event),
      disaster: (type, message, errno, cause) => this.#disaster(type, message, errno, cause),
    };
    this.#domains = options.domains ? new DomainEvents(sink, options.domains) : null;
    this.#sink = sink;
  }

  /** The context's clock. */
  get clock(): Clock {
    return this.#clock;
  }

  /** Whether close() has run. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The DisasterError that made the context fail, or null. */
  get failure(): DisasterError | null {
    return this.#failure;
  }

  // ---- the poll-loop style ---------------------------------------------------

  /**
   * libxl_osevent_beforepoll: fills `fds` (an array of PollSlot, or a
   * Uint8Array of struct pollfd) with what xenchan needs polled and returns
   * the slot count needed and the timeout to use (the caller's `timeout` in
   * ms, -1 = infinite, lowered to xenchan's earliest deadline measured from
   * `now`, default clock.now()). When the array is too small, `full` is
   * true, `needed` says how many slots to provide, and nothing useful was
   * written. Throws XenUsageError (bad timeout, from inside a hook or a
   * disaster handler), ClosedHandleError, DisasterError.
   */
  beforepoll(fds: PollFds, timeout = -1, now: number = this.#clock.now()): BeforePollResult {
    this.#enter();
    checkFiniteNumber("now", now);
    return this.#registry.beforepoll(fds, timeout, now);
  }

  /**
   * libxl_osevent_afterpoll: `fds` as filled by beforepoll and then by
   * poll(2), `now` on the context's clock (default clock.now()), `nfds`
   * the slots to look at (default: what beforepoll filled). Handles every
   * ready fd and due timeout: generated events are queued, handed to
   * waiters, or passed to eventOccurs before it returns. Throws
   * XenUsageError (from inside a hook or a disaster handler),
   * ClosedHandleError, DisasterError (a disaster with no handler, detected
   * now or earlier), or what eventOccurs threw.
   */
  afterpoll(fds: PollFds, now: number = this.#clock.now(), nfds?: number): void {
    this.#enter();
    checkFiniteNumber("now", now);
    if (nfds !== undefined) checkInteger("nfds", nfds, 0, 0x7fffffff);
    this.#dispatch(() => this.#registry.afterpoll(fds, now, nfds));
  }

  // ---- the hooks style -------------------------------------------------------

  /**
   * libxl_osevent_register_hooks: from now on every fd and timeout xenchan
   * needs is announced to `hooks` (see OsEventHooks for their rules), those
   * already needed at once. Once per context: a second call throws
   * XenUsageError, as does a call from inside a hook or disaster handler.
   * Throws OsEventRegError if a register hook throws (nothing stays
   * registered and no hooks are installed), ClosedHandleError,
   * DisasterError. The context keeps `hooks` (it is not copied).
   */
  registerHooks<T>(hooks: OsEventHooks<T>): void {
    this.#enter();
    this.#registry.registerHooks(hooks as OsEventHooks<unknown>);
  }

  /**
   * libxl_osevent_occurred_fd: the fd registered with `forLib` has
   * `revents` (`events` is what was polled for; 0 is fine). Handles it like
   * afterpoll. A report for a registration xenchan already dropped, or on a
   * closed context, is ignored. Throws XenUsageError when called from inside
   * a register/modify/deregister hook (the reentrancy rule) or a disaster
   * handler, or with a foreign forLib or mismatched fd; DisasterError;
   * what eventOccurs threw.
   */
  occurredFd(forLib: OsEventRef, fd: number, events: number, revents: number): void {
    if (!this.#enterOccurred()) return;
    this.#dispatch(() => this.#registry.occurredFd(forLib, fd, events, revents));
  }

  /**
   * libxl_osevent_occurred_timeout: the timeout registered with `forLib`
   * occurred (or was fired early after timeoutModify(token, 0)); it is
   * deregistered by this call. Ignored on a closed context. Throws
   * XenUsageError from inside a hook or disaster handler, for a foreign
   * forLib, or when the same timeout is reported twice; DisasterError; what
   * eventOccurs threw.
   */
  occurredTimeout(forLib: OsEventRef): void {
    if (!this.#enterOccurred()) return;
    this.#dispatch(() => this.#registry.occurredTimeout(forLib));
  }

  // ---- retrieving events -------------------------------------------------------

  /**
   * libxl_event_check: removes and returns the oldest queued event whose
   * type bit (1 << type) is in `typemask` and that `selector` accepts
   * (undefined: any; an EventFilter {domid?, forUser?}: indexed, O(1); a
   * predicate function: scans, O(n) in queued events of those types), or
   * null (libxl's ERROR_NOT_READY). Never waits. Throws XenUsageError (bad
   * typemask, from a disaster handler), ClosedHandleError, DisasterError,
   * or what the predicate threw.
   */
  eventCheck(typemask: number, selector?: EventSelector): XenEvent | null {
    this.#enter();
    return this.#queue.take(checkMask(typemask), checkSelector(selector));
  }

  /**
   * libxl_event_wait, awaitable: resolves with the oldest queued matching
   * event, or with the next one generated (each event goes to exactly one
   * caller: the oldest waiting one whose typemask and selector match; an
   * indexed EventFilter keeps matching O(1)). It waits without blocking
   * anything, and drives no loop itself. Rejects with the signal's reason
   * on abort, ClosedHandleError when the context closes, DisasterError when
   * it fails, the predicate's exception if it throws, XenUsageError for a
   * typemask of 0 or a call from a disaster handler. Events of types in
   * the callback mask go to eventOccurs, never to waiters.
   */
  async eventWait(
    typemask: number,
    selector?: EventSelector,
    options: EventWaitOptions = {},
  ): Promise<XenEvent> {
    this.#enter();
    const mask = checkMask(typemask);
    if (mask === 0) throw new XenUsageError("eventWait: typemask selects no event type");
    checkSelector(selector);
    const { signal } = checkWaitOptions("options", options);
    signal?.throwIfAborted();
    const found = this.#queue.take(mask, selector);
    if (found) return found;
    return await new Promise<XenEvent>((resolve, reject) => {
      const onAbort = () => {
        this.#waiters.remove(waiter);
        reject(signal!.reason);
      };
      const cleanup = () => signal?.removeEventListener("abort", onAbort);
      const waiter: Waiter = {
        seq: this.#waiters.nextSeq(),
        dead: false,
        mask,
        selector,
        deliver: (event) => {
          cleanup();
          resolve(event);
        },
        fail: (error) => {
          cleanup();
          reject(error);
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.add(waiter);
    });
  }

  /**
   * Yields matching events as eventWait would, one at a time, until the
   * signal aborts or the context closes (both end the iteration quietly).
   * A DisasterError or a predicate exception is thrown from the loop. No
   * event is lost between iterations: events that arrive meanwhile are
   * queued for the next one.
   */
  async *events(
    typemask: number,
    selector?: EventSelector,
    options?: EventWaitOptions,
  ): AsyncGenerator<XenEvent, void, undefined> {
    options = checkWaitOptions("options", options);
    checkMask(typemask);
    checkSelector(selector);
    for (;;) {
      if (this.#closed || options.signal?.aborted) return;
      let event: XenEvent;
      try {
        event = await this.eventWait(typemask, selector, options);
      } catch (error) {
        if (this.#closed || options.signal?.aborted) return;
        throw error;
      }
      yield event;
    }
  }

  /**
   * libxl_event_register_callbacks: events whose type is in `mask` go to
   * `eventOccurs` instead of the queue, and disasters to `disaster`. May be
   * called any number of times (also from eventOccurs); the latest call
   * wins; events already queued stay queued. Throws XenUsageError when mask
   * is non-zero without eventOccurs, for non-functions, from a disaster
   * handler; ClosedHandleError; DisasterError.
   */
  registerCallbacks(callbacks: EventCallbacks): void {
    this.#enter();
    const { eventOccurs, disaster } = checkObject("callbacks", callbacks);
    if (eventOccurs !== undefined && typeof eventOccurs !== "function") {
      throw new XenUsageError("eventOccurs must be a function");
    }
    if (disaster !== undefined && typeof disaster !== "function") {
      throw new XenUsageError("disaster must be a function");
    }
    const mask = checkMask(callbacks.mask ?? (eventOccurs ? EVENTMASK_ALL : 0));
    if (mask !== 0 && !eventOccurs) {
      throw new XenUsageError("a non-zero callback mask needs eventOccurs");
    }
    this.#callbackMask = mask;
    this.#eventOccurs = eventOccurs ?? null;
    this.#disasterHandler = disaster ?? null;
  }

  // ---- enabling events ------------------------------------------------------------

  /**
   * libxl_evenable_domain_death: generates DOMAIN_SHUTDOWN (with the
   * reason) and then DOMAIN_DEATH for `domid`, or only DOMAIN_DEATH if the
   * domain is destroyed before it shuts down; each event carries `forUser`
   * (any value). Enabling twice gives each event twice, each with its own
   * forUser. Returns the generator (keep it to disable). Throws
   * XenUsageError without a domain source or for a bad domid,
   * OsEventRegError if a hook refuses a needed timeout, ClosedHandleError,
   * DisasterError.
   */
  enableDomainDeath(domid: number, forUser?: unknown): DomainDeathEnable {
    this.#enter();
    return this.#needDomains().enableDeath(domid, forUser, this.#disableDeath);
  }

  /**
   * libxl_evdisable_domain_death: stops the generator; events it already
   * generated may still be returned. Idempotent; a no-op after close or
   * failure. Throws XenUsageError for a generator of another context or
   * from a disaster handler.
   */
  disableDomainDeath(gen: DomainDeathEnable): void {
    this.#checkNotInDisaster();
    if (gen?.disableFn !== this.#disableDeath) {
      throw new XenUsageError("not a domain death generator of this context");
    }
    if (this.#closed || this.#failure) return;
    this.#domains!.disableDeath(gen);
  }

  /**
   * libxl_evenable_disk_eject: generates DISK_EJECT (with `vdev` exactly as
   * given) each time the guest ejects the media of `vdev` in `domid`, until
   * disabled or the domain dies. Throws like enableDomainDeath (and
   * XenUsageError for an empty vdev).
   */
  enableDiskEject(domid: number, vdev: string, forUser?: unknown): DiskEjectEnable {
    this.#enter();
    return this.#needDomains().enableEject(domid, vdev, forUser, this.#disableEject);
  }

  /** libxl_evdisable_disk_eject; behaves like disableDomainDeath. */
  disableDiskEject(gen: DiskEjectEnable): void {
    this.#checkNotInDisaster();
    if (gen?.disableFn !== this.#disableEject) {
      throw new XenUsageError("not a disk eject generator of this context");
    }
    if (this.#closed || this.#failure) return;
    this.#domains!.disableEject(gen);
  }

  /**
   * Watches an event channel handle (an EventChannels, or anything with
   * fd / closed / tryPending / unmask): its fd is served by this context's
   * loop and each pending port becomes an EVTCHN_PORT event. The watch is
   * the handle's one reader. Closing the watch (or the context) leaves the
   * handle open; closing the handle ends the watch quietly. Throws
   * OsEventRegError if the fdRegister hook refuses, ClosedHandleError (the
   * handle or the context is closed), XenUsageError, DisasterError.
   */
  watchEventChannels(
    handle: PendingPortSource,
    options?: EventChannelWatchOptions,
  ): EventChannelWatch {
    this.#enter();
    checkPendingPortSource(handle);
    options = checkOptions("options", options);
    const watch = new EventChannelWatch(
      this.#sink,
      handle,
      options,
      (w) => this.#watches.delete(w),
    );
    this.#watches.add(watch);
    return watch;
  }

  // ---- for event sources ------------------------------------------------------------

  /**
   * For event sources (plugins that generate work from an fd, like the
   * event channel watch): registers `events` on `fd` with this context's
   * registry, served by whatever loop serves the context. `callback` runs
   * inside afterpoll / occurredFd with the revents bits it asked for (plus
   * POLLERR/POLLHUP/POLLNVAL); events 0 registers silently. Several
   * registrations per fd are allowed. Throws OsEventRegError if the
   * fdRegister hook refuses, XenUsageError, ClosedHandleError,
   * DisasterError.
   */
  addFdWatch(fd: number, events: number, callback: FdCallback): FdWatch {
    this.#enter();
    return this.#registry.registerFd(fd, events, callback);
  }

  /**
   * For event sources: runs `callback` once when the context's clock
   * reaches `deadline` (absolute ms; 0 means as soon as possible), inside
   * afterpoll / occurredTimeout. Throws OsEventRegError if the
   * timeoutRegister hook refuses, XenUsageError, ClosedHandleError,
   * DisasterError.
   */
  addTimeout(deadline: number, callback: TimeoutCallback): TimeoutWatch {
    this.#enter();
    return this.#registry.registerTimeout(deadline, callback);
  }

  // ---- for loop plugins -----------------------------------------------------------

  /**
   * Reports an unrecoverable failure found outside xenchan's own calls
   * (used by loop plugins, e.g. when poll(2) keeps failing). Handled as
   * described in the module comment; throws nothing itself but
   * XenUsageError from inside a disaster handler. Ignored once closed or
   * failed.
   */
  reportDisaster(type: EventTypeValue | 0, message: string, errno = 0, cause?: unknown): void {
    this.#checkNotInDisaster();
    checkInteger("type", type, 0, 31);
    checkString("message", message);
    checkInteger("errno", errno, 0, 0x7fffffff);
    this.#disaster(type, message, errno, cause);
  }

  /** Counts for leak checks and benchmarks. Throws XenUsageError from a disaster handler. */
  stats(): EventContextStats {
    this.#checkNotInDisaster();
    return {
      ...this.#registry.stats(),
      queued: this.#queue.size,
      waiters: this.#waiters.size,
      enabled: this.#domains?.enabledCount ?? 0,
      watches: this.#watches.size,
    };
  }

  // ---- lifetime ---------------------------------------------------------------------

  /**
   * libxl_ctx_free: cancels everything. Every fd is deregistered and every
   * timeout asked to fire now (their occurrences are then ignored), the
   * domain source is unsubscribed, generators and watches end, queued events
   * are dropped, and waiters reject with ClosedHandleError (events()
   * iterations end quietly). Idempotent. Throws XenUsageError only when
   * called from a disaster handler. Exceptions of the application's hooks
   * and of the domain source during teardown never escape: each goes to the
   * onError sink (EventContextOptions.onError), and the teardown carries on.
   */
  close(): void {
    this.#checkNotInDisaster();
    if (this.#closed) return;
    this.#closed = true;
    this.#teardown(new ClosedHandleError("event context"));
  }

  /** Calls close() (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Calls close() (for `await using`). */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }

  // ---- internals ----------------------------------------------------------------------

  #needDomains(): DomainEvents {
    if (!this.#domains) {
      throw new XenUsageError(
        "this context has no domain event source: create it with { domains: simDomainSource(hv) }",
      );
    }
    return this.#domains;
  }

  #checkNotInDisaster(): void {
    if (this.#inDisaster) {
      throw new XenUsageError(
        "the context was called from inside its disaster handler, which is not permitted; return from the handler first (then close the context)",
      );
    }
  }

  #enter(): void {
    this.#checkNotInDisaster();
    if (this.#closed) throw new ClosedHandleError("event context");
    if (this.#failure) throw this.#failure;
  }

  /** occurred*: false when closed (the report is ignored). */
  #enterOccurred(): boolean {
    this.#checkNotInDisaster();
    if (this.#closed) return false;
    if (this.#failure) throw this.#failure;
    return true;
  }

  #dispatch(fn: () => void): void {
    this.#depth++;
    let threw = false;
    let error: unknown;
    try {
      fn();
    } catch (e) {
      threw = true;
      error = e;
    } finally {
      this.#depth--;
    }
    const callbackError = this.#depth === 0 ? this.#flush() : undefined;
    if (this.#failure) throw this.#failure;
    if (threw) throw error;
    if (callbackError !== undefined) throw callbackError;
  }

  #emit(event: XenEvent): void {
    if (this.#closed || this.#failure) return;
    if (this.#eventOccurs && (this.#callbackMask >>> event.type) & 1) {
      this.#deferred.push(event);
      if (this.#depth === 0) {
        const error = this.#flush();
        if (error !== undefined) this.#report(error);
      }
      return;
    }
    this.#route(event);
  }

  #route(event: XenEvent): void {
    if (!this.#waiters.offer(event)) this.#queue.push(event);
  }

  /** Delivers deferred events to eventOccurs; returns what it threw (first, or an AggregateError). */
  #flush(): unknown {
    const errors: unknown[] = [];
    while (this.#deferredHead < this.#deferred.length) {
      const event = this.#deferred[this.#deferredHead++];
      if (this.#closed || this.#failure) break;
      const handler = this.#eventOccurs;
      if (handler && (this.#callbackMask >>> event.type) & 1) {
        try {
          handler(event);
        } catch (error) {
          errors.push(error);
        }
      } else {
        this.#route(event);
      }
    }
    this.#deferred = [];
    this.#deferredHead = 0;
    if (errors.length === 0) return undefined;
    return errors.length === 1
      ? errors[0]
      : new AggregateError(errors, "several eventOccurs calls threw");
  }

  #disaster(type: EventTypeValue | 0, message: string, errno: number, cause?: unknown): void {
    if (this.#closed || this.#failure) return;
    const handler = this.#disasterHandler;
    if (handler) {
      this.#inDisaster = true;
      try {
        handler(type, message, errno);
        return;
      } catch (error) {
        cause = error;
        message = `${message}; then the disaster handler threw: ${
          (error as Error)?.message ?? error
        }`;
      } finally {
        this.#inDisaster = false;
      }
    }
    this.#failure = new DisasterError(type, message, errno, cause);
    this.#teardown(this.#failure);
  }

  /** Passes an exception with no caller to the onError sink; never throws. */
  #report(error: unknown): void {
    try {
      this.#onError(error);
    } catch { /* the sink failed too: nothing is left to tell */ }
  }

  #teardown(reason: Error): void {
    for (const error of this.#domains?.close() ?? []) this.#report(error);
    this.#watches.clear();
    for (const error of this.#registry.shutdown()) this.#report(error);
    this.#queue.clear();
    this.#deferred = [];
    this.#deferredHead = 0;
    for (const waiter of this.#waiters.drain()) waiter.fail(reason);
  }
}

function checkMask(mask: number): number {
  if (
    typeof mask !== "number" || !Number.isInteger(mask) || mask < -0x80000000 || mask > 0xffffffff
  ) {
    throw new XenUsageError(
      `typemask must be a 32-bit integer of (1 << type) bits, got ${String(mask)}`,
    );
  }
  return mask >>> 0;
}

/** The default onError sink: logs, never throws, never ends the process. */
function logError(error: unknown): void {
  console.error("xenchan: an application hook failed with nobody to report to:", error);
}

/** XenUsageError unless `source` has subscribe() and domainState(). */
function checkDomainSource(source: unknown): void {
  const s = checkObject("options.domains", source) as Partial<Record<string, unknown>>;
  for (const name of ["subscribe", "domainState"]) {
    if (typeof s[name] !== "function") {
      throw new XenUsageError(
        `options.domains must have a ${name}() method (use simDomainSource(hv)), got ${
          describe(source)
        }`,
      );
    }
  }
}

/** XenUsageError unless `handle` has fd, closed, tryPending() and unmask(). */
function checkPendingPortSource(handle: unknown): void {
  const h = checkObject("handle", handle) as Partial<Record<string, unknown>>;
  for (const name of ["tryPending", "unmask"]) {
    if (typeof h[name] !== "function") {
      throw new XenUsageError(
        `handle must be an event channel handle with ${name}(), got ${describe(handle)}`,
      );
    }
  }
}

/** An EventSelector: undefined, null, a predicate function or a plain object filter. */
function checkSelector(selector: unknown): EventSelector {
  if (selector === undefined || selector === null || typeof selector === "function") {
    return selector as EventSelector;
  }
  if (typeof selector !== "object" || Array.isArray(selector)) {
    throw new XenUsageError(
      `selector must be a predicate function, a filter object { domid?, forUser? } or undefined, got ${
        describe(selector)
      }`,
    );
  }
  const domid = (selector as { domid?: unknown }).domid;
  if (domid !== undefined) checkInteger("selector.domid", domid, -1, 0xffff);
  return selector as EventSelector;
}

/** The EventType names, for messages. */
export function eventTypeName(type: number): string {
  return Object.entries(EventType).find(([, v]) => v === type)?.[0] ?? `type ${describe(type)}`;
}
