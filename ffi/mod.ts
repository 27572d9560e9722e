/**
 * The native layer's public face: what the layers above ffi/ (plugins/,
 * mod.ts, bench/) may use. Everything else in ffi/ is internal to it: the
 * symbol tables, the Deno and Bun adapters, the backend's driver classes.
 *
 * @module
 */
export { createFfiBackend, ffiLibraryFacts } from "./backend.ts";
export {
  DomainControl,
  type DomainFlags,
  type DomainInfo,
  DOMAININFO_LAYOUT,
  DOMINF,
  openDomainControl,
  parseDomainInfo,
} from "./domain_control.ts";
export {
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  EFD_SEMAPHORE,
  EventFd,
  EVENTFD_MAX,
  type EventFdOptions,
  type EventFdWaitOptions,
} from "./eventfd.ts";
export {
  cString,
  type LibcLibrary,
  loadLibc,
  loadXenLibraries,
  type XenLibraries,
} from "./load.ts";
export {
  ERROR_DOMAIN_NOTFOUND,
  ERROR_OSEVENT_REG_FAIL,
  LIBXL_ERRORS,
  LIBXL_EVENT_TYPE,
  LIBXL_LAYOUT,
  LIBXL_LOG_LEVELS,
  LibxlContext,
  type LibxlDeathWatch,
  type LibxlDomainInfo,
  LibxlError,
  libxlErrorName,
  type LibxlEvent,
  type LibxlLogLevel,
  type LibxlLogSink,
  type LibxlOptions,
  type LibxlOsEventHooks,
  type LibxlStats,
  openLibxl,
  parseLibxlDominfo,
  parseLibxlEvent,
  SIGCHLD_OWNER_MAINLOOP,
} from "./libxl.ts";
export { FdPoller, sharedPoller } from "./poller.ts";
export type { Ptr } from "./types.ts";

/**
 * The URL of the Bun poll Worker script (one blocking poll(2) per message).
 * Exposed for bench/osevent_dispatch.ts, which measures one Worker per
 * handle against the shared poller.
 */
export const POLL_WORKER_URL: string = new URL("./poll_worker.ts", import.meta.url).href;
