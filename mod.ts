/**
 * xenchan: Xen event channels and grant tables for Deno and Bun.
 *
 * In a Xen dom0 the handles drive the real hypervisor through
 * libxenevtchn.so.1 and libxengnttab.so.1; anywhere else the same API runs
 * on a faithful simulator. `backend: "auto"` (the default) picks the real
 * libraries when they load and /dev/xen/evtchn opens, the simulator
 * otherwise, and `selectBackend()` says why.
 *
 * @example
 * ```ts
 * import { openEventChannels } from "./mod.ts";
 * await using a = await openEventChannels();
 * await using b = await openEventChannels();
 * const port = a.bindUnboundPort(0);
 * const peer = b.bindInterdomain(0, port);
 * b.unmask(await b.pending()); // Xen marks a fresh interdomain port pending once
 * a.notify(port);
 * const got = await b.pending(); // === peer, masked until unmask
 * b.unmask(got);
 * ```
 *
 * @module
 */
import { connectXenStoreTransport, createFfiBackend } from "./ffi/mod.ts";
export { ffiLibraryFacts } from "./ffi/mod.ts";
import { XenStore } from "./core/xenstore/client.ts";
import type { XenStoreTransport } from "./core/xenstore/transport.ts";
export { DomainControl, type DomainFlags, type DomainInfo, openDomainControl } from "./ffi/mod.ts";
export { serveXenStoreSocket } from "./ffi/mod.ts";
export type { XenStoreSocketOptions, XenStoreSocketServer } from "./ffi/mod.ts";
import type { BackendKind, XenBackend } from "./core/driver.ts";
import { LibraryNotFoundError, XenCallError, XenUsageError } from "./core/errors.ts";
import { EventChannels } from "./core/event_channels.ts";
import { checkOptions, describe } from "./core/validate.ts";
import { GrantShare, GrantTable } from "./core/grants.ts";
import { defaultSimulatorBackend } from "./sim/mod.ts";

export type {
  BackendKind,
  ForeignMemory,
  GrantCopyPointer,
  GrantCopySegment,
  XenBackend,
} from "./core/driver.ts";
export { PAGE_SIZE } from "./core/driver.ts";
export {
  ClosedHandleError,
  LibraryNotFoundError,
  XenCallError,
  XenError,
  XenUsageError,
} from "./core/errors.ts";
export { EventChannels } from "./core/event_channels.ts";
export { DEFAULT_TRANSACTION_ATTEMPTS, XenStore } from "./core/xenstore/client.ts";
export type {
  XenStoreOperations,
  XenStoreTransaction,
  XenStoreTransactionOptions,
  XenStoreWatchEvent,
  XenStoreWatchOptions,
} from "./core/xenstore/client.ts";
export { XenStoreError } from "./core/xenstore/errors.ts";
export {
  formatPermissions,
  parsePermissions,
  type XenStoreAccess,
  type XenStorePermission,
} from "./core/xenstore/permissions.ts";
export type {
  XenStoreServer,
  XenStoreTransport,
  XenStoreTransportKind,
  XenStoreTransportSink,
} from "./core/xenstore/transport.ts";
export type { XenStoreErrorName } from "./core/xenstore/wire.ts";
export type { EventChannelHoldings, WaitOptions } from "./core/event_channels.ts";
export { GrantMapping, GrantShare, GrantTable, SharedGrant } from "./core/grants.ts";
export { setLeakReporter, warnLeak } from "./core/lifetimes.ts";
export type { LeakKind, LeakReport, LeakReporter } from "./core/lifetimes.ts";
export type { AccessOptions, GrantHoldings, GrantRef, NotifyOptions } from "./core/grants.ts";
export { defaultSimulator, SimHypervisor } from "./sim/mod.ts";
export { SimXenStore, XENSTORED_DEFAULT_QUOTAS } from "./sim/mod.ts";
export type { SimXenStoreOptions, SimXenStoreQuotas } from "./sim/mod.ts";
export type {
  DomainOptions,
  SimDomainEvent,
  SimDomainInfo,
  SimHypervisorOptions,
} from "./sim/mod.ts";

