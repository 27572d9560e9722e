/**
 * The doorbell plugin: QEMU ioeventfd semantics on a memory-region model,
 * with notifiers that are real Linux eventfds, simulated counters, or Xen
 * event channel notifies, and an ivshmem-style doorbell device.
 *
 * A write that matches a registration signals its notifier and the
 * region's I/O callback is not called; any other write reaches the callback
 * exactly as if no doorbell existed (see region.ts for the full contract).
 *
 * @example
 * ```ts
 * import { IvshmemDoorbell, SimNotifier } from "./plugins/doorbell/mod.ts";
 * const seen: bigint[] = [];
 * using dev = new IvshmemDoorbell({ onWrite: (_addr, data) => seen.push(data) });
 * const peer1 = [new SimNotifier(), new SimNotifier()];
 * dev.setPeer(1, peer1);
 * dev.ring(1, 1);            // "notified": peer1[1] counter is 1n, onWrite not called
 * dev.ring(1, 2);            // "callback": no vector 2, onWrite got 0x10002n
 * ```
 *
 * @module
 */
export type { DoorbellNotifier, NotifierWaitOptions, WaitableNotifier } from "./notifier.ts";
export { SimNotifier, type SimNotifierOptions } from "./sim_notifier.ts";
export { EventFdNotifier } from "./eventfd_notifier.ts";
export { EventChannelNotifier } from "./evtchn_notifier.ts";
export {
  type AccessSize,
  type DoorbellSize,
  IoeventfdError,
  type IoeventfdErrorReason,
  type IoeventfdInfo,
  MemoryRegion,
  type ReadResult,
  type RegionOps,
  type WriteResult,
} from "./region.ts";
export {
  doorbellValue,
  IVSHMEM_BAR0_SIZE,
  IVSHMEM_MAX_ID,
  IVSHMEM_REGISTERS,
  IvshmemDoorbell,
  type IvshmemOptions,
} from "./ivshmem.ts";
