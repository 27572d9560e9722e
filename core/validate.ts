/**
 * Argument checks shared by the public handles. They refuse what the C
 * prototypes cannot represent (a port of -1, a domid of 1.5, a buffer shorter
 * than the copy) before it reaches a backend, with a XenUsageError naming the
 * argument. Everything representable goes to the backend, so real Xen (or
 * the simulator) decides and reports its own errno.
 *
 * @module
 */
import { XenUsageError } from "./errors.ts";

/** Throws XenUsageError unless `value` is an integer in [min, max]. */
export function checkInteger(what: string, value: unknown, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new XenUsageError(
      `${what} must be an integer from ${min} to ${max}, got ${String(value)}`,
    );
  }
  return value;
}

/** An evtchn_port_t (uint32_t). */
export function checkPort(value: unknown): number {
  return checkInteger("port", value, 0, 0xffffffff - 1);
}

/** A domid_t (uint16_t). */
export function checkDomid(value: unknown): number {
  return checkInteger("domid", value, 0, 0xffff);
}

/** A grant_ref_t (uint32_t). */
export function checkRef(value: unknown): number {
  return checkInteger("grant reference", value, 0, 0xffffffff);
}

/** A page count for map or share: a C int/uint32_t that is not negative. */
export function checkCount(value: unknown): number {
  return checkInteger("count", value, 0, 0x7fffffff);
}

/** A byte offset inside one 4096-byte page. */
export function checkPageOffset(what: string, value: unknown): number {
  return checkInteger(what, value, 0, 4095);
}
