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
import { callError } from "../errors.ts";
import { AbiBase, type AbiParams, checkBindVcpu } from "./base.ts";
import {
  checkAbiPort,
  type DeliverFn,
  firstSetFrom,
  NO_UPCALL,
  UNMASK_NOTHING,
  type UnmaskResult,
} from "./types.ts";

/** The 2-level ABI over one domain's shared_info page. Construct via createAbi. */
export class TwoLevelAbi extends AbiBase {
  readonly kind = "2l" as const;
  /** Uint32 index of shared_info.evtchn_pending / evtchn_mask. */
  declare private readonly pBase: number;
  declare private readonly mBase: number;
  /** Uint32 index of vcpu_info.evtchn_pending_sel per vCPU. */
  declare private readonly selIdx: Int32Array;
  /** 1 for 32-bit words, 2 for 64-bit words (Uint32 halves per xen_ulong_t). */
  declare private readonly halves: number;
  /** log2(W). */
  declare private readonly shift: number;
  /** Guest-private per-CPU routing bitmaps (Linux cpu_evtchn_mask), W*W bits each. */
  declare private readonly cpuMask: Int32Array;
  declare private readonly cStride: number;
  /** Guest-private per-CPU scan cursor (Linux current_word_idx / current_bit_idx). */
  declare private readonly curWord: Int32Array;
  declare private readonly curBit: Int32Array;

  /** Builds the state; all ports notify vCPU 0 (Linux: "By default all event channels notify CPU#0"). */
  constructor(p: AbiParams) {
    super("2l", p);
    const W = p.wordBits;
    this.halves = W / 32;
    this.shift = W === 64 ? 6 : 5;
    this.pBase = this.si.evtchnPending >>> 2;
    this.mBase = this.si.evtchnMask >>> 2;
    this.selIdx = new Int32Array(p.vcpus);
    for (let v = 0; v < p.vcpus; v++) {
      this.selIdx[v] = (this.layout.vcpuInfo[v] + this.si.pendingSel) >>> 2;
    }
    this.cStride = (W * W) >>> 5;
    this.cpuMask = new Int32Array(this.cStride * p.vcpus);
    this.cpuMask.fill(-1, 0, this.cStride);
    this.curWord = new Int32Array(p.vcpus);
    this.curBit = new Int32Array(p.vcpus);
    if (p.initiallyMasked) this.i32.fill(-1, this.mBase, this.mBase + (W * W >>> 5));
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

  /** test_and_set_bit(word, &vcpu_info(v, evtchn_pending_sel)); if newly set, vcpu_mark_events_pending. */
  private raiseSel(v: number, word: number): number {
    const si = this.selIdx[v] + (word >>> 5), sb = 1 << (word & 31);
    if ((this.i32[si] & sb) !== 0) return NO_UPCALL;
    this.i32[si] |= sb;
    return this.markEventsPending(v);
  }

  /** See EventAbi.clearPending (evtchn_2l_clear_pending). */
  clearPending(port: number): void {
    checkAbiPort("evtchn_clear_pending", port, this.portLimit);
    this.i32[this.pBase + (port >>> 5)] &= ~(1 << (port & 31));
  }

  /** See EventAbi.mask (Linux evtchn_2l_mask). */
  mask(port: number): void {
    checkAbiPort("evtchn_mask", port, this.portLimit);
    this.i32[this.mBase + (port >>> 5)] |= 1 << (port & 31);
  }

  /** Xen evtchn_2l_unmask (what Linux's local fast path also achieves). See EventAbi.unmask. */
  unmask(port: number): UnmaskResult {
    checkAbiPort("EVTCHNOP_unmask", port, this.portLimit);
    const i32 = this.i32;
    const i = port >>> 5, bit = 1 << (port & 31);
    if ((i32[this.mBase + i] & bit) === 0) return UNMASK_NOTHING; // test_and_clear_bit(mask)
    i32[this.mBase + i] &= ~bit;
    if ((i32[this.pBase + i] & bit) === 0) return UNMASK_NOTHING;
    return { deliverable: true, upcall: this.raiseSel(this.notify[port], port >>> this.shift) };
  }

  /** See EventAbi.isPending. */
  isPending(port: number): boolean {
    checkAbiPort("evtchn_is_pending", port, this.portLimit);
    return (this.i32[this.pBase + (port >>> 5)] & (1 << (port & 31))) !== 0;
  }

  /** See EventAbi.isMasked. */
  isMasked(port: number): boolean {
    checkAbiPort("evtchn_is_masked", port, this.portLimit);
    return (this.i32[this.mBase + (port >>> 5)] & (1 << (port & 31))) !== 0;
  }

  /** Linux xen_rebind_evtchn_to_cpu + evtchn_2l_bind_to_cpu. See EventAbi.bindToVcpu. */
  bindToVcpu(port: number, vcpu: number): UnmaskResult {
    checkAbiPort("EVTCHNOP_bind_vcpu", port, this.portLimit);
    checkBindVcpu(vcpu, this.vcpus);
    const i = port >>> 5, bit = 1 << (port & 31);
    const wasMasked = (this.i32[this.mBase + i] & bit) !== 0; // test_and_set_mask
    this.i32[this.mBase + i] |= bit;
    const old = this.notify[port];
    this.notify[port] = vcpu;
    this.cpuMask[old * this.cStride + i] &= ~bit;
    this.cpuMask[vcpu * this.cStride + i] |= bit;
    return wasMasked ? UNMASK_NOTHING : this.unmask(port);
  }

  /** Xen has no set_priority for 2L: EINVAL for a bad port, else ENOSYS. */
  setPriority(port: number, _priority: number): void {
    checkAbiPort("EVTCHNOP_set_priority", port, this.portLimit);
    throw callError("EVTCHNOP_set_priority", "ENOSYS", "the 2-level ABI has no priorities");
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
        let b = wi === startW && i === 0 ? startB : 0;
        do {
          const bb = firstSetFrom(lo, hi, b);
          if (bb < 0) break;
          const port = wi * W + bb, j = port >>> 5, bit = 1 << (port & 31);
          if ((i32[P + j] & bit) !== 0 && (i32[M + j] & bit) === 0 && (cm[C + j] & bit) !== 0) {
            if (done === budget) {
              this.putBack(v, sel, pwLo, pwHi, curW, curB);
              return done;
            }
            i32[P + j] &= ~bit; // ack: clear_evtchn(port)
            done++;
            deliver(port);
          }
          b = bb + 1 === W ? 0 : bb + 1;
          // "Next caller starts at last processed + 1"
          curW = b !== 0 ? wi : (wi + 1) & (W - 1);
          curB = b;
        } while (b !== 0);
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
