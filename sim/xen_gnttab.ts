/**
 * The grant table (v1) of one domain, with the granting side as Linux's
 * drivers/xen/grant-table.c drives it (refs from a LIFO free list: a freed
 * ref is handed out first, never-used refs follow in order from 8; the table
 * growing one 512-entry frame at a time up to max_grant_frames, ENOSPC
 * beyond; gnttab_end_foreign_access deferring while the grant is in use) and
 * the checks Xen makes when another domain maps or copies through a ref
 * (xen/common/grant_table.c map_grant_ref, acquire_grant_for_copy,
 * _set_status_v1).
 *
 * @module
 */
import {
  GNTST,
  GNTTAB_NR_RESERVED_ENTRIES,
  GREFS_PER_FRAME,
  GTF_permit_access,
  GTF_reading,
  GTF_readonly,
  GTF_writing,
} from "./constants.ts";
import { fail } from "./errno.ts";
import type { Frame } from "./memory.ts";
import type { Prng } from "./prng.ts";

/** One in-use grant entry (grant_entry_v1 plus Xen's active entry pin counts). */
export interface GrantEntry {
  readonly ref: number;
  /** GTF_* flags as the guest and Xen see them. */
  flags: number;
  /** The grantee. */
  readonly domid: number;
  readonly frame: Frame;
  /** Active pins (mappings and copies in flight); writePins of them writable. */
  pins: number;
  writePins: number;
  /** The granter ended access while pinned: the ref is freed at the last unpin. */
  ended: boolean;
}

/** Grant status of one ref for inspection. */
export interface GrantStatus {
  readonly ref: number;
  readonly flags: number;
  readonly domid: number;
  readonly readonly: boolean;
  readonly pins: number;
  /** Access was ended by the granter; waiting for the grantee to unmap. */
  readonly ended: boolean;
}

/** One domain's grant table. */
export class DomainGrantTable {
  #entries: (GrantEntry | undefined)[] = [];
  #frames = 1;
  /** Freed refs, the most recent last (Linux's gnttab_free_head list). */
  #freed: number[] = [];
  /** The lowest ref never handed out (the tail of Linux's initial free list). */
  #next = GNTTAB_NR_RESERVED_ENTRIES;
  #active = 0;
  #destroyed = false;
  /** After destroy(): pins other domains still hold on this domain's frames. */
  #foreignPins = 0;
  #whenReleased: (() => void) | undefined;

  /** Creates a table that may grow to `maxFrames` frames. */
  constructor(readonly domid: number, readonly maxFrames: number, readonly prng?: Prng) {}

  /** nr_grant_entries(): entries in the frames the guest has set up so far. */
  get nrEntries(): number {
    return this.#frames * GREFS_PER_FRAME;
  }

  /** Grant entries in use (including ended-but-still-mapped ones). */
  get activeGrants(): number {
    return this.#active;
  }

  /** True once the domain's table was torn down. */
  get destroyed(): boolean {
    return this.#destroyed;
  }

  /**
   * gnttab_grant_foreign_access: allocates a ref granting `frame` to
   * `grantee`. SimErrno ENOSPC when the table is at max_grant_frames and full.
   */
  grant(grantee: number, frame: Frame, readonly: boolean): number {
    const ref = this.#freeRef();
    const flags = GTF_permit_access | (readonly ? GTF_readonly : 0);
    this.#entries[ref] = { ref, flags, domid: grantee, frame, pins: 0, writePins: 0, ended: false };
    this.#active++;
    return ref;
  }

