/**
 * Real libxl as a domain event source for an EventContext, with libxl's
 * file descriptors and timeouts served by xenchan's own loop machinery.
 *
 * Two parts:
 * - LibxlHost implements libxl's osevent hooks (ffi/mod.ts
 *   LibxlOsEventHooks) over an FdWaiter (by default the process-wide
 *   FdPoller: one poll(2) in flight for every fd of every library) and
 *   LoopTimers (by default real timers; libxl's deadlines are wall-clock,
 *   Date.now()). It never reports an occurrence from inside a hook: fd
 *   readiness is reported from the continuation of the poller's promise
 *   (a microtask after poll(2) returned, on a later turn of the event loop
 *   than the hook that asked for the wait), a timeout from its timer
 *   callback (a macrotask), and a timeout libxl asks to fire "now"
 *   (timeoutModify) from a 0 ms timer (a macrotask). A report attempted
 *   while a hook is still running is deferred once more with
 *   queueMicrotask. An `admit` policy may refuse a registration: the hook
 *   then throws, libxl receives ERROR_OSEVENT_REG_FAIL and the libxl call
 *   that needed it fails with a LibxlError whose cause is the refusal.
 * - LibxlDomainSource is a DomainEventSource (plugins/osevent/
 *   domain_events.ts): each EventContext.enableDomainDeath(domid) reaches
 *   domainState(domid), which enables one libxl_evenable_domain_death for
 *   that domid (shared by every enable of it) and reads the domain with
 *   libxl_domain_info. libxl's DOMAIN_SHUTDOWN (with its reason) and
 *   DOMAIN_DEATH events become the source's raw events, which the context
 *   turns into the same DOMAIN_SHUTDOWN / DOMAIN_DEATH events as the
 *   simulator's and the XenStore-based sources; each libxl_event is freed
 *   by the binding before it gets here. After DOMAIN_DEATH, or once the
 *   application disabled every enable of a domid, or when the last
 *   subscriber leaves, the libxl watch is disabled. A libxl disaster is
 *   reported as the source's failure, which the context turns into its
 *   disaster handler or a DisasterError.
 *
 * The source also exposes the libxl context itself (`libxl`) for the
 * operations: listDomains, pause, unpause, shutdown, reboot, destroy (the
 * last five are Promises over libxl's asynchronous operation callbacks).
 *
 * DISK_EJECT is not provided by this source (enableDiskEject generates
 * nothing with it).
 *
 * @example
 * ```ts
 * await using source = await openLibxlSource();
 * using ctx = new EventContext({ domains: source });
 * await attachRuntimeLoop(ctx);
 * ctx.enableDomainDeath(domid, "guest");
 * await source.libxl.shutdown(domid);
 * const ev = await ctx.eventWait(eventMask(EventType.DOMAIN_SHUTDOWN), { domid });
 * ```
 *
 * @module
 */
import { XenUsageError } from "../../core/errors.ts";
import {
  LIBXL_EVENT_TYPE,
  type LibxlDeathWatch,
  type LibxlDomainInfo,
  type LibxlEvent,
  type LibxlLogLevel,
  type LibxlLogSink,
  type LibxlOptions,
  type LibxlOsEventHooks,
  loadLibc,
  openLibxl,
  sharedPoller,
} from "../../ffi/mod.ts";
import type {
  DomainEventSource,
  DomainState,
  RawDomainEvent,
  SourceFailure,
} from "./domain_events.ts";
import { type FdWaiter, type LoopTimers, REAL_TIMERS } from "./loop.ts";

/**
 * What the glue needs of a libxl context: ffi/mod.ts LibxlContext has it
 * all; tests pass a JavaScript object playing libxl's part.
 */
export interface LibxlLike {
  /** Whether close() has run. */
  readonly closed: boolean;
  occurredFd(forLibxl: bigint, fd: number, events: number, revents: number): void;
  occurredTimeout(forLibxl: bigint): void;
  enableDomainDeath(domid: number, forUser?: bigint): LibxlDeathWatch;
  disableDomainDeath(watch: LibxlDeathWatch): void;
  domainInfo(
    domid: number,
  ): Pick<LibxlDomainInfo, "dying" | "shutdown" | "shutdownReason"> | undefined;
  /** Frees the context (possibly later, once operations in flight end). */
  close(): void;
  /** Resolves once the context is really freed. */
  whenClosed(): Promise<void>;
}