/**
 * Which backend to use: "auto" (default), "ffi" (the real libraries; fails
 * off Xen), "sim" (the process-wide default simulator, acting as dom0), or a
 * XenBackend object (for example a simulated domain's backend).
 */
export type BackendChoice = "auto" | "ffi" | "sim" | XenBackend;

/** Options accepted by every open* function. */
export interface OpenOptions {
  readonly backend?: BackendChoice;
}

/** The outcome of backend selection. */
export interface BackendSelection {
  readonly backend: XenBackend;
  readonly kind: BackendKind;
  /** Why this backend was chosen, in words a user can act on. */
  readonly reason: string;
}

let autoSelection: Promise<BackendSelection> | undefined;

/**
 * Resolves a BackendChoice. "ffi" rejects with LibraryNotFoundError when a
 * library is missing; "auto" never rejects for a missing library, device or
 * permission: it falls back to the simulator and gives the reason. The
 * "auto" result is computed once per process. Anything that is neither
 * one of the three names nor a XenBackend object (kind "ffi" or "sim" and
 * the three open* functions), such as `{}`, null or "xyz", rejects with
 * XenUsageError naming the value.
 */
export function selectBackend(choice: BackendChoice = "auto"): Promise<BackendSelection> {
  if (typeof choice === "object" && choice !== null) {
    const problem = backendObjectProblem(choice);
    if (problem) return Promise.reject(new XenUsageError(`backend ${problem}`));
    return Promise.resolve({
      backend: choice,
      kind: choice.kind,
      reason: "backend object given by the caller",
    });
  }
  switch (choice) {
    case "ffi":
      return createFfiBackend().then((backend) => ({
        backend,
        kind: "ffi",
        reason: 'backend "ffi" requested',
      }));
    case "sim":
      return Promise.resolve(simulatorSelection('backend "sim" requested'));
    case "auto":
      autoSelection ??= selectAuto();
      return autoSelection;
    default:
      return Promise.reject(
        new XenUsageError(
          `backend must be "auto", "ffi", "sim" or a XenBackend object, got ${describe(choice)}`,
        ),
      );
  }
}

/** Why `value` is not a XenBackend, or "" when it looks like one. */
function backendObjectProblem(value: object): string {
  const b = value as Partial<Record<keyof XenBackend, unknown>>;
  if (b.kind !== "ffi" && b.kind !== "sim") {
    return `object must have kind "ffi" or "sim", got kind ${describe(b.kind)}`;
  }
  for (const name of ["openEventChannels", "openGrantTable", "openGrantShare"] as const) {
    if (typeof b[name] !== "function") {
      return `object must have an ${name}() method, got ${describe(b[name])}`;
    }
  }
  return "";
}

function simulatorSelection(reason: string): BackendSelection {
  return { backend: defaultSimulatorBackend(), kind: "sim", reason };
}

async function selectAuto(): Promise<BackendSelection> {
  try {
    const backend = await createFfiBackend();
    backend.openEventChannels().close();
    return {
      backend,
      kind: "ffi",
      reason: `real Xen: ${backend.description}, /dev/xen/evtchn opened`,
    };
  } catch (error) {
    return simulatorSelection(`simulator, because ${whyNotFfi(error)}`);
  }
}

/** Explains in one phrase why the FFI backend is not usable. */
function whyNotFfi(error: unknown): string {
  if (error instanceof LibraryNotFoundError) return error.message;
  if (error instanceof XenCallError) {
    if (error.code === "ENOENT") {
      return "/dev/xen/evtchn does not exist (not a Xen dom0, or the xen-evtchn module is not loaded)";
    }
    if (error.code === "EACCES" || error.code === "EPERM") {
      return "no permission to open /dev/xen/evtchn (run as root)";
    }
    return `opening /dev/xen/evtchn failed: ${error.message}`;
  }
  const name = (error as { name?: string } | null)?.name;
  if (name === "NotCapable" || name === "PermissionDenied") {
    return "FFI is not permitted (run deno with --allow-ffi, or -P with this project's deno.json)";
  }
  return `the FFI backend is unavailable: ${(error as Error)?.message ?? String(error)}`;
}

