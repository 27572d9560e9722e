/**
 * Argument checks shared by the public API (the handles, the simulator and
 * the plugins). They refuse what the C prototypes cannot represent (a port
 * of -1, a domid of 1.5, a buffer shorter than the copy) and anything of the
 * wrong shape (null options, a string where a number belongs, a bigint for
 * a number or the reverse, a non-function callback) before it reaches a
 * backend, with a XenUsageError naming the argument and showing the value
 * given (strings keep their quotes: `port must be an integer ..., got "5"`).
 * Everything representable goes to the backend, so real Xen (or the
 * simulator) decides and reports its own errno.
 *
 * Every check returns the checked value (narrowed) and throws nothing but
 * XenUsageError. None of them calls user code, except that reading an
 * option object's fields runs its getters.
 *
 * @module
 */
import { XenUsageError } from "./errors.ts";

const MAX_SHOWN = 60;

/**
 * A short, unambiguous description of `value` for error messages: strings
 * JSON-quoted (and cut at 60 characters), bigints with their `n`, numbers
 * as written, `null`, `undefined`, and the kind of anything else ("an
 * array of length 2", "a Uint8Array of 8 bytes", "a function", "an
 * object", "a Map"). Throws nothing.
 */
export function describe(value: unknown): string {
  switch (typeof value) {
    case "string": {
      const quoted = JSON.stringify(value);
      return quoted.length > MAX_SHOWN ? `${quoted.slice(0, MAX_SHOWN)}..."` : quoted;
    }
    case "bigint":
      return `${value}n`;
    case "number":
      return Object.is(value, -0) ? "-0" : String(value);
    case "boolean":
    case "undefined":
      return String(value);
    case "symbol":
      return value.toString();
    case "function":
      return "a function";
  }
  if (value === null) return "null";
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (ArrayBuffer.isView(value)) {
    return `a ${value.constructor?.name ?? "typed array"} of ${value.byteLength} bytes`;
  }
  try {
    const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
    if (typeof name === "string" && name !== "" && name !== "Object") return `a ${name}`;
  } catch { /* a hostile proxy: fall through */ }
  return "an object";
}

function refuse(what: string, expected: string, value: unknown): never {
  throw new XenUsageError(`${what} must be ${expected}, got ${describe(value)}`);
}

/** Throws XenUsageError unless `value` is an integer in [min, max]. */
export function checkInteger(what: string, value: unknown, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    refuse(what, `an integer from ${min} to ${max}`, value);
  }
  return value;
}

/** Throws XenUsageError unless `value` is a finite number (not a bigint, not NaN). */
export function checkFiniteNumber(what: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value)) refuse(what, "a finite number", value);
  return value;
}

/** Throws XenUsageError unless `value` is a bigint in [min, max]. */
export function checkBigint(what: string, value: unknown, min: bigint, max: bigint): bigint {
  if (typeof value !== "bigint" || value < min || value > max) {
    refuse(what, `a bigint from ${min}n to ${max}n`, value);
  }
  return value;
}

/** Throws XenUsageError unless `value` is a boolean. */
export function checkBoolean(what: string, value: unknown): boolean {
  if (typeof value !== "boolean") refuse(what, "true or false", value);
  return value;
}

/** Throws XenUsageError unless `value` is a string (`nonEmpty`: and not ""). */
export function checkString(what: string, value: unknown, nonEmpty = false): string {
  if (typeof value !== "string" || (nonEmpty && value === "")) {
    refuse(what, nonEmpty ? "a non-empty string" : "a string", value);
  }
  return value;
}

/** Throws XenUsageError unless `value` is a function. */
export function checkFunction<F>(what: string, value: F): F {
  if (typeof value !== "function") refuse(what, "a function", value);
  return value;
}

/** Throws XenUsageError unless `value` is a non-null object (arrays count, functions do not). */
export function checkObject<T>(what: string, value: T): T & object {
  if (typeof value !== "object" || value === null) refuse(what, "an object", value);
  return value as T & object;
}

