/**
 * The per-domain event delivery state: which ports are pending and masked,
 * and how the guest finds them after an upcall. This is the ONE seam where an
 * event-delivery ABI (2-level, 3-level, FIFO from plugins/abi/) replaces the
 * simulator's default: `PortEventState` is a structural subset of the ABI
 * interface (plugins/abi/types.ts `EventAbi`), so an ABI instance can be
 * passed as `createDomain({ eventState })` without an adapter.
 *
 * Roles (as in Xen + Linux): Xen calls `setPending` (evtchn_port_set_pending)
 * and `clearPending` (evtchn_free); the guest kernel calls `mask`, `unmask`
 * and, on an upcall, `scan`, which clears PENDING just before handing each
 * deliverable port to the handler (the edge-IRQ ack).
 *
 * @module
 */
import { callError, XenUsageError } from "../core/errors.ts";
import { checkFunction, checkInteger } from "../core/validate.ts";

/** `setPending` / `unmask` result when no vCPU needs an upcall. */
export const NO_UPCALL = -1;

/** Result of `unmask` (same shape as the ABI's UnmaskResult). */
export interface PortUnmaskResult {
  /** The port was masked and pending, and the unmask made it deliverable. */
  readonly deliverable: boolean;
  /** The vCPU to upcall, or NO_UPCALL. */
  readonly upcall: number;
}

/**
 * Pending/mask state of one domain's ports plus the guest-side scan.
 * Single-threaded; `scan`'s deliver callback may call every other method.
 * Every method throws XenCallError EINVAL for a port outside 1..portLimit-1.
 */
export interface PortEventState {
  /** Ports are 1..portLimit-1 (the ABI's channel count; port 0 is reserved). */
  readonly portLimit: number;
  /** Marks `port` pending; returns the vCPU to upcall, or NO_UPCALL (masked or already pending). */
  setPending(port: number): number;
  /** Clears PENDING. */
  clearPending(port: number): void;
  /** Sets the mask bit. */
  mask(port: number): void;
  /** Clears the mask bit; a pending port becomes deliverable. */
  unmask(port: number): PortUnmaskResult;
  /** PENDING bit of the port. */
  isPending(port: number): boolean;
  /** Mask bit of the port. */
  isMasked(port: number): boolean;
  /**
   * The guest's upcall handler for `vcpu`: calls `deliver(port)` for each port
   * that is pending and unmasked, clearing PENDING just before the call.
   * Returns the number of ports delivered.
   */
  scan(vcpu: number, deliver: (port: number) => void): number;
}

const PENDING = 1;
const MASKED = 2;
const QUEUED = 4;

const NOTHING: PortUnmaskResult = Object.freeze({ deliverable: false, upcall: NO_UPCALL });
const DELIVERABLE: PortUnmaskResult = Object.freeze({ deliverable: true, upcall: 0 });

/**
 * The default state: one byte of flags per port and a queue of ports that
 * became deliverable, so `scan` delivers in arrival order (the order the
 * simulator's evtchn rings promise). Every port starts masked, as Linux
 * masks every channel at start of day and unmasks a port when it binds it.
 * One vCPU (0). Memory: `portLimit` bytes, allocated up front.
 */
export class QueuePortState implements PortEventState {
  readonly portLimit: number;
  #flags: Uint8Array;
  #queue: number[] = [];
  #head = 0;
  #scanning = false;

  /** Creates the state for ports 1..portLimit-1 (portLimit 2..2^20, else XenUsageError). */
  constructor(portLimit: number) {
    checkInteger("portLimit", portLimit, 2, 1 << 20);
    this.portLimit = portLimit;
    this.#flags = new Uint8Array(portLimit).fill(MASKED);
  }

  /** See PortEventState.setPending. */
  setPending(port: number): number {
    this.#check(port);
    const f = this.#flags[port];
    if (f & PENDING) return NO_UPCALL;
    this.#flags[port] = f | PENDING;
    return f & MASKED ? NO_UPCALL : this.#enqueue(port);
  }

  /** See PortEventState.clearPending. */
  clearPending(port: number): void {
    this.#check(port);
    this.#flags[port] &= ~PENDING;
  }

  /** See PortEventState.mask. */
  mask(port: number): void {
    this.#check(port);
    this.#flags[port] |= MASKED;
  }

  /** See PortEventState.unmask. */
  unmask(port: number): PortUnmaskResult {
    this.#check(port);
    const f = this.#flags[port];
    this.#flags[port] = f & ~MASKED;
    if (!(f & MASKED) || !(f & PENDING)) return NOTHING;
    this.#enqueue(port);
    return DELIVERABLE;
  }

  /** See PortEventState.isPending. */
  isPending(port: number): boolean {
    this.#check(port);
    return (this.#flags[port] & PENDING) !== 0;
  }

  /** See PortEventState.isMasked. */
  isMasked(port: number): boolean {
    this.#check(port);
    return (this.#flags[port] & MASKED) !== 0;
  }

  /** See PortEventState.scan. Nested scans throw XenUsageError; vCPU must be 0 (ENOENT). */
  scan(vcpu: number, deliver: (port: number) => void): number {
    checkFunction("deliver", deliver);
    if (vcpu !== 0) throw callError("scan", "ENOENT", `vCPU ${String(vcpu)} (one vCPU)`);
    if (this.#scanning) throw new XenUsageError("nested scan of vCPU 0");
    this.#scanning = true;
    let delivered = 0;
    try {
      while (this.#head < this.#queue.length) {
        const port = this.#queue[this.#head++];
        const f = this.#flags[port] & ~QUEUED;
        this.#flags[port] = f;
        if ((f & (PENDING | MASKED)) !== PENDING) continue;
        this.#flags[port] = f & ~PENDING;
        delivered++;
        deliver(port);
      }
    } finally {
      // After a throwing deliver, the undelivered ports stay queued.
      this.#queue = this.#head < this.#queue.length ? this.#queue.slice(this.#head) : [];
      this.#head = 0;
      this.#scanning = false;
    }
    return delivered;
  }

  #enqueue(port: number): number {
    if (this.#flags[port] & QUEUED) return NO_UPCALL;
    this.#flags[port] |= QUEUED;
    this.#queue.push(port);
    return 0;
  }

  #check(port: number): void {
    if (!(typeof port === "number" && port >= 1 && port < this.portLimit && (port | 0) === port)) {
      if (typeof port !== "number") checkInteger("port", port, 1, this.portLimit - 1);
      throw callError("evtchn_port", "EINVAL", `port ${port} outside 1..${this.portLimit - 1}`);
    }
  }
}
