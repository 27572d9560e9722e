/**
 * A simulated /dev/xen/gntdev handle driven through libxengnttab, modelled
 * on Linux drivers/xen/gntdev.c (MAP_GRANT_REF: count 0 or > 65536 ->
 * EINVAL; mmap -> gntdev_map_grant_pages: any failed GNTTABOP_map_grant_ref
 * status -> EINVAL; SET_UNMAP_NOTIFY: evtchn_get failure -> EINVAL, CLEAR_BYTE
 * on a read-only map -> EINVAL; unmap: clear byte, unmap, then send event and
 * drop the port reference) and tools/libs/gnttab/linux.c (a failed notify
 * registration unmaps again; SET_MAX_GRANTS is gone from Linux and its
 * ENOTTY is ignored, so setMaxGrants does nothing).
 *
 * @module
 */
import type {
  ForeignMemory,
  GrantCopySegment,
  GrantTableDriver,
  UnmapNotify,
} from "../core/driver.ts";
import { ClosedHandleError, XenUsageError } from "../core/errors.ts";
import { GNTDEV_MAP_LIMIT, GNTST, PAGE } from "./constants.ts";
import type { HandleOwner } from "./context.ts";
import type { SimDomain, SimHandle } from "./domain.ts";
import { checkDomid, checkU32, fail, translate } from "./errno.ts";
import { grantCopy } from "./grant_copy.ts";
import { type Frame, framesContiguous, SimForeignMemory } from "./memory.ts";
import { gntstName, retryEagain } from "./paging.ts";
import type { DomainGrantTable, GrantEntry } from "./xen_gnttab.ts";

interface Pin {
  readonly table: DomainGrantTable;
  readonly entry: GrantEntry;
}

interface Mapping {
  readonly memory: SimForeignMemory;
  readonly pins: readonly Pin[];
  readonly readonly: boolean;
  readonly notify?: UnmapNotify;
}

/** Checks an UnmapNotify's shape (offset 0..4095, port a uint32); XenUsageError otherwise. */
export function checkNotify(notify: UnmapNotify): void {
  const { offset, port } = notify;
  if (offset !== undefined && !(Number.isInteger(offset) && offset >= 0 && offset < PAGE)) {
    throw new XenUsageError(`notify offset must be an integer in 0..${PAGE - 1}, got ${offset}`);
  }
  if (port !== undefined) checkU32(port, "notify port");
}

/**
 * One grant-table (consumer) handle of a simulated process. Ownership: the
 * creating process; close() (or the process crashing) unmaps everything with
 * the unmap notifications; the domain dying drops everything silently.
 * Once closed, every method but close() throws ClosedHandleError.
 */
export class SimGrantTableDriver implements GrantTableDriver, SimHandle {
  readonly kind = "gnttab" as const;
  readonly fd: number;
  readonly #owner: HandleOwner;
  readonly #domain: SimDomain;
  #maps = new Map<SimForeignMemory, Mapping>();
  #unmapped = new WeakSet<object>();
  #closed = false;

  /** Opens the handle for `owner` (xengnttab_open already passed its checks). */
  constructor(owner: HandleOwner) {
    this.#owner = owner;
    this.#domain = owner.domain;
    this.fd = owner.ctx.allocFd();
    owner.attach(this);
  }

