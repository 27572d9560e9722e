/**
 * SimHypervisor: the simulated Xen host. It owns the domains (dom0 exists
 * from construction), the virtual clock, the fault switches and the domain
 * lifecycle events, and hands out one XenBackend per simulated process with
 * `backend(domid)`. Deterministic: the same calls with the same seed give
 * the same ports, refs, fds and addresses. Pure TypeScript; needs no
 * permissions and no runtime-specific API.
 *
 * @module
 */
import {
  type AbiKind,
  abiMaxPorts,
  createAbi,
  DEFAULT_ABI,
  negotiateAbi,
} from "../plugins/abi/mod.ts";
import { XenUsageError } from "../core/errors.ts";
import {
  checkDomid,
  checkFunction,
  checkInteger,
  checkOptions,
  checkRef,
  checkString,
  describe,
} from "../core/validate.ts";
import { VirtualClock } from "./clock.ts";
import {
  DEFAULT_GUEST_MAX_EVTCHN_PORT,
  DEFAULT_MAX_GRANT_FRAMES,
  DEFAULT_MAX_MAPTRACK_FRAMES,
  DOMID_FIRST_RESERVED,
  EVTCHN_FIFO_NR_CHANNELS,
  GNTALLOC_DEFAULT_LIMIT,
  MAPTRACK_PER_FRAME,
  NR_VIRQS,
  PAGE,
  PAGING_MAX_DELAY,
  SHUTDOWN_REASONS,
  type ShutdownReason,
  VIRQ,
} from "./constants.ts";
import type { SimContext } from "./context.ts";
import { SimDomain } from "./domain.ts";
import { SimFaults } from "./faults.ts";
import { domainStats, type SimStats, sumStats } from "./inspect.ts";
import type { PortEventState } from "./port_state.ts";
import { SimDomainBackend } from "./process.ts";
import { Prng } from "./prng.ts";
import type { PortStatus } from "./xen_evtchn.ts";
import type { GrantStatus } from "./xen_gnttab.ts";
import { SimXenStore, type SimXenStoreQuotas } from "./xenstore/xenstored.ts";

/** Per-domain limits and the event delivery state (the ABI seam). */
export interface DomainOptions {
  /** xl max_event_channels: ports 1..N usable (default 1023; dom0: the ABI limit). */
  readonly maxEventChannels?: number;
  /** xl max_grant_frames (default 64: 64 * 512 grant entries). */
  readonly maxGrantFrames?: number;
  /** xl max_maptrack_frames (default 1024: 524288 concurrent foreign maps). */
  readonly maxMaptrackFrames?: number;
  /** The domain kernel's gntalloc `limit` module parameter (default 1024). */
  readonly gntallocLimit?: number;
  /**
   * The event delivery ABI the guest asks for (default "fifo", as Linux
   * does). If the hypervisor does not offer it (SimHypervisorOptions
   * supportedAbis), the domain falls back to "2l", as Linux does when
   * EVTCHNOP_init_control fails.
   */
  readonly abi?: AbiKind;
  /**
   * A custom pending/mask state instead of an ABI (for example
   * QueuePortState: arrival-order delivery, no shared memory layout).
   */
  readonly eventState?: PortEventState;
  /**
   * Event channel ports the domain's kernel holds from boot (timers, IPIs,
   * VIRQs, xenbus, console): they are not free, so user-space binds get
   * other numbers, and no user handle can notify or unbind them. A real
   * Linux 6.1 PV dom0 on Xen 4.17 with 2 vCPUs holds ports 1..20 (measured
   * by tests/dom0/fidelity_dom0.test.ts). Default: none. XenUsageError for a
   * port outside 1..maxEventChannels or a duplicate.
   */
  readonly kernelPorts?: readonly number[];
  /**
   * VIRQs the kernel bound on vCPU 0, each on one of `kernelPorts` (in
   * order): bindVirq answers EEXIST for them. A real dom0 holds 0 (timer),
   * 2 (console), 9 (pcpu state) and 16 (x86 MCE). Default: none.
   * XenUsageError for a VIRQ outside 0..23, a duplicate, or more VIRQs than
   * kernel ports.
   */
  readonly kernelVirqs?: readonly number[];
  /**
   * The grant entries libxl seeds in a new guest's table
   * (xc_dom_gnttab_seed): ref 0 (GNTTAB_RESERVED_CONSOLE) grants the console
   * ring page and ref 1 (GNTTAB_RESERVED_XENSTORE) the XenStore ring page,
   * both writable to dom0 (the console and store back ends). A real guest
   * created by xl has them, so dom0 can map those refs (tests/fidelity found
   * this). Pages are zero here (a real console ring holds the guest's boot
   * messages). Guests only; default false (tests that count a guest's active
   * grants rely on an empty table). XenUsageError for a value that is not a
   * boolean, or on dom0.
   */
  readonly toolstackGrants?: boolean;
  /**
   * The domain's name, which the toolstack writes to
   * /local/domain/<domid>/name (guests only: dom0 is "Domain-0").
   * Default: no name node. XenUsageError for a name that is not a
   * non-empty string.
   */
  readonly name?: string;
}

