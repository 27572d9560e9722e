/**
 * The XenStore wire protocol of Xen 4.17 (xen/include/public/io/xs_wire.h):
 * message types, error names, limits, the 16-byte header, and a streaming
 * decoder. Shared by the client (core/xenstore/) and the simulated xenstored
 * (sim/xenstore/), so both speak exactly the same bytes.
 *
 * A message is `struct xsd_sockmsg { uint32_t type, req_id, tx_id, len; }`
 * in host byte order (little-endian on x86 and Arm64: neither xenstored nor
 * libxenstore converts), followed by `len` payload bytes, no padding
 * (xs_wire.h:82-90). Payload strings are NUL-terminated where the request
 * format says so (docs/misc/xenstore.txt); READ replies and WRITE values
 * carry raw bytes with no trailing NUL.
 *
 * Pure TypeScript: no runtime APIs, no permissions.
 *
 * @module
 */
import { XenUsageError } from "../errors.ts";

/** Message type numbers (xs_wire.h:12-42, Xen 4.17). */
export const XsType = {
  CONTROL: 0,
  DIRECTORY: 1,
  READ: 2,
  GET_PERMS: 3,
  WATCH: 4,
  UNWATCH: 5,
  TRANSACTION_START: 6,
  TRANSACTION_END: 7,
  INTRODUCE: 8,
  RELEASE: 9,
  GET_DOMAIN_PATH: 10,
  WRITE: 11,
  MKDIR: 12,
  RM: 13,
  SET_PERMS: 14,
  WATCH_EVENT: 15,
  ERROR: 16,
  IS_DOMAIN_INTRODUCED: 17,
  RESUME: 18,
  SET_TARGET: 19,
  RESET_WATCHES: 21,
  DIRECTORY_PART: 22,
} as const;

/** A message type number. */
export type XsTypeNumber = typeof XsType[keyof typeof XsType];

/** Type name for each known number, for messages and traces. */
export const XS_TYPE_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(XsType).map(([name, n]) => [n, name]),
);

/** The highest type number Xen 4.17 defines (XS_TYPE_COUNT - 1). */
export const XS_TYPE_MAX = 22;

/** XS_INVALID (xs_wire.h). */
export const XS_INVALID = 0xffff;

/**
 * The error names a daemon may send (xsd_errors[], xs_wire.h:57-79, in
 * table order). oxenstored can also send "EQUOTA", which is not in the
 * table; a client keeps any unknown name as sent.
 */
export const XS_ERROR_NAMES = [
  "EINVAL",
  "EACCES",
  "EEXIST",
  "EISDIR",
  "ENOENT",
  "ENOMEM",
  "ENOSPC",
  "EIO",
  "ENOTEMPTY",
  "ENOSYS",
  "EROFS",
  "EBUSY",
  "EAGAIN",
  "EISCONN",
  "E2BIG",
  "EPERM",
] as const;

/** One of the xsd_errors[] names, or any other name a daemon sent. */
export type XenStoreErrorName =
  | typeof XS_ERROR_NAMES[number]
  | "EQUOTA"
  | (string & Record<never, never>);

/** Size of struct xsd_sockmsg. */
export const XS_HEADER_SIZE = 16;

/** XENSTORE_PAYLOAD_MAX: the largest payload either side may send (xs_wire.h:116). */
export const XENSTORE_PAYLOAD_MAX = 4096;

/** XENSTORE_ABS_PATH_MAX (xs_wire.h:119). */
export const XENSTORE_ABS_PATH_MAX = 3072;

/** XENSTORE_REL_PATH_MAX (xs_wire.h:120). */
export const XENSTORE_REL_PATH_MAX = 2048;

/**
 * The largest payload a reader accepts. oxenstored may send replies larger
 * than XENSTORE_PAYLOAD_MAX over its unix socket (connection.ml packet_of),
 * so a reader allows some slack; anything beyond this is a protocol error.
 */
export const XS_READ_PAYLOAD_LIMIT = 65536;

/** One decoded message. `payload` is a copy the caller owns. */
export interface XsMessage {
  readonly type: number;
  readonly reqId: number;
  readonly txId: number;
  readonly payload: Uint8Array;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: false });

