/**
 * The 3-level event channel ABI (Wei Liu's RFC V5, March 2013; NEVER merged
 * into Xen or Linux — see README.md). Layout follows the RFC's description
 * (seeds/004, "xen: document 2/3-level event channel ABI"):
 *
 *   L1: the per-vCPU selector in vcpu_info (the same evtchn_pending_sel as
 *       2L); bit i covers word i of the vCPU's L2 bitmap.
 *   L2: a per-vCPU bitmap of W xen_ulong_t words ("the same size as the
 *       second level bitmap in 2-level ABI"); bit j covers word j of L3.
 *   L3: the shared pending and mask bitmaps of W*W words, allocated by the
 *       guest (here: page-aligned after shared_info, see layout.ts).
 * Capacity W^3: 262,144 ports with 64-bit words, 32,768 with 32-bit words.
 *
 * Hypervisor side: 2L's set_pending extended by one level (set L3 pending;
 * if unmasked, test_and_set the L2 bit, and only if that was newly set,
 * test_and_set the L1 bit and mark events pending).
 * Guest side: Linux's 2L scan lifted to three levels: xchg L1, xchg each
 * flagged L2 word into a local copy, then visit the flagged L3 words in
 * cyclic order from a per-vCPU cursor (last port served + 1), scanning the
 * start word twice exactly as events_2l.c does, so a busy low port cannot
 * starve a high one.
 *
 * @module
 */
import type { AbiParams } from "./base.ts";
import { BitmapAbi } from "./bitmap.ts";
import { checkAbiPort, type DeliverFn, firstSetFrom, NO_UPCALL } from "./types.ts";

/**
 * The 3-level ABI for one domain. Construct via createAbi. The PENDING/MASK
 * port operations, bindToVcpu and setPriority are BitmapAbi's (bitmap.ts);
 * its pBase/mBase are the L3 pending/mask bitmaps and its selIdx the L1.
 */
export class ThreeLevelAbi extends BitmapAbi {
  readonly kind = "3l" as const;
  /** 32-bit index of the per-vCPU L2 bitmap. */
  declare private readonly l2Idx: Int32Array;
  /** Guest-private local copies of the L2 words taken by a scan (per vCPU). */
  declare private readonly loc: Int32Array;

  /** Builds the state; all ports notify vCPU 0. */
  constructor(p: AbiParams) {
    const W = p.wordBits;
    super("3l", p, (layout) => ({
      pendingByte: layout.l3Pending,
      maskByte: layout.l3Mask,
      // The L3 bitmaps are sized for portLimit (page-rounded), not for word_size^3.
      maskWords: (layout.l3Mask - layout.l3Pending) >>> 2,
      routedPorts: W * W * W,
    }));
    this.l2Idx = new Int32Array(p.vcpus);
    for (let v = 0; v < p.vcpus; v++) this.l2Idx[v] = this.layout.l2Selector[v] >>> 2;
    this.loc = new Int32Array(p.vcpus * W * this.halves);
  }

  /** L3 pending; if unmasked, L2 then L1 selector bits. See EventAbi.setPending. */
  setPending(port: number): number {
    checkAbiPort("evtchn_set_pending", port, this.portLimit);
    const i32 = this.i32, i = port >>> 5, bit = 1 << (port & 31);
    if ((i32[this.pBase + i] & bit) !== 0) return NO_UPCALL;
    i32[this.pBase + i] |= bit;
    if ((i32[this.mBase + i] & bit) !== 0) return NO_UPCALL;
    return this.raise(this.notify[port], port);
  }

  /**
   * test_and_set the L2 bit of `port` in vCPU `v`'s L2 bitmap; only if newly
   * set, test_and_set the L1 bit in evtchn_pending_sel, and only if that was
   * newly set, vcpu_mark_events_pending. Used by setPending and unmask.
   */
  protected raise(v: number, port: number): number {
    const i32 = this.i32;
    const l2 = port >>> this.shift, l2i = this.l2Idx[v] + (l2 >>> 5), l2b = 1 << (l2 & 31);
    if ((i32[l2i] & l2b) !== 0) return NO_UPCALL;
    i32[l2i] |= l2b;
    const l1 = port >>> (2 * this.shift), l1i = this.selIdx[v] + (l1 >>> 5), l1b = 1 << (l1 & 31);
    if ((i32[l1i] & l1b) !== 0) return NO_UPCALL;
    i32[l1i] |= l1b;
    return this.markEventsPending(v);
  }

