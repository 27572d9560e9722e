/**
 * The FIFO-based event channel ABI (Xen 4.4+, Linux 3.14+; design
 * "event-channels-H.pdf" by David Vrabel).
 *
 * Shared state, byte-exact with event_channel.h (see layout.ts):
 *   event array: one 32-bit event_word_t per port (PENDING 31, MASKED 30,
 *   LINKED 29, BUSY 28, LINK in bits 0..16), 1024 words per page;
 *   per-vCPU struct evtchn_fifo_control_block { ready; _rsvd; head[16]; }
 *   at offset 0 of its own page (Linux init_control_block passes offset 0).
 * Capacity EVTCHN_FIFO_NR_CHANNELS = 2^17 = 131,072 ports, 16 priorities
 * (0 highest, default 7).
 *
 * Hypervisor side follows xen/common/event_fifo.c: evtchn_fifo_set_pending
 * (LINKED test_and_set, the "last queue" (fifo_lastq) tail invalidation when
 * an event moves queue, link to the tail iff the tail is still LINKED else
 * write HEAD, set the priority's READY bit and mark events pending only when
 * the queue was empty), try_set_link/evtchn_fifo_set_link (new = (old &
 * ~(BUSY | LINK_MASK)) | link; Xen only SETS BUSY while a cmpxchg keeps
 * failing, which cannot happen single-threaded, so BUSY is never left set by
 * this model), evtchn_fifo_unmask (clear MASKED, relink if PENDING) and
 * evtchn_fifo_set_priority.
 *
 * Guest side follows Linux drivers/xen/events/events_fifo.c:
 * __evtchn_fifo_handle_events (ready = xchg(ready, 0); serve the lowest set
 * priority, ONE event at a time, re-reading ready after each), and
 * consume_one_event (local per-CPU HEAD copy, read control_block->head only
 * when the local copy is 0; clear_linked returns the LINK; deliver iff
 * pending and not masked). Guest unmask is clear_masked_cond + the
 * EVTCHNOP_unmask hypercall when PENDING.
 *
 * @module
 */
import { callError } from "../../core/errors.ts";
import { checkInteger } from "../../core/validate.ts";
import { AbiBase, type AbiParams, checkBindVcpu } from "./base.ts";
import {
  FIFO,
  FIFO_BUSY_BIT,
  FIFO_LINKED_BIT,
  FIFO_MASKED_BIT,
  FIFO_PENDING_BIT,
  XEN_PAGE_SIZE,
} from "./layout.ts";
import {
  checkAbiPort,
  ctz32,
  type DeliverFn,
  NO_UPCALL,
  UNMASK_NOTHING,
  type UnmaskResult,
} from "./types.ts";

const Q = FIFO.MAX_QUEUES;
const LINK_MASK = FIFO.LINK_MASK;

/** The FIFO ABI for one domain. Construct via createAbi. */
export class FifoAbi extends AbiBase {
  readonly kind = "fifo" as const;
  /** Uint32 index of event word 0. */
  declare private readonly ev: number;
  /** Uint32 index of each vCPU's control block (ready at +0, head[q] at +2+q). */
  declare private readonly cb: Int32Array;
  /** Hypervisor-private: evtchn->priority per port. */
  declare private readonly prio: Uint8Array;
  /** Hypervisor-private: evtchn->fifo_lastq (last_vcpu_id, last_priority) per port. */
  declare private readonly lastVcpu: Uint16Array;
  declare private readonly lastPrio: Uint8Array;
  /** Hypervisor-private: struct evtchn_fifo_queue.tail, index vcpu * 16 + priority. */
  declare private readonly tail: Uint32Array;
  /** Guest-private: per-CPU struct evtchn_fifo_queue.head (local HEAD copies). */
  declare private readonly localHead: Uint32Array;