  /**
   * The toolstack's grant entries in the reserved refs (0..7): what libxl
   * (xc_dom_gnttab_seed) writes into a new guest's table before it boots, a
   * writable grant of `frame` to `grantee` at `ref`. They are never on the
   * kernel's free list, so grant() never hands them out. SimErrno EEXIST for
   * a ref already in use; throws RangeError for a ref outside 0..7.
   */
  seedReserved(ref: number, grantee: number, frame: Frame): void {
    if (!(Number.isInteger(ref) && ref >= 0 && ref < GNTTAB_NR_RESERVED_ENTRIES)) {
      throw new RangeError(`reserved grant ref must be in 0..7, got ${ref}`);
    }
    if (this.#entries[ref]) fail("EEXIST", `grant ref ${ref} is already in use`);
    const flags = GTF_permit_access;
    this.#entries[ref] = { ref, flags, domid: grantee, frame, pins: 0, writePins: 0, ended: false };
    this.#active++;
  }

  /**
   * gnttab_end_foreign_access: frees the ref now, or (when the grantee still
   * has it mapped: GTF_reading set) keeps it, flags intact, until the last
   * unpin, as Linux's deferred-end list does.
   */
  end(ref: number): void {
    const e = this.#entries[ref];
    if (!e) return;
    if (e.pins > 0) e.ended = true;
    else this.#free(ref);
  }

  /**
   * Xen's checks when domain `ldomid` pins `ref` (map or copy): returns the
   * entry, now pinned, or a GNTST status: bad_gntref beyond nr_grant_entries,
   * general_error for a ref not granted to `ldomid` or a writable pin of a
   * read-only grant, eagain for a paged-out frame (nothing pinned then).
   */
  acquire(ref: number, ldomid: number, readonly: boolean): GrantEntry | number {
    if (this.#destroyed) return GNTST.bad_domain;
    if (!(Number.isInteger(ref) && ref >= 0 && ref < this.nrEntries)) return GNTST.bad_gntref;
    const e = this.#entries[ref];
    if (!e || e.domid !== ldomid || (e.flags & GTF_permit_access) === 0) return GNTST.general_error;
    if (!readonly && (e.flags & GTF_readonly)) return GNTST.general_error;
    if (e.frame.pagedOut) return GNTST.eagain;
    e.pins++;
    e.flags |= GTF_reading;
    if (!readonly) {
      e.writePins++;
      e.flags |= GTF_writing;
    }
    return e;
  }

  /**
   * Pins other domains still hold on the frames of this destroyed table
   * (0 while the domain lives).
   */
  get foreignPins(): number {
    return this.#foreignPins;
  }

  /** Calls `f` once the destroyed table's last foreign pin is released. */
  whenReleased(f: () => void): void {
    this.#whenReleased = f;
  }

  /** Drops a pin taken by `acquire`; frees an ended entry at the last one. */
  release(e: GrantEntry, readonly: boolean): void {
    if (this.#destroyed) {
      if (e.domid !== this.domid && this.#foreignPins > 0 && --this.#foreignPins === 0) {
        this.#whenReleased?.();
      }
      return;
    }
    if (this.#entries[e.ref] !== e) return;
    e.pins--;
    if (!readonly && --e.writePins === 0) e.flags &= ~GTF_writing;
    if (e.pins > 0) return;
    e.flags &= ~GTF_reading;
    if (e.ended) this.#free(e.ref);
  }

  /** The entry for `ref`, if in use. */
  entry(ref: number): GrantEntry | undefined {
    return Number.isInteger(ref) && ref >= 0 ? this.#entries[ref] : undefined;
  }

  /** Inspection view of `ref`, or undefined when not in use. */
  status(ref: number): GrantStatus | undefined {
    const e = this.entry(ref);
    if (!e) return undefined;
    const ro = (e.flags & GTF_readonly) !== 0;
    return { ref, flags: e.flags, domid: e.domid, readonly: ro, pins: e.pins, ended: e.ended };
  }

  /**
   * The domain is destroyed: every entry disappears (mapped frames live on in
   * their mappings). The pins other domains hold are counted: until they are
   * all released the domain is a zombie (Xen keeps a dying domain whose pages
   * are mapped elsewhere; see foreignPins and whenReleased).
   */
  destroy(): void {
    for (const e of this.#entries) if (e && e.domid !== this.domid) this.#foreignPins += e.pins;
    this.#destroyed = true;
    this.#entries = [];
    this.#active = 0;
  }

  #free(ref: number): void {
    this.#entries[ref] = undefined;
    this.#active--;
    // put_free_entry: the freed ref becomes the head of the free list.
    if (!this.prng) this.#freed.push(ref);
  }

  #freeRef(): number {
    if (this.#destroyed) fail("ENOSPC", `d${this.domid} grant table is gone`);
    if (this.prng) {
      for (let i = 0; i < 8; i++) {
        const ref = this.prng.between(GNTTAB_NR_RESERVED_ENTRIES, this.nrEntries - 1);
        if (!this.#entries[ref]) return ref;
      }
      for (let ref = GNTTAB_NR_RESERVED_ENTRIES;; ref++) {
        if (ref >= this.nrEntries) this.#expand();
        if (!this.#entries[ref]) return ref;
      }
    }
    // get_free_entries: the head of the free list (the last ref freed), then
    // the never-used refs in order, expanding the table when they run out.
    const freed = this.#freed.pop();
    if (freed !== undefined) return freed;
    if (this.#next >= this.nrEntries) this.#expand();
    return this.#next++;
  }

  /** gnttab_expand: one more frame, ENOSPC at max_grant_frames. */
  #expand(): void {
    if (this.#frames >= this.maxFrames) {
      fail("ENOSPC", `d${this.domid} grant table full (${this.maxFrames} frames)`);
    }
    this.#frames++;
  }
}
