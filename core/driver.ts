/**
 * The backend interface: what a source of event channels and grant tables
 * must provide. The FFI backend (ffi/, the real libxenevtchn and
 * libxengnttab) and the simulator (sim/) both implement it, with the same
 * semantics and the same errors (core/errors.ts). The public handles in
 * core/event_channels.ts and core/grants.ts are written once against it.
 *
 * Drivers are low level and synchronous, like the C libraries: every method
 * either succeeds or throws a XenCallError carrying the C function name and
 * errno. The one asynchronous method, `waitReadable`, is the readiness signal
 * that must precede each `pending()` (the xenevtchn.h rule: poll before each
 * pending, one reader per handle).
 *
 * @module
 */

import type { XenStoreTransport } from "./xenstore/transport.ts";

/** Which implementation stands behind a handle. */
export type BackendKind = "ffi" | "sim";

/** poll(2) event bits, identical to Linux's values. */
export const POLLIN = 0x001;
export const POLLOUT = 0x004;
export const POLLERR = 0x008;
export const POLLHUP = 0x010;
export const POLLNVAL = 0x020;

/** The size of one grant page on x86 and Arm (XEN_PAGE_SIZE). */
export const PAGE_SIZE = 4096;

/**
 * Unmap notification requested when a page is mapped or shared
 * (UNMAP_NOTIFY_CLEAR_BYTE and/or UNMAP_NOTIFY_SEND_EVENT). Either field may
 * be omitted; both together are allowed.
 */
export interface UnmapNotify {
  /** Byte offset within the (first) page that is zeroed on unmap or exit. */
  readonly offset?: number;
  /** Local event channel port that is notified on unmap or exit. */
  readonly port?: number;
}

/**
 * Foreign memory handed out by a driver: pages granted by another domain
 * (consumer side) or pages this process shares (producer side).
 *
 * `pages[i]` always aliases page i. `bytes` aliases all pages as one
 * contiguous view; a backend that cannot provide one (the simulator mapping
 * non-adjacent frames) throws a XenUsageError from the getter and says so.
 * Views become zero-length (detached) once the memory is unmapped.
 */
export interface ForeignMemory {
  /** Number of 4096-byte pages. */
  readonly count: number;
  /** Opaque identity of the mapping (its start address for the FFI backend). */
  readonly address: bigint;
  readonly pages: readonly Uint8Array[];
  readonly bytes: Uint8Array;
}

/** One side of a grant copy: a grant reference of a domain, or local memory. */
export type GrantCopyPointer =
  | { readonly ref: number; readonly domid: number; readonly offset: number }
  | { readonly local: Uint8Array };

/** One grant copy segment (xengnttab_grant_copy_segment_t). */
export interface GrantCopySegment {
  readonly source: GrantCopyPointer;
  readonly dest: GrantCopyPointer;
  /** Bytes to copy; offset + len must not exceed one page on the grant side. */
  readonly len: number;
}

/** An open event channel handle (xenevtchn_handle). */
export interface EventChannelDriver {
  /** A file descriptor that becomes readable when a port is pending. */
  readonly fd: number;
  notify(port: number): void;
  bindUnboundPort(remoteDomid: number): number;
  bindInterdomain(remoteDomid: number, remotePort: number): number;
  bindVirq(virq: number): number;
  unbind(port: number): void;
  unmask(port: number): void;
  restrict(domid: number): void;
  /**
   * Returns the next pending port. Only call it after `waitReadable` (or a
   * poll of `fd`) reported POLLIN: on real Xen it may block otherwise.
   */
  pending(): number;
  /**
   * Resolves with the poll revents of `fd` (POLLIN when a port is pending,
   * POLLERR on ring overflow) once any requested event is ready, or 0 when
   * `signal` aborts. Never blocks the JavaScript event loop.
   */
  waitReadable(signal?: AbortSignal): Promise<number>;
  /**
   * poll(fd, POLLIN, timeoutMs) revents on the calling thread: 0 (the
   * default) never waits; a positive timeout or -1 (forever) BLOCKS the
   * calling thread, for Workers and dedicated processes only. The simulator
   * cannot wait (nothing arrives while its only thread is blocked): it
   * returns the current revents, and throws XenUsageError for -1 when
   * nothing is pending (a real program would hang there).
   */
  pollNow(timeoutMs?: number): number;
  /** Closes the handle; the kernel unbinds every port still bound. */
  close(): void;
}

/** An open grant table (consumer) handle (xengnttab_handle). */
export interface GrantTableDriver {
  readonly fd: number;
  /**
   * Maps `refs[i]` granted by `domids[i]` as one contiguous range; a single
   * number for `domids` means every ref comes from that domain
   * (xengnttab_map_domain_grant_refs). `notify` is only allowed when mapping
   * exactly one page.
   */
  map(
    domids: number | readonly number[],
    refs: readonly number[],
    writable: boolean,
    notify?: UnmapNotify,
  ): ForeignMemory;
  /** Unmaps a whole mapping made by `map`; detaches its views first. */
  unmap(memory: ForeignMemory): void;
  setMaxGrants(count: number): void;
  /** Performs the copies; returns the GNTST_* status of each segment. */
  grantCopy(segments: readonly GrantCopySegment[]): number[];
  /** Closes the handle, unmapping everything it still maps. */
  close(): void;
}

/** Pages shared by this process, with their grant references. */
export interface SharedPages {
  readonly refs: readonly number[];
  readonly memory: ForeignMemory;
}

/** An open grant sharing (producer) handle (xengntshr_handle). */
export interface GrantShareDriver {
  readonly fd: number;
  sharePages(domid: number, count: number, writable: boolean): SharedPages;
  sharePageNotify(domid: number, writable: boolean, notify: UnmapNotify): SharedPages;
  /** Unshares pages from `sharePages`/`sharePageNotify`; detaches views first. */
  unshare(shared: SharedPages): void;
  close(): void;
}

/** A complete backend: the factory for the three kinds of handle. */
export interface XenBackend {
  readonly kind: BackendKind;
  /** Human-readable description (library paths, or the simulated domain). */
  readonly description: string;
  openEventChannels(): EventChannelDriver;
  openGrantTable(): GrantTableDriver;
  openGrantShare(): GrantShareDriver;
  /**
   * A connection to XenStore with this backend's identity (the simulator:
   * a connection of the simulated process's domain; ffi: the xenstored
   * socket, else /dev/xen/xenbus, the libxenstore order). Rejects (or
   * throws) XenStoreError (op "CONNECT") when no daemon is reachable. The
   * caller owns the transport and closes it (core/xenstore/client.ts
   * XenStore takes it over). Optional: a backend without XenStore leaves it
   * out.
   */
  openXenStoreTransport?(): XenStoreTransport | Promise<XenStoreTransport>;
}