  /** Builds the state: every event word MASKED if initiallyMasked, priorities 7, vCPU 0. */
  constructor(p: AbiParams) {
    super("fifo", p);
    this.ev = this.layout.eventArray >>> 2;
    this.cb = new Int32Array(p.vcpus);
    for (let v = 0; v < p.vcpus; v++) this.cb[v] = this.layout.controlBlock[v] >>> 2;
    this.prio = new Uint8Array(p.ports).fill(FIFO.PRIORITY_DEFAULT);
    this.lastVcpu = new Uint16Array(p.ports);
    this.lastPrio = new Uint8Array(p.ports);
    this.tail = new Uint32Array(p.vcpus * Q);
    this.localHead = new Uint32Array(p.vcpus * Q);
    if (p.initiallyMasked) {
      // Linux init_array_page: every word of each event-array page = 1 << MASKED.
      const words = Math.ceil(p.ports / FIFO.EVENT_WORDS_PER_PAGE) * (XEN_PAGE_SIZE >>> 2);
      this.i32.fill(FIFO_MASKED_BIT >>> 0, this.ev, this.ev + words);
    }
  }

  /** Xen evtchn_fifo_set_pending on v = notify_vcpu_id. See EventAbi.setPending. */
  setPending(port: number): number {
    checkAbiPort("evtchn_set_pending", port, this.portLimit);
    return this.linkPending(port);
  }

  private linkPending(port: number): number {
    const i32 = this.i32, w = this.ev + port;
    const v = this.notify[port], pr = this.prio[port];
    const q = v * Q + pr, oldQ = this.lastVcpu[port] * Q + this.lastPrio[port];
    i32[w] |= FIFO_PENDING_BIT; // was_pending = test_and_set(PENDING)
    if ((i32[w] & (FIFO_MASKED_BIT | FIFO_LINKED_BIT)) !== 0) return NO_UPCALL; // linked stays true
    i32[w] |= FIFO_LINKED_BIT;
    // "If this event was a tail, the old queue is now empty and its tail must be invalidated"
    if (this.tail[oldQ] === port) this.tail[oldQ] = 0;
    if (oldQ !== q) { // moved to a different queue: record fifo_lastq
      this.lastVcpu[port] = v;
      this.lastPrio[port] = pr;
    }
    let linked = false;
    const t = this.tail[q];
    if (t !== 0) linked = this.setLink(t, port);
    if (!linked) i32[this.cb[v] + 2 + pr] = port; // write_atomic(q->head, port)
    this.tail[q] = port;
    if (linked) return NO_UPCALL;
    const ready = this.cb[v], rb = 1 << pr; // test_and_set_bit(priority, &control_block->ready)
    if ((i32[ready] & rb) !== 0) return NO_UPCALL;
    i32[ready] |= rb;
    return this.markEventsPending(v);
  }

  /** Xen try_set_link: link the tail iff it is still LINKED; the new value also clears BUSY. */
  private setLink(tailPort: number, port: number): boolean {
    const w = this.ev + tailPort, old = this.i32[w];
    if ((old & FIFO_LINKED_BIT) === 0) return false;
    this.i32[w] = (old & ~(FIFO_BUSY_BIT | LINK_MASK)) | port;
    return true;
  }

  /** Just clears PENDING; "the guest will unlink and ignore non-pending events". */
  clearPending(port: number): void {
    checkAbiPort("evtchn_clear_pending", port, this.portLimit);
    this.i32[this.ev + port] &= ~FIFO_PENDING_BIT;
  }

  /** Sets MASKED (Linux evtchn_fifo_mask). */
  mask(port: number): void {
    checkAbiPort("evtchn_mask", port, this.portLimit);
    this.i32[this.ev + port] |= FIFO_MASKED_BIT;
  }

  /**
   * Linux evtchn_fifo_unmask: clear_masked_cond clears MASKED itself when the
   * event is not PENDING; otherwise EVTCHNOP_unmask (Xen evtchn_fifo_unmask:
   * clear MASKED, relink if PENDING). clear_masked_cond's cmpxchg expects
   * BUSY clear and spins while Xen holds BUSY; a word with BUSY set (only
   * possible here if a test wrote it) takes the hypercall path instead,
   * which Xen performs regardless of BUSY. See EventAbi.unmask.
   */
  unmask(port: number): UnmaskResult {
    checkAbiPort("EVTCHNOP_unmask", port, this.portLimit);
    const w = this.ev + port, old = this.i32[w];
    if ((old & FIFO_MASKED_BIT) === 0) return UNMASK_NOTHING;
    if ((old & (FIFO_PENDING_BIT | FIFO_BUSY_BIT)) === 0) {
      this.i32[w] = old & ~FIFO_MASKED_BIT;
      return UNMASK_NOTHING;
    }
    this.i32[w] &= ~FIFO_MASKED_BIT; // EVTCHNOP_unmask
    if ((this.i32[w] & FIFO_PENDING_BIT) === 0) return UNMASK_NOTHING;
    return { deliverable: true, upcall: this.linkPending(port) };
  }

