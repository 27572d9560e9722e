/**
 * One ring of a vchan, seen from one end: the reader (it owns `cons`) or the
 * writer (it owns `prod`). The index arithmetic of io.c (uint32 with
 * wraparound, offset = index & (size - 1)) with the hardening C lacks: where
 * io.c silently answers 0 for `prod - cons` beyond the ring size (the XSA-86
 * check, which leaves a blocking caller spinning, QubesOS/qubes-issues#10833),
 * this code throws a RingFault that the vchan turns into a VchanError EPROTO
 * the user sees. It also refuses a peer index that moves backwards and our
 * own index changed behind our back.
 *
 * Bounds: every copy goes through RingMemory, whose offsets are masked into
 * 0..size-1 and whose lengths are checked against what the indices allow;
 * nothing is ever read or written outside the ring's own bytes, whatever
 * the peer writes into the header. The memory ordering this relies on is in
 * layout.ts.
 *
 * @module
 */
import { OFFSET, type VchanHeader } from "./layout.ts";

/** The peer broke the ring protocol; `detail` says how. */
export class RingFault extends Error {
  override name = "RingFault";
}

/**
 * The bytes of one ring: `segments` of equal length (one for an in-page
 * ring; one per granted page otherwise), `size` bytes in all (a power of
 * two). Not owning.
 */
export class RingMemory {
  readonly size: number;
  readonly #segments: readonly Uint8Array[];
  readonly #shift: number;
  readonly #mask: number;

  /** Throws RangeError unless the segments are equal, a power of two long, and total `size`. */
  constructor(segments: readonly Uint8Array[]) {
    const length = segments[0]?.byteLength ?? 0;
    const size = length * segments.length;
    if (
      length === 0 || (length & (length - 1)) !== 0 || (size & (size - 1)) !== 0 ||
      segments.some((s) => s.byteLength !== length)
    ) {
      throw new RangeError(
        `ring memory must be equal power-of-two segments, got ${
          segments.map((s) => s.byteLength).join(", ")
        }`,
      );
    }
    this.size = size;
    this.#segments = segments;
    this.#shift = Math.log2(length);
    this.#mask = length - 1;
  }

  /** Copies `dst.length` bytes from ring offset `offset` (wrapping) into `dst`. */
  copyOut(offset: number, dst: Uint8Array): void {
    this.#walk(offset, dst.length, (segment, start, at, n) => {
      dst.set(segment.subarray(start, start + n), at);
    });
  }

  /** Copies `src` into the ring from offset `offset` (wrapping). */
  copyIn(offset: number, src: Uint8Array): void {
    this.#walk(offset, src.length, (segment, start, at, n) => {
      segment.set(src.subarray(at, at + n), start);
    });
  }

  #walk(
    offset: number,
    length: number,
    step: (segment: Uint8Array, start: number, at: number, n: number) => void,
  ): void {
    if (length > this.size || !Number.isInteger(offset)) {
      throw new RangeError(`ring copy of ${length} bytes exceeds the ring of ${this.size}`);
    }
    let position = offset & (this.size - 1);
    for (let at = 0; at < length;) {
      const segment = this.#segments[position >>> this.#shift];
      const start = position & this.#mask;
      const n = Math.min(length - at, segment.byteLength - start);
      step(segment, start, at, n);
      at += n;
      position = (position + n) & (this.size - 1);
    }
  }
}

/** Which ring: left (client -> server) or right (server -> client). */
export type RingSide = "left" | "right";

function indexOffsets(side: RingSide): { cons: number; prod: number } {
  return side === "left"
    ? { cons: OFFSET.leftCons, prod: OFFSET.leftProd }
    : { cons: OFFSET.rightCons, prod: OFFSET.rightProd };
}

/**
 * The reading end of a ring: it owns `cons`, the peer owns `prod`.
 * `ready()` checks the indices and says how many bytes may be taken;
 * `take(n)` copies them out and publishes the new `cons`. Single-threaded
 * use only (one JavaScript thread per end).
 */
export class RingReader {
  readonly size: number;
  readonly #header: VchanHeader;
  readonly #memory: RingMemory;
  readonly #consAt: number;
  readonly #prodAt: number;
  #cons: number;
  #ready = 0;

