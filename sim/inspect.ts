/**
 * Leak-check counters of simulated domains (what is still open, bound,
 * granted, mapped, shared).
 *
 * @module
 */
import type { SimDomain } from "./domain.ts";
import { SimEventChannelDriver } from "./evtchn_driver.ts";
import { SimGrantShareDriver } from "./gntshr_driver.ts";
import { SimGrantTableDriver } from "./gnttab_driver.ts";

/** Counters for one domain, or summed over all live domains. */
export interface SimStats {
  /** Live domains counted (1 for a per-domain query). */
  readonly domains: number;
  /** Live simulated processes. */
  readonly processes: number;
  /** Open handles by kind, and their total. */
  readonly handles: {
    readonly evtchn: number;
    readonly gnttab: number;
    readonly gntshr: number;
    readonly total: number;
  };
  /** Ports bound through event channel handles. */
  readonly boundPorts: number;
  /** Xen ports not free (bound, unbound-waiting, or kept open by an unmap notification). */
  readonly openPorts: number;
  /** Grant entries in use in the domain's grant table (including ended-but-mapped ones). */
  readonly activeGrants: number;
  /** Live grant mappings made by the domain's processes, and their pages. */
  readonly mappings: number;
  readonly mappedPages: number;
  /** Live shares made by the domain's processes, and their pages. */
  readonly shares: number;
  readonly sharedPages: number;
}

/** Computes the counters of one domain. Throws nothing. */
export function domainStats(d: SimDomain): SimStats {
  let evtchn = 0, gnttab = 0, gntshr = 0, boundPorts = 0;
  let mappings = 0, mappedPages = 0, shares = 0, sharedPages = 0;
  for (const h of d.handles) {
    if (h instanceof SimEventChannelDriver) {
      evtchn++;
      boundPorts += h.boundPorts;
    } else if (h instanceof SimGrantTableDriver) {
      gnttab++;
      mappings += h.usage.mappings;
      mappedPages += h.usage.pages;
    } else if (h instanceof SimGrantShareDriver) {
      gntshr++;
      shares += h.usage.shares;
      sharedPages += h.usage.pages;
    }
  }
  return {
    domains: 1,
    processes: d.processes.size,
    handles: { evtchn, gnttab, gntshr, total: evtchn + gnttab + gntshr },
    boundPorts,
    openPorts: d.evtchn.openPorts,
    activeGrants: d.grants.activeGrants,
    mappings,
    mappedPages,
    shares,
    sharedPages,
  };
}

/** Sums counters (an empty list gives all zeros). Throws nothing. */
export function sumStats(list: readonly SimStats[]): SimStats {
  const add = (f: (s: SimStats) => number) => list.reduce((n, s) => n + f(s), 0);
  const evtchn = add((s) => s.handles.evtchn);
  const gnttab = add((s) => s.handles.gnttab);
  const gntshr = add((s) => s.handles.gntshr);
  return {
    domains: add((s) => s.domains),
    processes: add((s) => s.processes),
    handles: { evtchn, gnttab, gntshr, total: evtchn + gnttab + gntshr },
    boundPorts: add((s) => s.boundPorts),
    openPorts: add((s) => s.openPorts),
    activeGrants: add((s) => s.activeGrants),
    mappings: add((s) => s.mappings),
    mappedPages: add((s) => s.mappedPages),
    shares: add((s) => s.shares),
    sharedPages: add((s) => s.sharedPages),
  };
}
