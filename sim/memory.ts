/**
 * Simulated guest memory: pages shared through grants and the
 * ForeignMemory objects handed to callers.
 *
 * Every share (one gntalloc allocation of `count` pages) is one ArrayBuffer,
 * so the sharer's `bytes` is a real contiguous view, and so is a mapping's:
 * the simulator only maps adjacent frames of one share (framesContiguous).
 * A mapping's views alias the sharer's buffer, so writes on either side are
 * seen by the other at once.
 *
 * The detach limitation (pure JavaScript cannot do better): an ArrayBuffer
 * can only be detached as a whole, which would also kill every other party's
 * views of the same pages. So after `unmap`/`unshare` the ForeignMemory's
 * getters (`pages`, `bytes`) return zero-length views and the driver refuses
 * the object (ClosedHandleError), but views obtained earlier keep aliasing
 * the pages until the pages are freed, i.e. until the share is gone AND no
 * mapping of it remains; then the buffer is transferred away and every view
 * anyone still holds becomes zero-length.
 *
 * @module
 */
import { XenUsageError } from "../core/errors.ts";
import type { ForeignMemory } from "../core/driver.ts";
import { PAGE } from "./constants.ts";

/** The backing memory of one share: `pages` zeroed pages in one ArrayBuffer. */
export class PageStore {
  readonly buffer: ArrayBuffer;
  #users = 1;

  /** Allocates zeroed pages; the creator (the share) holds the first reference. */
  constructor(readonly pages: number) {
    this.buffer = new ArrayBuffer(pages * PAGE);
  }

  /** True once the last reference went and every view was detached. */
  get freed(): boolean {
    return this.#users === 0;
  }

  /** Takes a reference (a mapped page). */
  retain(): void {
    this.#users++;
  }

  /** Drops a reference; the last one detaches the buffer (all views go zero-length). */
  release(): void {
    if (this.#users === 0) return;
    if (--this.#users === 0) this.buffer.transfer(0);
  }
}

/** One 4096-byte frame: page `index` of a PageStore, owned by domain `owner`. */
export class Frame {
  /** Paged out by the (simulated) pager: grant operations get GNTST_eagain. */
  pagedOut = false;
  /** Live foreign mappings of this frame. */
  mapCount = 0;

  /** Creates the frame descriptor. */
  constructor(readonly store: PageStore, readonly index: number, readonly owner: number) {}

  /** A fresh view of the frame (zero-length once the store is freed). */
  view(): Uint8Array {
    if (this.store.freed) return new Uint8Array(0);
    return new Uint8Array(this.store.buffer, this.index * PAGE, PAGE);
  }

  /** Writes one byte at `offset` (unmap-notify CLEAR_BYTE); no-op once freed. */
  writeByte(offset: number, value: number): void {
    if (!this.store.freed) new Uint8Array(this.store.buffer)[this.index * PAGE + offset] = value;
  }
}

/**
 * Whether `frames` are adjacent pages of one share, in order: the only frame
 * lists one ArrayBuffer view can cover. Memory is one ArrayBuffer per share
 * (so that freeing a share can detach every view of it), and JavaScript has
 * no way to make one typed array span two buffers, or two distant parts of
 * one buffer, while still aliasing them; a copy would not alias. So the
 * gntdev model refuses other frame lists at map time (sim/gnttab_driver.ts).
 */
export function framesContiguous(frames: readonly Frame[]): boolean {
  const first = frames[0];
  return frames.every((f, i) => f.store === first.store && f.index === first.index + i);
}

/**
 * ForeignMemory over adjacent frames of one share (framesContiguous).
 * `pages[i]` aliases frame i and `bytes` all of them; neither getter throws.
 * After `detach` both return zero-length views (see the module comment for
 * views obtained before).
 */
export class SimForeignMemory implements ForeignMemory {
  readonly count: number;
  #frames: readonly Frame[];
  #pages?: readonly Uint8Array[];
  #bytes?: Uint8Array;
  #detached = false;

  /**
   * Wraps `frames` (at least one, framesContiguous) with the opaque identity
   * `address`. Throws XenUsageError for frames that are not contiguous (the
   * drivers check first, so this never reaches a caller).
   */
  constructor(frames: readonly Frame[], readonly address: bigint) {
    if (frames.length === 0 || !framesContiguous(frames)) {
      throw new XenUsageError("SimForeignMemory needs adjacent frames of one share, in order");
    }
    this.count = frames.length;
    this.#frames = frames;
  }

  /** The frames, in mapping order (simulator internal). */
  get frames(): readonly Frame[] {
    return this.#frames;
  }

  /** True after unmap/unshare. */
  get detached(): boolean {
    return this.#detached;
  }

  /** One view per page; zero-length views after detach. Throws nothing. */
  get pages(): readonly Uint8Array[] {
    if (this.#detached) return this.#frames.map(() => new Uint8Array(0));
    this.#pages ??= Object.freeze(this.#frames.map((f) => f.view()));
    return this.#pages;
  }

  /** All pages as one view; zero-length after detach. Throws nothing. */
  get bytes(): Uint8Array {
    if (this.#detached) return new Uint8Array(0);
    if (!this.#bytes) {
      const first = this.#frames[0];
      this.#bytes = first.store.freed
        ? new Uint8Array(0)
        : new Uint8Array(first.store.buffer, first.index * PAGE, this.count * PAGE);
    }
    return this.#bytes;
  }

  /** Marks the memory unmapped: getters return zero-length views from now on. */
  detach(): void {
    this.#detached = true;
    this.#pages = undefined;
    this.#bytes = undefined;
  }
}
