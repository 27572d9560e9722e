/**
 * A small seeded pseudo-random generator (mulberry32, public domain, by
 * Tommy Ettinger). Used only for optional randomised allocation; the default
 * allocation is Xen's deterministic lowest-free rule.
 *
 * @module
 */

/** A deterministic generator of uint32 values for a given seed. */
export class Prng {
  #state: number;

  /** Creates a generator; the same seed always yields the same sequence. */
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** Next value in 0..2^32-1. Throws nothing. */
  nextU32(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform integer in lo..hi inclusive (hi >= lo, both safe integers). */
  between(lo: number, hi: number): number {
    return lo + Math.floor((this.nextU32() / 0x1_0000_0000) * (hi - lo + 1));
  }
}
