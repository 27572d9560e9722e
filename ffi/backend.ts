/**
 * The FFI backend: the real libxenevtchn and libxengnttab behind the
 * XenBackend interface, and the real XenStore connections.
 *
 * @module
 */
import { stat } from "node:fs/promises";
import { XenCallError } from "../core/errors.ts";
import { XenStoreError } from "../core/xenstore/errors.ts";
import type { XenStoreTransport } from "../core/xenstore/transport.ts";
import { openXenbus } from "./xenbus.ts";
import { connectXenStoreSocket, xenstoredSocketPath } from "./xenstore_socket.ts";
import type {
  EventChannelDriver,
  GrantShareDriver,
  GrantTableDriver,
  XenBackend,
} from "../core/driver.ts";
import { FfiEventChannels } from "./event_channels.ts";
import { FfiGrantShare, FfiGrantTable } from "./grants.ts";
import { loadXenLibraries, type XenLibraries } from "./load.ts";
import { type FdPoller, sharedPoller } from "./poller.ts";

class FfiBackend implements XenBackend {
  readonly kind = "ffi";
  readonly description: string;
  readonly #libs: XenLibraries;
  readonly #poller: FdPoller;

  constructor(libs: XenLibraries) {
    this.#libs = libs;
    this.#poller = sharedPoller(libs);
    this.description = `${libs.runtime.name} FFI over ${libs.evtchn.path} and ${libs.gnttab.path}`;
  }

  openEventChannels(): EventChannelDriver {
    return new FfiEventChannels(this.#libs, this.#poller);
  }

  openGrantTable(): GrantTableDriver {
    return new FfiGrantTable(this.#libs);
  }

  openGrantShare(): GrantShareDriver {
    return new FfiGrantShare(this.#libs);
  }

  openXenStoreTransport(): Promise<XenStoreTransport> {
    return connectXenStoreTransport();
  }
}

/** Options of connectXenStoreTransport. */
export interface XenStoreConnectOptions {
  /**
   * A socket or device path. A unix socket is connected to, anything else
   * is opened as a xenbus device (libxenstore's get_handle does the same).
   */
  readonly path?: string;
}

/**
 * A real XenStore connection, in libxenstore's order (xs_open, xs.c:360-370):
 * with `path`, that socket or device; otherwise the xenstored socket
 * (xenstoredSocketPath()), then /dev/xen/xenbus, then /proc/xen/xenbus.
 * Resolves with a transport the caller owns. Rejects with XenStoreError
 * (op "CONNECT") naming every place tried and the last error's code
 * (ENOENT: no daemon socket and no device, EACCES: not root), or Deno's
 * NotCapable without the needed permissions.
 */
export async function connectXenStoreTransport(
  options: XenStoreConnectOptions = {},
): Promise<XenStoreTransport> {
  if (options.path !== undefined) {
    const isSocket = await stat(options.path).then((s) => s.isSocket(), () => false);
    return isSocket
      ? await connectXenStoreSocket({ path: options.path })
      : await openXenbus({ path: options.path }).catch((error) => {
        throw asConnectError(options.path!, error);
      });
  }
  const failures: string[] = [];
  let code = "ENOENT";
  const socketPath = xenstoredSocketPath();
  try {
    return await connectXenStoreSocket({ path: socketPath });
  } catch (error) {
    if (!(error instanceof XenStoreError)) throw error;
    failures.push(`${socketPath}: ${error.code}`);
    code = error.code;
  }
  try {
    return await openXenbus();
  } catch (error) {
    if (!(error instanceof XenCallError)) throw error;
    failures.push(`xenbus device: ${error.code}`);
    if (error.code !== "ENOENT" || code === "ECONNREFUSED") code = error.code;
  }
  throw new XenStoreError(
    code,
    "CONNECT",
    undefined,
    `no XenStore reachable (${failures.join("; ")})`,
  );
}

function asConnectError(path: string, error: unknown): unknown {
  return error instanceof XenCallError
    ? new XenStoreError(error.code, "CONNECT", path, error.message)
    : error;
}

/**
 * Loads the real libraries and returns the FFI backend. Rejects with
 * LibraryNotFoundError when a library is missing. Opening a handle (not this
 * call) is what fails off Xen, with XenCallError code ENOENT.
 */
export async function createFfiBackend(): Promise<XenBackend> {
  return new FfiBackend(await loadXenLibraries());
}

/**
 * The FFI libraries' own facts for probes and tests: which runtime adapter,
 * which library paths, and whether the optional (newer) symbols exist.
 */
export async function ffiLibraryFacts(): Promise<{
  runtime: string;
  evtchn: string;
  gnttab: string;
  optional: Record<string, boolean>;
}> {
  const libs = await loadXenLibraries();
  return {
    runtime: libs.runtime.name,
    evtchn: libs.evtchn.path,
    gnttab: libs.gnttab.path,
    optional: {
      xenevtchn_fdopen: libs.evtchn.symbols.xenevtchn_fdopen !== null,
      xenevtchn_restrict: libs.evtchn.symbols.xenevtchn_restrict !== null,
      xengnttab_grant_copy: libs.gnttab.symbols.xengnttab_grant_copy !== null,
    },
  };
}
