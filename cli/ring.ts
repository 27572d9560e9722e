/**
 * The demo's shared ring: Xen's shared ring protocol (xen/include/public/
 * io/ring.h, DEFINE_RING_TYPES) over one 4096-byte grant page, with one
 * demo-specific byte in the header padding.
 *
 * Page layout (little-endian, like struct __name##_sring):
 *
 *     0  req_prod   u32   requests produced by the front end
 *     4  req_event  u32   "notify me when req_prod passes this" (back end)
 *     8  rsp_prod   u32   responses produced by the back end
 *    12  rsp_event  u32   "notify me when rsp_prod passes this" (front end)
 *    16  live       u8    1 while the front end is alive: its unmap-notify
 *                         byte, cleared by the kernel when its mapping dies
 *    17..63              padding (zero)
 *    64  32 slots of 64 bytes: the ring (32 = (4096 - 64) / 64 rounded
 *        down to a power of two, as __RING_SIZE does)
 *
 * A request slot: id u32, len u32 (1..56), payload[len] at +8.
 * A response slot (same slot, written by the back end): id u32,
 * status u32 (0 = ok), checksum u32 (FNV-1a of the payload), len u32.
 *
 * The indices are free-running 32-bit counters read and written with
 * Atomics (sequentially consistent: the full barriers ring.h asks for
 * between the index stores and the event-index loads, which matter when the
 * two ends are different processes on different CPUs). The notification
 * hold-off is ring.h's: RING_PUSH_*_AND_CHECK_NOTIFY and
 * RING_FINAL_CHECK_FOR_*.
 *
 * @module
 */
import { PAGE_SIZE } from "../mod.ts";

/** Byte offset of the front end's live byte (its unmap-notify offset). */
export const LIVE_OFFSET = 16;
/** Bytes in the ring header (struct sring up to ring[]). */
export const HEADER_SIZE = 64;
/** Bytes per slot. */
export const SLOT_SIZE = 64;
/** Slots in the ring: a power of two. */
export const RING_SIZE = 32;
/** Largest request payload. */
export const MAX_PAYLOAD = SLOT_SIZE - 8;
/** Bytes of a response in its slot. */
export const RESPONSE_SIZE = 16;

const REQ_PROD = 0;
const REQ_EVENT = 1;
const RSP_PROD = 2;
const RSP_EVENT = 3;

const u32 = (x: number) => x >>> 0;

/** The shared page seen by one end. */
export class SharedRing {
  readonly #words: Int32Array;
  readonly #view: DataView;
  readonly bytes: Uint8Array;

  /** Wraps a page (at least 4096 bytes, 4-byte aligned). Throws RangeError otherwise. */
  constructor(page: Uint8Array) {
    if (page.byteLength < PAGE_SIZE || page.byteOffset % 4 !== 0) {
      throw new RangeError("the ring needs one whole 4-byte-aligned page");
    }
    this.bytes = page;
    this.#words = new Int32Array(page.buffer, page.byteOffset, HEADER_SIZE / 4);
    this.#view = new DataView(page.buffer, page.byteOffset, PAGE_SIZE);
  }

  /** SHARED_RING_INIT: zero indices, event indices 1, padding zero (the live byte too). */
  init(): void {
    this.bytes.fill(0, 0, HEADER_SIZE);
    this.store(REQ_PROD, 0);
    this.store(RSP_PROD, 0);
    this.store(REQ_EVENT, 1);
    this.store(RSP_EVENT, 1);
  }