/** Strings up to this length take the ASCII fast paths below. */
const ASCII_FAST_MAX = 256;

/** UTF-8 bytes of a string. */
export function utf8(text: string): Uint8Array {
  // Paths and tokens are short ASCII: copying the code units avoids a call
  // into the runtime's encoder (a native call per string in Deno).
  if (text.length <= ASCII_FAST_MAX) {
    const out = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c >= 0x80) return encoder.encode(text);
      out[i] = c;
    }
    return out;
  }
  return encoder.encode(text);
}

/** A string from UTF-8 bytes (invalid sequences become U+FFFD). */
export function fromUtf8(bytes: Uint8Array): string {
  if (bytes.length <= ASCII_FAST_MAX) {
    let text = "";
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i];
      if (b >= 0x80) return decoder.decode(bytes);
      text += String.fromCharCode(b);
    }
    return text;
  }
  return decoder.decode(bytes);
}

/**
 * Joins payload parts, each followed by a NUL unless it is the last part
 * and `trailingNul` is false (WRITE's value). Strings are UTF-8 encoded;
 * byte arrays are copied as they are.
 */
export function payloadOf(
  parts: readonly (string | Uint8Array)[],
  trailingNul = true,
): Uint8Array {
  const bytes = parts.map((p) => typeof p === "string" ? utf8(p) : p);
  const nuls = trailingNul ? bytes.length : Math.max(0, bytes.length - 1);
  const out = new Uint8Array(bytes.reduce((n, b) => n + b.length, 0) + nuls);
  let at = 0;
  bytes.forEach((b, i) => {
    out.set(b, at);
    at += b.length;
    if (trailingNul || i < bytes.length - 1) out[at++] = 0;
  });
  return out;
}

/**
 * Splits a payload at NUL bytes into strings. A final NUL ends the last
 * string (no empty string is produced for it); "a\0b\0" gives ["a","b"],
 * "" gives [], "a\0\0" gives ["a",""].
 */
export function splitNul(payload: Uint8Array): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < payload.length; i++) {
    if (payload[i] === 0) {
      out.push(fromUtf8(payload.subarray(start, i)));
      start = i + 1;
    }
  }
  if (start < payload.length) out.push(fromUtf8(payload.subarray(start)));
  return out;
}

/**
 * Encodes one message: header then payload. Throws XenUsageError when a
 * header field is not a 32-bit unsigned integer or the payload is larger
 * than `limit` (default XENSTORE_PAYLOAD_MAX; xenstored kills a connection
 * that sends more, xenstored_core.c:2153-2158). Returns a new buffer.
 */
export function encodeMessage(
  message: XsMessage,
  limit: number = XENSTORE_PAYLOAD_MAX,
): Uint8Array {
  for (
    const [name, value] of [
      ["type", message.type],
      ["reqId", message.reqId],
      ["txId", message.txId],
    ] as const
  ) {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
      throw new XenUsageError(`${name} must be a 32-bit unsigned integer, got ${String(value)}`);
    }
  }
  if (message.payload.length > limit) {
    throw new XenUsageError(
      `a XenStore payload of ${message.payload.length} bytes is over the ${limit}-byte limit`,
    );
  }
  const out = new Uint8Array(XS_HEADER_SIZE + message.payload.length);
  // Byte stores, not a DataView: taking `.buffer` of a small typed array
  // makes V8 move it off the heap, which dominated the cost of a request.
  putUint32(out, 0, message.type);
  putUint32(out, 4, message.reqId);
  putUint32(out, 8, message.txId);
  putUint32(out, 12, message.payload.length);
  out.set(message.payload, XS_HEADER_SIZE);
  return out;
}

function putUint32(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value & 0xff;
  bytes[at + 1] = (value >>> 8) & 0xff;
  bytes[at + 2] = (value >>> 16) & 0xff;
  bytes[at + 3] = (value >>> 24) & 0xff;
}

function getUint32(bytes: Uint8Array, at: number): number {
  return (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24)) >>> 0;
}

