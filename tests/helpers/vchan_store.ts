/**
 * The XenStore of the vchan tests: the simulator's own xenstored
 * (sim/xenstore, C xenstored 4.17 semantics) reached through the XenStore
 * client, one connection per domain, plus the raw views the tests check
 * (a node's value and permissions, the paths under a node, the watch count).
 *
 * @module
 */
import { XenStore } from "../../core/xenstore/client.ts";
import type { XenStoreAccess, XenStorePermission } from "../../core/xenstore/permissions.ts";
import type { SimHypervisor } from "../../sim/mod.ts";

const ACCESS: Record<string, XenStoreAccess> = {
  n: "none",
  r: "read",
  w: "write",
  b: "both",
};

/** The simulated xenstored of `hv` as the vchan tests use it. */
export class SimVchanStore {
  readonly #connections: XenStore[] = [];

  constructor(readonly hv: SimHypervisor) {}

  /**
   * A new XenStore connection with the identity of `domid` (a process of
   * that domain). Throws like openXenStoreTransport (ClosedHandleError for a
   * dead domain). close() closes every connection made.
   */
  connect(domid: number): XenStore {
    const store = new XenStore(this.hv.backend(domid).openXenStoreTransport());
    this.#connections.push(store);
    return store;
  }

  /** The node's value (UTF-8) and permission list, or undefined when there is none. */
  node(path: string): { value: string; perms: XenStorePermission[] } | undefined {
    const info = this.hv.xenstore.inspect(path);
    if (!info) return undefined;
    return {
      value: new TextDecoder().decode(info.value),
      perms: info.permissions.map((p) => ({ domid: Number(p.slice(1)), access: ACCESS[p[0]] })),
    };
  }

  /** Every path at or below `path`, sorted. */
  paths(path: string): string[] {
    return this.hv.xenstore.paths().filter((p) => p === path || p.startsWith(`${path}/`));
  }

  /** Watches registered in the daemon (all connections). */
  get watchCount(): number {
    return this.hv.xenstore.stats().watches;
  }

  /** Closes every connection connect() made. */
  close(): void {
    for (const c of this.#connections.splice(0)) c.close();
  }
}