  /** @internal an index word (unsigned). */
  load(word: number): number {
    return u32(Atomics.load(this.#words, word));
  }

  /** @internal stores an index word. */
  store(word: number, value: number): void {
    Atomics.store(this.#words, word, value | 0);
  }

  /** @internal the DataView over the page. */
  get view(): DataView {
    return this.#view;
  }

  /** Byte offset of the slot for free-running index `i`. */
  slot(i: number): number {
    return HEADER_SIZE + (i & (RING_SIZE - 1)) * SLOT_SIZE;
  }
}

/** A request as the back end reads it. */
export interface Request {
  readonly id: number;
  readonly payload: Uint8Array;
}

/** A response as the front end reads it. */
export interface Response {
  readonly id: number;
  readonly status: number;
  readonly checksum: number;
  readonly len: number;
}

/** The front end's private ring state (struct __name##_front_ring). */
export class FrontRing {
  #reqProdPvt: number;
  #rspCons: number;

  /** FRONT_RING_ATTACH: continues from the indices in the page. */
  constructor(readonly ring: SharedRing) {
    this.#reqProdPvt = ring.load(REQ_PROD);
    this.#rspCons = ring.load(RSP_PROD);
  }

  /** RING_FREE_REQUESTS. */
  freeRequests(): number {
    return RING_SIZE - u32(this.#reqProdPvt - this.#rspCons);
  }

  /** Writes a request into the next private slot. RangeError for a bad payload or a full ring. */
  putRequest(id: number, payload: Uint8Array): void {
    if (payload.length < 1 || payload.length > MAX_PAYLOAD) {
      throw new RangeError(`payload must be 1..${MAX_PAYLOAD} bytes`);
    }
    if (this.freeRequests() === 0) throw new RangeError("the ring is full");
    const at = this.ring.slot(this.#reqProdPvt);
    this.ring.view.setUint32(at, id, true);
    this.ring.view.setUint32(at + 4, payload.length, true);
    this.ring.bytes.set(payload, at + 8);
    this.#reqProdPvt = u32(this.#reqProdPvt + 1);
  }

  /** RING_PUSH_REQUESTS_AND_CHECK_NOTIFY: publishes; true when the back end must be notified. */
  pushRequests(): boolean {
    const old = this.ring.load(REQ_PROD);
    const next = this.#reqProdPvt;
    this.ring.store(REQ_PROD, next);
    return u32(next - this.ring.load(REQ_EVENT)) < u32(next - old);
  }

  /** RING_HAS_UNCONSUMED_RESPONSES. */
  unconsumedResponses(): number {
    return u32(this.ring.load(RSP_PROD) - this.#rspCons);
  }

  /** Reads the next response. RangeError when there is none. */
  takeResponse(): Response {
    if (this.unconsumedResponses() === 0) throw new RangeError("no response to take");
    const at = this.ring.slot(this.#rspCons);
    const v = this.ring.view;
    const response = {
      id: v.getUint32(at, true),
      status: v.getUint32(at + 4, true),
      checksum: v.getUint32(at + 8, true),
      len: v.getUint32(at + 12, true),
    };
    this.#rspCons = u32(this.#rspCons + 1);
    return response;
  }

  /** RING_FINAL_CHECK_FOR_RESPONSES: re-arms rsp_event; true if responses arrived meanwhile. */
  finalCheckForResponses(): boolean {
    if (this.unconsumedResponses() > 0) return true;
    this.ring.store(RSP_EVENT, this.#rspCons + 1);
    return this.unconsumedResponses() > 0;
  }
}

/** The back end's private ring state (struct __name##_back_ring). */
export class BackRing {
  #rspProdPvt: number;
  #reqCons: number;

  /** BACK_RING_ATTACH: continues from the indices in the page. */
  constructor(readonly ring: SharedRing) {
    this.#rspProdPvt = ring.load(RSP_PROD);
    this.#reqCons = ring.load(RSP_PROD);
  }

  /** RING_HAS_UNCONSUMED_REQUESTS (never more than the slots free for responses). */
  unconsumedRequests(): number {
    const produced = u32(this.ring.load(REQ_PROD) - this.#reqCons);
    const room = RING_SIZE - u32(this.#reqCons - this.#rspProdPvt);
    return Math.min(produced, room);
  }

  /**
   * Reads the next request (a copy of its payload). RangeError when there
   * is none, or when its length field is out of range (a corrupt ring).
   */
  takeRequest(): Request {
    if (this.unconsumedRequests() === 0) throw new RangeError("no request to take");
    const at = this.ring.slot(this.#reqCons);
    const id = this.ring.view.getUint32(at, true);
    const len = this.ring.view.getUint32(at + 4, true);
    if (len < 1 || len > MAX_PAYLOAD) throw new RangeError(`request ${id} has a bad length ${len}`);
    const payload = this.ring.bytes.slice(at + 8, at + 8 + len);
    this.#reqCons = u32(this.#reqCons + 1);
    return { id, payload };
  }

  /** Writes a response into the next private slot. */
  putResponse(response: Response): void {
    const at = this.ring.slot(this.#rspProdPvt);
    const v = this.ring.view;
    v.setUint32(at, response.id, true);
    v.setUint32(at + 4, response.status, true);
    v.setUint32(at + 8, response.checksum, true);
    v.setUint32(at + 12, response.len, true);
    this.#rspProdPvt = u32(this.#rspProdPvt + 1);
  }

  /** RING_PUSH_RESPONSES_AND_CHECK_NOTIFY: publishes; true when the front end must be notified. */
  pushResponses(): boolean {
    const old = this.ring.load(RSP_PROD);
    const next = this.#rspProdPvt;
    this.ring.store(RSP_PROD, next);
    return u32(next - this.ring.load(RSP_EVENT)) < u32(next - old);
  }

  /** RING_FINAL_CHECK_FOR_REQUESTS: re-arms req_event; true if requests arrived meanwhile. */
  finalCheckForRequests(): boolean {
    if (this.unconsumedRequests() > 0) return true;
    this.ring.store(REQ_EVENT, this.#reqCons + 1);
    return this.unconsumedRequests() > 0;
  }
}

/** FNV-1a over `bytes` (the demo's response checksum). */
export function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193);
  return h >>> 0;
}

/** The deterministic payload of request `id`: 1..56 bytes of xorshift32 output. */
export function requestPayload(id: number): Uint8Array {
  const len = 1 + (id % MAX_PAYLOAD);
  const out = new Uint8Array(len);
  let x = u32(Math.imul(id + 1, 0x9e3779b1)) || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
