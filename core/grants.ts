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
  type Backstop,
  describeObject,
  guard,
  INSPECT_DENO,
  INSPECT_NODE,
  leakReport,
  unguard,
} from "./lifetimes.ts";
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

/**
 * @internal One range's bookkeeping, shared by the range object, its
 * handle and its backstop; it references no public object.
 */
export interface RangeRecord {
  readonly memory: ForeignMemory;
  /** The driver's share record (ranges of a GrantShare only). */
  readonly shared?: SharedPages;
  released: boolean;
}

/**
 * @internal A grant handle's bookkeeping, shared with its backstop and its
 * ranges' backstops; it references no public object.
 */
export interface HandleRecord {
  readonly kind: "GrantTable" | "GrantShare";
  readonly backend: BackendKind;
  readonly driver: { readonly fd: number; readonly closed: boolean; close(): void };
  /** The live ranges (records, never the range objects: those must stay collectable). */
  readonly ranges: Set<RangeRecord>;
  /** Releases one range through the driver (unmap or unshare). */
  free(range: RangeRecord): void;
}

/** Pages of foreign memory owned by a handle until released. */
abstract class PageRange implements Disposable {
  readonly #handle: HandleRecord;
  readonly #record: RangeRecord;

  constructor(handle: HandleRecord, record: RangeRecord) {
    this.#handle = handle;
    this.#record = record;
    guard(this, rangeBackstop(handle, record), record);
  }

  /** Number of 4096-byte pages. */
  get count(): number {
    return this.#record.memory.count;
  }

  /** All pages as one view; zero-length once released. See ForeignMemory.bytes. */
  get bytes(): Uint8Array {
    return this.released ? new Uint8Array(0) : this.#record.memory.bytes;
  }

  /** One view per page; an empty list once released. */
  get pages(): readonly Uint8Array[] {
    return this.released ? [] : this.#record.memory.pages;
  }

  /**
   * Whether the pages were released: unmapped or unshared, by the owner's
   * close(), or by the backend closing the owner (a simulated crash).
   */
  get released(): boolean {
    return this.#record.released || this.#handle.driver.closed;
  }

  /** @internal the backend memory, for the owning handle. */
  get memory(): ForeignMemory {
    return this.#record.memory;
  }

  /** @internal the bookkeeping record, for the owning handle. */
  get record(): RangeRecord {
    return this.#record;
  }

  /** What the inspection hooks print: backend, the owner's fd, pages, released. */
  protected describe(name: string, extra: Record<string, unknown>): string {
    return describeObject(name, {
      backend: this.#handle.backend,
      fd: this.#handle.driver.fd,
      pages: this.count,
      ...extra,
      released: this.released,
    });
  }

  /** For Deno.inspect / console.log. */
  [INSPECT_DENO](): string {
    return this.toString();
  }

  /** For node:util inspect / Bun.inspect. */
  [INSPECT_NODE](): string {
    return this.toString();
  }

  abstract [Symbol.dispose](): void;
}

/** Pages of another domain mapped by a GrantTable. */
export class GrantMapping extends PageRange {
  readonly #owner: GrantTable;

  /** @internal created by GrantTable only. */
  constructor(owner: GrantTable, handle: HandleRecord, memory: ForeignMemory) {
    super(handle, { memory, released: false });
    this.#owner = owner;
  }

  /** Unmaps the pages (same as owner.unmap(this)). Idempotent. */
  unmap(): void {
    if (!this.released) this.#owner.unmap(this);
  }

  [Symbol.dispose](): void {
    this.unmap();
  }

  /** `GrantMapping { backend, fd, pages, address, released }`. */
  override toString(): string {
    return this.describe("GrantMapping", { address: this.memory.address });
  }
}

/** Pages this process shares with another domain, with their grant refs. */
export class SharedGrant extends PageRange {
  /** Grant references, one per page, to hand to the peer. */
  readonly refs: readonly number[];
  readonly #owner: GrantShare;

  /** @internal created by GrantShare only. */
  constructor(owner: GrantShare, handle: HandleRecord, shared: SharedPages) {
    super(handle, { memory: shared.memory, shared, released: false });
    this.refs = shared.refs;
    this.#owner = owner;
  }

  /** @internal the driver's record. */
  get shared(): SharedPages {
    return this.record.shared!;
  }

  /** Unshares the pages (same as owner.unshare(this)). Idempotent. */
  unshare(): void {
    if (!this.released) this.#owner.unshare(this);
  }

  [Symbol.dispose](): void {
    this.unshare();
  }

  /** `SharedGrant { backend, fd, pages, refs, released }`. */
  override toString(): string {
    return this.describe("SharedGrant", { refs: [...this.refs] });
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
  /** @internal the bookkeeping shared with the backstops. */
  protected readonly record: HandleRecord;
  #closed = false;

  constructor(record: HandleRecord) {
    this.backend = record.backend;
    this.record = record;
    guard(this, handleBackstop(record), this);
  }

  protected abstract readonly what: string;

  /** True once closed, here or by the backend (then the bookkeeping catches up). */
  #sync(): boolean {
    if (!this.#closed && this.record.driver.closed) this.#forget();
    return this.#closed;
  }

  /** Marks every range released and drops the backstops; the driver frees (or freed) them. */
  #forget(): void {
    this.#closed = true;
    for (const range of this.record.ranges) {
      range.released = true;
      unguard(range);
    }
    this.record.ranges.clear();
    unguard(this);
  }

