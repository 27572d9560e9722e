/**
 * VchanError: a vchan that cannot go on, with the reason as a code.
 *
 * @module
 */
import { XenError } from "../../core/errors.ts";

/**
 * Why a vchan failed:
 * - "EPROTO": the peer broke the protocol in the shared page (a ring index
 *   that moved backwards or past the ring size, an index of ours that it
 *   wrote, ring orders that changed or are out of range, a live byte with a
 *   value the protocol does not have). The vchan is failed for good.
 * - "ECONNRESET": the peer is gone: its live byte went to 0 (it closed the
 *   vchan, or it crashed and its kernel's unmap notification cleared the
 *   byte: the wire cannot tell the two apart), or its domain was destroyed.
 * - "EMSGSIZE": a packet (send/recv) larger than the ring: it can never fit.
 * - "ENOENT": the XenStore rendezvous keys are missing or not a valid
 *   number (client side).
 */
export type VchanErrorCode = "EPROTO" | "ECONNRESET" | "EMSGSIZE" | "ENOENT";

/** A vchan failed; `code` says why (see VchanErrorCode), `path` is the vchan's XenStore path. */
export class VchanError extends XenError {
  override name = "VchanError";
  constructor(
    readonly code: VchanErrorCode,
    readonly path: string,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(`vchan ${path}: ${code}: ${detail}`, options);
  }
}
