/**
 * XenSim: a private simulated hypervisor for one test, with dom0 and named
 * guests, their XenStore, fault injection and the virtual clock, which
 * fails the test when anything is still open at its end.
 *
 * @module
 */
import {
  ClosedHandleError,
  EventChannels,
  GrantShare,
  GrantTable,
  XenStore,
  XenUsageError,
} from "../mod.ts";
import {
  type DomainOptions,
  type ShutdownReason,
  SimDomainBackend,
  type SimDomainInfo,
  type SimFaults,
  SimHypervisor,
  type SimHypervisorOptions,
  type SimStats,
  type SimXenStore,
  type VirtualClock,
} from "../sim/mod.ts";
import { collectLeaks, type DomainBaseline, LeakError, type SimLeak } from "./leaks.ts";

/** Options of a XenSim: those of the SimHypervisor it creates. */
export type XenSimOptions = SimHypervisorOptions;

/**
 * Options of XenSim.createGuest: a domain's limits and event delivery ABI
 * (DomainOptions: `abi`, `maxEventChannels`, ...) and its `name`.
 */
export interface GuestOptions extends DomainOptions {
  /**
   * The guest's name, unique within the fixture; the toolstack writes it to
   * /local/domain/<domid>/name. Default "guest-<n>" (n = 1, 2, ... in order
   * of creation).
   */
  readonly name?: string;
}

/**
 * One domain of a XenSim. Its handles belong to one simulated process of
 * the domain (`backend`, started on first use); `process()` starts others.
 * Every method throws XenUsageError once the domain is destroyed, and
 * ClosedHandleError once the fixture is closed (or, for the open* methods,
 * once `backend` crashed).
 */
export class XenSimDomain {
  /** The domain id (0 for dom0). */
  readonly domid: number;
  /** The name given at creation ("Domain-0" for dom0). */
  readonly name: string;
  readonly #sim: XenSim;
  #backend: SimDomainBackend | undefined;

  /** @internal made by XenSim only. */
  constructor(sim: XenSim, domid: number, name: string) {
    this.#sim = sim;
    this.domid = domid;
    this.name = name;
  }

  /** The domain's home in XenStore, "/local/domain/<domid>". Throws nothing. */
  get path(): string {
    return `/local/domain/${this.domid}`;
  }

  /** False once destroyed (crashDomain and destroy included). Throws nothing. */
  get alive(): boolean {
    return this.#sim.hv.domainInfo(this.domid) !== undefined;
  }

  /**
   * The domain's test process: the XenBackend its handles use, started on
   * first use, the same object afterwards (also after it crashed: then its
   * open* calls throw ClosedHandleError; use `process()` for a new one).
   * Pass it as `backend` to xenchan's open* functions, listenVchan and the
   * like. XenUsageError when the domain is not live at first use;
   * ClosedHandleError after the fixture closed.
   */
  get backend(): SimDomainBackend {
    this.#sim.checkOpen();
    this.#backend ??= this.#sim.hv.backend(this.domid);
    return this.#backend;
  }

  /**
   * Starts another simulated process in the domain (its handles are
   * separate from `backend`'s; `crash()` on it tears down only its own).
   * XenUsageError when the domain is not live; ClosedHandleError after the
   * fixture closed.
   */
  process(): SimDomainBackend {
    this.#sim.checkOpen();
    return this.#sim.hv.backend(this.domid);
  }

  /**
   * Opens an event channel handle in `backend` (xenevtchn_open). The caller
   * owns it: close it (or `using`) before the test ends. XenCallError ENOMEM
   * on an injected allocation fault; errors of `backend` otherwise.
   */
  openEventChannels(): EventChannels {
    return new EventChannels("sim", this.backend.openEventChannels());
  }

  /** Opens a grant table (consumer) handle in `backend`; like openEventChannels. */
  openGrantTable(): GrantTable {
    return new GrantTable("sim", this.backend.openGrantTable());
  }

  /** Opens a grant share (producer) handle in `backend`; like openEventChannels. */
  openGrantShare(): GrantShare {
    return new GrantShare("sim", this.backend.openGrantShare());
  }

