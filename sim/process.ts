/**
 * A simulated process in a simulated domain: the XenBackend the public
 * handles use in "sim" mode. Every `hv.backend(domid)` call creates a new
 * process; the handles it opens belong to it, and `crash()` kills it the
 * way Linux tears down a dying process (mm first: grant mappings and shares
 * are unmapped with their unmap notifications; then files: event channel
 * handles are closed).
 *
 * @module
 */
import type {
  EventChannelDriver,
  GrantShareDriver,
  GrantTableDriver,
  XenBackend,
} from "../core/driver.ts";
import { callError, ClosedHandleError } from "../core/errors.ts";
import type { XenStoreTransport } from "../core/xenstore/transport.ts";
import type { HandleOwner, SimContext } from "./context.ts";
import type { SimDomain, SimHandle, SimProcessRef } from "./domain.ts";
import { SimEventChannelDriver } from "./evtchn_driver.ts";
import { SimGrantShareDriver } from "./gntshr_driver.ts";
import { SimGrantTableDriver } from "./gnttab_driver.ts";
import type { SimXenStoreConnection } from "./xenstore/connection.ts";

/**
 * XenBackend for one simulated process of one domain (kind "sim").
 * Not reentrant-safe across processes in any special way: the simulator is
 * single-threaded and every call completes synchronously.
 */
export class SimDomainBackend implements XenBackend, HandleOwner, SimProcessRef {
  readonly kind = "sim" as const;
  readonly description: string;
  readonly label: string;
  /** Process id within the domain (1, 2, ...). */
  readonly pid: number;
  #handles = new Set<SimHandle>();
  #xenstore = new Set<SimXenStoreConnection>();
  #dead = false;

  /** Starts a process in `domain` (use SimHypervisor.backend). */
  constructor(readonly ctx: SimContext, readonly domain: SimDomain) {
    this.pid = domain.nextPid();
    this.label = `d${domain.domid} process ${this.pid}`;
    this.description = `simulated Xen: domain ${domain.domid}, process ${this.pid}`;
    domain.processes.add(this);
  }

  /** The domain this process runs in. */
  get domid(): number {
    return this.domain.domid;
  }

  /** False once crashed, or once its domain was destroyed. */
  get alive(): boolean {
    return !this.#dead;
  }

  /** Number of handles this process has open. */
  get openHandles(): number {
    return this.#handles.size;
  }

  /** xenevtchn_open. ENOMEM (fault); ClosedHandleError when the process is dead. */
  openEventChannels(): EventChannelDriver {
    this.#opening("xenevtchn_open");
    return new SimEventChannelDriver(this);
  }

  /** xengnttab_open. ENOMEM (fault); ClosedHandleError when the process is dead. */
  openGrantTable(): GrantTableDriver {
    this.#opening("xengnttab_open");
    return new SimGrantTableDriver(this);
  }

  /** xengntshr_open. ENOMEM (fault); ClosedHandleError when the process is dead. */
  openGrantShare(): GrantShareDriver {
    this.#opening("xengntshr_open");
    return new SimGrantShareDriver(this);
  }

  /**
   * A connection to the host's simulated xenstored with this process's
   * domain identity (dom0: privileged; others: the domain's permissions and
   * quotas; relative paths under /local/domain/<domid>). The caller owns it
   * and closes it. The process's crash() and its domain's destruction end
   * it: the client's sink gets end(Error). ClosedHandleError when the
   * process is dead; ENOMEM (XenCallError "xs_open") on an injected
   * allocation fault.
   */
  openXenStoreTransport(): XenStoreTransport {
    this.#opening("xs_open");
    const conn = this.ctx.xenstore.openConnection(
      this.domain.domid,
      `simulated xenstored: domain ${this.domain.domid}, process ${this.pid}`,
    );
    this.#xenstore.add(conn);
    return conn;
  }

  /**
   * Kills the process; its kernel cleans up: every grant mapping and share is
   * unmapped (clear byte + event of each unmap notification), then every
   * event channel handle is closed, then its XenStore connections end (their
   * sinks get end(Error)). Afterwards every method of its handles
   * and open* throw ClosedHandleError. Idempotent.
   */
  crash(): void {
    if (this.#dead) return;
    this.#dead = true;
    const all = [...this.#handles];
    for (const h of all) if (h.kind !== "evtchn") h.close();
    for (const h of all) if (h.kind === "evtchn") h.close();
    this.#endXenStore(`${this.label} exited`);
    this.domain.processes.delete(this);
  }

  /** Simulator internal: the domain died; handles are abandoned by the domain. */
  kill(): void {
    this.#dead = true;
    this.#endXenStore(`domain ${this.domain.domid} was destroyed`);
  }

  #endXenStore(why: string): void {
    for (const c of this.#xenstore) c.end(new Error(`XenStore connection lost: ${why}`));
    this.#xenstore.clear();
  }

  /** HandleOwner: registers a handle with the process and the domain. */
  attach(h: SimHandle): void {
    this.#handles.add(h);
    this.domain.handles.add(h);
  }

  /** HandleOwner: unregisters a closed handle. */
  detach(h: SimHandle): void {
    this.#handles.delete(h);
    this.domain.handles.delete(h);
  }

  #opening(call: string): void {
    if (this.#dead) throw new ClosedHandleError(`${this.label} (exited)`);
    if (this.ctx.faults.consumeAllocation(this.domain.domid, call)) {
      throw callError(call, "ENOMEM", "injected");
    }
  }
}
