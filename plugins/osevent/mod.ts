/**
 * xenchan's libxl-style event machinery (tools/include/libxl_event.h):
 * the OS-event registry with its two application styles (poll-loop and
 * hooks), built-in loops for Deno, Bun and the simulator's virtual clock,
 * and the event API (eventCheck / eventWait / events / registerCallbacks,
 * DOMAIN_SHUTDOWN, DOMAIN_DEATH, DISK_EJECT, and EVTCHN_PORT for watched
 * event channel handles).
 *
 * This module is published on its own, as the package's "./osevent" export
 * (deno.json); the top-level mod.ts does not re-export it. Nothing here is
 * runtime-specific except runtime_loop.ts and eventfd.ts, which go through
 * ffi/mod.ts.
 *
 * @example
 * ```ts
 * const hv = new SimHypervisor();
 * using ctx = new EventContext({ clock: hv.clock, domains: simDomainSource(hv) });
 * attachSimClockLoop(ctx);
 * const d = hv.createDomain();
 * ctx.enableDomainDeath(d, "guest-1");
 * hv.shutdown(d, "reboot");
 * const ev = await ctx.eventWait(eventMask(EventType.DOMAIN_SHUTDOWN), { domid: d });
 * ```
 *
 * @module
 */
export {
  type DisasterHandler,
  type EventCallbacks,
  EventContext,
  type EventContextOptions,
  type EventContextStats,
  eventTypeName,
  type EventWaitOptions,
  SYSTEM_CLOCK,
} from "./context.ts";
export {
  DiskEjectEnable,
  DomainDeathEnable,
  type DomainEventSource,
  type DomainState,
  type RawDomainEvent,
  shutdownReasonName,
  type SourceFailure,
} from "./domain_events.ts";
export { DisasterError, OsEventRegError } from "./errors.ts";
export { EventFdPortSource } from "./eventfd.ts";
export { EventFd } from "../../ffi/mod.ts";
export { EventChannelWatch, type EventChannelWatchOptions } from "./evtchn_watch.ts";
export {
  LibxlDomainSource,
  LibxlHost,
  type LibxlHostStats,
  type LibxlLike,
  type LibxlOpener,
  type LibxlRegistration,
  type LibxlSourceOptions,
  type LibxlSourceStats,
  openLibxlSource,
} from "./libxl_source.ts";
export {
  LibxlContext,
  type LibxlDomainInfo,
  LibxlError,
  type LibxlEvent,
  type LibxlLogLevel,
  type LibxlLogSink,
} from "../../ffi/mod.ts";
export {
  BuiltinLoop,
  type BuiltinLoopOptions,
  type BuiltinLoopStats,
  type FdWaiter,
  type LoopTimers,
  REAL_TIMERS,
} from "./loop.ts";
export type {
  FdCallback,
  FdWatch,
  RegistryStats,
  TimeoutCallback,
  TimeoutWatch,
} from "./registry.ts";
export {
  attachBunLoop,
  attachDenoLoop,
  attachRuntimeLoop,
  type RuntimeLoopOptions,
  runtimeName,
} from "./runtime_loop.ts";
export {
  attachSimClockLoop,
  type SimClockLoopOptions,
  type VirtualTimerClock,
  virtualTimers,
} from "./sim_clock_loop.ts";
export {
  type SimDomainEventsLike,
  simDomainInfo,
  type SimDomainListLike,
  simDomainSource,
  simReleaseDomainWatch,
} from "./sim_domains.ts";
export {
  type DomainInfoProvider,
  type DomainStatusLike,
  RELEASE_DOMAIN,
  type ReleaseDomainWatcher,
  XenDomainSource,
  xenDomainSource,
  type XenDomainSourceOptions,
  type XenDomainSourceStats,
} from "./xen_domains.ts";
export * from "./types.ts";