  /**
   * Opens a XenStore connection with this domain's identity (dom0:
   * privileged; a guest: its permissions and quotas, relative paths under
   * its `path`), through `backend`'s openXenStoreTransport, as openXenStore
   * does. The caller owns it: close it (or `await using`) before the test
   * ends. XenCallError ENOMEM ("xs_open") on an injected fault.
   */
  openXenStore(): XenStore {
    return new XenStore(this.backend.openXenStoreTransport());
  }

  /** The domain's state (SimHypervisor.domainInfo), or undefined once destroyed. */
  info(): SimDomainInfo | undefined {
    return this.#sim.hv.domainInfo(this.domid);
  }

  /** Leak-check counters of the domain (SimHypervisor.stats). XenUsageError once destroyed. */
  stats(): SimStats {
    return this.#sim.hv.stats(this.domid);
  }

  /**
   * Shuts the guest down (SimHypervisor.shutdown): @releaseDomain fires, its
   * processes keep their handles. Returns false when already shut down.
   * XenUsageError for an unknown reason or a destroyed domain;
   * ClosedHandleError after the fixture closed.
   */
  shutdown(reason: ShutdownReason = "poweroff"): boolean {
    this.#sim.checkOpen();
    return this.#sim.hv.shutdown(this.domid, reason);
  }

  /**
   * Destroys the guest (SimHypervisor.destroy): its processes die without
   * cleanup, its ports close, its grants go, its XenStore connections end.
   * What it held is then not a leak. XenUsageError for dom0 or a domain
   * already destroyed; ClosedHandleError after the fixture closed.
   */
  destroy(): void {
    this.#sim.checkOpen();
    this.#sim.hv.destroy(this.domid);
  }

  /**
   * Fault: the guest crashes and the toolstack destroys it
   * (SimHypervisor.crashDomain); errors as destroy().
   */
  crash(): void {
    this.#sim.checkOpen();
    this.#sim.hv.crashDomain(this.domid);
  }
}

/**
 * A private simulated hypervisor for one test: dom0 (`dom0`), guests
 * (`createGuest`), the simulated xenstored (`xenstore`), fault injection
 * (`faults`, and the crash and paging methods of `hv` and the domains) and
 * the virtual clock (`clock`, `advance`). Two XenSims share nothing.
 *
 * At the end of the test, `close()` (also `await using`, withXenSim) fails
 * it with LeakError when any handle is still open (an EventChannels with or
 * without bound ports, a GrantTable or GrantShare with or without
 * mappings or shares), when Xen still holds ports or grants in a domain
 * with no handle left, or when a XenStore connection is still open (with
 * its watches and transactions), in any live domain. Destroyed domains
 * hold nothing. Single-threaded like the simulator; not reentrant.
 */
export class XenSim implements AsyncDisposable {
  /** The simulated host; everything of SimHypervisor is available through it. */
  readonly hv: SimHypervisor;
  /** dom0. */
  readonly dom0: XenSimDomain;
  readonly #domains = new Map<number, XenSimDomain>();
  readonly #baselines = new Map<number, DomainBaseline>();
  #guests = 0;
  #closed = false;

  /** Creates the hypervisor with dom0. XenUsageError for bad options (SimHypervisor's). */
  constructor(options?: XenSimOptions) {
    this.hv = new SimHypervisor(options);
    this.dom0 = this.#register(0, "Domain-0");
  }

  /** The virtual clock (time moves only when advanced). */
  get clock(): VirtualClock {
    return this.hv.clock;
  }

  /** The fault switches (failNextAllocation, pendingWouldBlock). */
  get faults(): SimFaults {
    return this.hv.faults;
  }

  /** The simulated xenstored (inspect, paths, stats, connectionInfo). */
  get xenstore(): SimXenStore {
    return this.hv.xenstore;
  }

  /** True once close() started. Throws nothing. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Advances virtual time by `ms`, firing due timers. XenUsageError for a bad `ms`. */
  advance(ms: number): void {
    this.hv.advance(ms);
  }

