/**
 * The hypervisor side of event channels for one domain: the port table and
 * the EVTCHNOP_* operations, modelled on xen/common/event_channel.c (Xen
 * 4.17: evtchn_alloc_unbound, evtchn_bind_interdomain, evtchn_bind_virq,
 * evtchn_close, evtchn_send, get_free_port, evtchn_destroy). Operations fail
 * with SimErrno codes equal to the hypercall's -errno.
 *
 * Pending/mask bits live in the domain's PortEventState (the ABI seam); this
 * table only calls setPending/clearPending/mask on it and reports upcalls
 * through `onUpcall`, which the domain's kernel model installs.
 *
 * @module
 */
import { DOMID_SELF, NR_VIRQS } from "./constants.ts";
import { XenUsageError } from "../core/errors.ts";
import { fail } from "./errno.ts";
import { NO_UPCALL, type PortEventState } from "./port_state.ts";
import type { Prng } from "./prng.ts";

/** Xen's port states (ECS_*). PIRQ ports are not modelled. */
export type PortKind = "free" | "reserved" | "unbound" | "interdomain" | "virq" | "ipi";

/** EVTCHNOP_status-like view of one port, plus its pending/mask bits. */
export interface PortStatus {
  readonly kind: PortKind;
  /** unbound: the domain allowed to bind; interdomain: the peer domain. */
  readonly remoteDomid?: number;
  /** interdomain: the peer's port. */
  readonly remotePort?: number;
  /** virq: the VIRQ number. */
  readonly virq?: number;
  readonly pending: boolean;
  readonly masked: boolean;
}

interface Channel {
  kind: "unbound" | "interdomain" | "virq" | "ipi";
  remoteDomid: number;
  remote: DomainEventChannels | null;
  remotePort: number;
  virq: number;
}

/** One domain's event channel table (struct domain's evtchn buckets). */
export class DomainEventChannels {
  /** Called with a vCPU number when a port became deliverable (an upcall). */
  onUpcall: (vcpu: number) => void = () => {};
  #channels: (Channel | undefined)[] = [];
  #hint = 1;
  #open = 0;
  #virqs = new Int32Array(NR_VIRQS);
  #dying = false;

  /**
   * Creates the table. Usable ports are 1..maxPort, where maxPort is the
   * smaller of the domain's max_evtchn_port and the ABI limit - 1. With a
   * `prng`, allocation picks random free ports instead of Xen's lowest-free.
   */
  constructor(
    readonly domid: number,
    readonly state: PortEventState,
    maxEvtchnPort: number,
    readonly prng?: Prng,
  ) {
    this.maxPort = Math.min(maxEvtchnPort, state.portLimit - 1);
  }

  /** Highest usable port. */
  readonly maxPort: number;

  /** Number of ports not free (port 0 excluded). */
  get openPorts(): number {
    return this.#open;
  }

  /** True once evtchn_destroy ran (the domain is dying). */
  get dying(): boolean {
    return this.#dying;
  }