const EMPTY = new Uint8Array(0);

/** Thrown by XsDecoder when the byte stream cannot be a XenStore message stream. */
export class XsProtocolError extends Error {
  override name = "XsProtocolError";
}

/**
 * Reassembles messages from a byte stream that arrives in arbitrary
 * chunks (one byte at a time works). Not reentrant: one decoder per stream.
 *
 * `push` appends bytes and returns every message completed by them, in
 * order. It throws XsProtocolError when a header announces a payload
 * longer than `payloadLimit`; the decoder is then poisoned (every later
 * push throws the same error), because the stream cannot be resynchronised.
 * `pending` is the number of buffered bytes of an incomplete message (a
 * non-zero value when the stream ends means it was cut short).
 */
export class XsDecoder {
  #buffer = new Uint8Array(0);
  #failure: XsProtocolError | undefined;

  constructor(readonly payloadLimit: number = XS_READ_PAYLOAD_LIMIT) {}

  /** Bytes buffered towards the next message. */
  get pending(): number {
    return this.#buffer.length;
  }

  /** Appends a chunk; returns the messages it completes (possibly none). */
  push(chunk: Uint8Array): XsMessage[] {
    if (this.#failure) throw this.#failure;
    // Without buffered bytes the chunk is parsed in place (no copy of it).
    let buffer = chunk;
    if (this.#buffer.length > 0) {
      buffer = new Uint8Array(this.#buffer.length + chunk.length);
      buffer.set(this.#buffer);
      buffer.set(chunk, this.#buffer.length);
    }
    const out: XsMessage[] = [];
    let at = 0;
    while (buffer.length - at >= XS_HEADER_SIZE) {
      const len = getUint32(buffer, at + 12);
      if (len > this.payloadLimit) {
        this.#failure = new XsProtocolError(
          `a XenStore message announces a ${len}-byte payload, over the ${this.payloadLimit}-byte limit`,
        );
        this.#buffer = new Uint8Array(0);
        throw this.#failure;
      }
      if (buffer.length - at < XS_HEADER_SIZE + len) break;
      out.push({
        type: getUint32(buffer, at),
        reqId: getUint32(buffer, at + 4),
        txId: getUint32(buffer, at + 8),
        payload: buffer.slice(at + XS_HEADER_SIZE, at + XS_HEADER_SIZE + len),
      });
      at += XS_HEADER_SIZE + len;
    }
    this.#buffer = at === buffer.length ? EMPTY : buffer.slice(at);
    return out;
  }
}

/** The error name carried by an XS_ERROR payload ("ENOENT\0" -> "ENOENT"). */
export function errorNameOf(payload: Uint8Array): string {
  const end = payload.indexOf(0);
  return fromUtf8(end < 0 ? payload : payload.subarray(0, end));
}

/**
 * Node-name rules of C xenstored 4.17 (is_valid_nodename,
 * xenstored_core.c:1164-1196): an absolute path starts with "/", has no
 * trailing "/" (except the root) and no "//", and uses only
 * [A-Za-z0-9-/_@] characters. Special watch paths start with "@". Relative
 * paths (no leading "/") are prefixed by the daemon with the connection's
 * implicit path. Returns the reason a path is invalid, or undefined.
 */
export function invalidPathReason(
  path: string,
  options: { watch?: boolean } = {},
): string | undefined {
  if (path.length === 0) return "the path is empty";
  if (options.watch && path.startsWith("@")) {
    return /^@[A-Za-z0-9\-/_@]*$/.test(path) ? undefined : "invalid characters in a special path";
  }
  if (!/^[A-Za-z0-9\-/_@]+$/.test(path)) {
    return "only the characters A-Z a-z 0-9 - / _ @ are allowed";
  }
  if (path.includes("//")) return 'the path contains "//"';
  if (path.length > 1 && path.endsWith("/")) return 'the path ends with "/"';
  const limit = path.startsWith("/") ? XENSTORE_ABS_PATH_MAX : XENSTORE_REL_PATH_MAX;
  if (path.length > limit) return `the path is longer than ${limit} characters`;
  return undefined;
}
