/**
 * The event-delivery ABI interface shared by the 2-level, 3-level and FIFO
 * implementations, and the helpers they share (argument checks, the
 * vcpu_info accessors that every ABI uses for the upcall flag).
 *
 * Model: one instance holds the state of ONE simulated domain. The
 * "hypervisor side" methods are what Xen does to that domain (set_pending on
 * EVTCHNOP_send, EVTCHNOP_unmask, EVTCHNOP_bind_vcpu, ...); the "guest side"
 * method `scan` is the domain's upcall handler (Linux's
 * xen_evtchn_do_upcall + the ABI's handle_events). Guest-owned bits (MASK,
 * clearing PENDING) are written by the same methods, as the guest would.
 *
 * Single-threaded: no operation is atomic with respect to another thread, and
 * none needs to be. Reentrancy: the `deliver` callback of `scan` may call any
 * hypervisor-side method of the same instance (set pending, mask, unmask,
 * rebind, set priority) and `scan` for a DIFFERENT vCPU; calling `scan` for
 * the vCPU being scanned throws XenUsageError.
 *
 * @module
 */
import { callError, XenUsageError } from "../../core/errors.ts";
import { checkInteger, describe } from "../../core/validate.ts";
import type { AbiMemoryLayout, WordBits } from "./layout.ts";

/** Which ABI: "2l" (default Xen ABI), "3l" (never merged RFC), "fifo" (Xen 4.4+). */
export type AbiKind = "2l" | "3l" | "fifo";

/** Returned by `setPending` and in `UnmaskResult.upcall` when no upcall was raised. */
export const NO_UPCALL = -1;

/** Largest vCPU count an instance accepts (a simulator limit, HVM_MAX_VCPUS of Xen 4.17). */
export const MAX_VCPUS = 128;

/** Options of `createAbi`. */
export interface AbiOptions {
  /** Width of xen_ulong_t: 64 (x86_64/Arm, default) or 32 (32-bit x86). FIFO ignores it for the event array. */
  readonly wordBits?: WordBits;
  /** Number of vCPUs, 1..MAX_VCPUS (default 1). */
  readonly vcpus?: number;
  /**
   * Ports to support, 2..the ABI maximum (default the maximum). Models the
   * domain's max_evtchns; FIFO rounds up to whole event-array pages.
   */
  readonly maxPorts?: number;
  /**
   * Start with every port masked (default true), as Linux does at start of
   * day (events_base.c masks every channel; events_fifo.c init_array_page
   * writes MASKED into each new event word). Ports are then unmasked when
   * bound, as the /dev/xen/evtchn driver does.
   */
  readonly initiallyMasked?: boolean;
}

/** Result of an unmask (or of a rebind that ends with one). */
export interface UnmaskResult {
  /** True iff the port was masked and pending: the unmask made it deliverable. */
  readonly deliverable: boolean;
  /** The vCPU whose evtchn_upcall_pending went 0 -> 1, or NO_UPCALL. */
  readonly upcall: number;
}

/** The shared "nothing happened" unmask result (frozen, allocation free). */
export const UNMASK_NOTHING: UnmaskResult = Object.freeze({
  deliverable: false,
  upcall: NO_UPCALL,
});

/** The guest's per-port handler called by `scan`. */
export type DeliverFn = (port: number) => void;

/**
 * One domain's event-delivery ABI over an ArrayBuffer laid out exactly as
 * Xen's public headers define it (see layout.ts and README.md).
 */
export interface EventAbi {
  /** Which ABI this is. */
  readonly kind: AbiKind;
  /** Width of xen_ulong_t for the shared_info / bitmap structures. */
  readonly wordBits: WordBits;
  /** Number of vCPUs. */
  readonly vcpus: number;
  /** Ports are 1..portLimit-1 (port 0 is reserved by Xen). */
  readonly portLimit: number;
  /** The shared memory: shared_info page, then the ABI's pages (see `layout`). */
  readonly buffer: ArrayBuffer;
  /** Byte offsets of every structure inside `buffer`. */
  readonly layout: AbiMemoryLayout;

  /**
   * Hypervisor side: marks `port` pending and, when it is unmasked, makes it
   * visible to its vCPU (2L/3L: selector bits; FIFO: links it on the vCPU's
   * queue for its priority). Returns the vCPU whose evtchn_upcall_pending
   * went 0 -> 1 (the caller must raise that vCPU's upcall once its
   * evtchn_upcall_mask is clear), or NO_UPCALL. Setting an already pending
   * port changes nothing (events coalesce). Throws XenCallError EINVAL for a
   * port outside 1..portLimit-1.
   */
  setPending(port: number): number;
  /** Clears PENDING (the guest's ack, or Xen's clear_pending). FIFO leaves LINKED for the guest to unlink. Throws EINVAL as setPending. */
  clearPending(port: number): void;
  /** Sets the port's mask bit (guest-owned). Throws EINVAL as setPending. */
  mask(port: number): void;
  /**
   * Clears the mask and, if the port is pending, makes it deliverable exactly
   * as Xen's EVTCHNOP_unmask does (2L/3L: selector bits; FIFO: relink).
   * Returns whether the unmask made a pending port deliverable and which vCPU
   * (if any) must get an upcall. Throws EINVAL as setPending.
   */
  unmask(port: number): UnmaskResult;
  /** True iff the port's PENDING bit is set. Throws EINVAL as setPending. */
  isPending(port: number): boolean;
  /** True iff the port's mask bit is set. Throws EINVAL as setPending. */
  isMasked(port: number): boolean;
  /**
   * Routes the port to `vcpu` as Linux's rebind does: mask, EVTCHNOP_bind_vcpu
   * (notify_vcpu_id = vcpu; 2L/3L also move the guest's per-CPU routing bit),
   * then unmask if the port was unmasked before. Returns the unmask result
   * (UNMASK_NOTHING when the port stays masked). Throws EINVAL for a bad
   * port and XenCallError ENOENT for a vCPU outside 0..vcpus-1.
   */
  bindToVcpu(port: number, vcpu: number): UnmaskResult;
  /** The vCPU the port notifies (notify_vcpu_id). Throws EINVAL as setPending. */
  vcpuOf(port: number): number;
  /**
   * EVTCHNOP_set_priority: FIFO only; takes effect the next time the port is
   * linked. Throws XenCallError EINVAL for priority > 15 or a bad port, and
   * ENOSYS on 2L/3L (Xen has no set_priority op for them).
   */
  setPriority(port: number, priority: number): void;
  /** The port's FIFO priority (always 7 on 2L/3L). Throws EINVAL as setPending. */
  priorityOf(port: number): number;

