/**
 * The typed error hierarchy shared by every backend.
 *
 * Both the FFI backend and the simulator throw exactly these classes with the
 * same `code` values, so tests and applications branch on `code`, never on a
 * message text.
 *
 * @module
 */
import { errnoName, errnoValue } from "./errno.ts";

export { errnoName, errnoValue };

/** The base class of every error xenchan throws on purpose. */
export class XenError extends Error {
  override name = "XenError";
}

/**
 * A shared library could not be loaded.
 *
 * `tried` lists every path that was attempted, in order; `cause` holds the
 * loader's own errors. The message says which Debian package to install and
 * which environment variable overrides the path.
 */
export class LibraryNotFoundError extends XenError {
  override name = "LibraryNotFoundError";
  constructor(
    readonly library: string,
    readonly tried: readonly string[],
    readonly install: string,
    readonly envVar: string,
    cause?: unknown,
  ) {
    super(
      `cannot load ${library}: tried ${tried.join(", ")}. ` +
        `Install the Debian package ${install} (apt-get install ${install}), ` +
        `or set ${envVar} to the full path of the library.`,
      { cause },
    );
  }
}

/**
 * A call into Xen (a C library function, or the simulator's model of it)
 * failed. `call` is the C function name, `errno` the positive error number
 * and `code` its symbolic name (`"ENOENT"`, `"EINVAL"`, ...) from the Linux
 * table in core/errno.ts, the same on every runtime (`"E<n>"` for a number
 * the table does not know).
 */
export class XenCallError extends XenError {
  override name = "XenCallError";
  readonly code: string;
  constructor(
    readonly call: string,
    readonly errno: number,
    detail?: string,
  ) {
    const code = errnoName(errno);
    super(`${call} failed: ${code} (errno ${errno})${detail ? `: ${detail}` : ""}`);
    this.code = code;
  }
}

/** An operation was attempted on a handle (or mapping) that is already closed. */
export class ClosedHandleError extends XenError {
  override name = "ClosedHandleError";
  constructor(readonly what: string) {
    super(`${what} is closed`);
  }
}

/**
 * The caller broke a usage rule that the C library leaves undefined (for
 * example two concurrent readers of one event channel handle, or a count
 * that does not fit the C type). Thrown before anything reaches Xen.
 */
export class XenUsageError extends XenError {
  override name = "XenUsageError";
}

/** Builds a XenCallError from a symbolic code; used by the simulator. */
export function callError(call: string, code: string, detail?: string): XenCallError {
  return new XenCallError(call, errnoValue(code), detail);
}
