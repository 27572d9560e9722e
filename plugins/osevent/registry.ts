/**
 * The OS-event registry: every file descriptor (with poll events) and every
 * deadline that xenchan needs watched, and the two ways an application
 * watches them (tools/include/libxl_event.h, post-2013 contract):
 *
 * - poll-loop: `beforepoll` fills the application's pollfd array and
 *   lowers its timeout; the application polls; `afterpoll` hands back the
 *   revents with the application's notion of now.
 * - hooks: after `registerHooks`, every registration is also announced to
 *   the application's fd/timeout hooks, which report back through
 *   `occurredFd` / `occurredTimeout`.
 *
 * Both may be used at once: every registration is reported by beforepoll
 * whether or not hooks are registered, and an occurrence reported twice
 * (once per style) is harmless because every fd callback is
 * level-triggered and a timeout fires at most once.
 *
 * Each hooked registration has a nexus object (the `forLib` handed to the
 * hook, like libxl's libxl__osevent_hook_nexus) that outlives the
 * registration, so a late occurredFd / occurredTimeout for something
 * xenchan already dropped is recognised and ignored instead of reaching a
 * stale callback.
 *
 * Internal API: event sources (plugins/osevent/domain_events.ts,
 * evtchn_watch.ts) call registerFd / registerTimeout; the application-facing
 * methods are re-exported, with the context's own checks, by EventContext.
 *
 * @module
 */
import { XenUsageError } from "../../core/errors.ts";
import { checkFunction, describe } from "../../core/validate.ts";
import { OsEventRegError } from "./errors.ts";
import {
  type BeforePollResult,
  type Clock,
  type OsEventHooks,
  type OsEventRef,
  POLL_ALWAYS,
  type PollFds,
} from "./types.ts";

const POLLFD_SIZE = 8;
const MAX_POLL_TIMEOUT = 0x7fffffff;

/** Called with the fd and the revents bits this registration cares about. */
export type FdCallback = (fd: number, revents: number) => void;

/** Called once when a timeout falls due. */
export type TimeoutCallback = () => void;

/** One fd registration, as seen by the event source that made it. */
export interface FdWatch {
  readonly fd: number;
  /** The poll events currently watched (0: registered but silent). */
  readonly events: number;
  /** Whether the registration still exists. */
  readonly live: boolean;
  /**
   * Changes the watched events (0 allowed). Throws OsEventRegError if the
   * application's fdModify hook throws (the old events stay), XenUsageError
   * for bad events or a dead watch.
   */
  modify(events: number): void;
  /**
   * Removes the registration (calls fdDeregister when hooked). Idempotent.
   * An exception from the fdDeregister hook is rethrown after the
   * registration is gone.
   */
  deregister(): void;
}

/** One timeout registration, as seen by the event source that made it. */
export interface TimeoutWatch {
  /** Absolute deadline on the registry's clock. */
  readonly deadline: number;
  /** True until it fired or was deregistered. */
  readonly armed: boolean;
  /**
   * Cancels the timeout if it has not fired (hooked: asks the application to
   * fire it now with timeoutModify(token, 0) and ignores that occurrence).
   * Idempotent; never throws (a failing timeoutModify only means the
   * application's timer fires at its old deadline, and that is ignored).
   */
  deregister(): void;
}

/** Counts for leak checks and benchmarks. */
export interface RegistryStats {
  /** Live fd registrations. */
  readonly fdWatches: number;
  /** Distinct fds with at least one live registration. */
  readonly fds: number;
  /** Armed timeouts. */
  readonly timeouts: number;
  /** Nexus objects handed to the application that it has not yet retired (timeouts awaiting occurredTimeout). */
  readonly awaitingOccurred: number;
  /** Whether hooks are registered. */
  readonly hooked: boolean;
}

