/**
 * The libxenvchan shared page (Xen 4.17 tools/libs/vchan, struct
 * vchan_interface in xen/io/libxenvchan.h) and the ring sizing rules of
 * init.c.
 *
 * | off | size | field       |                                              |
 * | --: | ---: | ----------- | -------------------------------------------- |
 * |   0 |    4 | left.cons   | left ring: the client writes, the server reads |
 * |   4 |    4 | left.prod   |                                              |
 * |   8 |    4 | right.cons  | right ring: the server writes, the client reads |
 * |  12 |    4 | right.prod  |                                              |
 * |  16 |    2 | left_order  | log2 of the ring size                        |
 * |  18 |    2 | right_order |                                              |
 * |  20 |    1 | cli_live    | 0 gone, 1 connected, 2 not yet connected     |
 * |  21 |    1 | srv_live    | 0 gone, 1 connected                          |
 * |  22 |    1 | cli_notify  | bits the server asks the client to signal    |
 * |  23 |    1 | srv_notify  | bits the client asks the server to signal    |
 * |  24 |  4*n | grants[]    | left-ring grant refs, then right-ring refs   |
 *
 * Memory ordering (what this module relies on, and why it holds):
 * every access to the header goes through `Atomics` on typed-array views of
 * the page (Uint32Array for the indices, Uint16Array for the orders,
 * Uint8Array for the live and notify bytes, all in the host's byte order,
 * which is the peer's: both ends run on one machine). Atomics operations are
 * never cached, hoisted out of loops, merged or reordered with each other by
 * the JIT, and V8 (Deno) and JavaScriptCore (Bun) emit sequentially
 * consistent machine instructions for them (x86-64: a plain load, `xchg`
 * for a store, a `lock`-prefixed read-modify-write; arm64: `ldar`, `stlr`,
 * exclusive pairs with acquire/release). The ring data is copied with
 * TypedArray.prototype.set (a memcpy) between those accesses: a reader
 * loads `prod` (acquire), copies, then stores `cons` (release), and a writer
 * loads `cons`, copies, then stores `prod` (release); no data access can
 * move across them, which is what io.c's xen_mb/xen_rmb/xen_wmb give C.
 * request_notify's "OR the bit, then full barrier, then re-read the
 * indices" is an Atomics.or followed by Atomics.load (a sequentially
 * consistent pair: `lock or` on x86-64; on arm64 a release store is never
 * reordered with a later acquire load).
 *
 * The honest caveat: the pages are ArrayBuffers, not SharedArrayBuffers
 * (Deno's UnsafePointerView.getArrayBuffer and bun:ffi toArrayBuffer give
 * plain ArrayBuffers over the mapping; the simulator uses plain
 * ArrayBuffers). ECMAScript allows Atomics on them, but its memory model
 * only speaks about SharedArrayBuffers, because nothing else can be seen by
 * another agent. The guarantee above is therefore the engines' code
 * generation (they lower Atomics the same way for both kinds of buffer; only
 * Atomics.wait/notify care about sharedness), not the language
 * specification. tests/vchan_ring.test.ts runs the same ring code between
 * two Workers over a SharedArrayBuffer under load to check the protocol's
 * ordering with real parallelism.
 *
 * @module
 */
import { XenUsageError } from "../../core/errors.ts";

/** The page size of x86 and Arm (XEN_PAGE_SIZE) and its shift. */
export const PAGE_SIZE = 4096;
export const PAGE_SHIFT = 12;

/** The header fields of struct vchan_interface, each a byte offset into the shared page. */
export interface VchanHeaderOffsets {
  readonly leftCons: number;
  readonly leftProd: number;
  readonly rightCons: number;
  readonly rightProd: number;
  readonly leftOrder: number;
  readonly rightOrder: number;
  readonly cliLive: number;
  readonly srvLive: number;
  readonly cliNotify: number;
  readonly srvNotify: number;
  readonly grants: number;
}

/** Byte offsets of the header fields. */
export const OFFSET: VchanHeaderOffsets = Object.freeze({
  leftCons: 0,
  leftProd: 4,
  rightCons: 8,
  rightProd: 12,
  leftOrder: 16,
  rightOrder: 18,
  cliLive: 20,
  srvLive: 21,
  cliNotify: 22,
  srvNotify: 23,
  grants: 24,
});

/** VCHAN_NOTIFY_WRITE: "tell me when you wrote" (libxenvchan.h:40). */
export const NOTIFY_WRITE = 0x1;
/** VCHAN_NOTIFY_READ: "tell me when you read" (libxenvchan.h:41). */
export const NOTIFY_READ = 0x2;

/** The in-page ring orders and their offsets in the shared page (init.c:59-65). */
export const SMALL_RING_ORDER = 10;
export const LARGE_RING_ORDER = 11;
export const SMALL_RING_OFFSET = 1024;
export const LARGE_RING_OFFSET = 2048;
/** The largest ring order (1 MiB, init.c:68-69). */
export const MAX_RING_ORDER = 20;
/** The largest ring size a server accepts. */
export const MAX_RING_SIZE = 1 << MAX_RING_ORDER;
/** How many grant refs fit after the header. */
export const MAX_GRANTS = (PAGE_SIZE - OFFSET.grants) / 4;

/** Live byte values. */
export const LIVE_GONE = 0;
export const LIVE_CONNECTED = 1;
/** cli_live before the client connected. */
export const LIVE_WAITING = 2;

/** The two orders a server picks: `read` is the left ring, `write` the right one. */
export interface RingOrders {
  readonly read: number;
  readonly write: number;
}

function minOrder(size: number): number {
  let order = PAGE_SHIFT;
  while (size > 2 ** order) order++;
  return order;
}

