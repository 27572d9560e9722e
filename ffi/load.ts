/**
 * Loads the real Xen libraries once per process and provides errno.
 *
 * Load order for each library: the path in its environment variable (if
 * set), then each soname (libxenevtchn.so.1, then libxenevtchn.so;
 * libxenctrl, whose soname is per Xen release, tries 4.17 to 4.21 and 4.16). A failure
 * names every path tried, the Debian package to install and the variable.
 *
 * @module
 */
import process from "node:process";
import { LibraryNotFoundError } from "../core/errors.ts";
import { EVTCHN, GNTTAB, LIBC, LIBRARIES, LIBXL, TOOLLOG, XENCTRL } from "./symbols.ts";
import { ffiRuntime } from "./runtime.ts";
import type { FfiRuntime, LoadedLibrary, Ptr, SymbolTable } from "./types.ts";

/** xentoollog_level XTL_NUM_LEVELS: a logger at this level prints nothing. */
const XTL_SILENT = 10;

/** libc alone: enough for poll, eventfds and errno, on any Linux machine. */
export interface LibcLibrary {
  readonly runtime: FfiRuntime;
  readonly libc: LoadedLibrary<typeof LIBC>;
  /** Reads errno; call it right after the failing call, in the same turn. */
  errno(): number;
}

/** Everything the FFI backend calls, loaded and bound. */
export interface XenLibraries extends LibcLibrary {
  readonly evtchn: LoadedLibrary<typeof EVTCHN>;
  readonly gnttab: LoadedLibrary<typeof GNTTAB>;
  /**
   * A xentoollog logger that keeps libxengnttab's own error lines off stderr
   * (they become typed errors instead), or null if one could not be made.
   */
  readonly logger: Ptr | null;
}

/** libxenctrl (domain information) with libc and the quiet logger. */
export interface XenCtrlLibrary extends LibcLibrary {
  readonly xenctrl: LoadedLibrary<typeof XENCTRL>;
  /** The quiet logger (see XenLibraries.logger), or null. */
  readonly logger: Ptr | null;
}

/** libxenlight (libxl) with libxentoollog (its loggers) and libc. */
export interface XenLightLibrary extends LibcLibrary {
  readonly xenlight: LoadedLibrary<typeof LIBXL>;
  readonly toollog: LoadedLibrary<typeof TOOLLOG>;
}

let loadedLibc: Promise<LibcLibrary> | undefined;
let loadedLight: Promise<XenLightLibrary> | undefined;
let loaded: Promise<XenLibraries> | undefined;
let loadedCtrl: Promise<XenCtrlLibrary> | undefined;
let logger: { readonly value: Ptr | null } | undefined;

/**
 * Loads libc only (once per process): for eventfds and the poller on
 * machines without the Xen libraries. Rejects with LibraryNotFoundError, or
 * Deno's NotCapable without --allow-ffi.
 */
export function loadLibc(): Promise<LibcLibrary> {
  loadedLibc ??= openLibc();
  loadedLibc.catch(() => loadedLibc = undefined);
  return loadedLibc;
}

async function openLibc(): Promise<LibcLibrary> {
  const runtime = await ffiRuntime();
  const libc = openLibrary(runtime, "libc", LIBC);
  const errnoCell = new Int32Array(runtime.foreignBuffer(libc.symbols.__errno_location()!, 4));
  return { runtime, libc, errno: () => errnoCell[0] };
}

/**
 * Loads libxenevtchn, libxengnttab, libxentoollog and libc (once per process).
 * Rejects with LibraryNotFoundError when a library cannot be loaded; Deno's
 * permission errors (NotCapable) are passed through unchanged.
 */
export function loadXenLibraries(): Promise<XenLibraries> {
  loaded ??= loadAll();
  loaded.catch(() => loaded = undefined);
  return loaded;
}

async function loadAll(): Promise<XenLibraries> {
  const base = await loadLibc();
  const evtchn = openLibrary(base.runtime, "evtchn", EVTCHN);
  const gnttab = openLibrary(base.runtime, "gnttab", GNTTAB);
  return { ...base, evtchn, gnttab, logger: sharedQuietLogger(base) };
}