  /** vcpu_info.evtchn_upcall_pending != 0 for `vcpu`. Throws ENOENT for a bad vCPU. */
  upcallPending(vcpu: number): boolean;
  /** vcpu_info.evtchn_upcall_mask != 0 for `vcpu`. Throws ENOENT for a bad vCPU. */
  upcallMasked(vcpu: number): boolean;
  /**
   * Writes vcpu_info.evtchn_upcall_mask. Returns true when this unmasks the
   * vCPU while an upcall is pending (Linux then forces the callback), else
   * false. Throws ENOENT for a bad vCPU.
   */
  setUpcallMask(vcpu: number, masked: boolean): boolean;

  /**
   * Guest side: the upcall of `vcpu`. Repeats { evtchn_upcall_pending = 0;
   * handle events } while evtchn_upcall_pending is set again, delivering each
   * pending, unmasked port routed to this vCPU in the ABI's order. Each port's
   * PENDING is cleared just before `deliver(port)` (the edge-IRQ ack), so a
   * port set pending again inside `deliver` is delivered again later.
   *
   * `budget` (default Infinity) caps the number of deliveries; when it runs
   * out the undelivered work is put back (selector / ready bits) and
   * evtchn_upcall_pending is left set, so `upcallPending(vcpu)` is true and a
   * later scan resumes where this one stopped. Returns the number of ports
   * delivered. Without a budget, a `deliver` that re-raises a port of this
   * vCPU every time makes scan run forever, as it would the kernel.
   *
   * If `deliver` throws, the exception propagates after the remaining work has
   * been put back the same way; the port being delivered counts as consumed.
   * Throws ENOENT for a bad vCPU, XenUsageError for a nested scan of the same
   * vCPU or a budget that is not a non-negative integer or Infinity.
   */
  scan(vcpu: number, deliver: DeliverFn, budget?: number): number;
}

/**
 * Throws XenCallError(call, EINVAL) unless 1 <= port < limit. Kept tiny so
 * engines inline it into the hot paths; the throw lives in badPort.
 */
export function checkAbiPort(call: string, port: number, limit: number): void {
  if (!(typeof port === "number" && port >= 1 && port < limit && (port | 0) === port)) {
    badPort(call, port, limit);
  }
}

/** A number out of range is Xen's EINVAL; anything but a number is a XenUsageError. */
function badPort(call: string, port: number, limit: number): never {
  if (typeof port !== "number") checkInteger("port", port, 1, limit - 1);
  throw callError(call, "EINVAL", `port ${port} outside 1..${limit - 1}`);
}

/** Throws XenCallError(call, ENOENT) unless 0 <= vcpu < vcpus (Xen's domain_vcpu() check). */
export function checkAbiVcpu(call: string, vcpu: number, vcpus: number): void {
  if (!(typeof vcpu === "number" && vcpu >= 0 && vcpu < vcpus && (vcpu | 0) === vcpu)) {
    badVcpu(call, vcpu, vcpus);
  }
}

/** As badPort: a non-number is a XenUsageError. */
function badVcpu(call: string, vcpu: number, vcpus: number): never {
  if (typeof vcpu !== "number") checkInteger("vcpu", vcpu, 0, vcpus - 1);
  throw callError(call, "ENOENT", `vCPU ${vcpu} outside 0..${vcpus - 1}`);
}

/** Throws XenUsageError unless budget is a non-negative integer or Infinity. */
export function checkBudget(budget: number): void {
  if (
    !(budget === Infinity ||
      (typeof budget === "number" && budget >= 0 && Math.floor(budget) === budget))
  ) badBudget(budget);
}

function badBudget(budget: number): never {
  throw new XenUsageError(
    `scan budget must be a non-negative integer or Infinity, got ${describe(budget)}`,
  );
}

/** Returns true iff the host stores a Uint32Array little-endian (all Xen hosts do). */
export function hostIsLittleEndian(): boolean {
  return new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
}

/** Index (0..31) of the lowest set bit of a non-zero int32. */
export function ctz32(x: number): number {
  return 31 - Math.clz32(x & -x);
}

/**
 * First set bit at index >= from of the 64-bit value hi:lo (hi is 0 for a
 * 32-bit word), or -1. `from` is 0..64.
 */
export function firstSetFrom(lo: number, hi: number, from: number): number {
  if (from < 32) {
    const m = lo & (-1 << from);
    if (m !== 0) return ctz32(m);
    from = 32;
  }
  if (from < 64) {
    const m = hi & (-1 << (from - 32));
    if (m !== 0) return 32 + ctz32(m);
  }
  return -1;
}