/**
 * The orders libxenvchan_server_init picks for `readMin` (left ring, what
 * the server reads) and `writeMin` (right ring) bytes (init.c:333-365):
 * both in the page (10 and 11, or 11 and 10) when they fit, else one of
 * them at 11 when it fits, the other the smallest order >= 12 that holds
 * it. Throws XenUsageError for a size that is not an integer in
 * 0..MAX_RING_SIZE (C's server_init fails there).
 */
export function serverOrders(readMin: number, writeMin: number): RingOrders {
  for (const [name, value] of [["readMin", readMin], ["writeMin", writeMin]] as const) {
    if (!Number.isSafeInteger(value) || value < 0 || value > MAX_RING_SIZE) {
      throw new XenUsageError(
        `${name} must be an integer from 0 to ${MAX_RING_SIZE} (1 MiB), got ${String(value)}`,
      );
    }
  }
  const small = 1 << SMALL_RING_ORDER;
  const large = 1 << LARGE_RING_ORDER;
  if (readMin <= small && writeMin <= large) {
    return { read: SMALL_RING_ORDER, write: LARGE_RING_ORDER };
  }
  if (readMin <= large && writeMin <= small) {
    return { read: LARGE_RING_ORDER, write: SMALL_RING_ORDER };
  }
  if (readMin <= large) return { read: LARGE_RING_ORDER, write: minOrder(writeMin) };
  if (writeMin <= large) return { read: minOrder(readMin), write: LARGE_RING_ORDER };
  return { read: minOrder(readMin), write: minOrder(writeMin) };
}

/**
 * Why a client refuses the orders it found in the page, or undefined when
 * they are acceptable (init.c:159-164): each must be 10..20, and both equal
 * and below 12 would put both rings in the same in-page slot.
 */
export function badOrdersReason(left: number, right: number): string | undefined {
  for (const [name, order] of [["left_order", left], ["right_order", right]] as const) {
    if (order < SMALL_RING_ORDER || order > MAX_RING_ORDER) {
      return `${name} is ${order}, outside ${SMALL_RING_ORDER}..${MAX_RING_ORDER}`;
    }
  }
  if (left === right && left < PAGE_SHIFT) {
    return `both orders are ${left}: the two rings would share one in-page slot`;
  }
  return undefined;
}

/** Separately granted pages a ring of `order` needs (0 for the in-page orders). */
export function ringPages(order: number): number {
  return order >= PAGE_SHIFT ? 1 << (order - PAGE_SHIFT) : 0;
}

/** Offset in the shared page of an in-page ring (order 10 or 11). */
export function inPageOffset(order: number): number {
  return order === SMALL_RING_ORDER ? SMALL_RING_OFFSET : LARGE_RING_OFFSET;
}

/**
 * Typed, atomic access to the header of one shared page. Every load and
 * store is an Atomics operation (see the module comment): nothing is cached.
 * The view must start on a 4-byte boundary and hold a whole page; throws
 * XenUsageError otherwise. Not owning: the page belongs to its mapping.
 */
export class VchanHeader {
  readonly #u8: Uint8Array;
  readonly #u16: Uint16Array;
  readonly #u32: Uint32Array;

  constructor(readonly page: Uint8Array) {
    if (page.byteLength < PAGE_SIZE || page.byteOffset % 4 !== 0) {
      throw new XenUsageError(
        `the vchan page must be a 4-byte aligned view of ${PAGE_SIZE} bytes, got ` +
          `${page.byteLength} bytes at offset ${page.byteOffset}`,
      );
    }
    this.#u8 = new Uint8Array(page.buffer, page.byteOffset, PAGE_SIZE);
    this.#u16 = new Uint16Array(page.buffer, page.byteOffset, PAGE_SIZE / 2);
    this.#u32 = new Uint32Array(page.buffer, page.byteOffset, PAGE_SIZE / 4);
  }

  /** Atomic load of the uint32 at byte offset `offset` (a multiple of 4). */
  load32(offset: number): number {
    return Atomics.load(this.#u32, offset >> 2);
  }

  /** Atomic store of a uint32 at byte offset `offset` (a multiple of 4). */
  store32(offset: number, value: number): void {
    Atomics.store(this.#u32, offset >> 2, value >>> 0);
  }

  /** Atomic load of the uint16 at byte offset `offset` (even). */
  load16(offset: number): number {
    return Atomics.load(this.#u16, offset >> 1);
  }

  /** Atomic store of a uint16 at byte offset `offset` (even). */
  store16(offset: number, value: number): void {
    Atomics.store(this.#u16, offset >> 1, value & 0xffff);
  }

  /** Atomic load of one byte. */
  load8(offset: number): number {
    return Atomics.load(this.#u8, offset);
  }

  /** Atomic store of one byte. */
  store8(offset: number, value: number): void {
    Atomics.store(this.#u8, offset, value & 0xff);
  }

  /** Atomic OR into one byte (__sync_or_and_fetch); returns the old value. */
  or8(offset: number, bits: number): number {
    return Atomics.or(this.#u8, offset, bits & 0xff);
  }

  /** Atomic AND of one byte with `mask` (__sync_fetch_and_and); returns the old value. */
  and8(offset: number, mask: number): number {
    return Atomics.and(this.#u8, offset, mask & 0xff);
  }

  /** Grant ref `i` of the list after the header (atomic load). */
  grant(i: number): number {
    return this.load32(OFFSET.grants + 4 * i);
  }

  /** Stores grant ref `i` of the list after the header. */
  setGrant(i: number, ref: number): void {
    this.store32(OFFSET.grants + 4 * i, ref);
  }
}
