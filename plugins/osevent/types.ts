/**
 * The vocabulary of xenchan's libxl-style event machinery: event types and
 * masks, the events themselves, the application's hooks (the
 * libxl_osevent_hooks of tools/include/libxl_event.h), poll slots and the
 * clock. Plain types and constants; only eventMask throws (XenUsageError).
 *
 * Numbering follows libxl_types.idl (libxl_event_type): DOMAIN_SHUTDOWN = 1,
 * DOMAIN_DEATH = 2, DISK_EJECT = 3 (the RFC's DOMAIN_DESTROY is the
 * pre-rename name of DOMAIN_DEATH and is not provided), OPERATION_COMPLETE =
 * 4 and DOMAIN_CREATE_CONSOLE_AVAILABLE = 5 (reserved: xenchan never
 * generates them). EVTCHN_PORT = 16 is xenchan's own: a port became pending
 * on a watched event channel handle.
 *
 * @module
 */
import { POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT } from "../../core/driver.ts";
import { checkInteger } from "../../core/validate.ts";

export { POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT };

/** poll(2) bits that are reported whatever `events` asked for. */
export const POLL_ALWAYS: number = POLLERR | POLLHUP | POLLNVAL;

/** Event types (libxl_event_type values, plus xenchan's EVTCHN_PORT). */
export const EventType: {
  readonly DOMAIN_SHUTDOWN: 1;
  readonly DOMAIN_DEATH: 2;
  readonly DISK_EJECT: 3;
  readonly OPERATION_COMPLETE: 4;
  readonly DOMAIN_CREATE_CONSOLE_AVAILABLE: 5;
  readonly EVTCHN_PORT: 16;
} = Object.freeze(
  {
    DOMAIN_SHUTDOWN: 1,
    DOMAIN_DEATH: 2,
    DISK_EJECT: 3,
    OPERATION_COMPLETE: 4,
    DOMAIN_CREATE_CONSOLE_AVAILABLE: 5,
    EVTCHN_PORT: 16,
  } as const,
);

/** One of the EventType values. */
export type EventTypeValue = (typeof EventType)[keyof typeof EventType];

/**
 * The mask bit of one event type: `1 << type` (libxl's typemask
 * convention). Throws XenUsageError for a type that is not an integer 0..31.
 */
export function eventMask(...types: EventTypeValue[]): number {
  let mask = 0;
  for (const [i, t] of types.entries()) mask |= 1 << checkInteger(`types[${i}]`, t, 0, 31);
  return mask >>> 0;
}

/** Every event type (LIBXL_EVENTMASK_ALL). */
export const EVENTMASK_ALL = 0xffffffff;

/** Fields every event carries. */
export interface EventBase {
  /** The domain the event is about (for EVTCHN_PORT: the handle's domain, -1 if unknown). */
  readonly domid: number;
  /**
   * The user value given when the event was enabled (libxl's for_user),
   * returned untouched: any JavaScript value (a bigint, a string, an object).
   */
  readonly forUser: unknown;
}

/** DOMAIN_SHUTDOWN: the domain shut down; it still exists until DOMAIN_DEATH. */
export interface DomainShutdownEvent extends EventBase {
  readonly type: typeof EventType.DOMAIN_SHUTDOWN;
  /** SHUTDOWN_* code (xen/include/public/sched.h): 0 poweroff, 1 reboot, 2 suspend, 3 crash, 4 watchdog, 5 soft_reset. */
  readonly shutdownReason: number;
  /** The reason's name ("poweroff", ...), or "unknown". */
  readonly shutdownReasonName: string;
}

/** DOMAIN_DEATH: the domain became dying (destroyed); no more events come for it. */
export interface DomainDeathEvent extends EventBase {
  readonly type: typeof EventType.DOMAIN_DEATH;
}

/** DISK_EJECT: the guest ejected the media of `vdev`. */
export interface DiskEjectEvent extends EventBase {
  readonly type: typeof EventType.DISK_EJECT;
  /** The vdev exactly as given to enableDiskEject. */
  readonly vdev: string;
}

/**
 * EVTCHN_PORT (xenchan's own): `port` became pending on a watched handle.
 * The port is masked, as after EventChannels.pending(), until
 * `handle.unmask(port)` (or automatically when the watch was made with
 * `autoUnmask`).
 */
export interface EvtchnPortEvent extends EventBase {
  readonly type: typeof EventType.EVTCHN_PORT;
  readonly port: number;
  /** The watched handle. */
  readonly handle: PendingPortSource;
}

/** Every event the context can deliver. */
export type XenEvent = DomainShutdownEvent | DomainDeathEvent | DiskEjectEvent | EvtchnPortEvent;

