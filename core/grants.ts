/**
 * The public grant handles, written once over any backend's drivers:
 * GrantTable (consumer: map, unmap, copy) and GrantShare (producer: share,
 * unshare), and the memory objects they hand out.
 *
 * @module
 */
import type {
  BackendKind,
  ForeignMemory,
  GrantCopyPointer,
  GrantCopySegment,
  GrantShareDriver,
  GrantTableDriver,
  SharedPages,
  UnmapNotify,
} from "./driver.ts";
import { PAGE_SIZE } from "./driver.ts";
import { ClosedHandleError, XenUsageError } from "./errors.ts";
import {
  checkCount,
  checkDomid,
  checkInteger,
  checkPageOffset,
  checkPort,
  checkRef,
} from "./validate.ts";
import { checkAccessOptions, checkCopySegments, checkGrantRefs, checkRefList } from "./validate.ts";

/** Options for mapping or sharing. */
export interface AccessOptions {
  /** Map (or grant) read-write; default true. */
  readonly writable?: boolean;
}

/** Options for the *_notify variants: either field, or both. */
export interface NotifyOptions extends AccessOptions {
  /** Offset of the status byte zeroed when the other side goes away. */
  readonly notifyOffset?: number;
  /** Local port notified when the mapping is released or its process exits. */
  readonly notifyPort?: number;
}

/** One grant to map: the granting domain and its reference. */
export interface GrantRef {
  readonly domid: number;
  readonly ref: number;
}

/** Pages of foreign memory owned by a handle until released. */
abstract class PageRange implements Disposable {
  readonly #memory: ForeignMemory;
  #released = false;

  constructor(memory: ForeignMemory) {
    this.#memory = memory;
  }

  /** Number of 4096-byte pages. */
  get count(): number {
    return this.#memory.count;
  }

  /** All pages as one view; zero-length once released. See ForeignMemory.bytes. */
  get bytes(): Uint8Array {
    return this.#released ? new Uint8Array(0) : this.#memory.bytes;
  }

  /** One view per page; an empty list once released. */
  get pages(): readonly Uint8Array[] {
    return this.#released ? [] : this.#memory.pages;
  }

  /** Whether the pages were released (unmapped or unshared). */
  get released(): boolean {
    return this.#released;
  }

  /** @internal the backend memory, for the owning handle. */
  get memory(): ForeignMemory {
    return this.#memory;
  }

  /** @internal marks the range released; the owner already freed it. */
  markReleased(): void {
    this.#released = true;
  }

  abstract [Symbol.dispose](): void;
}

/** Pages of another domain mapped by a GrantTable. */
export class GrantMapping extends PageRange {
  readonly #owner: GrantTable;

  /** @internal created by GrantTable only. */
  constructor(owner: GrantTable, memory: ForeignMemory) {
    super(memory);
    this.#owner = owner;
  }

  /** Unmaps the pages (same as owner.unmap(this)). Idempotent. */
  unmap(): void {
    if (!this.released) this.#owner.unmap(this);
  }

  [Symbol.dispose](): void {
    this.unmap();
  }
}

/** Pages this process shares with another domain, with their grant refs. */
export class SharedGrant extends PageRange {
  /** Grant references, one per page, to hand to the peer. */
  readonly refs: readonly number[];
  readonly #owner: GrantShare;
  readonly #shared: SharedPages;

  /** @internal created by GrantShare only. */
  constructor(owner: GrantShare, shared: SharedPages) {
    super(shared.memory);
    this.refs = shared.refs;
    this.#owner = owner;
    this.#shared = shared;
  }

  /** @internal the driver's record. */
  get shared(): SharedPages {
    return this.#shared;
  }

  /** Unshares the pages (same as owner.unshare(this)). Idempotent. */
  unshare(): void {
    if (!this.released) this.#owner.unshare(this);
  }

  [Symbol.dispose](): void {
    this.unshare();
  }
}

/** Pages and ranges a grant handle holds now, for leak checks. */
export interface GrantHoldings {
  /** Live mappings (GrantTable) or shares (GrantShare). */
  readonly ranges: number;
  /** Pages in them. */
  readonly pages: number;
}

abstract class GrantHandle<Range extends PageRange> implements Disposable, AsyncDisposable {
  readonly backend: BackendKind;
  protected readonly ranges: Set<Range> = new Set<Range>();
  #closed = false;