/**
 * Opens an event channel handle on the chosen backend. Rejects with
 * XenCallError (ENOENT: no /dev/xen/evtchn; EACCES: not root) for "ffi",
 * LibraryNotFoundError when libxenevtchn is missing, XenUsageError for
 * options that are not an object (null included) or an unknown backend.
 * The caller owns the handle: close it or use `using`.
 */
export async function openEventChannels(options?: OpenOptions): Promise<EventChannels> {
  const { backend, kind } = await selectBackend(checkOptions("options", options).backend);
  return new EventChannels(kind, backend.openEventChannels());
}

/**
 * Opens a grant table (consumer) handle. Rejects like openEventChannels
 * (the device is /dev/xen/gntdev). The caller owns the handle.
 */
export async function openGrantTable(options?: OpenOptions): Promise<GrantTable> {
  const { backend, kind } = await selectBackend(checkOptions("options", options).backend);
  return new GrantTable(kind, backend.openGrantTable());
}

/**
 * Opens a grant share (producer) handle. Rejects like openEventChannels
 * (the device is /dev/xen/gntalloc). The caller owns the handle.
 */
export async function openGrantShare(options?: OpenOptions): Promise<GrantShare> {
  const { backend, kind } = await selectBackend(checkOptions("options", options).backend);
  return new GrantShare(kind, backend.openGrantShare());
}

/** Options of openXenStore. */
export interface OpenXenStoreOptions extends OpenOptions {
  /**
   * A socket or device path to connect to (a unix socket is connected to,
   * anything else opened as a xenbus device). Given a path, `backend` is
   * not consulted.
   */
  readonly path?: string;
}

/**
 * Opens a XenStore connection. With `path`, that socket or device. Otherwise
 * by backend: "ffi" connects like libxenstore's xs_open (the socket
 * $XENSTORED_PATH, else ${XENSTORED_RUNDIR:-/var/run/xenstored}/socket,
 * then /dev/xen/xenbus, then /proc/xen/xenbus); "sim" connects to the
 * default simulator's xenstored as dom0; a XenBackend object uses its
 * openXenStoreTransport (a simulated domain's backend connects with that
 * domain's identity); "auto" (default) uses "ffi" when a socket or device
 * connects, else "sim". Rejects with XenStoreError (op "CONNECT": ENOENT
 * nothing to connect to, EACCES not root, ECONNREFUSED no daemon behind the
 * socket), XenUsageError for a backend without XenStore or a bad option.
 * The caller owns the handle: close it or use `using`.
 */
export async function openXenStore(openOptions?: OpenXenStoreOptions): Promise<XenStore> {
  const options = checkOptions("options", openOptions);
  if (options.path !== undefined) {
    if (typeof options.path !== "string" || options.path === "") {
      throw new XenUsageError(`path must be a non-empty string, got ${String(options.path)}`);
    }
    return new XenStore(await connectXenStoreTransport({ path: options.path }));
  }
  const choice = options.backend ?? "auto";
  if (choice === "ffi") return new XenStore(await connectXenStoreTransport());
  if (choice === "auto") {
    try {
      return new XenStore(await connectXenStoreTransport());
    } catch {
      // Nothing real to connect to, or no permission to: the simulator.
      return new XenStore(await transportOf(defaultSimulatorBackend()));
    }
  }
  if (choice === "sim") return new XenStore(await transportOf(defaultSimulatorBackend()));
  if (typeof choice === "object" && choice !== null) return new XenStore(await transportOf(choice));
  throw new XenUsageError(
    `backend must be "auto", "ffi", "sim" or a XenBackend, got ${String(choice)}`,
  );
}

function transportOf(backend: XenBackend): XenStoreTransport | Promise<XenStoreTransport> {
  if (typeof backend.openXenStoreTransport !== "function") {
    throw new XenUsageError(
      `backend ${backend.description} has no XenStore (openXenStoreTransport)`,
    );
  }
  return backend.openXenStoreTransport();
}
