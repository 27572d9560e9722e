/**
 * The backend interface: what a source of event channels and grant tables
 * must provide. The FFI backend (ffi/, the real libxenevtchn and
 * libxengnttab) and the simulator (sim/) both implement it, with the same
 * semantics and the same errors (core/errors.ts). The public handles in
 * core/event_channels.ts and core/grants.ts are written once against it.
 *
 * Drivers are low level and synchronous, like the C libraries: every method
 * either succeeds or throws a typed error (the rules above
 * EventChannelDriver say which, and what state a failure leaves). The one
 * asynchronous method, `waitReadable`, is the readiness signal
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
 * (consumer side) or pages this process shares (producer side). The driver
 * that returned it owns it and tracks it until `unmap`/`unshare` or `close`.
 *
 * `pages[i]` always aliases page i. `bytes` always aliases all pages as one
 * contiguous view: a backend that cannot provide that for some set of refs
 * refuses the map itself (the simulator does so for refs that are not
 * adjacent pages of one share, see GrantTableDriver.map), so neither getter
 * ever throws. Views become zero-length (detached) once the memory is
 * unmapped; on the simulator only the views read after the unmap are empty
 * at once (sim/memory.ts explains why).
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

/*
 * Rules shared by every driver method below (the contract both backends
 * follow; tests/contract/ runs it on each):
 *
 * - Errors: XenCallError{call, errno, code} when the C library (or the
 *   simulator's model of it) fails, `call` being the C function the FFI
 *   backend calls for the same arguments; XenUsageError for arguments that
 *   do not fit the C types, thrown before anything reaches Xen;
 *   ClosedHandleError from every method but `close` once `closed` is true.
 * - State after a failure: unchanged unless the method says otherwise. In
 *   particular a failed bind leaves no port behind, and a failed map or share
 *   leaves nothing mapped, pinned, granted or allocated.
 * - Reentrancy: synchronous and single-threaded; a driver belongs to the
 *   thread that opened it (the C libraries' rule: no sharing across Workers
 *   or after fork). Only `waitReadable` is asynchronous.
 * - Ownership: the opener owns the driver and must `close` it. The backend
 *   may also close it on its own (the simulator, when the simulated process
 *   crashes or its domain is destroyed); `closed` then reads true.
 */