class FdRec implements FdWatch {
  live = true;
  nexus: Nexus | null = null;
  constructor(
    readonly registry: OsEventRegistry,
    readonly fd: number,
    public events: number,
    readonly callback: FdCallback,
  ) {}
  modify(events: number): void {
    this.registry.modifyFd(this, events);
  }
  deregister(): void {
    this.registry.deregisterFd(this);
  }
}

class TimeoutRec implements TimeoutWatch {
  armed = true;
  nexus: Nexus | null = null;
  constructor(
    readonly registry: OsEventRegistry,
    readonly deadline: number,
    readonly seq: number,
    readonly callback: TimeoutCallback,
  ) {}
  deregister(): void {
    this.registry.deregisterTimeout(this);
  }
}

/** The forLib handed to hooks: survives its registration (see the module comment). */
class Nexus implements OsEventRef {
  token: unknown = undefined;
  /** Set once the application's side is finished with it (fd deregistered, timeout occurred). */
  retired = false;
  constructor(
    readonly kind: "fd" | "timeout",
    readonly registry: OsEventRegistry,
    public rec: FdRec | TimeoutRec | null,
  ) {}
}

/** See the module comment. Single-threaded; not shared between contexts. */
export class OsEventRegistry {
  readonly #clock: Clock;
  #hooks: OsEventHooks<unknown> | null = null;
  #hookDepth = 0;
  #closed = false;
  readonly #byFd = new Map<number, Set<FdRec>>();
  #fdWatches = 0;
  #heap: TimeoutRec[] = [];
  #armed = 0;
  #seq = 0;
  #awaiting = 0;
  #lastSlots: number[] = [];

  /** Creates an empty registry on `clock`. Throws nothing. */
  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** The clock deadlines are measured on. */
  get clock(): Clock {
    return this.#clock;
  }

  /** True while an application hook runs (occurredFd, occurredTimeout, beforepoll and afterpoll are refused then). */
  get inHook(): boolean {
    return this.#hookDepth > 0;
  }

  /** Whether hooks are registered. */
  get hooked(): boolean {
    return this.#hooks !== null;
  }

  // ---- registrations made by event sources -------------------------------