/** Opens a libxl context with the given hooks and callbacks (default: ffi/mod.ts openLibxl). */
export type LibxlOpener<L extends LibxlLike> = (options: LibxlOptions) => L | Promise<L>;

/** One registration libxl asks for, as `admit` sees it. */
export type LibxlRegistration =
  | { readonly kind: "fd"; readonly fd: number; readonly events: number }
  | { readonly kind: "timeout"; readonly deadline: number };

/** Options of openLibxlSource. */
export interface LibxlSourceOptions<L extends LibxlLike = LibxlLike> {
  /** How libxl is opened (tests: a fake). Default: ffi/mod.ts openLibxl. */
  readonly open?: LibxlOpener<L>;
  /** Where libxl's fds wait (default: the process-wide FdPoller). */
  readonly fdWaiter?: FdWaiter;
  /** Timers for libxl's timeouts (default: real timers). */
  readonly timers?: LoopTimers;
  /** The wall clock libxl's deadlines are on, in ms (default Date.now). */
  readonly now?: () => number;
  /**
   * Consulted before each fd or timeout registration is accepted; throwing
   * refuses it (libxl gets ERROR_OSEVENT_REG_FAIL). For policies and fault
   * tests.
   */
  readonly admit?: (registration: LibxlRegistration) => void;
  /** Receives errors of reports to libxl and of waits (default: reportError). */
  readonly onError?: (error: unknown) => void;
  /** Where libxl logs (see ffi LibxlLogSink; default "discard"). */
  readonly log?: LibxlLogSink;
  /** The lowest level logged (default "warn"). */
  readonly logLevel?: LibxlLogLevel;
}

/** What the host holds now, for tests and leak checks. */
export interface LibxlHostStats {
  /** fd registrations held. */
  readonly fds: number;
  /** fd registrations with a wait in flight. */
  readonly waits: number;
  /** Timeout registrations held (not yet reported). */
  readonly timeouts: number;
  /** occurredFd calls made. */
  readonly fdReports: number;
  /** occurredTimeout calls made. */
  readonly timeoutReports: number;
  /** Registrations refused by `admit`. */
  readonly refused: number;
}

interface FdRec {
  readonly reg: number;
  readonly fd: number;
  events: number;
  readonly forLibxl: bigint;
  abort: AbortController | null;
  generation: number;
}

interface TimerRec {
  readonly reg: number;
  readonly forLibxl: bigint;
  id: unknown;
}

/** libxl's osevent hooks over an FdWaiter and LoopTimers; see the module comment. */
export class LibxlHost {
  readonly #waiter: FdWaiter;
  readonly #timers: LoopTimers;
  readonly #now: () => number;
  readonly #admit: ((r: LibxlRegistration) => void) | undefined;
  readonly #onError: (error: unknown) => void;
  readonly #fds = new Map<number, FdRec>();
  readonly #timeouts = new Map<number, TimerRec>();
  #libxl: LibxlLike | null = null;
  #early: (() => void)[] = [];
  #depth = 0;
  #closed = false;
  #fdReports = 0;
  #timeoutReports = 0;
  #refused = 0;

  /** The hooks to hand to libxl (LibxlOptions.hooks). */
  readonly hooks: LibxlOsEventHooks;

  /** Keeps the dependencies; registers nothing. Throws nothing. */
  constructor(
    waiter: FdWaiter,
    timers: LoopTimers,
    options: Pick<LibxlSourceOptions, "admit" | "onError" | "now"> = {},
  ) {
    this.#waiter = waiter;
    this.#timers = timers;
    this.#now = options.now ?? Date.now;
    this.#admit = options.admit;
    this.#onError = options.onError ?? defaultOnError;
    this.hooks = {
      fdRegister: (reg, fd, events, forLibxl) =>
        this.#inHook(() => this.#fdRegister(reg, fd, events, forLibxl)),
      fdModify: (reg, _fd, events) => this.#inHook(() => this.#fdModify(reg, events)),
      fdDeregister: (reg) => this.#inHook(() => this.#fdDeregister(reg)),
      timeoutRegister: (reg, deadline, forLibxl) =>
        this.#inHook(() => this.#timeoutRegister(reg, deadline, forLibxl)),
      timeoutModify: (reg) => this.#inHook(() => this.#timeoutModify(reg)),
    };
  }