/**
 * A predicate over events (libxl's predicate): true selects the event. It
 * must not call into the context.
 */
export type EventPredicate = (event: XenEvent) => boolean;

/**
 * An indexed selection: every given field must be equal (forUser with
 * Object.is). Lookups by `domid` or by `forUser` use an index, so they cost
 * O(1) however many other events are queued or waiters wait.
 */
export interface EventFilter {
  readonly domid?: number;
  readonly forUser?: unknown;
}

/** What eventCheck / eventWait / events accept as their second argument. */
export type EventSelector = EventPredicate | EventFilter | undefined | null;

/**
 * The part of an event channel handle that a watch needs;
 * core/event_channels.ts EventChannels satisfies it.
 */
export interface PendingPortSource {
  /** The pollable descriptor; read while open. */
  readonly fd: number;
  /** Whether the handle has been closed. */
  readonly closed: boolean;
  /** A pending port (masked), or null when none is pending; never blocks. */
  tryPending(): number | null;
  /** Re-enables delivery on `port`. */
  unmask(port: number): void;
}

/** A millisecond clock. Deadlines handed to hooks are absolute on it. */
export interface Clock {
  /** The current time in milliseconds. */
  now(): number;
}

/**
 * The opaque value xenchan hands to a register hook (libxl's for_libxl) and
 * that the application passes back to occurredFd / occurredTimeout.
 */
export interface OsEventRef {
  readonly kind: "fd" | "timeout";
}

/**
 * The application's hooks (libxl_osevent_hooks, post-2013 contract). `T` is
 * the application's registration token (for_app_registration): whatever a
 * register hook returns is kept and passed back to modify/deregister.
 *
 * Rules (from libxl_event.h):
 * - `events` is as for poll(2) and may be 0: the registration must then
 *   still work, just generate no events.
 * - xenchan may register more than one watch on one fd; each gets its own
 *   register call, token and `forLib`.
 * - A register hook that throws leaves nothing registered; xenchan wraps
 *   the exception in OsEventRegError (cause = the exception) and passes it
 *   to the caller of the operation that needed the registration. A modify
 *   hook that throws leaves the old events and token.
 * - `deadline` is absolute on the context's clock. `timeoutModify` is only
 *   ever called with deadline 0, meaning "fire as soon as possible"; xenchan
 *   never deregisters a timeout (there is no timeoutDeregister): instead it
 *   asks for it to fire now, and the application must still call
 *   occurredTimeout for it, after which the registration is gone. A
 *   timeoutModify may race with the application's own occurredTimeout call;
 *   both orders are fine.
 * - The hooks may be called from inside any context method, including
 *   occurredFd / occurredTimeout / afterpoll. They must NOT call
 *   occurredFd / occurredTimeout / beforepoll / afterpoll themselves (that
 *   is refused with XenUsageError); call them later, from the loop.
 */
export interface OsEventHooks<T = unknown> {
  /** Start watching `fd` for `events`; returns the token. */
  fdRegister(fd: number, events: number, forLib: OsEventRef): T;
  /** Change the events watched; return a new token, or undefined to keep the old one. */
  fdModify(fd: number, token: T, events: number): T | undefined;
  /** Stop watching; the token is dead afterwards. */
  fdDeregister(fd: number, token: T): void;
  /** Call occurredTimeout(forLib) once the clock reaches `deadline`; returns the token. */
  timeoutRegister(deadline: number, forLib: OsEventRef): T;
  /** Only ever deadline 0: fire as soon as possible. Return a new token or undefined. */
  timeoutModify(token: T, deadline: 0): T | undefined;
}

/** One struct pollfd as a JavaScript object (the array form of beforepoll). */
export interface PollSlot {
  fd: number;
  events: number;
  revents: number;
}

/**
 * The fds argument of beforepoll/afterpoll: either an array of PollSlot
 * objects (its length is the capacity) or a struct pollfd array in memory,
 * 8 bytes per slot, native little-endian (its byteLength / 8 is the
 * capacity), which can be passed to poll(2) as is.
 */
export type PollFds = PollSlot[] | Uint8Array;

/** What beforepoll reports. */
export interface BeforePollResult {
  /**
   * How many slots xenchan needs (libxl's updated *nfds_io). When it is
   * larger than the capacity, `full` is true and the slots are unspecified:
   * grow the array to at least `needed` and call again.
   */
  readonly needed: number;
  /** True when the array was too small (libxl's ERROR_BUFFERFULL). */
  readonly full: boolean;
  /**
   * The timeout to pass to poll(2), in ms: the caller's timeout, lowered to
   * the time left until xenchan's earliest deadline; -1 means none.
   */
  readonly timeout: number;
}
