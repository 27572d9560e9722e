/**
 * What the simulated drivers need from the hypervisor and from the process
 * that owns them, as interfaces, so drivers never import the hypervisor or
 * process modules (the import graph stays a tree).
 *
 * @module
 */
import type { VirtualClock } from "./clock.ts";
import type { SimDomain, SimHandle } from "./domain.ts";
import type { SimFaults } from "./faults.ts";
import type { SimXenStore } from "./xenstore/xenstored.ts";

/** Hypervisor-wide services. */
export interface SimContext {
  readonly clock: VirtualClock;
  readonly faults: SimFaults;
  /** The simulated xenstored of this host. */
  readonly xenstore: SimXenStore;
  /** Linux's MAX_DELAY for the paged-out grant retry (see constants.ts). */
  readonly pagingMaxDelay: number;
  /** A new, never reused, virtual file descriptor number. */
  allocFd(): number;
  /** A new opaque address for a mapping or share of `pages` pages. */
  allocAddress(pages: number): bigint;
  /** The domain with this id unless destroyed (dying domains are not returned). */
  domain(domid: number): SimDomain | undefined;
  /**
   * Whether `domid` is a zombie: destroyed, but other domains still map its
   * pages, so Xen keeps the dying domain (found by domid, every port
   * closed) until the last mapping goes.
   */
  zombie(domid: number): boolean;
}

/** The process that opened a handle. */
export interface HandleOwner {
  readonly ctx: SimContext;
  readonly domain: SimDomain;
  /** For messages, e.g. "d1 process 2". */
  readonly label: string;
  /** Registers an open handle with the process and its domain. */
  attach(h: SimHandle): void;
  /** Unregisters a closed handle. */
  detach(h: SimHandle): void;
}