  /**
   * Creates a running guest (SimHypervisor.createDomain with `options`) and
   * writes its name to XenStore. XenUsageError for options that are not an
   * object, a name that is not a non-empty string or is already used by a
   * live domain of this fixture, bad limits, and when every domid is in
   * use; ClosedHandleError after close(). Nothing is created on error.
   */
  createGuest(options?: GuestOptions): XenSimDomain {
    this.checkOpen();
    if (options !== undefined && (typeof options !== "object" || options === null)) {
      throw new XenUsageError(`options must be an object, got ${String(options)}`);
    }
    const name = options?.name ?? `guest-${this.#guests + 1}`;
    if (typeof name !== "string" || name === "") {
      throw new XenUsageError(`options.name must be a non-empty string, got ${String(name)}`);
    }
    for (const d of this.#domains.values()) {
      if (d.name === name && d.alive) {
        throw new XenUsageError(`options.name ${JSON.stringify(name)} is taken by d${d.domid}`);
      }
    }
    const domid = this.hv.createDomain({ ...options, name });
    this.#guests++;
    return this.#register(domid, name);
  }

  /**
   * The live domain with this domid or name. XenUsageError when there is
   * none (never created in this fixture, or destroyed).
   */
  domain(which: number | string): XenSimDomain {
    for (const d of this.#domains.values()) {
      if ((d.domid === which || d.name === which) && d.alive) return d;
    }
    throw new XenUsageError(`no live domain ${JSON.stringify(which)} in this XenSim`);
  }

  /** The live domains, dom0 first, in domid order. Throws nothing. */
  domains(): XenSimDomain[] {
    return [...this.#domains.values()].filter((d) => d.alive).sort((a, b) => a.domid - b.domid);
  }

  /**
   * What is open now (see the class comment), as leak records; empty when
   * nothing is. Changes nothing; throws nothing.
   */
  leaks(): SimLeak[] {
    return collectLeaks(this.hv, this.#baselines, (domid) => this.#nameOf(domid));
  }

  /**
   * Throws LeakError listing `leaks()` unless it is empty; releases
   * nothing (use it mid-test, e.g. after a step that must clean up).
   */
  assertNoLeaks(): void {
    const leaks = this.leaks();
    if (leaks.length > 0) throw new LeakError(leaks);
  }

  /**
   * Ends the fixture: lets work already queued settle (one macrotask turn,
   * so XenStore replies and unwatches in flight arrive), collects
   * `leaks()`, then releases everything (every simulated process crashes,
   * which closes its handles; every XenStore connection ends) and rejects
   * with LeakError when anything was left open. Later calls resolve at once;
   * every other method then throws ClosedHandleError.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await new Promise<void>((resolve) => setTimeout(resolve, 0));
    const leaks = this.leaks();
    this.#teardown();
    if (leaks.length > 0) throw new LeakError(leaks);
  }

  /** Same as close(). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** @internal ClosedHandleError once closed. */
  checkOpen(): void {
    if (this.#closed) throw new ClosedHandleError("XenSim (closed)");
  }

  #register(domid: number, name: string): XenSimDomain {
    const domain = new XenSimDomain(this, domid, name);
    this.#domains.set(domid, domain);
    const { openPorts, activeGrants } = this.hv.stats(domid);
    this.#baselines.set(domid, { openPorts, activeGrants });
    return domain;
  }

  #nameOf(domid: number): string {
    const d = this.#domains.get(domid);
    return d?.alive ? d.name : `d${domid}`;
  }

  #teardown(): void {
    for (const domid of this.hv.domids()) {
      for (const p of [...(this.hv.domain(domid)?.processes ?? [])]) {
        if (p instanceof SimDomainBackend) p.crash();
      }
    }
    this.hv.xenstore.endConnections("the test's simulated hypervisor was closed");
    this.hv.faults.reset();
  }
}

/**
 * Runs `fn` with a new XenSim and closes it afterwards: resolves with what
 * `fn` returned, or rejects with LeakError when `fn` left something open.
 * When `fn` throws (or rejects), the fixture is released and that error
 * propagates (leaks after a failure are its consequences, not reported).
 * Use it as the body of a test: `test("x", () => withXenSim(async (sim) =>
 * { ... }))` under node:test (deno test, bun test) or any other runner.
 * XenUsageError for bad options or an `fn` that is not a function.
 */
export async function withXenSim<T>(
  fn: (sim: XenSim) => T | Promise<T>,
  options?: XenSimOptions,
): Promise<T> {
  if (typeof fn !== "function") {
    throw new XenUsageError(`fn must be a function, got ${typeof fn}`);
  }
  const sim = new XenSim(options);
  let result: T;
  try {
    result = await fn(sim);
  } catch (error) {
    await sim.close().catch(() => {});
    throw error;
  }
  await sim.close();
  return result;
}
