/**
 * State and behaviour common to every ABI: the ArrayBuffer with its views,
 * the vcpu_info upcall flags, notify_vcpu_id per port, and the upcall loop
 * of Linux's __xen_evtchn_do_upcall (events_base.c):
 *
 *     do {
 *         vcpu_info->evtchn_upcall_pending = 0;
 *         xen_evtchn_handle_events(cpu, &ctrl);
 *     } while (vcpu_info->evtchn_upcall_pending);
 *
 * Internal to plugins/abi/; the public surface is the EventAbi interface.
 *
 * @module
 */
import { XenUsageError } from "../../core/errors.ts";
import { checkBoolean, checkFunction } from "../../core/validate.ts";
import {
  type AbiMemoryLayout,
  computeLayout,
  type SharedInfoLayout,
  sharedInfoLayout,
  type WordBits,
} from "./layout.ts";
import {
  type AbiKind,
  checkAbiPort,
  checkAbiVcpu,
  checkBudget,
  type DeliverFn,
  type EventAbi,
  NO_UPCALL,
  type UnmaskResult,
} from "./types.ts";

/** Validated construction parameters handed to every implementation. */
export interface AbiParams {
  readonly wordBits: WordBits;
  readonly vcpus: number;
  readonly ports: number;
  readonly initiallyMasked: boolean;
}

/**
 * Base class of the three ABIs (2L and 3L through BitmapAbi, bitmap.ts).
 * Subclasses implement the port operations and `handle` (one pass of the
 * ABI's handle_events). Not exported from mod.ts.
 */
export abstract class AbiBase implements EventAbi {
  abstract readonly kind: AbiKind;
  declare readonly wordBits: WordBits;
  declare readonly vcpus: number;
  declare readonly portLimit: number;
  declare readonly buffer: ArrayBuffer;
  declare readonly layout: AbiMemoryLayout;
  /** Byte view of `buffer`. */
  declare protected readonly u8: Uint8Array;
  /** 32-bit view of `buffer` (little-endian host checked by createAbi); Int32 so engines keep bit patterns in integer registers. */
  declare protected readonly i32: Int32Array;
  declare protected readonly si: SharedInfoLayout;
  /** Byte offset of vcpu_info.evtchn_upcall_pending per vCPU. */
  declare protected readonly upcallOff: Int32Array;
  /** Hypervisor-private: evtchn->notify_vcpu_id per port. */
  declare protected readonly notify: Uint16Array;
  /** Guest-private: vCPUs currently inside scan. */
  declare private readonly inScan: Uint8Array;

  /** Allocates the buffer for `kind` and the shared per-port arrays. */
  constructor(kind: AbiKind, p: AbiParams) {
    this.wordBits = p.wordBits;
    this.vcpus = p.vcpus;
    this.portLimit = p.ports;
    this.layout = computeLayout(kind, p.wordBits, p.vcpus, p.ports);
    this.buffer = new ArrayBuffer(this.layout.byteLength);
    this.u8 = new Uint8Array(this.buffer);
    this.i32 = new Int32Array(this.buffer);
    this.si = sharedInfoLayout(p.wordBits);
    this.upcallOff = new Int32Array(p.vcpus);
    for (let v = 0; v < p.vcpus; v++) {
      this.upcallOff[v] = this.layout.vcpuInfo[v] + this.si.upcallPending;
    }
    this.notify = new Uint16Array(p.ports);
    this.inScan = new Uint8Array(p.vcpus);
  }

  abstract setPending(port: number): number;
  abstract clearPending(port: number): void;
  abstract mask(port: number): void;
  abstract unmask(port: number): UnmaskResult;
  abstract isPending(port: number): boolean;
  abstract isMasked(port: number): boolean;
  abstract bindToVcpu(port: number, vcpu: number): UnmaskResult;
  abstract setPriority(port: number, priority: number): void;

  /**
   * One pass of handle_events for `vcpu`, delivering at most `budget` ports.
   * On budget exhaustion or a throwing `deliver` it must put the undelivered
   * work back and set evtchn_upcall_pending (then rethrow, if thrown).
   */
  protected abstract handle(vcpu: number, deliver: DeliverFn, budget: number): number;

  /** See EventAbi.vcpuOf. */
  vcpuOf(port: number): number {
    checkAbiPort("evtchn_status", port, this.portLimit);
    return this.notify[port];
  }

  /** See EventAbi.priorityOf; 2L and 3L have no priorities (always the default 7). */
  priorityOf(port: number): number {
    checkAbiPort("evtchn_status", port, this.portLimit);
    return 7;
  }

  /** See EventAbi.upcallPending. */
  upcallPending(vcpu: number): boolean {
    checkAbiVcpu("vcpu_info", vcpu, this.vcpus);
    return this.u8[this.upcallOff[vcpu]] !== 0;
  }

  /** See EventAbi.upcallMasked. */
  upcallMasked(vcpu: number): boolean {
    checkAbiVcpu("vcpu_info", vcpu, this.vcpus);
    return this.u8[this.layout.vcpuInfo[vcpu] + this.si.upcallMask] !== 0;
  }

  /** See EventAbi.setUpcallMask. */
  setUpcallMask(vcpu: number, masked: boolean): boolean {
    checkAbiVcpu("vcpu_info", vcpu, this.vcpus);
    checkBoolean("masked", masked);
    this.u8[this.layout.vcpuInfo[vcpu] + this.si.upcallMask] = masked ? 1 : 0;
    return !masked && this.u8[this.upcallOff[vcpu]] !== 0;
  }

  /**
   * Xen's vcpu_mark_events_pending: test_and_set evtchn_upcall_pending.
   * Returns `vcpu` when it went 0 -> 1 (an upcall must be raised), else NO_UPCALL.
   */
  protected markEventsPending(vcpu: number): number {
    const off = this.upcallOff[vcpu];
    if (this.u8[off] !== 0) return NO_UPCALL;
    this.u8[off] = 1;
    return vcpu;
  }

  /** See EventAbi.scan. */
  scan(vcpu: number, deliver: DeliverFn, budget: number = Infinity): number {
    checkAbiVcpu("xen_evtchn_do_upcall", vcpu, this.vcpus);
    checkFunction("deliver", deliver);
    checkBudget(budget);
    if (this.inScan[vcpu] !== 0) {
      throw new XenUsageError(`scan of vCPU ${vcpu} re-entered from its own deliver callback`);
    }
    if (budget === 0) return 0;
    const off = this.upcallOff[vcpu];
    // An int32 limit keeps the scans' `done === budget` an integer compare;
    // 2^31 - 1 deliveries in one scan is as good as no limit.
    const limit = budget > 0x7fffffff ? 0x7fffffff : budget;
    let done = 0;
    this.inScan[vcpu] = 1;
    try {
      do {
        this.u8[off] = 0;
        done += this.handle(vcpu, deliver, (limit - done) | 0);
      } while (this.u8[off] !== 0 && done < limit);
    } finally {
      this.inScan[vcpu] = 0;
    }
    return done;
  }
}

/** Validates `bindToVcpu`'s vCPU with Xen's EVTCHNOP_bind_vcpu errno. */
export function checkBindVcpu(vcpu: number, vcpus: number): void {
  checkAbiVcpu("EVTCHNOP_bind_vcpu", vcpu, vcpus);
}