  /**
   * Registers interest in `events` on `fd` (several registrations per fd are
   * allowed; events 0 is allowed and generates nothing). `callback` runs
   * inside afterpoll / occurredFd with the revents bits it asked for plus
   * POLLERR/POLLHUP/POLLNVAL. Throws OsEventRegError when the fdRegister hook
   * throws (nothing is registered then), XenUsageError for a bad fd/events,
   * a callback that is not a function, or after shutdown().
   */
  registerFd(fd: number, events: number, callback: FdCallback): FdWatch {
    this.#checkOpen();
    checkFd(fd);
    checkEvents(events);
    checkFunction("callback", callback);
    const rec = new FdRec(this, fd, events, callback);
    if (this.#hooks) this.#hookFd(rec, this.#hooks);
    let set = this.#byFd.get(fd);
    if (!set) this.#byFd.set(fd, set = new Set());
    set.add(rec);
    this.#fdWatches++;
    return rec;
  }

  /**
   * Registers a timeout at absolute `deadline` on the clock (0 or any past
   * time means "as soon as possible"). `callback` runs once, inside afterpoll
   * or occurredTimeout. Throws OsEventRegError when the timeoutRegister hook
   * throws, XenUsageError for a non-finite deadline, a callback that is not
   * a function, or after shutdown().
   */
  registerTimeout(deadline: number, callback: TimeoutCallback): TimeoutWatch {
    this.#checkOpen();
    if (typeof deadline !== "number" || !Number.isFinite(deadline)) {
      throw new XenUsageError(`deadline must be a finite number of ms, got ${describe(deadline)}`);
    }
    checkFunction("callback", callback);
    const rec = new TimeoutRec(this, deadline, ++this.#seq, callback);
    if (this.#hooks) this.#hookTimeout(rec, this.#hooks);
    this.#heapPush(rec);
    this.#armed++;
    return rec;
  }

  /** FdWatch.modify; see there. */
  modifyFd(rec: FdRec, events: number): void {
    if (!rec.live) throw new XenUsageError(`fd ${rec.fd} watch was deregistered`);
    checkEvents(events);
    const nexus = rec.nexus;
    if (nexus && this.#hooks) {
      const hooks = this.#hooks;
      let token: unknown;
      try {
        token = this.#callHook(() => hooks.fdModify(rec.fd, nexus.token, events));
      } catch (error) {
        throw new OsEventRegError("fdModify", error);
      }
      if (token !== undefined) nexus.token = token;
    }
    rec.events = events;
  }

  /** FdWatch.deregister; see there. */
  deregisterFd(rec: FdRec): void {
    if (!rec.live) return;
    rec.live = false;
    this.#fdWatches--;
    const set = this.#byFd.get(rec.fd);
    set?.delete(rec);
    if (set?.size === 0) this.#byFd.delete(rec.fd);
    const nexus = rec.nexus;
    rec.nexus = null;
    if (!nexus) return;
    nexus.rec = null;
    nexus.retired = true;
    const hooks = this.#hooks;
    if (hooks) this.#callHook(() => hooks.fdDeregister(rec.fd, nexus.token));
  }

  /** TimeoutWatch.deregister; see there. */
  deregisterTimeout(rec: TimeoutRec): void {
    if (!rec.armed) return;
    rec.armed = false;
    this.#armed--;
    this.#orphan(rec);
  }

  // ---- the hooks style ----------------------------------------------------

  /**
   * Installs the application's hooks (libxl_osevent_register_hooks). Every
   * fd and timeout already registered is announced at once through
   * fdRegister / timeoutRegister. May be called only once per registry:
   * a second call throws XenUsageError. If a register hook throws, the
   * registrations announced so far are withdrawn (fdDeregister; timeouts
   * through timeoutModify(token, 0), their occurrence then ignored), no hooks
   * are installed, and OsEventRegError is thrown. XenUsageError also for
   * hooks missing a function, from inside a hook, or after shutdown().
   */
  registerHooks(hooks: OsEventHooks<unknown>): void {
    this.#checkOpen();
    this.#checkNotInHook("registerHooks");
    if (this.#hooks) throw new XenUsageError("registerHooks may be called only once per context");
    for (
      const name of [
        "fdRegister",
        "fdModify",
        "fdDeregister",
        "timeoutRegister",
        "timeoutModify",
      ] as const
    ) {
      if (typeof hooks?.[name] !== "function") {
        throw new XenUsageError(`hooks.${name} must be a function`);
      }
    }
    const fds = [...this.#byFd.values()].flatMap((set) => [...set]);
    const timeouts = this.#heap.filter((t) => t.armed).sort(compareTimeouts);
    const done: (FdRec | TimeoutRec)[] = [];
    try {
      for (const rec of fds) {
        this.#hookFd(rec, hooks);
        done.push(rec);
      }
      for (const rec of timeouts) {
        this.#hookTimeout(rec, hooks);
        done.push(rec);
      }
    } catch (error) {
      for (const rec of done) {
        const nexus = rec.nexus!;
        rec.nexus = null;
        nexus.rec = null;
        if (rec instanceof FdRec) {
          nexus.retired = true;
          try {
            this.#callHook(() => hooks.fdDeregister(rec.fd, nexus.token));
          } catch { /* rolling back: the first error is the one to report */ }
        } else {
          this.#awaiting++;
          try {
            this.#callHook(() => hooks.timeoutModify(nexus.token, 0));
          } catch { /* its occurrence at the old deadline is ignored */ }
        }
      }
      throw error;
    }
    this.#hooks = hooks;
  }

  /**
   * The application reports that `fd` (registered through fdRegister with
   * `forLib`) has `revents` (libxl_osevent_occurred_fd). `events` is what
   * the application polled for (informational; 0 is fine). A report for a
   * registration xenchan has since dropped is ignored. Runs the fd's
   * callbacks; their exceptions propagate. Throws XenUsageError when called
   * from inside a hook, for a forLib that is not an fd nexus of this
   * registry, or an fd that does not match it.
   */
  occurredFd(forLib: OsEventRef, fd: number, events: number, revents: number): void {
    this.#checkNotInHook("occurredFd");
    const nexus = this.#nexus(forLib, "fd", "occurredFd");
    checkEvents(events);
    checkEvents(revents);
    const rec = nexus.rec as FdRec | null;
    if (nexus.retired || !rec || !rec.live) return;
    if (rec.fd !== fd) {
      throw new XenUsageError(
        `occurredFd: fd ${fd} does not match the registration's fd ${rec.fd}`,
      );
    }
    this.#fireFd(rec, revents);
  }

  /**
   * The application reports that a timeout it registered through
   * timeoutRegister (or was asked to fire now through timeoutModify) has
   * occurred (libxl_osevent_occurred_timeout); the registration is gone
   * afterwards. A timeout xenchan had already cancelled or fired is retired
   * silently. Throws XenUsageError from inside a hook, for a forLib that is
   * not a timeout nexus of this registry, or when reported a second time.
   */
  occurredTimeout(forLib: OsEventRef): void {
    this.#checkNotInHook("occurredTimeout");
    const nexus = this.#nexus(forLib, "timeout", "occurredTimeout");
    if (nexus.retired) {
      throw new XenUsageError(
        "occurredTimeout: this timeout already occurred (it is deregistered on occurrence)",
      );
    }
    nexus.retired = true;
    const rec = nexus.rec as TimeoutRec | null;
    nexus.rec = null;
    if (!rec) {
      this.#awaiting--;
      return;
    }
    rec.nexus = null;
    if (!rec.armed) return;
    rec.armed = false;
    this.#armed--;
    rec.callback();
  }

  // ---- the poll-loop style --------------------------------------------------

  /**
   * libxl_osevent_beforepoll: fills `fds` with one slot per fd xenchan
   * watches (events merged per fd; fds whose registrations all have events 0
   * are left out) and lowers `timeout` (ms, -1 = infinite) to the time left
   * at `now` until the earliest deadline. Reports how many slots are needed;
   * when the array is too small nothing useful is written and `full` is true.
   * Throws XenUsageError from inside a hook or for a bad timeout.
   */
  beforepoll(fds: PollFds, timeout: number, now: number): BeforePollResult {
    this.#checkNotInHook("beforepoll");
    if (!Number.isInteger(timeout) || timeout < -1) {
      throw new XenUsageError(`timeout must be an integer >= -1 (ms), got ${describe(timeout)}`);
    }
    const wanted = new Map<number, number>();
    for (const [fd, set] of this.#byFd) {
      let events = 0;
      for (const rec of set) events |= rec.events;
      if (events !== 0) wanted.set(fd, events);
    }
    const earliest = this.#earliest();
    let result = timeout;
    if (earliest !== undefined) {
      const left = Math.min(MAX_POLL_TIMEOUT, Math.max(0, Math.ceil(earliest.deadline - now)));
      if (result < 0 || left < result) result = left;
    }
    const needed = wanted.size;
    if (needed > capacity(fds)) {
      this.#lastSlots = [];
      return { needed, full: true, timeout: result };
    }
    const slots: number[] = [];
    for (const [fd, events] of wanted) {
      writeSlot(fds, slots.length, fd, events);
      slots.push(fd);
    }
    this.#lastSlots = slots;
    return { needed, full: false, timeout: result };
  }

  /**
   * libxl_osevent_afterpoll: `fds` as filled by the last beforepoll and
   * then by poll(2); `now` on the registry's clock. Runs the callbacks of
   * every fd with revents, then every timeout due at `now`, earliest first.
   * Only the first `nfds` slots are read (default: as many as the last
   * beforepoll filled); a slot whose fd differs from what beforepoll wrote
   * there is ignored. Callback exceptions propagate (later callbacks then run
   * on the next afterpoll). Throws XenUsageError from inside a hook.
   */
  afterpoll(fds: PollFds, now: number, nfds?: number): void {
    this.#checkNotInHook("afterpoll");
    const slots = this.#lastSlots;
    const n = Math.min(nfds ?? slots.length, slots.length, capacity(fds));
    const ready: [number, number][] = [];
    for (let i = 0; i < n; i++) {
      const [fd, revents] = readSlot(fds, i);
      if (fd === slots[i] && revents !== 0) ready.push([fd, revents]);
    }
    for (const [fd, revents] of ready) {
      const set = this.#byFd.get(fd);
      if (!set) continue;
      for (const rec of [...set]) {
        if (rec.live) this.#fireFd(rec, revents);
      }
    }
    for (;;) {
      const rec = this.#earliest();
      if (!rec || rec.deadline > now) break;
      this.#heapPop();
      rec.armed = false;
      this.#armed--;
      this.#orphan(rec);
      rec.callback();
    }
  }

  // ---- lifetime -------------------------------------------------------------

  /**
   * Drops every registration (fdDeregister for hooked fds, timeoutModify
   * fire-now for hooked timeouts) and refuses new ones. Returns the
   * exceptions hooks threw meanwhile (it never throws). Idempotent.
   */
  shutdown(): unknown[] {
    const errors: unknown[] = [];
    if (this.#closed) return errors;
    this.#closed = true;
    for (const set of [...this.#byFd.values()]) {
      for (const rec of [...set]) {
        try {
          this.deregisterFd(rec);
        } catch (error) {
          errors.push(error);
        }
      }
    }
    for (const rec of this.#heap) {
      if (rec.armed) this.deregisterTimeout(rec);
    }
    this.#heap = [];
    this.#lastSlots = [];
    return errors;
  }

  /** Counts for leak checks. Throws nothing. */
  stats(): RegistryStats {
    return {
      fdWatches: this.#fdWatches,
      fds: this.#byFd.size,
      timeouts: this.#armed,
      awaitingOccurred: this.#awaiting,
      hooked: this.#hooks !== null,
    };
  }

  // ---- internals ------------------------------------------------------------

  #fireFd(rec: FdRec, revents: number): void {
    if (rec.events === 0) return;
    const bits = revents & (rec.events | POLL_ALWAYS);
    if (bits !== 0) rec.callback(rec.fd, bits);
  }

  #hookFd(rec: FdRec, hooks: OsEventHooks<unknown>): void {
    const nexus = new Nexus("fd", this, rec);
    try {
      nexus.token = this.#callHook(() => hooks.fdRegister(rec.fd, rec.events, nexus));
    } catch (error) {
      throw new OsEventRegError("fdRegister", error);
    }
    rec.nexus = nexus;
  }

  #hookTimeout(rec: TimeoutRec, hooks: OsEventHooks<unknown>): void {
    const nexus = new Nexus("timeout", this, rec);
    try {
      nexus.token = this.#callHook(() => hooks.timeoutRegister(rec.deadline, nexus));
    } catch (error) {
      throw new OsEventRegError("timeoutRegister", error);
    }
    rec.nexus = nexus;
  }

  /** Detaches a timeout from its nexus and asks the application to fire it now. */
  #orphan(rec: TimeoutRec): void {
    const nexus = rec.nexus;
    rec.nexus = null;
    if (!nexus) return;
    nexus.rec = null;
    this.#awaiting++;
    const hooks = this.#hooks;
    if (!hooks) return;
    try {
      const token = this.#callHook(() => hooks.timeoutModify(nexus.token, 0));
      if (token !== undefined) nexus.token = token;
    } catch {
      // The application's timer then fires at its old deadline; ignored.
    }
  }

  #callHook<R>(fn: () => R): R {
    this.#hookDepth++;
    try {
      return fn();
    } finally {
      this.#hookDepth--;
    }
  }

  #nexus(forLib: OsEventRef, kind: "fd" | "timeout", what: string): Nexus {
    if (!(forLib instanceof Nexus) || forLib.registry !== this || forLib.kind !== kind) {
      throw new XenUsageError(
        `${what}: forLib is not a ${kind} registration handed out by this context's hooks`,
      );
    }
    return forLib;
  }

  #checkNotInHook(what: string): void {
    if (this.#hookDepth > 0) {
      throw new XenUsageError(
        `${what} called from inside a register/modify/deregister hook: the application must not call ` +
          "occurredFd, occurredTimeout, beforepoll or afterpoll reentrantly from a hook; report the occurrence later, from its loop",
      );
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new XenUsageError("the event registry has been shut down");
  }

  #earliest(): TimeoutRec | undefined {
    while (this.#heap.length > 0 && !this.#heap[0].armed) this.#heapPop();
    return this.#heap[0];
  }

  #heapPush(rec: TimeoutRec): void {
    const heap = this.#heap;
    heap.push(rec);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (compareTimeouts(heap[parent], rec) <= 0) break;
      heap[i] = heap[parent];
      i = parent;
    }
    heap[i] = rec;
  }

  #heapPop(): void {
    const heap = this.#heap;
    const last = heap.pop()!;
    if (heap.length === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= heap.length) break;
      const r = l + 1;
      const child = r < heap.length && compareTimeouts(heap[r], heap[l]) < 0 ? r : l;
      if (compareTimeouts(last, heap[child]) <= 0) break;
      heap[i] = heap[child];
      i = child;
    }
    heap[i] = last;
  }
}

