/**
 * The FFI grant drivers: an open xengnttab_handle (consumer) and an open
 * xengntshr_handle (producer).
 *
 * @module
 */
import type {
  ForeignMemory,
  GrantCopyPointer,
  GrantCopySegment,
  GrantShareDriver,
  GrantTableDriver,
  SharedPages,
  UnmapNotify,
} from "../core/driver.ts";
import { ClosedHandleError, XenCallError, XenUsageError } from "../core/errors.ts";
import type { XenLibraries } from "./load.ts";
import { FfiMemory } from "./memory.ts";
import type { FfiRuntime, Ptr } from "./types.ts";

const PROT_READ = 1;
const PROT_WRITE = 2;
const ENOSYS = 38;
/** "No notification" for notify_offset / notify_port in the C API. */
const NONE = 0xffffffff;
/** sizeof(xengnttab_grant_copy_segment_t) and its field offsets (x86_64). */
const SEGMENT_SIZE = 24;
const SEGMENT_LEN = 16;
const SEGMENT_FLAGS = 18;
const SEGMENT_STATUS = 20;
const GNTCOPY_SOURCE_GREF = 1;
const GNTCOPY_DEST_GREF = 2;

/** Tracks live FfiMemory by address and detaches each before release. */
class MemoryTable {
  readonly #byAddress = new Map<bigint, FfiMemory>();

  add(memory: FfiMemory): FfiMemory {
    this.#byAddress.set(memory.address, memory);
    return memory;
  }

  /** The FfiMemory this table owns for `memory`; XenUsageError otherwise. */
  take(memory: ForeignMemory, what: string): FfiMemory {
    const own = this.#byAddress.get(memory.address);
    if (own === undefined || own !== memory) {
      throw new XenUsageError(
        `${what}: this memory does not belong to this handle (or is already released)`,
      );
    }
    return own;
  }

  delete(memory: FfiMemory): void {
    this.#byAddress.delete(memory.address);
  }

  /** Every live memory, emptied from the table. */
  drain(): FfiMemory[] {
    const all = [...this.#byAddress.values()];
    this.#byAddress.clear();
    return all;
  }
}

abstract class FfiGrantHandle {
  readonly fd: number;
  protected readonly libs: XenLibraries;
  protected readonly memories = new MemoryTable();
  #handle: Ptr | null;

  constructor(libs: XenLibraries, handle: Ptr, fd: number) {
    this.libs = libs;
    this.#handle = handle;
    this.fd = fd;
  }

  protected abstract readonly what: string;
  protected abstract release(handle: Ptr, memory: FfiMemory): number;
  protected abstract closeHandle(handle: Ptr): void;

  /** True once close() ran. */
  get closed(): boolean {
    return this.#handle === null;
  }

  protected live(): Ptr {
    if (this.#handle === null) throw new ClosedHandleError(this.what);
    return this.#handle;
  }

  protected fail(call: string): never {
    throw new XenCallError(call, this.libs.errno());
  }

  protected wrap(call: string, pointer: Ptr | null, count: number): FfiMemory {
    if (pointer === null) this.fail(call);
    return this.memories.add(new FfiMemory(this.libs.runtime, pointer, count));
  }

  /**
   * Detaches the memory's views and forgets it, then releases the pages: a
   * failing C call still leaves it detached and untracked (never retried;
   * see GrantTableDriver.unmap). XenUsageError for memory not tracked here.
   */
  protected releaseMemory(memory: ForeignMemory, call: string): void {
    const handle = this.live();
    const own = this.memories.take(memory, call);
    own.detach();
    this.memories.delete(own);
    if (this.release(handle, own) < 0) this.fail(call);
  }

  /** Releases every page still held, then closes the handle. Idempotent. */
  close(): void {
    const handle = this.#handle;
    if (handle === null) return;
    for (const memory of this.memories.drain()) {
      memory.detach();
      this.release(handle, memory);
    }
    this.#handle = null;
    this.closeHandle(handle);
  }
}

function notifyArgs(notify: UnmapNotify | undefined): [number, number] {
  return [notify?.offset ?? NONE, notify?.port ?? NONE];
}

/** An open xengnttab_handle; see GrantTableDriver for each method. */
export class FfiGrantTable extends FfiGrantHandle implements GrantTableDriver {
  protected readonly what = "grant table handle";

  /** Opens /dev/xen/gntdev. Throws XenCallError("xengnttab_open") with errno. */
  constructor(libs: XenLibraries) {
    const handle = libs.gnttab.symbols.xengnttab_open(libs.logger, 0);
    if (handle === null) throw new XenCallError("xengnttab_open", libs.errno());
    super(libs, handle, libs.gnttab.symbols.xengnttab_fd(handle));
  }