  /** True once closed: by close(), the process crashing or the domain dying. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Live mappings and the pages they cover. */
  get usage(): { mappings: number; pages: number } {
    let pages = 0;
    for (const m of this.#maps.values()) pages += m.memory.count;
    return { mappings: this.#maps.size, pages };
  }

  /**
   * xengnttab_map_grant_refs / _map_grant_ref_notify: maps refs[i] of
   * domids[i] (a single domid: every ref of that domain,
   * xengnttab_map_domain_grant_refs). EINVAL for 0 or > 65536 refs, for any ref Xen refuses (no
   * such domain, ref beyond the table, not granted to this domain, writable
   * map of a read-only grant, maptrack full, frame still paged out after the
   * kernel's retry), and for a refused notification (port not bound by an
   * event channel handle in this domain; clear-byte on a read-only map).
   * ENOMEM (fault). notify needs exactly one ref (XenUsageError otherwise).
   * XenUsageError (after every ref was accepted, then unpinned again) when
   * the refs are not adjacent pages of one share in order: see
   * #checkContiguous.
   * May advance the virtual clock while a paged-out frame is retried.
   */
  map(
    domidOrDomids: number | readonly number[],
    refs: readonly number[],
    writable: boolean,
    notify?: UnmapNotify,
  ): ForeignMemory {
    const call = mapCallName(domidOrDomids, refs, notify);
    this.#open();
    const domids = typeof domidOrDomids === "number" && Array.isArray(refs)
      ? refs.map(() => domidOrDomids)
      : domidOrDomids as readonly number[];
    this.#checkMapArgs(domids, refs, notify);
    try {
      if (refs.length === 0 || refs.length > GNTDEV_MAP_LIMIT) {
        fail("EINVAL", `count ${refs.length} outside 1..${GNTDEV_MAP_LIMIT}`);
      }
      if (this.#owner.ctx.faults.consumeAllocation(this.#domain.domid, call)) {
        fail("ENOMEM", "gntdev_alloc_map failed (injected)");
      }
      const pins = this.#pinAll(domids, refs, !writable);
      this.#checkContiguous(pins, domids, refs, !writable);
      if (notify) this.#takeNotify(pins, !writable, notify);
      return this.#record(pins, !writable, notify);
    } catch (e) {
      throw translate(call, e);
    }
  }

  /**
   * xengnttab_unmap: clears the notify byte, unmaps, then notifies the port.
   * XenUsageError for memory this handle already unmapped or never mapped
   * (the FFI backend refuses both before calling the library); never fails
   * otherwise.
   */
  unmap(memory: ForeignMemory): void {
    this.#open();
    const m = this.#maps.get(memory as SimForeignMemory);
    if (!m) {
      const why = this.#unmapped.has(memory) ? "already unmapped" : "not a mapping of this handle";
      throw new XenUsageError(`xengnttab_unmap: ${why}`);
    }
    this.#release(m, true);
  }

  /** xengnttab_set_max_grants: accepted and ignored (Linux dropped the ioctl; ENOTTY is ignored). */
  setMaxGrants(count: number): void {
    this.#open();
    checkU32(count, "count");
  }

  /** xengnttab_grant_copy: see grant_copy.ts for statuses and errors. */
  grantCopy(segments: readonly GrantCopySegment[]): number[] {
    const call = "xengnttab_grant_copy";
    this.#open();
    try {
      return grantCopy(this.#owner.ctx, this.#domain, segments, call);
    } catch (e) {
      throw translate(call, e);
    }
  }

  /** xengnttab_close: unmaps every mapping (notifications fire); idempotent. */
  close(): void {
    if (this.#closed) return;
    for (const m of [...this.#maps.values()]) this.#release(m, true);
    this.#closed = true;
    this.#owner.detach(this);
  }

  /** Simulator internal: the domain died; Xen releases the mappings, no notifications. */
  abandon(): void {
    if (this.#closed) return;
    for (const m of [...this.#maps.values()]) this.#release(m, false);
    this.#closed = true;
    this.#owner.detach(this);
  }

  #checkMapArgs(domids: readonly number[], refs: readonly number[], notify?: UnmapNotify): void {
    if (!Array.isArray(domids) || !Array.isArray(refs) || domids.length !== refs.length) {
      throw new XenUsageError("domids and refs must be arrays of the same length");
    }
    domids.forEach((d) => checkDomid(d));
    refs.forEach((r) => checkU32(r, "ref"));
    if (notify) {
      if (refs.length !== 1) throw new XenUsageError("an unmap notification needs exactly one ref");
      checkNotify(notify);
    }
  }

  /** Xen map_grant_ref for every op (with eagain retries); any failure unpins all -> EINVAL. */
  #pinAll(domids: readonly number[], refs: readonly number[], readonly: boolean): Pin[] {
    const pins: Pin[] = [];
    const failures: string[] = [];
    const { clock, pagingMaxDelay } = this.#owner.ctx;
    refs.forEach((ref, i) => {
      const status = retryEagain(clock, pagingMaxDelay, () => {
        const r = this.#mapOne(domids[i], ref, readonly);
        if (typeof r === "number") return r;
        pins.push(r);
        return GNTST.okay;
      });
      if (status !== GNTST.okay) failures.push(`ref ${ref} of d${domids[i]}: ${gntstName(status)}`);
    });
    if (failures.length === 0) return pins;
    for (const p of pins) this.#unpin(p, readonly);
    return fail("EINVAL", failures.join("; "));
  }

  /**
   * The simulator's one refusal real Xen does not make: frames that are not
   * adjacent pages of one share in order cannot be aliased as one `bytes`
   * view (sim/memory.ts framesContiguous), so rather than hand out memory
   * whose `bytes` cannot work, the map fails: unpins all, XenUsageError.
   */
  #checkContiguous(
    pins: Pin[],
    domids: readonly number[],
    refs: readonly number[],
    readonly: boolean,
  ): void {
    if (framesContiguous(pins.map((p) => p.entry.frame))) return;
    for (const p of pins) this.#unpin(p, readonly);
    const shown = refs.slice(0, 4).map((r, i) => `d${domids[i]} ref ${r}`).join(", ");
    const list = refs.length > 4 ? `${shown} and ${refs.length - 4} more` : shown;
    throw new XenUsageError(
      `simulator limitation: ${list} are not adjacent pages of one share in order, so the ` +
        "simulator cannot map them as one contiguous range (real Xen can); map them one at a " +
        "time, or share them with one sharePages(count) call and map its refs in order",
    );
  }

  #mapOne(domid: number, ref: number, readonly: boolean): Pin | number {
    const granter = this.#owner.ctx.domain(domid);
    if (!granter) return GNTST.bad_domain;
    if (this.#domain.maptrackUsed >= this.#domain.maptrackLimit) return GNTST.no_device_space;
    const got = granter.grants.acquire(ref, this.#domain.domid, readonly);
    if (typeof got === "number") return got;
    this.#domain.maptrackUsed++;
    return { table: granter.grants, entry: got };
  }

  #unpin(p: Pin, readonly: boolean): void {
    p.table.release(p.entry, readonly);
    this.#domain.maptrackUsed--;
  }

  /** IOCTL_GNTDEV_SET_UNMAP_NOTIFY: evtchn_get first, then the read-only check (both EINVAL). */
  #takeNotify(pins: Pin[], readonly: boolean, notify: UnmapNotify): void {
    const kernel = this.#domain.kernel;
    let err: string | undefined;
    if (notify.port !== undefined && !kernel.get(notify.port)) {
      err = `port ${notify.port} is not bound by an event channel handle in d${this.#domain.domid}`;
    } else if (notify.offset !== undefined && readonly) {
      if (notify.port !== undefined) kernel.put(notify.port);
      err = "clear-byte notification on a read-only mapping";
    }
    if (err === undefined) return;
    for (const p of pins) this.#unpin(p, readonly);
    fail("EINVAL", err);
  }

  #record(pins: Pin[], readonly: boolean, notify?: UnmapNotify): SimForeignMemory {
    const frames: Frame[] = pins.map((p) => p.entry.frame);
    for (const f of frames) {
      f.mapCount++;
      f.store.retain();
    }
    const memory = new SimForeignMemory(frames, this.#owner.ctx.allocAddress(frames.length));
    const n = notify ? { offset: notify.offset, port: notify.port } : undefined;
    this.#maps.set(memory, { memory, pins, readonly, notify: n });
    return memory;
  }

  /** Unmap: clear byte, Xen unmap, send event + evtchn_put (orderly only), detach. */
  #release(m: Mapping, orderly: boolean): void {
    this.#maps.delete(m.memory);
    this.#unmapped.add(m.memory);
    const frames = m.memory.frames;
    if (orderly && m.notify?.offset !== undefined) frames[0].writeByte(m.notify.offset, 0);
    for (const p of m.pins) this.#unpin(p, m.readonly);
    if (orderly && m.notify?.port !== undefined) {
      this.#domain.kernel.notify(m.notify.port);
      this.#domain.kernel.put(m.notify.port);
    }
    m.memory.detach();
    for (const f of frames) {
      f.mapCount--;
      f.store.release();
    }
  }

  #open(): void {
    if (this.#closed) {
      throw new ClosedHandleError(`grant table handle fd ${this.fd} (${this.#owner.label})`);
    }
  }
}

/** The C function the FFI backend calls for the same arguments. */
function mapCallName(
  domids: number | readonly number[],
  refs: readonly number[],
  notify?: UnmapNotify,
): string {
  if (notify) return "xengnttab_map_grant_ref_notify";
  if (typeof domids === "number") return "xengnttab_map_domain_grant_refs";
  return refs.length === 1 ? "xengnttab_map_grant_ref" : "xengnttab_map_grant_refs";
}
