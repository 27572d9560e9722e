/**
 * A simulated /dev/xen/gntalloc handle driven through libxengnttab's gntshr
 * side, modelled on Linux drivers/xen/gntalloc.c (ALLOC_GREF: ENOSPC past
 * the per-kernel `limit` of 1024 grants, zeroed pages, one grant per page;
 * SET_UNMAP_NOTIFY: evtchn_get failure -> EINVAL; __del_gref on munmap: clear
 * byte, send event + evtchn_put, end foreign access, deferred while the
 * grantee still maps the page) and tools/libs/gnttab/linux.c (share = alloc
 * + mmap + optional notify + immediate DEALLOC, so the pages live until
 * unshare = munmap).
 *
 * @module
 */
import type { GrantShareDriver, SharedPages, UnmapNotify } from "../core/driver.ts";
import { ClosedHandleError, XenUsageError } from "../core/errors.ts";
import type { HandleOwner } from "./context.ts";
import type { SimDomain, SimHandle } from "./domain.ts";
import { checkDomid, fail, translate } from "./errno.ts";
import { checkNotify } from "./gnttab_driver.ts";
import { Frame, PageStore, SimForeignMemory } from "./memory.ts";

interface Share {
  readonly shared: SharedPages;
  readonly memory: SimForeignMemory;
  readonly store: PageStore;
  readonly notify?: UnmapNotify;
}

/**
 * One grant-share (producer) handle of a simulated process. close() (or the
 * process crashing) unshares everything, firing the unmap notifications;
 * the domain dying drops the shares silently (pages still mapped by other
 * domains stay valid for them). Once closed, every method but close()
 * throws ClosedHandleError.
 */
export class SimGrantShareDriver implements GrantShareDriver, SimHandle {
  readonly kind = "gntshr" as const;
  readonly fd: number;
  readonly #owner: HandleOwner;
  readonly #domain: SimDomain;
  #shares = new Map<SharedPages, Share>();
  #unshared = new WeakSet<object>();
  #closed = false;

  /** Opens the handle for `owner` (xengntshr_open already passed its checks). */
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

  /** Live shares and their pages. */
  get usage(): { shares: number; pages: number } {
    let pages = 0;
    for (const s of this.#shares.values()) pages += s.memory.count;
    return { shares: this.#shares.size, pages };
  }

  /**
   * xengntshr_share_pages: `count` zeroed pages granted to `domid` (not
   * checked: Linux grants to any domid), read-only unless `writable`.
   * ENOSPC past the domain's gntalloc limit or a full grant table, EINVAL for
   * count 0 (mmap of nothing), ENOMEM (fault). XenUsageError for a count that
   * is not an integer in 0..2^31-1.
   */
  sharePages(domid: number, count: number, writable: boolean): SharedPages {
    return this.#share("xengntshr_share_pages", domid, count, writable);
  }

  /**
   * xengntshr_share_page_notify: one page, with an unmap notification fired
   * when it is unshared or the process dies. EINVAL when `notify.port` is not
   * bound by an event channel handle in this domain; the other errors as
   * sharePages. XenUsageError for a malformed notify.
   */
  sharePageNotify(domid: number, writable: boolean, notify: UnmapNotify): SharedPages {
    checkNotify(notify ?? {});
    return this.#share("xengntshr_share_page_notify", domid, 1, writable, notify);
  }

  /**
   * xengntshr_unshare: clears the notify byte, sends the notify event, and
   * ends the grants (a grantee that still maps them keeps a valid mapping).
   * XenUsageError for pages already unshared or never shared here (the FFI
   * backend refuses both before calling the library); never fails
   * otherwise.
   */
  unshare(shared: SharedPages): void {
    this.#open();
    const s = this.#shares.get(shared);
    if (!s) {
      const why = this.#unshared.has(shared) ? "already unshared" : "not shared by this handle";
      throw new XenUsageError(`xengntshr_unshare: ${why}`);
    }
    this.#release(s, true);
  }

  /** xengntshr_close: unshares everything (notifications fire); idempotent. */
  close(): void {
    if (this.#closed) return;
    for (const s of [...this.#shares.values()]) this.#release(s, true);
    this.#closed = true;
    this.#owner.detach(this);
  }

  /** Simulator internal: the domain died; its grant table is gone, no notifications. */
  abandon(): void {
    if (this.#closed) return;
    for (const s of [...this.#shares.values()]) this.#release(s, false);
    this.#closed = true;
    this.#owner.detach(this);
  }

  #share(
    call: string,
    domid: number,
    count: number,
    writable: boolean,
    notify?: UnmapNotify,
  ): SharedPages {
    this.#open();
    checkDomid(domid);
    if (!(Number.isInteger(count) && count >= 0 && count <= 0x7fff_ffff)) {
      throw new XenUsageError(`count must be an integer in 0..2147483647, got ${count}`);
    }
    try {
      const d = this.#domain;
      if (this.#owner.ctx.faults.consumeAllocation(d.domid, call)) fail("ENOMEM", "injected");
      if (d.gntallocUsed + count > d.gntallocLimit) {
        fail("ENOSPC", `gntalloc limit ${d.gntallocLimit} (${d.gntallocUsed} in use)`);
      }
      if (count === 0) fail("EINVAL", "mmap of zero pages");
      const store = new PageStore(count);
      const frames = Array.from({ length: count }, (_, i) => new Frame(store, i, d.domid));
      const refs = this.#grantAll(frames, domid, !writable, store);
      if (notify?.port !== undefined && !d.kernel.get(notify.port)) {
        for (const ref of refs) d.grants.end(ref);
        store.release();
        fail(
          "EINVAL",
          `port ${notify.port} is not bound by an event channel handle in d${d.domid}`,
        );
      }
      d.gntallocUsed += count;
      const memory = new SimForeignMemory(frames, this.#owner.ctx.allocAddress(count));
      const shared: SharedPages = Object.freeze({ refs: Object.freeze(refs), memory });
      const n = notify ? { offset: notify.offset, port: notify.port } : undefined;
      this.#shares.set(shared, { shared, memory, store, notify: n });
      return shared;
    } catch (e) {
      throw translate(call, e);
    }
  }

  /** add_grefs: one grant per page; a failure (ENOSPC) ends the grants made so far. */
  #grantAll(frames: Frame[], domid: number, readonly: boolean, store: PageStore): number[] {
    const refs: number[] = [];
    try {
      for (const f of frames) refs.push(this.#domain.grants.grant(domid, f, readonly));
    } catch (e) {
      for (const ref of refs) this.#domain.grants.end(ref);
      store.release();
      throw e;
    }
    return refs;
  }

  /** munmap -> __del_gref per page: clear byte, event + evtchn_put, end access. */
  #release(s: Share, orderly: boolean): void {
    this.#shares.delete(s.shared);
    this.#unshared.add(s.shared);
    const d = this.#domain;
    if (orderly) {
      if (s.notify?.offset !== undefined) s.memory.frames[0].writeByte(s.notify.offset, 0);
      if (s.notify?.port !== undefined) {
        d.kernel.notify(s.notify.port);
        d.kernel.put(s.notify.port);
      }
      for (const ref of s.shared.refs) d.grants.end(ref);
      d.gntallocUsed -= s.memory.count;
    }
    s.memory.detach();
    s.store.release();
  }

  #open(): void {
    if (this.#closed) {
      throw new ClosedHandleError(`grant share handle fd ${this.fd} (${this.#owner.label})`);
    }
  }
}
