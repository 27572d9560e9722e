/**
 * The FFI backend: the real libxenevtchn and libxengnttab behind the
 * XenBackend interface.
 *
 * @module
 */
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
