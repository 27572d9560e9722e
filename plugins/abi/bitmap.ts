/**
 * State and port operations shared by the two bitmap ABIs, 2-level
 * (two_level.ts) and 3-level (three_level.ts): one PENDING and one MASK bit
 * per port in shared bitmaps, a per-vCPU selector evtchn_pending_sel in
 * vcpu_info, Linux's per-CPU routing bitmaps (cpu_evtchn_mask) and scan
 * cursors (current_word_idx / current_bit_idx).
 *
 * The operations here touch only the PENDING/MASK bitmaps and the routing
 * bitmaps, which both ABIs index the same way. What differs stays in the
 * subclasses: where the bitmaps live (the placement passed to the
 * constructor), the selector raise (`raise`: one selector level for 2L,
 * two for 3L), `setPending` and the scan `handle`.
 *
 * Bit numbering: on a little-endian host a bitmap of 64-bit words has the
 * same bit order as a bitmap of 32-bit words, so port p is always bit
 * (p & 31) of the 32-bit word at index (p >>> 5).
 *
 * Internal to plugins/abi/; the public surface is the EventAbi interface.
 *
 * @module
 */
import { callError } from "../../core/errors.ts";
import { AbiBase, type AbiParams, checkBindVcpu } from "./base.ts";
import type { AbiMemoryLayout, SharedInfoLayout } from "./layout.ts";
import { checkAbiPort, UNMASK_NOTHING, type UnmaskResult } from "./types.ts";

/** Where a bitmap ABI keeps its PENDING/MASK bitmaps, and how many ports they can address. */
export interface BitmapPlacement {
  /** Byte offset in the ABI buffer of the PENDING bitmap (4-byte aligned). */
  readonly pendingByte: number;
  /** Byte offset in the ABI buffer of the MASK bitmap (4-byte aligned). */
  readonly maskByte: number;
  /** 32-bit words of the MASK bitmap that exist in the buffer (set to all ones when initiallyMasked). */
  readonly maskWords: number;
  /** Ports the routing bitmaps cover per vCPU: W*W for 2L, W^3 for 3L (a multiple of 32). */
  readonly routedPorts: number;
}

/**
 * Base class of TwoLevelAbi and ThreeLevelAbi. Subclasses implement
 * `setPending`, `raise` and `handle`. Not exported from mod.ts.
 */
export abstract class BitmapAbi extends AbiBase {
  abstract override readonly kind: "2l" | "3l";
  /** 32-bit index of the PENDING bitmap (2L: shared_info.evtchn_pending; 3L: the L3 pending bitmap). */
  declare protected readonly pBase: number;
  /** 32-bit index of the MASK bitmap (2L: shared_info.evtchn_mask; 3L: the L3 mask bitmap). */
  declare protected readonly mBase: number;
  /** 32-bit index of vcpu_info.evtchn_pending_sel per vCPU (the L1 selector). */
  declare protected readonly selIdx: Int32Array;
  /** 1 for 32-bit words, 2 for 64-bit words (32-bit halves per xen_ulong_t). */
  declare protected readonly halves: number;
  /** log2(W). */
  declare protected readonly shift: number;
  /** Guest-private per-CPU routing bitmaps (Linux cpu_evtchn_mask), `routedPorts` bits each. */
  declare protected readonly cpuMask: Int32Array;
  /** 32-bit words per vCPU in `cpuMask`. */
  declare protected readonly cStride: number;
  /**
   * Guest-private per-CPU scan cursor (Linux current_word_idx / current_bit_idx):
   * word (2L: bitmap word; 3L: L3 word) and bit of the next port to serve.
   */
  declare protected readonly curWord: Int32Array;
  declare protected readonly curBit: Int32Array;

  /**
   * Builds the shared state; all ports notify vCPU 0 and are routed to it
   * (Linux: "By default all event channels notify CPU#0"). `place` is called
   * once, after the buffer is laid out, to locate the subclass's bitmaps.
   */
  constructor(
    kind: "2l" | "3l",
    p: AbiParams,
    place: (layout: AbiMemoryLayout, si: SharedInfoLayout) => BitmapPlacement,
  ) {
    super(kind, p);
    const W = p.wordBits;
    const at = place(this.layout, this.si);
    this.halves = W / 32;
    this.shift = W === 64 ? 6 : 5;
    this.pBase = at.pendingByte >>> 2;
    this.mBase = at.maskByte >>> 2;
    this.selIdx = new Int32Array(p.vcpus);
    for (let v = 0; v < p.vcpus; v++) {
      this.selIdx[v] = (this.layout.vcpuInfo[v] + this.si.pendingSel) >>> 2;
    }
    this.cStride = at.routedPorts >>> 5;
    this.cpuMask = new Int32Array(this.cStride * p.vcpus);
    this.cpuMask.fill(-1, 0, this.cStride);
    this.curWord = new Int32Array(p.vcpus);
    this.curBit = new Int32Array(p.vcpus);
    if (p.initiallyMasked) this.i32.fill(-1, this.mBase, this.mBase + at.maskWords);
  }

  /**
   * The selector half of set_pending/unmask for a port that is PENDING and
   * unmasked: test_and_set the selector bit(s) covering `port` in vCPU `v`'s
   * selector(s); if the top-level bit was newly set, vcpu_mark_events_pending.
   * Returns `v` when evtchn_upcall_pending went 0 -> 1, else NO_UPCALL.
   */
  protected abstract raise(v: number, port: number): number;

  /** See EventAbi.clearPending (Xen evtchn_2l_clear_pending; 3L clears its L3 PENDING bit the same way). */
  clearPending(port: number): void {
    checkAbiPort("evtchn_clear_pending", port, this.portLimit);
    this.i32[this.pBase + (port >>> 5)] &= ~(1 << (port & 31));
  }

  /** See EventAbi.mask (Linux evtchn_2l_mask; 3L sets its L3 MASK bit the same way). */
  mask(port: number): void {
    checkAbiPort("evtchn_mask", port, this.portLimit);
    this.i32[this.mBase + (port >>> 5)] |= 1 << (port & 31);
  }

  /**
   * Xen evtchn_2l_unmask (what Linux's local fast path also achieves); 3L is
   * 2L's unmask extended by one level, the extra level being in `raise`.
   * See EventAbi.unmask.
   */
  unmask(port: number): UnmaskResult {
    checkAbiPort("EVTCHNOP_unmask", port, this.portLimit);
    const i32 = this.i32, i = port >>> 5, bit = 1 << (port & 31);
    if ((i32[this.mBase + i] & bit) === 0) return UNMASK_NOTHING; // test_and_clear_bit(mask)
    i32[this.mBase + i] &= ~bit;
    if ((i32[this.pBase + i] & bit) === 0) return UNMASK_NOTHING;
    return { deliverable: true, upcall: this.raise(this.notify[port], port) };
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

  /**
   * Linux xen_rebind_evtchn_to_cpu + evtchn_2l_bind_to_cpu, for both ABIs:
   * mask, rebind (notify vCPU and routing bit), unmask if it was unmasked.
   * See EventAbi.bindToVcpu.
   */
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

  /**
   * Xen has no set_priority for 2L, and the 3L RFC had no priorities either:
   * EINVAL for a bad port, else ENOSYS.
   */
  setPriority(port: number, _priority: number): void {
    checkAbiPort("EVTCHNOP_set_priority", port, this.portLimit);
    throw callError(
      "EVTCHNOP_set_priority",
      "ENOSYS",
      `the ${this.kind === "2l" ? 2 : 3}-level ABI has no priorities`,
    );
  }
}