/**
 * Loads libxenctrl.so.4.NN, libxentoollog and libc (once per process), trying
 * each Xen release's soname (LIBRARIES.xenctrl) or $XENCHAN_LIBXENCTRL.
 * Rejects with LibraryNotFoundError naming the Debian package; Deno's
 * permission errors (NotCapable) pass through unchanged.
 */
export function loadXenCtrl(): Promise<XenCtrlLibrary> {
  loadedCtrl ??= loadCtrl();
  loadedCtrl.catch(() => loadedCtrl = undefined);
  return loadedCtrl;
}

async function loadCtrl(): Promise<XenCtrlLibrary> {
  const base = await loadLibc();
  const xenctrl = openLibrary(base.runtime, "xenctrl", XENCTRL);
  return { ...base, xenctrl, logger: sharedQuietLogger(base) };
}

/**
 * Loads libxenlight.so.4.NN, libxentoollog and libc (once per process),
 * trying each Xen release's soname (LIBRARIES.xenlight) or
 * $XENCHAN_LIBXENLIGHT. Rejects with LibraryNotFoundError naming the Debian
 * package (libxenmisc4.17); Deno's permission errors pass through unchanged.
 */
export function loadXenLight(): Promise<XenLightLibrary> {
  loadedLight ??= loadLight();
  loadedLight.catch(() => loadedLight = undefined);
  return loadedLight;
}

async function loadLight(): Promise<XenLightLibrary> {
  const base = await loadLibc();
  const xenlight = openLibrary(base.runtime, "xenlight", LIBXL);
  const toollog = openLibrary(base.runtime, "toollog", TOOLLOG);
  return { ...base, xenlight, toollog };
}

/** One quiet logger per process, shared by every library that takes one. */
function sharedQuietLogger(base: LibcLibrary): Ptr | null {
  logger ??= { value: quietLogger(base.runtime, base.libc) };
  return logger.value;
}

function quietLogger(runtime: FfiRuntime, libc: LoadedLibrary<typeof LIBC>): Ptr | null {
  if (readEnv("XENCHAN_C_LOG") === "1") return null; // the libraries' default: log to stderr
  try {
    const toollog = openLibrary(runtime, "toollog", TOOLLOG);
    const sink = libc.symbols.fopen(cString("/dev/null"), cString("w"));
    if (sink === null) return null;
    return toollog.symbols.xtl_createlogger_stdiostream(sink, XTL_SILENT, 0);
  } catch {
    return null;
  }
}

/** A NUL-terminated UTF-8 copy of `text`, to pass as a "buffer" argument. */
export function cString(text: string): Uint8Array {
  return new TextEncoder().encode(`${text}\0`);
}

/** Reads an environment variable; undefined when unset or not permitted. */
export function readEnv(name: string): string | undefined {
  try {
    return process.env[name];
  } catch {
    return undefined;
  }
}

function isPermissionError(error: unknown): boolean {
  const name = (error as { name?: string } | null)?.name;
  return name === "NotCapable" || name === "PermissionDenied";
}

/**
 * Opens one of the LIBRARIES and binds `table`, trying the override and each
 * soname in turn. Throws LibraryNotFoundError listing every attempt.
 */
export function openLibrary<T extends SymbolTable>(
  runtime: FfiRuntime,
  key: keyof typeof LIBRARIES,
  table: T,
): LoadedLibrary<T> {
  const info = LIBRARIES[key];
  const override = readEnv(info.envVar);
  const candidates = override ? [override] : [...info.sonames];
  const failures: unknown[] = [];
  for (const path of candidates) {
    try {
      return runtime.open(path, table);
    } catch (error) {
      if (isPermissionError(error)) throw error;
      failures.push(error);
    }
  }
  throw new LibraryNotFoundError(
    info.sonames[0],
    candidates,
    info.install,
    info.envVar,
    new AggregateError(failures, `every candidate for ${info.sonames[0]} failed to load`),
  );
}
