/**
 * One simulated domain: its Xen state (event channel table, grant table),
 * its Linux kernel state (event channel irqs, gntalloc and maptrack
 * accounting) and the simulated processes running in it.
 *
 * @module
 */
import {
  GNTTAB_RESERVED_CONSOLE,
  GNTTAB_RESERVED_XENSTORE,
  type ShutdownReason,
} from "./constants.ts";
import { DomainKernel } from "./linux_kernel.ts";
import { Frame, PageStore } from "./memory.ts";
import type { PortEventState } from "./port_state.ts";
import type { Prng } from "./prng.ts";
import { DomainEventChannels } from "./xen_evtchn.ts";
import { DomainGrantTable } from "./xen_gnttab.ts";

/** Lifecycle of a domain. A destroyed domain is removed from the hypervisor. */
export type DomainState = "running" | "shutdown" | "dying";

/** An open handle of a simulated process, as the kernel tracks it. */
export interface SimHandle {
  readonly kind: "evtchn" | "gnttab" | "gntshr";
  readonly fd: number;
  /** Orderly close by the kernel (process exit): unmap notifications fire. */
  close(): void;
  /** The domain died: drop everything without any guest-kernel action. */
  abandon(): void;
}

/** A process as the domain sees it: killed without cleanup when the domain dies. */
export interface SimProcessRef {
  kill(): void;
}

/** Fully resolved construction parameters of a domain. */
export interface DomainConfig {
  readonly maxEvtchnPort: number;
  readonly maxGrantFrames: number;
  readonly maxMaptrack: number;
  readonly gntallocLimit: number;
  readonly eventState: PortEventState;
}

/** A simulated domain. Fields are simulator-internal; use SimHypervisor's API. */
export class SimDomain {
  state: DomainState = "running";
  shutdownReason?: ShutdownReason;
  readonly evtchn: DomainEventChannels;
  readonly kernel: DomainKernel;
  readonly grants: DomainGrantTable;
  readonly handles: Set<SimHandle> = new Set();
  readonly processes: Set<SimProcessRef> = new Set();
  /** gntalloc's gref_size and limit. */
  gntallocUsed = 0;
  readonly gntallocLimit: number;
  /** Xen maptrack entries in use (this domain's mappings of foreign grants) and limit. */
  maptrackUsed = 0;
  readonly maptrackLimit: number;
  #nextPid = 1;

  /** Builds the domain's state from `config`; `prng` randomises allocation. */
  constructor(readonly domid: number, config: DomainConfig, prng?: Prng) {
    this.evtchn = new DomainEventChannels(domid, config.eventState, config.maxEvtchnPort, prng);
    this.kernel = new DomainKernel(this.evtchn);
    this.grants = new DomainGrantTable(domid, config.maxGrantFrames, prng);
    this.gntallocLimit = config.gntallocLimit;
    this.maptrackLimit = config.maxMaptrack;
  }

  /**
   * Boot state: the kernel holds `ports` (the first `virqs.length` of them
   * bound to those VIRQs on vCPU 0). XenUsageError for bad ports or VIRQs.
   */
  holdKernelPorts(ports: readonly number[], virqs: readonly number[]): void {
    this.evtchn.holdKernelPorts(ports, virqs);
    for (const port of ports) this.kernel.setupPort(port);
  }

  /**
   * libxl's seeded grants (DomainOptions.toolstackGrants): refs 0 (console
   * ring) and 1 (XenStore ring), each a fresh zeroed page owned by this
   * domain, writable to dom0. Call once, before anything else grants.
   */
  seedToolstackGrants(): void {
    const store = new PageStore(2);
    for (const ref of [GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE]) {
      this.grants.seedReserved(ref, 0, new Frame(store, ref, this.domid));
    }
  }

  /** A new process id in this domain (1, 2, ...). */
  nextPid(): number {
    return this.#nextPid++;
  }

  /**
   * domain_kill: every process dies without kernel cleanup (no unmap
   * notification: the guest kernel no longer runs), Xen releases the
   * domain's mappings, closes its ports (peers become unbound, without an
   * event) and drops its grant table.
   */
  kill(): void {
    this.state = "dying";
    for (const p of [...this.processes]) p.kill();
    this.processes.clear();
    for (const h of [...this.handles]) h.abandon();
    this.handles.clear();
    this.kernel.destroy();
    this.evtchn.destroy();
    this.grants.destroy();
  }
}