/** An open event channel handle (xenevtchn_handle). */
export interface EventChannelDriver {
  /** A file descriptor that becomes readable when a port is pending. */
  readonly fd: number;
  /** True once closed, by `close` or by the backend (see the rules above). */
  readonly closed: boolean;
  /**
   * Sends an event on `port`, which this handle bound (xenevtchn_notify).
   * XenCallError EINVAL for a port beyond the channel count, ENOTCONN for a
   * port this handle did not bind. Xen's own result is ignored, as Linux
   * does (an event on a VIRQ port succeeds and does nothing).
   */
  notify(port: number): void;
  /**
   * Allocates a port that `remoteDomid` may bind, bound to this handle and
   * unmasked (xenevtchn_bind_unbound_port); returns the local port.
   * XenCallError EACCES after `restrict`, ENOSPC when the domain has no free
   * port, ENOMEM. The remote domain need not exist (Xen does not check it).
   */
  bindUnboundPort(remoteDomid: number): number;
  /**
   * Connects a new local port to `remotePort` of `remoteDomid`
   * (xenevtchn_bind_interdomain); returns the local port, already pending
   * once (Xen sets it at bind). XenCallError EACCES when restricted to
   * another domain, ESRCH for no such domain, EINVAL unless the remote port
   * is unbound and offered to this domain, ENOSPC, ENOMEM. After a failure
   * the remote port is still unbound and offered.
   */
  bindInterdomain(remoteDomid: number, remotePort: number): number;
  /**
   * Binds virtual IRQ `virq` (xenevtchn_bind_virq); returns the local port.
   * XenCallError EACCES after `restrict`, EINVAL for a virq Xen does not
   * know, EEXIST when it is already bound, ENOSPC, ENOMEM.
   */
  bindVirq(virq: number): number;
  /**
   * Unbinds a port of this handle (xenevtchn_unbind). XenCallError EINVAL for
   * a port beyond the channel count, ENOTCONN for a port this handle does not
   * hold. The Xen port closes unless an unmap notification still holds it
   * (it closes when that fires). Ring entries already queued for the port
   * stay: `pending` may still return it once.
   */
  unbind(port: number): void;
  /**
   * Re-enables delivery on a port `pending` returned (xenevtchn_unmask); an
   * event that arrived while masked is delivered now. A port this handle
   * does not hold, or that is not masked, is ignored (as the kernel does).
   * Throws only ClosedHandleError (or XenCallError if the write itself
   * fails, which Linux never does for a 4-byte write).
   */
  unmask(port: number): void;
  /**
   * Allows only interdomain binds to `domid` from now on, for good
   * (xenevtchn_restrict); ports bound before stay. XenCallError EACCES when
   * already restricted, EINVAL for domid 0 or a reserved domid, ENOSYS when
   * libxenevtchn is older than 1.1.
   */
  restrict(domid: number): void;
  /**
   * Returns the next pending port in arrival order, masked until `unmask`
   * (xenevtchn_pending). XenCallError EFBIG once the ring overflowed (for
   * good: drain, unmask and rebind, or reopen). Only call it after
   * `waitReadable` or `pollNow` reported POLLIN or POLLERR: with nothing
   * pending the FFI backend's read may block the thread, and the simulator
   * (which cannot block) throws XenCallError EAGAIN, or XenUsageError "pending()
   * would block" under `faults.pendingWouldBlock`.
   */
  pending(): number;
  /**
   * Resolves with the poll revents of `fd` (POLLIN when a port is pending,
   * POLLERR on ring overflow) once any is ready, with 0 when `signal`
   * aborts, and with POLLNVAL when the handle is closed during the wait.
   * The call itself never blocks; the FFI backend may, after one turn of
   * the event loop, hold the thread for at most the FdPoller's inline
   * budget (see ffi/poller.ts), the simulator not at all; `inline` false
   * (default true) skips the inline attempt. Rejects with ClosedHandleError
   * when the handle is already closed (it never throws synchronously).
   */
  waitReadable(signal?: AbortSignal, inline?: boolean): Promise<number>;
  /**
   * poll(fd, POLLIN, timeoutMs) revents on the calling thread: 0 (the
   * default) never waits; a positive timeout or -1 (forever) BLOCKS the
   * calling thread, for Workers and dedicated processes only. The simulator
   * cannot wait (nothing arrives while its only thread is blocked): it
   * returns the current revents, and throws XenUsageError for -1 when
   * nothing is pending (a real program would hang there). XenCallError
   * ("poll") if poll(2) itself fails.
   */
  pollNow(timeoutMs?: number): number;
  /**
   * Closes the handle (xenevtchn_close): the kernel unbinds every port still
   * bound, and a `waitReadable` in flight resolves with POLLNVAL.
   * Idempotent; never throws.
   */
  close(): void;
}