  map(
    domids: number | readonly number[],
    refs: readonly number[],
    writable: boolean,
    notify?: UnmapNotify,
  ): ForeignMemory {
    const s = this.libs.gnttab.symbols;
    const handle = this.live();
    const prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
    const count = refs.length;
    if (notify) {
      if (count !== 1) throw new XenUsageError("an unmap notification needs exactly one ref");
      const domid = typeof domids === "number" ? domids : domids[0];
      const pointer = s.xengnttab_map_grant_ref_notify(
        handle,
        domid,
        refs[0],
        prot,
        ...notifyArgs(notify),
      );
      return this.wrap("xengnttab_map_grant_ref_notify", pointer, 1);
    }
    if (typeof domids === "number") {
      const pointer = s.xengnttab_map_domain_grant_refs(
        handle,
        count,
        domids,
        Uint32Array.from(refs),
        prot,
      );
      return this.wrap("xengnttab_map_domain_grant_refs", pointer, count);
    }
    if (count === 1) {
      return this.wrap(
        "xengnttab_map_grant_ref",
        s.xengnttab_map_grant_ref(handle, domids[0], refs[0], prot),
        1,
      );
    }
    const pointer = s.xengnttab_map_grant_refs(
      handle,
      count,
      Uint32Array.from(domids),
      Uint32Array.from(refs),
      prot,
    );
    return this.wrap("xengnttab_map_grant_refs", pointer, count);
  }

  unmap(memory: ForeignMemory): void {
    this.releaseMemory(memory, "xengnttab_unmap");
  }

  setMaxGrants(count: number): void {
    if (this.libs.gnttab.symbols.xengnttab_set_max_grants(this.live(), count) < 0) {
      this.fail("xengnttab_set_max_grants");
    }
  }

  grantCopy(segments: readonly GrantCopySegment[]): number[] {
    const copy = this.libs.gnttab.symbols.xengnttab_grant_copy;
    const handle = this.live();
    if (copy === null) {
      throw new XenCallError("xengnttab_grant_copy", ENOSYS, "libxengnttab older than 1.1");
    }
    const buffer = encodeSegments(this.libs.runtime, segments);
    if (copy(handle, segments.length, buffer) < 0) this.fail("xengnttab_grant_copy");
    const view = new DataView(buffer.buffer);
    return segments.map((_, i) => view.getInt16(i * SEGMENT_SIZE + SEGMENT_STATUS, true));
  }

  protected release(handle: Ptr, memory: FfiMemory): number {
    return this.libs.gnttab.symbols.xengnttab_unmap(handle, memory.pointer, memory.count);
  }

  protected closeHandle(handle: Ptr): void {
    this.libs.gnttab.symbols.xengnttab_close(handle);
  }
}

function encodeSegments(runtime: FfiRuntime, segments: readonly GrantCopySegment[]): Uint8Array {
  const buffer = new Uint8Array(SEGMENT_SIZE * segments.length);
  const view = new DataView(buffer.buffer);
  segments.forEach((segment, i) => {
    const base = i * SEGMENT_SIZE;
    const sourceRef = encodePointer(runtime, view, base, segment.source);
    const destRef = encodePointer(runtime, view, base + 8, segment.dest);
    view.setUint16(base + SEGMENT_LEN, segment.len, true);
    view.setUint16(
      base + SEGMENT_FLAGS,
      (sourceRef ? GNTCOPY_SOURCE_GREF : 0) | (destRef ? GNTCOPY_DEST_GREF : 0),
      true,
    );
  });
  return buffer;
}

/** Writes one union xengnttab_copy_ptr; returns true when it is a grant ref. */
function encodePointer(
  runtime: FfiRuntime,
  view: DataView,
  at: number,
  pointer: GrantCopyPointer,
): boolean {
  if ("local" in pointer) {
    view.setBigUint64(at, runtime.addressOf(pointer.local), true);
    return false;
  }
  view.setUint32(at, pointer.ref, true);
  view.setUint16(at + 4, pointer.offset, true);
  view.setUint16(at + 6, pointer.domid, true);
  return true;
}

/** An open xengntshr_handle; see GrantShareDriver for each method. */
export class FfiGrantShare extends FfiGrantHandle implements GrantShareDriver {
  protected readonly what = "grant share handle";

  /** Opens /dev/xen/gntalloc. Throws XenCallError("xengntshr_open") with errno. */
  constructor(libs: XenLibraries) {
    const handle = libs.gnttab.symbols.xengntshr_open(libs.logger, 0);
    if (handle === null) throw new XenCallError("xengntshr_open", libs.errno());
    super(libs, handle, libs.gnttab.symbols.xengntshr_fd(handle));
  }

  sharePages(domid: number, count: number, writable: boolean): SharedPages {
    const refs = new Uint32Array(count);
    const pointer = this.libs.gnttab.symbols.xengntshr_share_pages(
      this.live(),
      domid,
      count,
      refs,
      writable ? 1 : 0,
    );
    return {
      refs: Object.freeze([...refs]),
      memory: this.wrap("xengntshr_share_pages", pointer, count),
    };
  }

  sharePageNotify(domid: number, writable: boolean, notify: UnmapNotify): SharedPages {
    const ref = new Uint32Array(1);
    const s = this.libs.gnttab.symbols;
    const pointer = s.xengntshr_share_page_notify(
      this.live(),
      domid,
      ref,
      writable ? 1 : 0,
      ...notifyArgs(notify),
    );
    return {
      refs: Object.freeze([...ref]),
      memory: this.wrap("xengntshr_share_page_notify", pointer, 1),
    };
  }

  unshare(shared: SharedPages): void {
    this.releaseMemory(shared.memory, "xengntshr_unshare");
  }

  protected release(handle: Ptr, memory: FfiMemory): number {
    return this.libs.gnttab.symbols.xengntshr_unshare(handle, memory.pointer, memory.count);
  }

  protected closeHandle(handle: Ptr): void {
    this.libs.gnttab.symbols.xengntshr_close(handle);
  }
}
