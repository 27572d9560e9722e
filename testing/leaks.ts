/**
 * What a simulated hypervisor still holds at the end of a test: the leak
 * records the fixture (testing/fixture.ts) collects, and the error that
 * fails the test with them.
 *
 * @module
 */
import { XenError } from "../mod.ts";
import {
  SimEventChannelDriver,
  SimGrantShareDriver,
  SimGrantTableDriver,
  type SimHypervisor,
} from "../sim/mod.ts";

/**
 * What was left open:
 * - "EventChannels": an event channel handle (`ports` lists what it still binds);
 * - "GrantTable": a grant table handle (`ranges` mappings of `pages` pages still mapped);
 * - "GrantShare": a grant share handle (`ranges` shares of `pages` pages still shared);
 * - "XenStore": a XenStore connection (`watches` still registered, `transactions` still open);
 * - "XenPorts": event channel ports Xen still has open in the domain with no handle left
 *   to hold them (`count` of them);
 * - "XenGrants": grant entries still in use in the domain's grant table with no handle
 *   left to hold them (`count` of them).
 */
export type SimLeakKind =
  | "EventChannels"
  | "GrantTable"
  | "GrantShare"
  | "XenStore"
  | "XenPorts"
  | "XenGrants";

/** One thing still open, bound, mapped or shared at the end of a test. */
export interface SimLeak {
  /** What was left open (see SimLeakKind). */
  readonly kind: SimLeakKind;
  /** The domain it belongs to (a XenStore connection: the domain whose identity it has). */
  readonly domid: number;
  /** That domain's name in the fixture ("Domain-0" for dom0). */
  readonly domain: string;
  /** The handle's virtual file descriptor (the three handle kinds), else undefined. */
  readonly fd?: number;
  /** Ports still bound (EventChannels), else empty. */
  readonly ports: readonly number[];
  /** Mappings (GrantTable) or shares (GrantShare) still held, else 0. */
  readonly ranges: number;
  /** The pages in those ranges, else 0. */
  readonly pages: number;
  /** Watched paths still registered (XenStore), else empty. */
  readonly watches: readonly string[];
  /** Transactions still open (XenStore), else 0. */
  readonly transactions: number;
  /** Ports (XenPorts) or grant entries (XenGrants) left in Xen, else 0. */
  readonly count: number;
  /** One line naming all of the above, e.g. `d1 "front": EventChannels fd 1048577 ...`. */
  readonly message: string;
}

/**
 * Thrown by XenSim.close() (and so by withXenSim and `await using`) when the
 * simulated hypervisor still holds something at the end of a test. `leaks`
 * lists every item; the message names each on a line of its own. The
 * fixture has released everything by the time this is thrown.
 */
export class LeakError extends XenError {
  /** "LeakError". */
  override name = "LeakError";
  /** Every leak found, in domain order (XenStore connections last). */
  readonly leaks: readonly SimLeak[];

  /** Builds the error from a non-empty list; `context` starts the message. */
  constructor(leaks: readonly SimLeak[], context = "the simulated hypervisor") {
    const n = leaks.length;
    super(
      `${context} still holds ${n} thing${n === 1 ? "" : "s"} at the end of the test ` +
        `(close, unmap, unshare, unbind or leave every watch before it ends):\n` +
        leaks.map((l) => `  ${l.message}`).join("\n"),
    );
    this.leaks = Object.freeze([...leaks]);
  }
}

/** What a domain held when the fixture created it (kernel ports, grants): not leaks. */
export interface DomainBaseline {
  readonly openPorts: number;
  readonly activeGrants: number;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

/**
 * Collects what `hv` still holds: every open handle of every live domain,
 * Xen ports and grants beyond `baselines` in a domain with no open handle
 * (only for domains that have a baseline), and every live connection to
 * its xenstored. `nameOf` names a domain in the messages. A snapshot;
 * changes nothing; throws nothing.
 */
export function collectLeaks(
  hv: SimHypervisor,
  baselines: ReadonlyMap<number, DomainBaseline>,
  nameOf: (domid: number) => string,
): SimLeak[] {
  const leaks: SimLeak[] = [];
  const none = { ports: [], ranges: 0, pages: 0, watches: [], transactions: 0, count: 0 };
  for (const domid of hv.domids()) {
    const d = hv.domain(domid);
    if (d === undefined) continue;
    const domain = nameOf(domid);
    const where = `d${domid} "${domain}"`;
    const handles = [...d.handles].sort((a, b) => a.fd - b.fd);
    for (const h of handles) {
      if (h instanceof SimEventChannelDriver) {
        const ports = h.boundPortList();
        const held = ports.length === 0
          ? "no port bound"
          : `${plural(ports.length, "port")} still bound: [${ports.join(", ")}]`;
        leaks.push({
          ...none,
          kind: "EventChannels",
          domid,
          domain,
          fd: h.fd,
          ports,
          message: `${where}: EventChannels fd ${h.fd} still open, ${held}`,
        });
      } else if (h instanceof SimGrantTableDriver || h instanceof SimGrantShareDriver) {
        const grant = h instanceof SimGrantTableDriver
          ? {
            kind: "GrantTable",
            what: "mapping",
            done: "mapped",
            ranges: h.usage.mappings,
          } as const
          : { kind: "GrantShare", what: "share", done: "shared", ranges: h.usage.shares } as const;
        const { kind, what, done, ranges } = grant;
        const pages = h.usage.pages;
        const held = ranges === 0
          ? `no ${what}`
          : `${plural(ranges, what)} of ${plural(pages, "page")} still ${done}`;
        leaks.push({
          ...none,
          kind,
          domid,
          domain,
          fd: h.fd,
          ranges,
          pages,
          message: `${where}: ${kind} fd ${h.fd} still open, ${held}`,
        });
      }
    }
    const base = baselines.get(domid);
    if (base === undefined || handles.length > 0) continue;
    const stats = hv.stats(domid);
    const ports = stats.openPorts - base.openPorts;
    if (ports > 0) {
      leaks.push({
        ...none,
        kind: "XenPorts",
        domid,
        domain,
        count: ports,
        message: `${where}: ${plural(ports, "event channel port")} still open in Xen ` +
          `with no handle holding them`,
      });
    }
    const grants = stats.activeGrants - base.activeGrants;
    if (grants > 0) {
      leaks.push({
        ...none,
        kind: "XenGrants",
        domid,
        domain,
        count: grants,
        message: `${where}: ${grants} grant ${grants === 1 ? "entry" : "entries"} still in ` +
          `use in Xen with no handle holding them`,
      });
    }
  }
  for (const c of hv.xenstore.connectionInfo()) {
    const domain = nameOf(c.domid);
    const watches = c.watches.length === 0 ? "no watch" : `watches [${c.watches.join(", ")}]`;
    leaks.push({
      ...none,
      kind: "XenStore",
      domid: c.domid,
      domain,
      watches: c.watches,
      transactions: c.transactions,
      message: `d${c.domid} "${domain}": XenStore connection ${c.serial} (${c.description}) ` +
        `still open, ${watches}, ${plural(c.transactions, "transaction")} open`,
    });
  }
  return leaks;
}