function compareTimeouts(a: TimeoutRec, b: TimeoutRec): number {
  return a.deadline - b.deadline || a.seq - b.seq;
}

function checkFd(fd: number): void {
  if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
    throw new XenUsageError(`fd must be a non-negative int, got ${describe(fd)}`);
  }
}

function checkEvents(events: number): void {
  if (!Number.isInteger(events) || events < 0 || events > 0xffff) {
    throw new XenUsageError(
      `poll events must be an integer from 0 to 0xffff, got ${describe(events)}`,
    );
  }
}

function capacity(fds: PollFds): number {
  if (fds instanceof Uint8Array) return Math.floor(fds.byteLength / POLLFD_SIZE);
  if (Array.isArray(fds)) return fds.length;
  throw new XenUsageError(
    `fds must be an array of {fd, events, revents} or a Uint8Array of struct pollfd, got ${
      describe(fds)
    }`,
  );
}

function writeSlot(fds: PollFds, i: number, fd: number, events: number): void {
  if (fds instanceof Uint8Array) {
    const view = new DataView(fds.buffer, fds.byteOffset, fds.byteLength);
    view.setInt32(i * POLLFD_SIZE, fd, true);
    view.setInt16(i * POLLFD_SIZE + 4, events << 16 >> 16, true);
    view.setInt16(i * POLLFD_SIZE + 6, 0, true);
    return;
  }
  const slot = fds[i];
  if (slot && typeof slot === "object") {
    slot.fd = fd;
    slot.events = events;
    slot.revents = 0;
  } else {
    fds[i] = { fd, events, revents: 0 };
  }
}

function readSlot(fds: PollFds, i: number): [number, number] {
  if (fds instanceof Uint8Array) {
    const view = new DataView(fds.buffer, fds.byteOffset, fds.byteLength);
    return [view.getInt32(i * POLLFD_SIZE, true), view.getUint16(i * POLLFD_SIZE + 6, true)];
  }
  const slot = fds[i];
  if (!slot || typeof slot !== "object") return [-1, 0];
  return [slot.fd, slot.revents & 0xffff];
}