/** Construction options of SimHypervisor. */
export interface SimHypervisorOptions {
  /** Seed of the PRNG used by "random" allocation (default 1). */
  readonly seed?: number;
  /** "xen" (default): lowest free port / grant ref; "random": random free ones. */
  readonly allocation?: "xen" | "random";
  /** First virtual fd number (default 1 << 20). */
  readonly fdBase?: number;
  /** Linux MAX_DELAY of the paged-out grant retry (default 256: up to 32 640 ms). */
  readonly pagingMaxDelay?: number;
  /** Limits of dom0. */
  readonly dom0?: DomainOptions;
  /**
   * The event delivery ABIs this Xen offers (default ["2l", "fifo"], as
   * Xen >= 4.4; ["2l"] models QEMU's Xen emulation; add "3l" to model the
   * never-merged 3-level RFC).
   */
  readonly supportedAbis?: readonly AbiKind[];
  /** The simulated xenstored's quotas for unprivileged domains (default: C xenstored 4.17's). */
  readonly xenstoreQuotas?: SimXenStoreQuotas;
}

/** A domain lifecycle event (the raw material of libxl's DOMAIN_SHUTDOWN/DEATH/DISK_EJECT). */
export type SimDomainEvent =
  | {
    readonly type: "shutdown";
    readonly domid: number;
    readonly reason: ShutdownReason;
    readonly reasonCode: number;
  }
  | { readonly type: "death"; readonly domid: number }
  | { readonly type: "disk-eject"; readonly domid: number; readonly vdev: string };

/** What `domainInfo` reports. */
export interface SimDomainInfo {
  readonly domid: number;
  readonly state: "running" | "shutdown";
  readonly shutdownReason?: ShutdownReason;
  /** The event delivery ABI in use, or "custom" for a caller-supplied eventState. */
  readonly abi: AbiKind | "custom";
}

/**
 * The simulated Xen host. Single-threaded; methods complete synchronously.
 * Every method throws XenUsageError (naming the argument and the value) for
 * an argument of the wrong shape: a domid that is not an integer 0..65535,
 * null options, a non-function listener, a reason that is not a string.
 */
export class SimHypervisor implements SimContext {
  /** Virtual time; advance it to fire timers. */
  readonly clock: VirtualClock = new VirtualClock();
  /** Fault injection switches. */
  readonly faults: SimFaults = new SimFaults();
  /**
   * The simulated xenstored (C xenstored 4.17 semantics). dom0 is introduced
   * at construction and every domain at createDomain (with the
   * /local/domain/<id> nodes libxl writes); shutdown fires @releaseDomain,
   * destroy ends the domain's connections, removes its nodes and fires
   * @releaseDomain.
   */
  readonly xenstore: SimXenStore;
  /** Linux MAX_DELAY used for paged-out grant retries (SimContext). */
  readonly pagingMaxDelay: number;
  /** The PRNG seed (used only with allocation "random"). */
  readonly seed: number;
  #prng?: Prng;
  readonly #supportedAbis: readonly AbiKind[];
  readonly #abis = new Map<number, AbiKind>();
  #domains = new Map<number, SimDomain>();
  /** Destroyed domains kept dying while other domains map their pages (Xen's zombies). */
  readonly #zombies = new Set<number>();
  #rover = 0;
  #nextFd: number;
  #nextAddress = 0x7f00_0000_0000n;
  #listeners = new Set<(e: SimDomainEvent) => void>();

