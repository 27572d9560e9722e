/**
 * The process-wide default simulator used by `backend: "sim"` and by
 * `backend: "auto"` off Xen: one SimHypervisor, and one simulated dom0
 * process whose handles can all talk to each other (dom0 loopback), just as
 * the handles of one real dom0 process can.
 *
 * @module
 */
import { SimHypervisor } from "./hypervisor.ts";
import type { SimDomainBackend } from "./process.ts";

let hypervisor: SimHypervisor | undefined;
let dom0Process: SimDomainBackend | undefined;

/** The default SimHypervisor (created on first use; dom0 only). */
export function defaultSimulator(): SimHypervisor {
  hypervisor ??= new SimHypervisor();
  return hypervisor;
}

/** The default simulated dom0 process: the backend behind `backend: "sim"`. */
export function defaultSimulatorBackend(): SimDomainBackend {
  dom0Process ??= defaultSimulator().backend(0);
  return dom0Process;
}
