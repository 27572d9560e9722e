/**
 * The 2-level event channel ABI (the default Xen ABI, always available).
 *
 * Shared state, byte-exact with xen.h (see layout.ts):
 *   shared_info.evtchn_pending[W] / evtchn_mask[W]   (W = bits per xen_ulong_t)
 *   vcpu_info.evtchn_pending_sel (L1: bit i = word i of the bitmaps may hold
 *   pending, unmasked ports), evtchn_upcall_pending, evtchn_upcall_mask.
 * Capacity W * W: 4096 ports with 64-bit words, 1024 with 32-bit words.
 *
 * Hypervisor side follows xen/common/event_2l.c (evtchn_2l_set_pending,
 * evtchn_2l_unmask); guest side follows Linux drivers/xen/events/events_2l.c
 * (evtchn_2l_handle_events with the per-CPU current_word_idx /
 * current_bit_idx, the per-CPU routing mask cpu_evtchn_mask, and "scan
 * start_l1i twice; all others once").
 *
 * Bit numbering: on a little-endian host a bitmap of 64-bit words has the
 * same bit order as a bitmap of 32-bit words, so port p is always bit
 * (p & 31) of the Uint32 at index (p >>> 5); only the selector grouping
 * (p / W) depends on the word size.
 *
 * @module
 */
import type { AbiParams } from "./base.ts";
import { BitmapAbi } from "./bitmap.ts";
import { checkAbiPort, type DeliverFn, firstSetFrom, NO_UPCALL } from "./types.ts";

/**
 * The 2-level ABI over one domain's shared_info page. Construct via createAbi.
 * The PENDING/MASK port operations, bindToVcpu and setPriority are BitmapAbi's
 * (bitmap.ts); its pBase/mBase are shared_info.evtchn_pending/evtchn_mask.
 */
export class TwoLevelAbi extends BitmapAbi {
  readonly kind = "2l" as const;

  /** Builds the state; all ports notify vCPU 0 (Linux: "By default all event channels notify CPU#0"). */
  constructor(p: AbiParams) {
    const W = p.wordBits;
    super("2l", p, (_layout, si) => ({
      pendingByte: si.evtchnPending,
      maskByte: si.evtchnMask,
      maskWords: (W * W) >>> 5,
      routedPorts: W * W,
    }));
  }

  /** Xen evtchn_2l_set_pending. See EventAbi.setPending. */
  setPending(port: number): number {
    checkAbiPort("evtchn_set_pending", port, this.portLimit);
    const i32 = this.i32, i = port >>> 5, bit = 1 << (port & 31), pi = this.pBase + i;
    const pend = i32[pi];
    if ((pend & bit) !== 0) return NO_UPCALL; // test_and_set_bit(pending)
    i32[pi] = pend | bit;
    if ((i32[this.mBase + i] & bit) !== 0) return NO_UPCALL;
    const v = this.notify[port], w = port >>> this.shift;
    const si = this.selIdx[v] + (w >>> 5), sb = 1 << (w & 31), sel = i32[si];
    if ((sel & sb) !== 0) return NO_UPCALL;
    i32[si] = sel | sb;
    const off = this.upcallOff[v]; // vcpu_mark_events_pending, inlined for speed
    if (this.u8[off] !== 0) return NO_UPCALL;
    this.u8[off] = 1;
    return v;
  }

  /**
   * test_and_set_bit(word, &vcpu_info(v, evtchn_pending_sel)) for word =
   * port / W; if newly set, vcpu_mark_events_pending. Used by unmask (the
   * end of evtchn_2l_unmask); setPending inlines the same steps.
   */
  protected raise(v: number, port: number): number {
    const word = port >>> this.shift;
    const si = this.selIdx[v] + (word >>> 5), sb = 1 << (word & 31);
    if ((this.i32[si] & sb) !== 0) return NO_UPCALL;
    this.i32[si] |= sb;
    return this.markEventsPending(v);
  }