  protected live(): void {
    if (this.#sync()) throw new ClosedHandleError(this.what);
  }

  protected own(range: Range): void {
    if (!(range instanceof PageRange) || !this.record.ranges.has(range.record)) {
      throw new XenUsageError(
        `${this.what}: this range does not belong to this handle or is released`,
      );
    }
  }

  /** Tracks a range the driver just handed out. */
  protected adopt(range: Range): Range {
    this.record.ranges.add(range.record);
    return range;
  }

  /** Stops tracking a range before the driver releases it (released even if that throws). */
  protected forgetRange(range: Range): void {
    this.record.ranges.delete(range.record);
    range.record.released = true;
    unguard(range.record);
  }

  /** Whether the handle is closed: close() ran, or the backend closed it. */
  get closed(): boolean {
    return this.#sync();
  }

  /** What this handle holds now. */
  holdings(): GrantHoldings {
    this.#sync();
    let pages = 0;
    for (const range of this.record.ranges) pages += range.memory.count;
    return { ranges: this.record.ranges.size, pages };
  }

  /** Releases every range still held, then closes the handle. Idempotent. */
  close(): void {
    if (this.#sync()) return;
    this.#forget();
    this.record.driver.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }

  /** For Deno.inspect / console.log: backend, fd, ranges, pages, closed. */
  [INSPECT_DENO](): string {
    return this.toString();
  }

  /** For node:util inspect / Bun.inspect. */
  [INSPECT_NODE](): string {
    return this.toString();
  }

  /** `GrantTable { backend, fd, mappings, pages, closed }` (GrantShare: shares). */
  toString(): string {
    const { ranges, pages } = this.holdings();
    return describeObject(this.record.kind, {
      backend: this.backend,
      fd: this.record.driver.fd,
      [this.record.kind === "GrantTable" ? "mappings" : "shares"]: ranges,
      pages,
      closed: this.#closed,
    });
  }
}

/** The backstop of a grant handle: closes the driver if still open, counting what it held. */
function handleBackstop(handle: HandleRecord): Backstop {
  return {
    release() {
      if (handle.driver.closed) return null;
      let pages = 0;
      for (const range of handle.ranges) {
        pages += range.memory.count;
        range.released = true;
        unguard(range);
      }
      const facts = {
        kind: handle.kind,
        backend: handle.backend,
        fd: handle.driver.fd,
        ports: [],
        ranges: handle.ranges.size,
        pages,
        refs: [],
      };
      handle.ranges.clear();
      try {
        handle.driver.close();
      } catch (error) {
        return leakReport({ ...facts, error });
      }
      return leakReport(facts);
    },
  };
}

/** The backstop of one mapping or share: releases it if its handle still holds it. */
function rangeBackstop(handle: HandleRecord, range: RangeRecord): Backstop {
  return {
    release() {
      if (range.released || handle.driver.closed || !handle.ranges.has(range)) return null;
      handle.ranges.delete(range);
      range.released = true;
      const facts = {
        kind: handle.kind === "GrantTable" ? "GrantMapping" : "SharedGrant",
        backend: handle.backend,
        fd: handle.driver.fd,
        ports: [],
        ranges: 1,
        pages: range.memory.count,
        refs: range.shared?.refs ?? [],
      } as const;
      try {
        handle.free(range);
      } catch (error) {
        return leakReport({ ...facts, error });
      }
      return leakReport(facts);
    },
  };
}

function tableRecord(backend: BackendKind, driver: GrantTableDriver): HandleRecord {
  return {
    kind: "GrantTable",
    backend,
    driver,
    ranges: new Set(),
    free: (range) => driver.unmap(range.memory),
  };
}

function shareRecord(backend: BackendKind, driver: GrantShareDriver): HandleRecord {
  return {
    kind: "GrantShare",
    backend,
    driver,
    ranges: new Set(),
    free: (range) => driver.unshare(range.shared!),
  };
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
    super(tableRecord(backend, driver));
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
    const memory = this.#driver.map(domids, refs, writable, notify);
    return this.adopt(new GrantMapping(this, this.record, memory));
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
   * like mapGrantRef; the simulator also refuses (XenUsageError) refs that
   * are not adjacent pages of one share in order (see README Limitations).
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
    this.forgetRange(mapping);
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
    super(shareRecord(backend, driver));
    this.#driver = driver;
  }

  /** The pollable file descriptor (a virtual number on the simulator). */
  get fd(): number {
    this.live();
    return this.#driver.fd;
  }

  #add(shared: SharedPages): SharedGrant {
    return this.adopt(new SharedGrant(this, this.record, shared));
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
    this.forgetRange(grant);
    this.#driver.unshare(grant.shared);
  }
}
