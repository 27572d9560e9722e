/**
 * Internal error plumbing: simulated hypercalls and kernel paths fail with a
 * `SimErrno` (a symbolic errno code), and each driver method turns it into
 * the public XenCallError carrying the C library function name, exactly as
 * the C library would report errno. Also the argument checks that map a JS
 * value onto a C type (a failure is a XenUsageError, thrown before anything
 * reaches the simulated Xen).
 *
 * @module
 */
import { callError } from "../core/errors.ts";
import { checkInteger } from "../core/validate.ts";
import { DOMID_MAX } from "./constants.ts";

/** A failed simulated kernel/hypervisor operation: `code` is "EINVAL", "ENOSPC", ... */
export class SimErrno extends Error {
  override name = "SimErrno";
  /** Creates the error; `detail` explains it (copied into the XenCallError message). */
  constructor(readonly code: string, readonly detail?: string) {
    super(`${code}${detail ? `: ${detail}` : ""}`);
  }
}

/** Throws SimErrno(code, detail). Never returns. */
export function fail(code: string, detail?: string): never {
  throw new SimErrno(code, detail);
}

/**
 * Converts `e` for the public API: a SimErrno becomes XenCallError(call,
 * code); anything else is returned unchanged. Use as `throw translate(c, e)`.
 */
export function translate(call: string, e: unknown): unknown {
  return e instanceof SimErrno ? callError(call, e.code, e.detail) : e;
}

/** Checks that `v` fits a C uint32_t (port, ref, count); else XenUsageError naming `what`. */
export function checkU32(v: number, what: string): void {
  checkInteger(what, v, 0, 0xffff_ffff);
}

/** Checks that `v` fits a domid_t (uint16_t); else XenUsageError naming `what`. */
export function checkDomid(v: number, what = "domid"): void {
  checkInteger(what, v, 0, DOMID_MAX);
}