  /** See EventAbi.isPending. */
  isPending(port: number): boolean {
    checkAbiPort("evtchn_is_pending", port, this.portLimit);
    return (this.i32[this.ev + port] & FIFO_PENDING_BIT) !== 0;
  }

  /** See EventAbi.isMasked. */
  isMasked(port: number): boolean {
    checkAbiPort("evtchn_is_masked", port, this.portLimit);
    return (this.i32[this.ev + port] & FIFO_MASKED_BIT) !== 0;
  }

  /**
   * Mask, EVTCHNOP_bind_vcpu, unmask if it was unmasked (Linux
   * xen_rebind_evtchn_to_cpu; FIFO's bind_to_cpu is a no-op). An event
   * already LINKED stays on the old vCPU's queue and is delivered there.
   */
  bindToVcpu(port: number, vcpu: number): UnmaskResult {
    checkAbiPort("EVTCHNOP_bind_vcpu", port, this.portLimit);
    checkBindVcpu(vcpu, this.vcpus);
    const w = this.ev + port;
    const wasMasked = (this.i32[w] & FIFO_MASKED_BIT) !== 0;
    this.i32[w] |= FIFO_MASKED_BIT;
    this.notify[port] = vcpu;
    return wasMasked ? UNMASK_NOTHING : this.unmask(port);
  }

  /** Xen evtchn_fifo_set_priority: "Only need to switch to the new queue for future events." */
  setPriority(port: number, priority: number): void {
    checkAbiPort("EVTCHNOP_set_priority", port, this.portLimit);
    if (!(Number.isInteger(priority) && priority >= 0 && priority <= FIFO.PRIORITY_MIN)) {
      if (typeof priority !== "number") checkInteger("priority", priority, 0, FIFO.PRIORITY_MIN);
      throw callError("EVTCHNOP_set_priority", "EINVAL", `priority ${priority} outside 0..15`);
    }
    this.prio[port] = priority;
  }

  /** See EventAbi.priorityOf. */
  override priorityOf(port: number): number {
    checkAbiPort("evtchn_status", port, this.portLimit);
    return this.prio[port];
  }

  /** __evtchn_fifo_handle_events + consume_one_event (see module comment). */
  protected handle(v: number, deliver: DeliverFn, budget: number): number {
    const i32 = this.i32, ev = this.ev, cb = this.cb[v], lh = this.localHead, hb = v * Q;
    let ready = i32[cb] | 0; // xchg(&control_block->ready, 0)
    i32[cb] = 0;
    let done = 0;
    try {
      while (ready !== 0) {
        if (done === budget) break;
        const pr = ctz32(ready);
        let head = lh[hb + pr];
        if (head === 0) head = i32[cb + 2 + pr]; // reached the tail last time: read HEAD
        if (head === 0) { // never written by Xen with READY set; be defensive
          ready &= ~(1 << pr);
        } else {
          const port = head, w = ev + port, old = i32[w];
          i32[w] = old & ~(FIFO_LINKED_BIT | LINK_MASK); // clear_linked
          head = old & LINK_MASK;
          if (head === 0) ready &= ~(1 << pr); // queue empty: clear the local ready bit
          lh[hb + pr] = head;
          if ((old & (FIFO_PENDING_BIT | FIFO_MASKED_BIT)) === FIFO_PENDING_BIT) {
            i32[w] &= ~FIFO_PENDING_BIT; // ack
            done++;
            deliver(port);
          }
        }
        ready |= i32[cb]; // ready |= xchg(&control_block->ready, 0)
        i32[cb] = 0;
      }
    } catch (e) {
      this.putBack(v, ready);
      throw e;
    }
    if (ready !== 0) this.putBack(v, ready);
    return done;
  }

  /** Returns unserved READY bits to the control block and leaves the upcall pending. */
  private putBack(v: number, ready: number): void {
    this.i32[this.cb[v]] |= ready;
    this.u8[this.upcallOff[v]] = 1;
  }
}