/**
 * An options argument: undefined becomes `{}`; anything but a non-null,
 * non-array object throws XenUsageError (null is refused: it is not
 * "no options").
 */
export function checkOptions<T extends object>(what: string, value: T | undefined): T {
  if (value === undefined) return {} as T;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    refuse(what, "an options object or undefined", value);
  }
  return value;
}

/** Throws XenUsageError unless `value` is an array; returns it. */
export function checkArray<T>(what: string, value: readonly T[]): readonly T[] {
  if (!Array.isArray(value)) refuse(what, "an array", value);
  return value;
}

/** Throws XenUsageError unless `value` is a Uint8Array. */
export function checkBytes(what: string, value: unknown): Uint8Array {
  if (!(value instanceof Uint8Array)) refuse(what, "a Uint8Array", value);
  return value;
}

/** Throws XenUsageError unless `value` is undefined or an AbortSignal. */
export function checkSignal(what: string, value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) refuse(what, "an AbortSignal or undefined", value);
  return value;
}

/** Optional field helper: undefined passes through, anything else goes to `check`. */
export function optional<T>(
  value: unknown,
  check: (value: unknown) => T,
): T | undefined {
  return value === undefined ? undefined : check(value);
}

/** An evtchn_port_t (uint32_t; ~0 is not a port). */
export function checkPort(value: unknown, what = "port"): number {
  return checkInteger(what, value, 0, 0xffffffff - 1);
}

/** A domid_t (uint16_t). */
export function checkDomid(value: unknown, what = "domid"): number {
  return checkInteger(what, value, 0, 0xffff);
}

/** A grant_ref_t (uint32_t). */
export function checkRef(value: unknown, what = "grant reference"): number {
  return checkInteger(what, value, 0, 0xffffffff);
}

/** A page count for map or share: a C int/uint32_t that is not negative. */
export function checkCount(value: unknown, what = "count"): number {
  return checkInteger(what, value, 0, 0x7fffffff);
}

/** A byte offset inside one 4096-byte page. */
export function checkPageOffset(what: string, value: unknown): number {
  return checkInteger(what, value, 0, 4095);
}

/** WaitOptions-like `{ signal? }`: checks the object and the signal; returns the object. */
export function checkWaitOptions<T extends { readonly signal?: AbortSignal }>(
  what: string,
  value: T | undefined,
): T {
  const options = checkOptions(what, value);
  checkSignal(`${what}.signal`, options.signal);
  return options;
}

/** AccessOptions `{ writable? }` (also the NotifyOptions base): returns `writable ?? true`. */
export function checkAccessOptions(value: { readonly writable?: boolean } | undefined): boolean {
  const options = checkOptions("options", value);
  return options.writable === undefined ? true : checkBoolean("options.writable", options.writable);
}

/** A list of `{ domid, ref }`: returns the domids and refs, each checked. */
export function checkGrantRefs(
  what: string,
  value: readonly { readonly domid: number; readonly ref: number }[],
): { domids: number[]; refs: number[] } {
  const domids: number[] = [];
  const refs: number[] = [];
  checkArray(what, value).forEach((grant, i) => {
    checkObject(`${what}[${i}]`, grant);
    domids.push(checkDomid(grant.domid, `${what}[${i}].domid`));
    refs.push(checkRef(grant.ref, `${what}[${i}].ref`));
  });
  return { domids, refs };
}

/** A list of grant references: returns a checked copy. */
export function checkRefList(what: string, value: readonly number[]): number[] {
  return checkArray(what, value).map((ref, i) => checkRef(ref, `${what}[${i}]`));
}

/**
 * The shape of a grant copy list: an array of objects whose `source` and
 * `dest` are objects. The fields inside are checked by the handle.
 */
export function checkCopySegments(what: string, value: readonly object[]): void {
  checkArray(what, value).forEach((segment, i) => {
    checkObject(`${what}[${i}]`, segment);
    const s = segment as { source?: unknown; dest?: unknown };
    checkObject(`${what}[${i}].source`, s.source);
    checkObject(`${what}[${i}].dest`, s.dest);
  });
}
