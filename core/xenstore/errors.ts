/**
 * XenStoreError: a request the daemon (or the kernel's xenbus driver, or the
 * simulated xenstored) answered with XS_ERROR, or a connection that failed.
 *
 * @module
 */
import { XenError } from "../errors.ts";
import type { XenStoreErrorName } from "./wire.ts";

/**
 * A XenStore request failed.
 *
 * `code` is the error name exactly as the daemon sent it ("ENOENT", "EACCES",
 * "EAGAIN", "E2BIG", "ENOSPC", oxenstored's "EQUOTA", or any other name, kept
 * as sent). Connection failures use the codes "ECONNRESET" (the daemon closed
 * the connection or died with the request in flight), "EPROTO" (a malformed
 * message from the daemon; the connection is closed) and "ECLOSED" (the
 * client was closed while the request waited). `op` is the message type name
 * (READ, WRITE, ...) and `path` the path of the request, when it had one.
 */
export class XenStoreError extends XenError {
  override name = "XenStoreError";
  constructor(
    readonly code: XenStoreErrorName,
    readonly op: string,
    readonly path?: string,
    detail?: string,
  ) {
    super(
      `XenStore ${op}${path === undefined ? "" : ` ${JSON.stringify(path)}`} failed: ${code}` +
        (detail ? `: ${detail}` : ""),
    );
  }
}