  /**
   * Linux evtchn_2l_handle_events for one vCPU (see module comment). Ports
   * are re-checked (pending, unmasked, routed here) just before delivery,
   * because an earlier `deliver` may have changed them; the PENDING bit is
   * cleared before `deliver`, as the edge-IRQ ack does.
   */
  protected handle(v: number, deliver: DeliverFn, budget: number): number {
    const i32 = this.i32, cm = this.cpuMask, H = this.halves, W = this.wordBits;
    const P = this.pBase, M = this.mBase, C = v * this.cStride, sel = this.selIdx[v];
    // pending_words = xchg_xen_ulong(&vcpu_info->evtchn_pending_sel, 0)
    let pwLo = i32[sel], pwHi = H === 2 ? i32[sel + 1] : 0;
    i32[sel] = 0;
    if (H === 2) i32[sel + 1] = 0;
    const startW = this.curWord[v], startB = this.curBit[v];
    let curW = startW, curB = startB; // per-CPU cursor, written back on every exit
    let wi = startW, done = 0;
    try {
      for (let i = 0; (pwLo | pwHi) !== 0; i++) {
        const w = firstSetFrom(pwLo, pwHi, wi); // MASK_LSBS + EVTCHN_FIRST_BIT
        if (w < 0) { // masked out everything above word_idx: wrap to the beginning
          wi = 0;
          continue;
        }
        wi = w;
        const k = wi * H; // active_evtchns(): pending & cpu_evtchn_mask & ~mask
        const lo = i32[P + k] & cm[C + k] & ~i32[M + k];
        const hi = H === 2 ? i32[P + k + 1] & cm[C + k + 1] & ~i32[M + k + 1] : 0;
        // The start word is scanned in two parts: first from start_bit_idx up,
        // then (on the wrap-around) whole.
        const b = wi === startW && i === 0 ? startB : 0;
        // The snapshot's bits at index >= b, low half first (Linux's MASK_LSBS
        // walk, clearing each visited bit from a local copy instead).
        let rlo = b < 32 ? lo & (-1 << b) : 0;
        let rhi = b < 32 ? hi : hi & (-1 << (b - 32));
        const base = wi * W;
        while ((rlo | rhi) !== 0) {
          let bb: number;
          if (rlo !== 0) {
            bb = 31 - Math.clz32(rlo & -rlo);
            rlo &= rlo - 1;
          } else {
            bb = 63 - Math.clz32(rhi & -rhi);
            rhi &= rhi - 1;
          }
          const port = base + bb, j = port >>> 5, bit = 1 << (port & 31);
          if ((i32[P + j] & bit) !== 0 && (i32[M + j] & bit) === 0 && (cm[C + j] & bit) !== 0) {
            if (done === budget) {
              this.putBack(v, sel, pwLo, pwHi, curW, curB);
              return done;
            }
            i32[P + j] &= ~bit; // ack: clear_evtchn(port)
            done++;
            deliver(port);
          }
          // "Next caller starts at last processed + 1"
          const nb = bb + 1 === W ? 0 : bb + 1;
          curW = nb !== 0 ? wi : (wi + 1) & (W - 1);
          curB = nb;
        }
        if (wi !== startW || i !== 0) { // "Scan start_l1i twice; all others once."
          if (wi < 32) pwLo &= ~(1 << wi);
          else pwHi &= ~(1 << (wi - 32));
        }
        wi = (wi + 1) & (W - 1);
      }
    } catch (e) {
      this.putBack(v, sel, pwLo, pwHi, curW, curB);
      throw e;
    }
    this.curWord[v] = curW;
    this.curBit[v] = curB;
    return done;
  }

  /** Returns unprocessed selector bits to vcpu_info and leaves the upcall pending. */
  private putBack(
    v: number,
    sel: number,
    lo: number,
    hi: number,
    curW: number,
    curB: number,
  ): void {
    this.curWord[v] = curW;
    this.curBit[v] = curB;
    this.i32[sel] |= lo;
    if (this.halves === 2) this.i32[sel + 1] |= hi;
    this.u8[this.upcallOff[v]] = 1;
  }
}