  /** One pass of the 3-level scan (see module comment). */
  protected handle(v: number, deliver: DeliverFn, budget: number): number {
    const i32 = this.i32, cm = this.cpuMask, loc = this.loc;
    const H = this.halves, W = this.wordBits, S = this.shift, NW = W * W;
    const P = this.pBase, M = this.mBase, C = v * this.cStride;
    const sel = this.selIdx[v], L2 = this.l2Idx[v], LB = v * W * H;
    let l1Lo = i32[sel] | 0, l1Hi = H === 2 ? i32[sel + 1] | 0 : 0; // xchg L1
    i32[sel] = 0;
    if (H === 2) i32[sel + 1] = 0;
    for (let i = firstSetFrom(l1Lo, l1Hi, 0); i >= 0; i = firstSetFrom(l1Lo, l1Hi, i + 1)) {
      const a = LB + i * H; // xchg each flagged L2 word into the local copy
      loc[a] = i32[L2 + i * H];
      i32[L2 + i * H] = 0;
      if (H === 2) {
        loc[a + 1] = i32[L2 + i * H + 1];
        i32[L2 + i * H + 1] = 0;
      }
      if ((loc[a] | (H === 2 ? loc[a + 1] : 0)) === 0) {
        if (i < 32) l1Lo &= ~(1 << i);
        else l1Hi &= ~(1 << (i - 32));
      }
    }
    const startK = this.curWord[v], startB = this.curBit[v];
    let curK = startK, curB = startB; // cursor, written back on every exit
    let k = startK, done = 0;
    try {
      for (let it = 0; (l1Lo | l1Hi) !== 0; it++) {
        // next flagged L3 word at index >= k
        let i = k >>> S, kk = -1;
        const a = LB + i * H;
        let j = firstSetFrom(loc[a] | 0, H === 2 ? loc[a + 1] | 0 : 0, k & (W - 1));
        if (j >= 0) kk = (i << S) + j;
        else if (i + 1 < W && (i = firstSetFrom(l1Lo, l1Hi, i + 1)) >= 0) {
          j = firstSetFrom(loc[LB + i * H] | 0, H === 2 ? loc[LB + i * H + 1] | 0 : 0, 0);
          kk = (i << S) + j;
        }
        if (kk < 0) {
          k = 0;
          continue;
        }
        k = kk;
        const q = k * H;
        const lo = i32[P + q] & cm[C + q] & ~i32[M + q];
        const hi = H === 2 ? i32[P + q + 1] & cm[C + q + 1] & ~i32[M + q + 1] : 0;
        const b = k === startK && it === 0 ? startB : 0;
        // The snapshot's bits at index >= b, low half first, each visited
        // bit cleared from a local copy (the 2-level walk).
        let rlo = b < 32 ? lo & (-1 << b) : 0;
        let rhi = b < 32 ? hi : hi & (-1 << (b - 32));
        const base = k * W;
        while ((rlo | rhi) !== 0) {
          let bb: number;
          if (rlo !== 0) {
            bb = 31 - Math.clz32(rlo & -rlo);
            rlo &= rlo - 1;
          } else {
            bb = 63 - Math.clz32(rhi & -rhi);
            rhi &= rhi - 1;
          }
          const port = base + bb, x = port >>> 5, bit = 1 << (port & 31);
          if ((i32[P + x] & bit) !== 0 && (i32[M + x] & bit) === 0 && (cm[C + x] & bit) !== 0) {
            if (done === budget) {
              this.putBack(v, l1Lo, l1Hi, curK, curB);
              return done;
            }
            i32[P + x] &= ~bit;
            done++;
            deliver(port);
          }
          const nb = bb + 1 === W ? 0 : bb + 1;
          curK = nb !== 0 ? k : (k + 1) & (NW - 1);
          curB = nb;
        }
        if (k !== startK || it !== 0) {
          const wi = k >>> S, bj = k & (W - 1), c = LB + wi * H + (bj >>> 5);
          loc[c] &= ~(1 << (bj & 31));
          if ((loc[LB + wi * H] | (H === 2 ? loc[LB + wi * H + 1] : 0)) === 0) {
            if (wi < 32) l1Lo &= ~(1 << wi);
            else l1Hi &= ~(1 << (wi - 32));
          }
        }
        k = (k + 1) & (NW - 1);
      }
    } catch (e) {
      this.putBack(v, l1Lo, l1Hi, curK, curB);
      throw e;
    }
    this.curWord[v] = curK;
    this.curBit[v] = curB;
    return done;
  }

  /** Returns the local L1/L2 copies to shared memory and leaves the upcall pending. */
  private putBack(v: number, l1Lo: number, l1Hi: number, curK: number, curB: number): void {
    this.curWord[v] = curK;
    this.curBit[v] = curB;
    const i32 = this.i32, H = this.halves, L2 = this.l2Idx[v], LB = v * this.wordBits * H;
    for (let i = firstSetFrom(l1Lo, l1Hi, 0); i >= 0; i = firstSetFrom(l1Lo, l1Hi, i + 1)) {
      i32[L2 + i * H] |= this.loc[LB + i * H];
      if (H === 2) i32[L2 + i * H + 1] |= this.loc[LB + i * H + 1];
    }
    const sel = this.selIdx[v];
    i32[sel] |= l1Lo;
    if (H === 2) i32[sel + 1] |= l1Hi;
    this.u8[this.upcallOff[v]] = 1;
  }
}