  /**
   * Marks `ports` as held by the guest kernel since boot (kind "ipi", or
   * "virq" for the first `virqs.length` of them). XenUsageError for a port
   * outside 1..maxPort or already open, a VIRQ outside 0..NR_VIRQS-1 or
   * already bound, or more VIRQs than ports. Call before any allocation.
   */
  holdKernelPorts(ports: readonly number[], virqs: readonly number[]): void {
    if (virqs.length > ports.length) {
      throw new XenUsageError(`${virqs.length} kernel VIRQs need as many kernel ports`);
    }
    ports.forEach((port, i) => {
      if (!(Number.isInteger(port) && port >= 1 && port <= this.maxPort) || this.#channels[port]) {
        throw new XenUsageError(`kernel port ${port} is outside 1..${this.maxPort} or repeated`);
      }
      const virq = i < virqs.length ? virqs[i] : -1;
      if (virq !== -1 && !(Number.isInteger(virq) && virq >= 0 && virq < NR_VIRQS)) {
        throw new XenUsageError(`kernel VIRQ ${virq} is outside 0..${NR_VIRQS - 1}`);
      }
      if (virq !== -1 && this.#virqs[virq] !== 0) {
        throw new XenUsageError(`kernel VIRQ ${virq} is repeated`);
      }
      const kind = virq === -1 ? "ipi" : "virq";
      this.#set(port, {
        kind,
        remoteDomid: 0,
        remote: null,
        remotePort: 0,
        virq: Math.max(virq, 0),
      });
      if (virq !== -1) this.#virqs[virq] = port;
    });
  }

  /** EVTCHNOP_alloc_unbound for DOMID_SELF. ENOSPC when full, EINVAL when dying. */
  allocUnbound(remoteDomid: number, callerDomid: number): number {
    const port = this.#getFreePort();
    const remote = remoteDomid === DOMID_SELF ? callerDomid : remoteDomid;
    this.#set(port, { kind: "unbound", remoteDomid: remote, remote: null, remotePort: 0, virq: 0 });
    return port;
  }

  /**
   * EVTCHNOP_bind_interdomain with this table as the local domain. The
   * caller resolved the remote domain (ESRCH). Local port first (ENOSPC,
   * EINVAL when dying), then EINVAL unless `remotePort` is unbound and
   * reserved for this domain. Sets the new local port pending, as Xen does
   * ("we may have lost notifications on the remote unbound port").
   */
  bindInterdomain(remote: DomainEventChannels, remotePort: number): number {
    const lport = this.#getFreePort();
    const rchn = remote.#channel(remotePort);
    if (!rchn || rchn.kind !== "unbound" || rchn.remoteDomid !== this.domid) {
      fail(
        "EINVAL",
        `remote port ${remotePort} of d${remote.domid} is not unbound for d${this.domid}`,
      );
    }
    this.#set(lport, {
      kind: "interdomain",
      remoteDomid: remote.domid,
      remote,
      remotePort,
      virq: 0,
    });
    rchn.kind = "interdomain";
    rchn.remote = this;
    rchn.remotePort = lport;
    rchn.remoteDomid = this.domid;
    this.setPending(lport);
    return lport;
  }

  /** EVTCHNOP_bind_virq on vCPU 0: EINVAL for virq >= NR_VIRQS, EEXIST if bound, ENOSPC. */
  bindVirq(virq: number): number {
    if (!(Number.isInteger(virq) && virq >= 0 && virq < NR_VIRQS)) {
      fail("EINVAL", `virq ${virq} outside 0..${NR_VIRQS - 1}`);
    }
    if (this.#virqs[virq] !== 0) {
      fail("EEXIST", `virq ${virq} already bound to port ${this.#virqs[virq]}`);
    }
    const port = this.#getFreePort();
    this.#set(port, { kind: "virq", remoteDomid: 0, remote: null, remotePort: 0, virq });
    this.#virqs[virq] = port;
    return port;
  }

  /**
   * EVTCHNOP_close: frees the port (clearing PENDING); an interdomain peer
   * goes back to unbound, reserved for this domain, and is not notified.
   * EINVAL for a free, reserved or out-of-range port.
   */
  close(port: number): void {
    const chn = this.#channel(port);
    if (!chn) fail("EINVAL", `port ${port} is not open`);
    if (chn.kind === "virq") this.#virqs[chn.virq] = 0;
    if (chn.kind === "interdomain" && chn.remote) {
      const peer = chn.remote.#channel(chn.remotePort)!;
      peer.kind = "unbound";
      peer.remote = null;
      peer.remotePort = 0;
      peer.remoteDomid = this.domid;
    }
    this.#free(port);
  }

  /**
   * EVTCHNOP_send: interdomain sets the peer pending, ipi sets itself
   * pending, unbound silently drops the event; EINVAL for any other state.
   */
  send(port: number): void {
    const chn = this.#channel(port);
    if (!chn) fail("EINVAL", `port ${port} is not open`);
    switch (chn.kind) {
      case "interdomain":
        chn.remote!.setPending(chn.remotePort);
        return;
      case "ipi":
        this.setPending(port);
        return;
      case "unbound":
        return;
      default:
        fail("EINVAL", `cannot send on a ${chn.kind} port`);
    }
  }

  /** send_guest_{vcpu,global}_virq: sets the VIRQ's port pending; false if unbound. */
  raiseVirq(virq: number): boolean {
    const port = this.#virqs[virq];
    if (port === 0) return false;
    this.setPending(port);
    return true;
  }

  /** evtchn_port_set_pending: marks the port pending and upcalls when due. */
  setPending(port: number): void {
    const vcpu = this.state.setPending(port);
    if (vcpu !== NO_UPCALL) this.onUpcall(vcpu);
  }

  /** evtchn_destroy: marks the table dying (no more allocation) and closes every port. */
  destroy(): void {
    this.#dying = true;
    for (let port = 1; port < this.#channels.length; port++) {
      if (this.#channels[port]) this.close(port);
    }
  }

  /** EVTCHNOP_status view of a port (kind "free" when unused or out of range). */
  status(port: number): PortStatus {
    if (port === 0) return { kind: "reserved", pending: false, masked: true };
    const chn = this.#channel(port);
    const inRange = Number.isInteger(port) && port >= 1 && port < this.state.portLimit;
    const bits = {
      pending: inRange && this.state.isPending(port),
      masked: !inRange || this.state.isMasked(port),
    };
    if (!chn) return { kind: "free", ...bits };
    switch (chn.kind) {
      case "unbound":
        return { kind: "unbound", remoteDomid: chn.remoteDomid, ...bits };
      case "interdomain":
        return {
          kind: "interdomain",
          remoteDomid: chn.remoteDomid,
          remotePort: chn.remotePort,
          ...bits,
        };
      case "virq":
        return { kind: "virq", virq: chn.virq, ...bits };
      default:
        return { kind: chn.kind, ...bits };
    }
  }

  /** True if the port is open (not free) in this table. */
  isOpen(port: number): boolean {
    return this.#channel(port) !== undefined;
  }

  #channel(port: number): Channel | undefined {
    return Number.isInteger(port) && port > 0 ? this.#channels[port] : undefined;
  }

  #set(port: number, chn: Channel): void {
    this.#channels[port] = chn;
    this.#open++;
    if (port === this.#hint) this.#hint = port + 1;
    // evtchn_port_init: a fresh port is neither pending nor (for Linux) unmasked.
    this.state.clearPending(port);
    this.state.mask(port);
  }

  #free(port: number): void {
    this.#channels[port] = undefined;
    this.#open--;
    this.state.clearPending(port);
    this.state.mask(port);
    if (port < this.#hint) this.#hint = port;
  }

  /** get_free_port: EINVAL when dying, else the lowest free port (or a random one), ENOSPC if none. */
  #getFreePort(): number {
    if (this.#dying) fail("EINVAL", `d${this.domid} is dying`);
    if (this.prng && this.#open < this.maxPort) {
      for (let i = 0; i < 8; i++) {
        const port = this.prng.between(1, this.maxPort);
        if (!this.#channels[port]) return port;
      }
    }
    // The hint only moves when a port is taken (#set): a bind that fails after
    // get_free_port leaves its port free, and Xen hands it out again next.
    for (let port = this.#hint; port <= this.maxPort; port++) {
      if (!this.#channels[port]) return port;
    }
    this.#hint = this.maxPort + 1;
    return fail("ENOSPC", `d${this.domid} has no free port in 1..${this.maxPort}`);
  }
}