  /** The reader of `side`; its `cons` starts at what the page holds now. */
  constructor(header: VchanHeader, side: RingSide, memory: RingMemory) {
    this.#header = header;
    this.#memory = memory;
    this.size = memory.size;
    ({ cons: this.#consAt, prod: this.#prodAt } = indexOffsets(side));
    this.#cons = header.load32(this.#consAt);
  }

  /**
   * Bytes ready to take (prod - cons, read once). Throws RingFault when
   * `cons` in the page is not what this end last wrote, when prod - cons
   * exceeds the ring size, or when prod moved backwards.
   */
  ready(): number {
    const cons = this.#header.load32(this.#consAt);
    if (cons !== this.#cons) {
      throw new RingFault(
        `the peer wrote the consumer index this end owns (${this.#cons} -> ${cons})`,
      );
    }
    const prod = this.#header.load32(this.#prodAt);
    const ready = (prod - cons) >>> 0;
    if (ready > this.size) {
      throw new RingFault(
        `prod - cons = ${ready} (prod ${prod}, cons ${cons}) exceeds the ring size ${this.size}`,
      );
    }
    if (ready < this.#ready) {
      throw new RingFault(`the producer index moved backwards (${ready} < ${this.#ready} ready)`);
    }
    this.#ready = ready;
    return ready;
  }

  /**
   * Copies `n` bytes (at most the last ready()) into a new array, then
   * publishes cons + n. Throws RangeError for an n the last ready() did not
   * allow (a caller bug).
   */
  take(n: number): Uint8Array {
    if (!Number.isInteger(n) || n < 0 || n > this.#ready) {
      throw new RangeError(`take(${n}) with only ${this.#ready} bytes ready`);
    }
    const out = new Uint8Array(n);
    this.#memory.copyOut(this.#cons, out);
    this.#cons = (this.#cons + n) >>> 0;
    this.#ready -= n;
    this.#header.store32(this.#consAt, this.#cons);
    return out;
  }
}

/**
 * The writing end of a ring: it owns `prod`, the peer owns `cons`.
 * `space()` checks the indices and says how many bytes may be put; `put()`
 * copies them in and publishes the new `prod`.
 */
export class RingWriter {
  readonly size: number;
  readonly #header: VchanHeader;
  readonly #memory: RingMemory;
  readonly #consAt: number;
  readonly #prodAt: number;
  #prod: number;
  #used: number;

  /** The writer of `side`; its `prod` starts at what the page holds now. */
  constructor(header: VchanHeader, side: RingSide, memory: RingMemory) {
    this.#header = header;
    this.#memory = memory;
    this.size = memory.size;
    ({ cons: this.#consAt, prod: this.#prodAt } = indexOffsets(side));
    this.#prod = header.load32(this.#prodAt);
    // Nothing observed yet: the first space() accepts any prod - cons within the ring.
    this.#used = this.size;
  }

  /**
   * Free bytes (size - (prod - cons), read once). Throws RingFault when
   * `prod` in the page is not what this end last wrote, when prod - cons
   * exceeds the ring size, or when cons moved backwards.
   */
  space(): number {
    const prod = this.#header.load32(this.#prodAt);
    if (prod !== this.#prod) {
      throw new RingFault(
        `the peer wrote the producer index this end owns (${this.#prod} -> ${prod})`,
      );
    }
    const cons = this.#header.load32(this.#consAt);
    const used = (prod - cons) >>> 0;
    if (used > this.size) {
      throw new RingFault(
        `prod - cons = ${used} (prod ${prod}, cons ${cons}) exceeds the ring size ${this.size}`,
      );
    }
    if (used > this.#used) {
      throw new RingFault(`the consumer index moved backwards (${used} > ${this.#used} in use)`);
    }
    this.#used = used;
    return this.size - used;
  }

  /** Bytes written and not yet consumed, as of the last space(). */
  get used(): number {
    return this.#used;
  }

  /**
   * Copies `data` (at most the last space()) into the ring, then publishes
   * prod + length. Throws RangeError for more than space() allowed.
   */
  put(data: Uint8Array): void {
    if (data.length > this.size - this.#used) {
      throw new RangeError(`put(${data.length}) with only ${this.size - this.#used} bytes free`);
    }
    this.#memory.copyIn(this.#prod, data);
    this.#prod = (this.#prod + data.length) >>> 0;
    this.#used += data.length;
    this.#header.store32(this.#prodAt, this.#prod);
  }
}
