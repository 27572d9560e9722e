/**
 * vchan: a byte stream (and packets) between two domains over a shared page
 * and an event channel, wire-compatible with libxenvchan of Xen 4.17, with
 * the XenStore rendezvous of init.c and index hardening: a peer that breaks
 * the ring protocol gets this end a VchanError, never a spin or a hang.
 *
 * @example
 * ```ts
 * import { SimHypervisor } from "../../mod.ts";
 * import { connectVchan, listenVchan, vchanPath } from "./mod.ts";
 * const hv = new SimHypervisor();
 * const guest = hv.createDomain();
 * // store0 / storeGuest: XenStore connections of dom0 and the guest
 * const path = vchanPath(0, guest, 1);
 * await using server = await listenVchan({ backend: hv.backend(0), store: store0, domid: guest, path });
 * await using client = await connectVchan({ backend: hv.backend(guest), store: storeGuest, domid: 0, path });
 * await client.send(new TextEncoder().encode("hi"));
 * console.log(await server.recv(2));
 * ```
 *
 * @module
 */
export { VchanError } from "./errors.ts";
export type { VchanErrorCode } from "./errors.ts";
export {
  badOrdersReason,
  MAX_RING_ORDER,
  MAX_RING_SIZE,
  NOTIFY_READ,
  NOTIFY_WRITE,
  OFFSET as VCHAN_OFFSET,
  type RingOrders,
  serverOrders,
  VchanHeader,
} from "./layout.ts";
export { listenVchan } from "./server.ts";
export type { VchanCommonOptions, VchanServerOptions } from "./server.ts";
export { connectVchan } from "./client.ts";
export type { VchanClientOptions } from "./client.ts";
export { parseRendezvousNumber, vchanPath } from "./store.ts";
export type { VchanStore, VchanStoreOperations, VchanStoreWatchEvent } from "./store.ts";
export { Vchan } from "./vchan.ts";
export type { VchanIoOptions, VchanRole, VchanState } from "./vchan.ts";
