/**
 * The native layer's public face: what the layers above ffi/ (plugins/,
 * mod.ts, bench/) may use. Everything else in ffi/ is internal to it: the
 * symbol tables, the Deno and Bun adapters, the backend's driver classes.
 *
 * @module
 */
export {
  connectXenStoreTransport,
  createFfiBackend,
  ffiLibraryFacts,
  type XenStoreConnectOptions,
} from "./backend.ts";
export { openXenbus, XENBUS_DEVICES, XENBUS_PAYLOAD_MAX, type XenbusOptions } from "./xenbus.ts";
export {
  connectXenStoreSocket,
  XENSTORED_RUNDIR_DEFAULT,
  xenstoredSocketPath,
  type XenStoreSocketConnectOptions,
} from "./xenstore_socket.ts";
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
import { siblingModuleUrl } from "./module_url.ts";
export { FdPoller, type PollerStats, sharedPoller } from "./poller.ts";
export type { Ptr } from "./types.ts";
export {
  serveXenStoreSocket,
  type XenStoreSocketOptions,
  type XenStoreSocketServer,
} from "./xenstore_server.ts";

/**
 * The URL of the Bun poll Worker script (one blocking poll(2) per message).
 * Exposed for bench/osevent_dispatch.ts, which measures one Worker per
 * handle against the shared poller. Ends in .ts in the sources and in .js in
 * the built npm package (ffi/module_url.ts).
 */
export const POLL_WORKER_URL: string = siblingModuleUrl("./poll_worker", import.meta.url);