/** An open grant table (consumer) handle (xengnttab_handle). */
export interface GrantTableDriver {
  readonly fd: number;
  /** True once closed, by `close` or by the backend (see the rules above). */
  readonly closed: boolean;
  /**
   * Maps `refs[i]` granted by `domids[i]` as one contiguous range; a single
   * number for `domids` means every ref comes from that domain
   * (xengnttab_map_grant_ref, _map_grant_refs, _map_domain_grant_refs,
   * _map_grant_ref_notify with `notify`). Returns the memory, tracked by
   * this driver. XenCallError EINVAL for 0 or too many refs, for any ref Xen
   * refuses (no such domain, not granted to this domain, a writable map of a
   * read-only grant, maptrack full) and for a refused notification (a port
   * not bound in this domain, or a clear-byte offset on a read-only map);
   * ENOMEM. XenUsageError when `notify` comes with other than exactly one
   * ref, or, on the simulator only, when the refs are not adjacent pages of
   * one share in order (it cannot alias scattered pages as one `bytes` view;
   * real Xen maps them; map them one at a time there). On any failure
   * nothing stays mapped or pinned.
   */
  map(
    domids: number | readonly number[],
    refs: readonly number[],
    writable: boolean,
    notify?: UnmapNotify,
  ): ForeignMemory;
  /**
   * Unmaps a whole mapping made by `map` (xengnttab_unmap): detaches its
   * views, then (if set) clears the notify byte, unmaps and notifies the
   * port. XenUsageError for memory this driver did not hand out or already
   * released (nothing changes). If the C call fails (XenCallError), the views
   * are detached and the driver no longer tracks the memory all the same; it
   * is never retried (the address may be reused), and what the kernel still
   * holds is released when the process exits.
   */
  unmap(memory: ForeignMemory): void;
  /**
   * xengnttab_set_max_grants: a no-op on current Linux (the ioctl is gone
   * and libxengnttab ignores its ENOTTY) and on the simulator; XenCallError
   * only from an old kernel that refuses the value.
   */
  setMaxGrants(count: number): void;
  /**
   * Performs the copies (xengnttab_grant_copy); returns the GNTST_* status of
   * each segment (0 is success, a failed segment does not stop the others).
   * XenCallError only when the whole operation fails: ENOSYS when
   * libxengnttab is older than 1.1, EINVAL for a local-to-local segment or
   * one crossing a page, ENOMEM.
   */
  grantCopy(segments: readonly GrantCopySegment[]): number[];
  /**
   * Closes the handle (xengnttab_close), unmapping everything it still maps
   * first (views detached, notifications fired). Idempotent; never throws
   * (a failing unmap is skipped; the kernel releases it at close).
   */
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
  /** True once closed, by `close` or by the backend (see the rules above). */
  readonly closed: boolean;
  /**
   * Allocates `count` zeroed pages and grants each to `domid`
   * (xengntshr_share_pages); returns them with one ref per page, tracked by
   * this driver. XenCallError ENOSPC past the kernel's gntalloc limit or a
   * full grant table, EINVAL for count 0, ENOMEM. On failure nothing is
   * allocated or granted.
   */
  sharePages(domid: number, count: number, writable: boolean): SharedPages;
  /**
   * One page with unmap notification (xengntshr_share_page_notify): when it
   * is unshared, or the process exits, the byte at `notify.offset` is
   * cleared and `notify.port` notified. XenCallError EINVAL for a port not
   * bound in this domain; otherwise as `sharePages`.
   */
  sharePageNotify(domid: number, writable: boolean, notify: UnmapNotify): SharedPages;
  /**
   * Unshares pages from `sharePages`/`sharePageNotify` (xengntshr_unshare):
   * detaches the views, fires the notification, ends the grants (a peer
   * that still maps them keeps a valid mapping until it unmaps).
   * XenUsageError for pages this driver did not share or already released
   * (nothing changes). A failing C call (XenCallError) leaves the views
   * detached and the pages untracked, as for GrantTableDriver.unmap.
   */
  unshare(shared: SharedPages): void;
  /** Closes the handle (xengntshr_close), unsharing everything first. Idempotent; never throws. */
  close(): void;
}

/** A complete backend: the factory for the three kinds of handle. */
export interface XenBackend {
  readonly kind: BackendKind;
  /** Human-readable description (library paths, or the simulated domain). */
  readonly description: string;
  /**
   * Opens /dev/xen/evtchn (xenevtchn_open); the caller owns the driver.
   * XenCallError ENOENT without the device (not dom0 or no driver loaded),
   * EACCES without permission, EMFILE, ENOMEM. The simulator: ENOMEM
   * (injected fault), ClosedHandleError once its process crashed.
   */
  openEventChannels(): EventChannelDriver;
  /** Opens /dev/xen/gntdev (xengnttab_open); errors as openEventChannels. */
  openGrantTable(): GrantTableDriver;
  /** Opens /dev/xen/gntalloc (xengntshr_open); errors as openEventChannels. */
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