  /**
   * Connects the libxl context the hooks belong to (reports made before are
   * delivered now, later). Throws XenUsageError if one is attached already.
   */
  attach(libxl: LibxlLike): void {
    if (this.#libxl) throw new XenUsageError("this libxl host already serves a context");
    this.#libxl = libxl;
    const early = this.#early;
    this.#early = [];
    for (const report of early) queueMicrotask(report);
  }

  /** True while one of the hooks runs. */
  get inHook(): boolean {
    return this.#depth > 0;
  }

  /** Counts (see LibxlHostStats). Throws nothing. */
  stats(): LibxlHostStats {
    let waits = 0;
    for (const rec of this.#fds.values()) if (rec.abort) waits++;
    return {
      fds: this.#fds.size,
      waits,
      timeouts: this.#timeouts.size,
      fdReports: this.#fdReports,
      timeoutReports: this.#timeoutReports,
      refused: this.#refused,
    };
  }

  /**
   * Cancels every wait and timer and reports nothing more. Call it after
   * libxl's context is freed (whenClosed). Idempotent; throws nothing.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const rec of this.#fds.values()) rec.abort?.abort();
    this.#fds.clear();
    for (const rec of this.#timeouts.values()) this.#timers.clear(rec.id);
    this.#timeouts.clear();
    this.#early = [];
  }

  #inHook(body: () => void): void {
    this.#depth++;
    try {
      body();
    } finally {
      this.#depth--;
    }
  }

  #check(registration: LibxlRegistration): void {
    if (this.#closed) throw new XenUsageError("the libxl host is closed");
    if (!this.#admit) return;
    try {
      this.#admit(registration);
    } catch (error) {
      this.#refused++;
      throw error;
    }
  }

  #fdRegister(reg: number, fd: number, events: number, forLibxl: bigint): void {
    this.#check({ kind: "fd", fd, events });
    const rec: FdRec = { reg, fd, events, forLibxl, abort: null, generation: 0 };
    this.#fds.set(reg, rec);
    this.#wait(rec);
  }

  #fdModify(reg: number, events: number): void {
    const rec = this.#fds.get(reg);
    if (!rec) throw new XenUsageError(`libxl modified unknown fd registration ${reg}`);
    rec.abort?.abort();
    rec.abort = null;
    rec.events = events;
    this.#wait(rec);
  }

  #fdDeregister(reg: number): void {
    const rec = this.#fds.get(reg);
    if (!rec) return;
    this.#fds.delete(reg);
    rec.abort?.abort();
    rec.abort = null;
  }

  /** Starts one wait for `rec` (none for events 0); a stale result is ignored. */
  #wait(rec: FdRec): void {
    if (rec.events === 0 || this.#closed) return;
    const abort = new AbortController();
    const generation = ++rec.generation;
    rec.abort = abort;
    this.#waiter.wait(rec.fd, rec.events, abort.signal).then(
      (revents) => {
        if (this.#fds.get(rec.reg) !== rec || rec.generation !== generation) return;
        rec.abort = null;
        if (revents === 0) return;
        this.#report(() => {
          if (this.#fds.get(rec.reg) !== rec || rec.generation !== generation) return;
          this.#fdReports++;
          this.#libxl!.occurredFd(rec.forLibxl, rec.fd, rec.events, revents & 0xffff);
          // Still registered and not re-armed by a modify inside the report: wait again.
          if (this.#fds.get(rec.reg) === rec && rec.generation === generation) this.#wait(rec);
        });
      },
      (error: unknown) => {
        if (this.#fds.get(rec.reg) !== rec || rec.generation !== generation) return;
        rec.abort = null;
        this.#onError(error);
      },
    );
  }

  #timeoutRegister(reg: number, deadline: number, forLibxl: bigint): void {
    this.#check({ kind: "timeout", deadline });
    const rec: TimerRec = { reg, forLibxl, id: undefined };
    rec.id = this.#timers.set(() => this.#fire(rec), Math.max(0, deadline - this.#now()));
    this.#timeouts.set(reg, rec);
  }

  #timeoutModify(reg: number): void {
    const rec = this.#timeouts.get(reg);
    if (!rec) throw new XenUsageError(`libxl modified unknown timeout registration ${reg}`);
    this.#timers.clear(rec.id);
    rec.id = this.#timers.set(() => this.#fire(rec), 0);
  }

  #fire(rec: TimerRec): void {
    if (this.#timeouts.get(rec.reg) !== rec) return;
    this.#report(() => {
      if (this.#timeouts.get(rec.reg) !== rec) return;
      this.#timeouts.delete(rec.reg);
      this.#timeoutReports++;
      this.#libxl!.occurredTimeout(rec.forLibxl);
    });
  }

