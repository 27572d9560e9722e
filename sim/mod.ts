/**
 * The xenchan simulator: a pure-TypeScript model of Xen event channels and
 * grant tables as Linux's /dev/xen drivers and libxenevtchn/libxengnttab
 * expose them, and a simulated xenstored (C xenstored 4.17 semantics,
 * `hv.xenstore`). Loads with zero permissions; imports nothing
 * runtime-specific.
 *
 * ```ts
 * const hv = new SimHypervisor();
 * const domU = hv.createDomain();
 * const dom0Proc = hv.backend(0);   // a XenBackend (kind "sim")
 * const evtchn = dom0Proc.openEventChannels();
 * ```
 *
 * @module
 */
export { VirtualClock } from "./clock.ts";
export { defaultSimulator, defaultSimulatorBackend } from "./default.ts";
export * from "./constants.ts";
export { SimEventChannelDriver } from "./evtchn_driver.ts";
export { type AllocationFault, SimFaults } from "./faults.ts";
export { SimGrantShareDriver } from "./gntshr_driver.ts";
export { SimGrantTableDriver } from "./gnttab_driver.ts";
export {
  type DomainOptions,
  type SimDomainEvent,
  type SimDomainInfo,
  SimHypervisor,
  type SimHypervisorOptions,
} from "./hypervisor.ts";
export type { SimStats } from "./inspect.ts";
export { SimForeignMemory } from "./memory.ts";
export { gntstName } from "./paging.ts";
export {
  NO_UPCALL,
  type PortEventState,
  type PortUnmaskResult,
  QueuePortState,
} from "./port_state.ts";
export { SimDomainBackend } from "./process.ts";
export type { PortKind, PortStatus } from "./xen_evtchn.ts";
export type { GrantStatus } from "./xen_gnttab.ts";
export * from "./xenstore/mod.ts";