  /** Creates the host with dom0. Bad options throw XenUsageError. */
  constructor(options?: SimHypervisorOptions) {
    options = checkOptions("options", options);
    this.seed = options.seed ?? 1;
    if (options.allocation === "random") this.#prng = new Prng(this.seed);
    this.#nextFd = options.fdBase ?? 1 << 20;
    this.pagingMaxDelay = options.pagingMaxDelay ?? PAGING_MAX_DELAY;
    if (!(Number.isInteger(this.pagingMaxDelay) && this.pagingMaxDelay >= 1)) {
      throw new XenUsageError("pagingMaxDelay must be a positive integer");
    }
    this.#supportedAbis = options.supportedAbis ?? ["2l", "fifo"];
    this.xenstore = new SimXenStore({
      quotas: options.xenstoreQuotas,
      domainExists: (domid) => this.domain(domid) !== undefined,
    });
    this.#add(0, checkOptions("options.dom0", options.dom0));
    this.xenstore.introduceDomain(0);
  }

  /** Virtual time in ms (clock.now()). */
  now(): number {
    return this.clock.now();
  }

  /** Advances virtual time by `ms`, firing due timers (clock.advance). */
  advance(ms: number): void {
    this.clock.advance(ms);
  }

  /**
   * Creates a running domain and returns its domid. Domids are handed out
   * like Xen's rover: increasing from the last one, skipping live domains,
   * wrapping below DOMID_FIRST_RESERVED. XenUsageError for bad limits, a
   * bad name, or when every domid is in use.
   */
  createDomain(options?: DomainOptions): number {
    options = checkOptions("options", options);
    if (options.name !== undefined) checkString("options.name", options.name, true);
    for (let i = 1; i < DOMID_FIRST_RESERVED; i++) {
      const domid = ((this.#rover + i - 1) % (DOMID_FIRST_RESERVED - 1)) + 1;
      if (this.#domains.has(domid) || this.#zombies.has(domid)) continue;
      this.#rover = domid;
      this.#add(domid, options);
      this.xenstore.introduceDomain(domid, options.name);
      return domid;
    }
    throw new XenUsageError("no free domid");
  }

  /**
   * Shuts the domain down (SCHEDOP_shutdown): it stays "shutdown" until
   * destroyed; its processes keep their handles. Fires @releaseDomain in
   * the simulated xenstored, raises VIRQ_DOM_EXC in dom0 and emits a
   * "shutdown" event. A second shutdown is ignored (false).
   * XenUsageError for an unknown domain or reason.
   */
  shutdown(domid: number, reason: ShutdownReason = "poweroff"): boolean {
    const d = this.#live(domid);
    const reasonCode = Object.hasOwn(SHUTDOWN_REASONS, checkString("reason", reason))
      ? SHUTDOWN_REASONS[reason]
      : undefined;
    if (reasonCode === undefined) {
      throw new XenUsageError(`unknown shutdown reason ${describe(reason)}`);
    }
    if (d.state !== "running") return false;
    d.state = "shutdown";
    d.shutdownReason = reason;
    this.xenstore.domainShutdown(domid);
    this.#domExc();
    this.#emit({ type: "shutdown", domid, reason, reasonCode });
    return true;
  }

  /**
   * Destroys the domain (domain_kill): processes die without kernel cleanup
   * (no unmap notifications), its ports close (peers become unbound, without
   * an event), its mappings are released and its grants disappear (other
   * domains' mappings of its pages stay valid until unmapped; until the last
   * of them goes the domain is a zombie, as in Xen: its domid is not reused
   * and an interdomain bind to it is EINVAL, then ESRCH). Its XenStore
   * connections end, /local/domain/<domid> is removed (as libxl does) and
   * @releaseDomain fires. Raises VIRQ_DOM_EXC in dom0 and emits "death". XenUsageError for dom0 or an
   * unknown domain.
   */
  destroy(domid: number): void {
    if (checkDomid(domid) === 0) throw new XenUsageError("dom0 cannot be destroyed");
    const d = this.#live(domid);
    d.kill();
    this.#domains.delete(domid);
    if (d.grants.foreignPins > 0) {
      this.#zombies.add(domid);
      d.grants.whenReleased(() => this.#zombies.delete(domid));
    }
    this.xenstore.destroyDomain(domid);
    this.#domExc();
    this.#emit({ type: "death", domid });
  }

  /** Fault: the guest crashes (shutdown "crash") and the toolstack destroys it (on_crash=destroy). */
  crashDomain(domid: number): void {
    this.shutdown(domid, "crash");
    this.destroy(domid);
  }

  /** Emits a "disk-eject" event for `vdev` of a live domain (the guest ejected the media). */
  ejectDisk(domid: number, vdev: string): void {
    this.#live(domid);
    if (typeof vdev !== "string" || vdev === "") {
      throw new XenUsageError("vdev must be a non-empty string");
    }
    this.#emit({ type: "disk-eject", domid, vdev });
  }

  /** Fires VIRQ `virq` (0..23) in the domain; returns false if no port is bound to it. */
  raiseVirq(domid: number, virq: number): boolean {
    const d = this.#live(domid);
    checkInteger("virq", virq, 0, NR_VIRQS - 1);
    return d.evtchn.raiseVirq(virq);
  }

  /**
   * Subscribes to domain events; returns the unsubscribe function. Listeners
   * run synchronously after the state change; if some throw, the others
   * still run and the first exception is rethrown to the caller.
   */
  onDomainEvent(listener: (e: SimDomainEvent) => void): () => void {
    this.#listeners.add(checkFunction("listener", listener));
    return () => this.#listeners.delete(listener);
  }

  /** Starts a new simulated process in the domain: its XenBackend. XenUsageError if not live. */
  backend(domid: number): SimDomainBackend {
    return new SimDomainBackend(this, this.#live(domid));
  }

  /** State of a live domain, or undefined once destroyed (or never created). */
  domainInfo(domid: number): SimDomainInfo | undefined {
    const d = this.#domains.get(checkDomid(domid));
    if (!d || d.state === "dying") return undefined;
    const abi = this.#abis.get(domid) ?? "custom";
    return d.state === "shutdown"
      ? { domid, state: "shutdown", shutdownReason: d.shutdownReason, abi }
      : { domid, state: "running", abi };
  }

  /**
   * The event delivery state of a live domain: the EventAbi (2l, 3l or fifo,
   * whose `buffer` holds the guest-visible shared_info / FIFO pages) or the
   * caller's custom state. For inspection: changing it bypasses Xen's rules.
   * XenUsageError if the domain is not live.
   */
  eventState(domid: number): PortEventState {
    return this.#live(domid).evtchn.state;
  }

  /** Domids of the live domains, ascending. */
  domids(): number[] {
    return [...this.#domains.keys()].sort((a, b) => a - b);
  }

  /** EVTCHNOP_status-like view of a port of a live domain (XenUsageError otherwise). */
  portStatus(domid: number, port: number): PortStatus {
    return this.#live(domid).evtchn.status(port);
  }

  /** The grant entry `ref` of a live domain, or undefined when not in use. */
  grantStatus(domid: number, ref: number): GrantStatus | undefined {
    return this.#live(domid).grants.status(ref);
  }

  /**
   * Fault: the pager pages out the frame behind `ref` of `domid`: grant maps
   * and copies of it get GNTST_eagain (and the kernel's retry) until
   * `pageIn`, or until `pageInAfterMs` of virtual time passed when given.
   * XenUsageError for a ref not in use or a frame that is mapped (Xen cannot
   * nominate a page with extra references).
   */
  pageOut(domid: number, ref: number, options?: { pageInAfterMs?: number }): void {
    options = checkOptions("options", options);
    const e = this.#live(domid).grants.entry(checkRef(ref, "ref"));
    if (!e) throw new XenUsageError(`d${domid} has no grant ref ${ref}`);
    if (e.frame.mapCount > 0) {
      throw new XenUsageError(`frame of ref ${ref} is mapped; cannot page out`);
    }
    e.frame.pagedOut = true;
    if (options.pageInAfterMs !== undefined) {
      const frame = e.frame;
      this.clock.setTimer(() => (frame.pagedOut = false), options.pageInAfterMs);
    }
  }

  /** Pages the frame behind `ref` of `domid` back in. XenUsageError for a ref not in use. */
  pageIn(domid: number, ref: number): void {
    const e = this.#live(domid).grants.entry(checkRef(ref, "ref"));
    if (!e) throw new XenUsageError(`d${domid} has no grant ref ${ref}`);
    e.frame.pagedOut = false;
  }

  /** Leak-check counters of one live domain, or of all live domains when omitted. */
  stats(domid?: number): SimStats {
    if (domid !== undefined) return domainStats(this.#live(domid));
    return sumStats([...this.#domains.values()].map(domainStats));
  }

  /** SimContext: a new virtual fd number. */
  allocFd(): number {
    return this.#nextFd++;
  }

  /** SimContext: a new opaque address, with a guard page between ranges. */
  allocAddress(pages: number): bigint {
    const a = this.#nextAddress;
    this.#nextAddress += BigInt((pages + 1) * PAGE);
    return a;
  }

  /** SimContext: a destroyed domain whose pages other domains still map. */
  zombie(domid: number): boolean {
    return this.#zombies.has(domid);
  }

  /** SimContext: a live domain (running or shut down), or undefined. */
  domain(domid: number): SimDomain | undefined {
    const d = this.#domains.get(domid);
    return d && d.state !== "dying" ? d : undefined;
  }

  #add(domid: number, o: DomainOptions): void {
    const positive = (v: number | undefined, name: string, dflt: number) => {
      const x = v ?? dflt;
      if (!(Number.isInteger(x) && x >= 1)) {
        throw new XenUsageError(`${name} must be a positive integer`);
      }
      return x;
    };
    const defaultPorts = domid === 0 ? EVTCHN_FIFO_NR_CHANNELS - 1 : DEFAULT_GUEST_MAX_EVTCHN_PORT;
    const maxEvtchnPort = positive(o.maxEventChannels, "maxEventChannels", defaultPorts);
    const frames = positive(o.maxGrantFrames, "maxGrantFrames", DEFAULT_MAX_GRANT_FRAMES);
    const maptrack = positive(
      o.maxMaptrackFrames,
      "maxMaptrackFrames",
      DEFAULT_MAX_MAPTRACK_FRAMES,
    );
    const gntalloc = positive(o.gntallocLimit, "gntallocLimit", GNTALLOC_DEFAULT_LIMIT);
    const eventState = o.eventState ?? this.#abiState(domid, o.abi, maxEvtchnPort);
    const config = {
      maxEvtchnPort,
      maxGrantFrames: frames,
      maxMaptrack: maptrack * MAPTRACK_PER_FRAME,
      gntallocLimit: gntalloc,
      eventState,
    };
    const domain = new SimDomain(domid, config, this.#prng);
    domain.holdKernelPorts(o.kernelPorts ?? [], o.kernelVirqs ?? []);
    if (o.toolstackGrants !== undefined && typeof o.toolstackGrants !== "boolean") {
      throw new XenUsageError(
        `toolstackGrants must be a boolean, got ${String(o.toolstackGrants)}`,
      );
    }
    if (o.toolstackGrants) {
      if (domid === 0) throw new XenUsageError("toolstackGrants is for guests, not dom0");
      domain.seedToolstackGrants();
    }
    this.#domains.set(domid, domain);
  }

  /** The domain's ABI state: the requested ABI, or 2-level when Xen lacks it. */
  #abiState(domid: number, requested: AbiKind | undefined, maxEvtchnPort: number): PortEventState {
    const kind = negotiateAbi(requested ?? DEFAULT_ABI, this.#supportedAbis);
    this.#abis.set(domid, kind);
    return createAbi(kind, { maxPorts: Math.min(abiMaxPorts(kind), maxEvtchnPort + 1) });
  }

  #live(domid: number): SimDomain {
    const d = this.domain(checkDomid(domid));
    if (!d) throw new XenUsageError(`no live domain ${domid}`);
    return d;
  }

  /** send_global_virq(VIRQ_DOM_EXC) to the hardware domain. */
  #domExc(): void {
    this.#domains.get(0)?.evtchn.raiseVirq(VIRQ.DOM_EXC);
  }

  #emit(e: SimDomainEvent): void {
    let first: unknown;
    let failed = false;
    for (const l of [...this.#listeners]) {
      try {
        l(e);
      } catch (err) {
        if (!failed) first = err;
        failed = true;
      }
    }
    if (failed) throw first;
  }
}