  /** Runs a report to libxl outside every hook, once libxl is attached. */
  #report(report: () => void): void {
    if (this.#closed) return;
    const run = () => {
      if (this.#closed) return;
      if (this.#depth > 0) {
        queueMicrotask(run);
        return;
      }
      try {
        report();
      } catch (error) {
        this.#onError(error);
      }
    };
    if (!this.#libxl) this.#early.push(run);
    else run();
  }
}

/** Counts for tests and leak checks. */
export interface LibxlSourceStats {
  /** Domains with a libxl death watch now. */
  readonly watched: number;
  /** libxl events received, by kind. */
  readonly shutdownEvents: number;
  readonly deathEvents: number;
  readonly otherEvents: number;
  /** libxl disasters received. */
  readonly disasters: number;
  /** Subscribed listeners (EventContexts). */
  readonly subscribers: number;
}

interface Subscriber {
  readonly listener: (event: RawDomainEvent) => void;
  readonly onFailure?: SourceFailure;
}

/** See the module comment; made by openLibxlSource. */
export class LibxlDomainSource<L extends LibxlLike = LibxlLike>
  implements DomainEventSource, AsyncDisposable {
  readonly #host: LibxlHost;
  readonly #subscribers = new Set<Subscriber>();
  readonly #watches = new Map<number, LibxlDeathWatch>();
  #libxl: L | null = null;
  #shutdowns = 0;
  #deaths = 0;
  #others = 0;
  #disasters = 0;
  #closed = false;

  /** Made by openLibxlSource; `host` serves the context attached next. Throws nothing. */
  constructor(host: LibxlHost) {
    this.#host = host;
  }

  /** @internal Connects the opened context. */
  attach(libxl: L): void {
    this.#libxl = libxl;
    this.#host.attach(libxl);
  }

  /** The libxl context (operations: listDomains, pause, shutdown, destroy, ...). */
  get libxl(): L {
    if (!this.#libxl) throw new XenUsageError("the libxl source is not open yet");
    return this.#libxl;
  }

  /** The hook host (its stats show libxl's registrations as served). */
  get host(): LibxlHost {
    return this.#host;
  }

  /** Counts (see LibxlSourceStats). Throws nothing. */
  stats(): LibxlSourceStats {
    return {
      watched: this.#watches.size,
      shutdownEvents: this.#shutdowns,
      deathEvents: this.#deaths,
      otherEvents: this.#others,
      disasters: this.#disasters,
      subscribers: this.#subscribers.size,
    };
  }

  /**
   * DomainEventSource.subscribe: `listener` receives "shutdown" and
   * "death" for the domains enabled through domainState, after the libxl
   * call that produced them returned; `onFailure` receives libxl's
   * disasters. The returned function unsubscribes (idempotent); when the
   * last subscriber leaves every libxl death watch is disabled. Throws
   * ClosedHandleError-like XenUsageError after close().
   */
  subscribe(listener: (event: RawDomainEvent) => void, onFailure?: SourceFailure): () => void {
    if (this.#closed) throw new XenUsageError("the libxl source is closed");
    const sub: Subscriber = { listener, onFailure };
    this.#subscribers.add(sub);
    return () => {
      if (!this.#subscribers.delete(sub)) return;
      if (this.#subscribers.size === 0) this.#unwatchAll();
    };
  }

  /**
   * DomainEventSource.domainState: starts libxl's death watch for `domid`
   * (once per domid), then reads it with libxl_domain_info: undefined when
   * it does not exist or is dying, its shutdown reason when shut down.
   * Throws what the binding throws (a LibxlError, e.g.
   * ERROR_OSEVENT_REG_FAIL when a hook refused; nothing is watched then).
   */
  domainState(domid: number): DomainState | undefined {
    const libxl = this.libxl;
    if (!this.#watches.has(domid)) {
      this.#watches.set(domid, libxl.enableDomainDeath(domid, BigInt(domid)));
    }
    const info = libxl.domainInfo(domid);
    if (!info || info.dying) return undefined;
    return info.shutdown ? { shutdownReason: info.shutdownReason ?? -1 } : {};
  }

  /** DomainEventSource.release: stops libxl's death watch for `domid`. Throws nothing. */
  release(domid: number): void {
    this.#unwatch(domid);
  }

  /**
   * Disables every watch and closes libxl; resolves once libxl's context is
   * freed (after operations in flight end) and the host has dropped every
   * wait and timer. Idempotent.
   */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#subscribers.clear();
      this.#unwatchAll();
      this.#libxl?.close();
    }
    if (this.#libxl) await this.#libxl.whenClosed();
    this.#host.close();
  }

  /** Calls close() (for `await using`). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** @internal The binding's onEvent. */
  onEvent(event: LibxlEvent): void {
    if (event.type === LIBXL_EVENT_TYPE.DOMAIN_SHUTDOWN) {
      this.#shutdowns++;
      this.#emit({ type: "shutdown", domid: event.domid, reasonCode: event.shutdownReason ?? -1 });
    } else if (event.type === LIBXL_EVENT_TYPE.DOMAIN_DEATH) {
      this.#deaths++;
      this.#unwatch(event.domid);
      this.#emit({ type: "death", domid: event.domid });
    } else {
      this.#others++;
    }
  }

  /** @internal The binding's onDisaster. */
  onDisaster(type: number, message: string, errno: number): void {
    this.#disasters++;
    const cause = { type, errno, message };
    for (const sub of [...this.#subscribers]) {
      sub.onFailure?.(`libxl disaster (event type ${type || "any"}): ${message}`, cause);
    }
  }

  #emit(event: RawDomainEvent): void {
    for (const sub of [...this.#subscribers]) sub.listener(event);
  }

  #unwatch(domid: number): void {
    const watch = this.#watches.get(domid);
    if (!watch) return;
    this.#watches.delete(domid);
    const libxl = this.#libxl;
    if (!libxl || libxl.closed) return;
    try {
      libxl.disableDomainDeath(watch);
    } catch (error) {
      defaultOnError(error);
    }
  }

  #unwatchAll(): void {
    for (const domid of [...this.#watches.keys()]) this.#unwatch(domid);
  }
}

function defaultOnError(error: unknown): void {
  const report = (globalThis as { reportError?: (e: unknown) => void }).reportError;
  if (typeof report === "function") report(error);
  else {
    queueMicrotask(() => {
      throw error;
    });
  }
}

/**
 * Opens libxl (options.open, default the real libxenlight through ffi/mod.ts)
 * with a LibxlHost as its hooks, and returns the source over it. Loads libc
 * for the shared poller unless `fdWaiter` is given. Rejects with what the
 * opener throws: LibraryNotFoundError (install libxenmisc4.17),
 * LibxlError("libxl_ctx_alloc") off Xen or without root, XenUsageError for
 * bad options. Nothing stays open after a rejection. The caller owns the
 * source: `await source.close()` after closing the contexts that use it.
 */
export async function openLibxlSource<L extends LibxlLike = LibxlLike>(
  options: LibxlSourceOptions<L> = {},
): Promise<LibxlDomainSource<L>> {
  const waiter = options.fdWaiter ?? sharedPoller(await loadLibc());
  const host = new LibxlHost(waiter, options.timers ?? REAL_TIMERS, options);
  const source = new LibxlDomainSource<L>(host);
  const open = options.open ?? (openLibxl as unknown as LibxlOpener<L>);
  let libxl: L;
  try {
    libxl = await open({
      hooks: host.hooks,
      onEvent: (event) => source.onEvent(event),
      onDisaster: (type, message, errno) => source.onDisaster(type, message, errno),
      onHookError: () => {}, // returned as the LibxlError's cause instead
      log: options.log,
      logLevel: options.logLevel,
    });
  } catch (error) {
    host.close();
    throw error;
  }
  source.attach(libxl);
  return source;
}