  constructor(backend: BackendKind) {
    this.backend = backend;
  }

  protected abstract readonly what: string;
  protected abstract closeDriver(): void;

  protected live(): void {
    if (this.#closed) throw new ClosedHandleError(this.what);
  }

  protected own(range: Range): void {
    if (!this.ranges.has(range)) {
      throw new XenUsageError(
        `${this.what}: this range does not belong to this handle or is released`,
      );
    }
  }

  /** Whether close() has run. */
  get closed(): boolean {
    return this.#closed;
  }

  /** What this handle holds now. */
  holdings(): GrantHoldings {
    let pages = 0;
    for (const range of this.ranges) pages += range.count;
    return { ranges: this.ranges.size, pages };
  }

  /** Releases every range still held, then closes the handle. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const range of this.ranges) range.markReleased();
    this.ranges.clear();
    this.closeDriver();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

function access(options: AccessOptions | undefined): boolean {
  return checkAccessOptions(options);
}

function unmapNotify(options: NotifyOptions = {}): UnmapNotify {
  return {
    offset: options.notifyOffset === undefined
      ? undefined
      : checkPageOffset("notifyOffset", options.notifyOffset),
    port: options.notifyPort === undefined ? undefined : checkPort(options.notifyPort),
  };
}

/**
 * An open grant table handle (xengnttab_handle): maps pages other domains
 * granted. Every mapping is released by unmap(), by its own dispose, or by
 * close(). Not safe to share across Workers or after fork.
 */
export class GrantTable extends GrantHandle<GrantMapping> {
  protected readonly what = "grant table handle";
  readonly #driver: GrantTableDriver;

  /** Wraps an open driver; the handle owns it from now on. */
  constructor(backend: BackendKind, driver: GrantTableDriver) {
    super(backend);
    this.#driver = driver;
  }

  /** The pollable file descriptor (a virtual number on the simulator). */
  get fd(): number {
    this.live();
    return this.#driver.fd;
  }

  #map(
    domids: number | number[],
    refs: number[],
    writable: boolean,
    notify?: UnmapNotify,
  ): GrantMapping {
    this.live();
    const mapping = new GrantMapping(this, this.#driver.map(domids, refs, writable, notify));
    this.ranges.add(mapping);
    return mapping;
  }

  /**
   * Maps one page granted by `domid` (xengnttab_map_grant_ref). Throws
   * XenCallError (EINVAL or EPERM for a ref not granted to this domain or
   * read-only mapped writable, per the kernel), XenUsageError,
   * ClosedHandleError.
   */
  mapGrantRef(domid: number, ref: number, options?: AccessOptions): GrantMapping {
    return this.#map([checkDomid(domid)], [checkRef(ref)], access(options));
  }

  /**
   * Maps several grants, each from its own domain, as one contiguous range
   * (xengnttab_map_grant_refs). On any failure nothing stays mapped. Throws
   * like mapGrantRef.
   */
  mapGrantRefs(grants: readonly GrantRef[], options?: AccessOptions): GrantMapping {
    const { domids, refs } = checkGrantRefs("grants", grants);
    return this.#map(domids, refs, access(options));
  }

  /** Maps several grants of one domain (xengnttab_map_domain_grant_refs). Throws like mapGrantRef. */
  mapDomainGrantRefs(
    domid: number,
    refs: readonly number[],
    options?: AccessOptions,
  ): GrantMapping {
    return this.#map(checkDomid(domid), checkRefList("refs", refs), access(options));
  }

  /**
   * Maps one page with unmap notification (xengnttab_map_grant_ref_notify):
   * when it is unmapped, or this process exits or crashes, the byte at
   * `notifyOffset` is zeroed and `notifyPort` (bound through an event
   * channel handle of this process) is notified. If the notification cannot
   * be set up nothing is mapped: XenCallError (EINVAL for clearing a byte of
   * a read-only mapping or an unknown port).
   */
  mapGrantRefNotify(domid: number, ref: number, options?: NotifyOptions): GrantMapping {
    return this.#map([checkDomid(domid)], [checkRef(ref)], access(options), unmapNotify(options));
  }

  /**
   * Unmaps a mapping of this handle (xengnttab_unmap); its views become
   * zero-length first. Fires its unmap notification. Throws XenUsageError
   * for a mapping of another handle or one already unmapped,
   * ClosedHandleError, XenCallError.
   */
  unmap(mapping: GrantMapping): void {
    this.live();
    this.own(mapping);
    this.ranges.delete(mapping);
    mapping.markReleased();
    this.#driver.unmap(mapping.memory);
  }

  /**
   * Sets how many grants this handle may map (xengnttab_set_max_grants);
   * call it before mapping anything. Throws XenCallError, XenUsageError,
   * ClosedHandleError.
   */
  setMaxGrants(count: number): void {
    this.live();
    this.#driver.setMaxGrants(checkCount(count));
  }

  /**
   * Copies bytes between grant references and local buffers
   * (xengnttab_grant_copy). Returns the GNTST_* status of each segment (0 is
   * success); the call itself throws XenCallError only when the whole
   * operation fails. Throws XenUsageError for a local buffer shorter than
   * `len` or a field out of range, ClosedHandleError.
   */
  grantCopy(segments: readonly GrantCopySegment[]): number[] {
    this.live();
    checkCopySegments("segments", segments);
    segments.forEach((segment, i) => checkSegment(segment, i));
    return this.#driver.grantCopy(segments);
  }

  protected closeDriver(): void {
    this.#driver.close();
  }
}

function checkSegment(segment: GrantCopySegment, index: number): void {
  const len = checkInteger(`segments[${index}].len`, segment.len, 0, PAGE_SIZE);
  for (const side of [segment.source, segment.dest]) checkCopyPointer(side, len, index);
}

function checkCopyPointer(pointer: GrantCopyPointer, len: number, index: number): void {
  if ("local" in pointer) {
    if (!(pointer.local instanceof Uint8Array) || pointer.local.byteLength < len) {
      throw new XenUsageError(
        `segments[${index}]: the local buffer must be a Uint8Array of at least ${len} bytes`,
      );
    }
    return;
  }
  checkRef(pointer.ref);
  checkDomid(pointer.domid);
  checkInteger(`segments[${index}] offset`, pointer.offset, 0, 0xffff);
}

/**
 * An open grant share handle (xengntshr_handle): allocates pages and grants
 * them to another domain. Every share is released by unshare(), by its own
 * dispose, or by close(). Not safe to share across Workers or after fork.
 */
export class GrantShare extends GrantHandle<SharedGrant> {
  protected readonly what = "grant share handle";
  readonly #driver: GrantShareDriver;

  /** Wraps an open driver; the handle owns it from now on. */
  constructor(backend: BackendKind, driver: GrantShareDriver) {
    super(backend);
    this.#driver = driver;
  }

  /** The pollable file descriptor (a virtual number on the simulator). */
  get fd(): number {
    this.live();
    return this.#driver.fd;
  }

  #add(shared: SharedPages): SharedGrant {
    const grant = new SharedGrant(this, shared);
    this.ranges.add(grant);
    return grant;
  }

  /**
   * Allocates `count` zeroed pages and grants them to `domid`
   * (xengntshr_share_pages). Returns the pages and one ref per page. On
   * failure nothing is allocated: XenCallError (ENOSPC or ENOMEM past the
   * kernel's limit), XenUsageError, ClosedHandleError.
   */
  sharePages(domid: number, count: number, options?: AccessOptions): SharedGrant {
    this.live();
    return this.#add(
      this.#driver.sharePages(checkDomid(domid), checkCount(count), access(options)),
    );
  }

  /**
   * Shares one page with unmap notification (xengntshr_share_page_notify):
   * when it is unshared, or this process exits or crashes, the byte at
   * `notifyOffset` is zeroed and `notifyPort` is notified. Throws like
   * sharePages.
   */
  sharePageNotify(domid: number, options?: NotifyOptions): SharedGrant {
    this.live();
    const shared = this.#driver.sharePageNotify(
      checkDomid(domid),
      access(options),
      unmapNotify(options),
    );
    return this.#add(shared);
  }

  /**
   * Unshares pages of this handle (xengntshr_unshare); views become
   * zero-length first. Throws XenUsageError for a share of another handle or
   * one already released, ClosedHandleError, XenCallError.
   */
  unshare(grant: SharedGrant): void {
    this.live();
    this.own(grant);
    this.ranges.delete(grant);
    grant.markReleased();
    this.#driver.unshare(grant.shared);
  }

  protected closeDriver(): void {
    this.#driver.close();
  }
}
