/**
 * The guest kernel's event-channel layer for one domain (Linux
 * drivers/xen/events/events_base.c as used by drivers/xen/evtchn.c): which
 * ports have a user-space handler, the per-port reference count that
 * evtchn_get/evtchn_put manage (gntdev/gntalloc unmap notifications hold a
 * reference so the port outlives its /dev/xen/evtchn binding), the upcall
 * that scans the domain's PortEventState, and the lateeoi-style ack
 * (mask + clear PENDING on delivery, unmask on the user's write).
 *
 * @module
 */
import { fail, SimErrno } from "./errno.ts";
import { NO_UPCALL } from "./port_state.ts";
import type { DomainEventChannels } from "./xen_evtchn.ts";

/** A /dev/xen/evtchn handle as seen by the kernel: receives delivered ports. */
export interface EvtchnUser {
  /** evtchn_interrupt: the port fired and has been masked. */
  interrupt(port: number): void;
}

/** FIFO event words per event-array page (EVENT_WORDS_PER_PAGE, Linux events_fifo.c). */
const EVENT_WORDS_PER_PAGE = 1024;

interface Irq {
  refcnt: number;
  user: EvtchnUser | null;
}

/** Per-domain kernel state for event channels. */
export class DomainKernel {
  #irqs = new Map<number, Irq>();
  #scanning = false;
  #again = false;
  #dead = false;
  #fifo: boolean;
  #eventArrayPages = 1;

  /** Attaches to the domain's Xen port table (installs the upcall handler). */
  constructor(readonly xen: DomainEventChannels) {
    xen.onUpcall = (vcpu) => this.#upcall(vcpu);
    this.#fifo = (xen.state as { readonly kind?: string }).kind === "fifo";
  }

  /**
   * xen_evtchn_nr_channels(): the ports the kernel's event ABI covers now.
   * FIFO: the event array pages set up so far times 1024 event words (the
   * array grows when a port beyond it is bound, never shrinks); 2-level
   * (and any other state): the state's port limit. /dev/xen/evtchn answers
   * EINVAL for an unbind at or beyond it (measured on a real dom0: 1024).
   */
  get nrChannels(): number {
    if (!this.#fifo) return this.xen.state.portLimit;
    return Math.min(this.#eventArrayPages * EVENT_WORDS_PER_PAGE, this.xen.state.portLimit);
  }

  /** evtchn_fifo_setup: EVTCHNOP_expand_array until `port` has an event word. */
  setupPort(port: number): void {
    const pages = Math.floor(port / EVENT_WORDS_PER_PAGE) + 1;
    if (pages > this.#eventArrayPages) this.#eventArrayPages = pages;
  }

  /** Ports currently bound to a user handle. */
  get userPorts(): number {
    let n = 0;
    for (const irq of this.#irqs.values()) if (irq.user) n++;
    return n;
  }

  /**
   * bind_evtchn_to_irqhandler_lateeoi + evtchn_make_refcounted: `user` now
   * receives the port (refcount 1) and the port is unmasked, so an event
   * already pending (bind_interdomain sets one) is delivered at once.
   * SimErrno EEXIST if the port already has an irq (cannot happen via Xen).
   */
  bindUser(port: number, user: EvtchnUser): void {
    if (this.#irqs.has(port)) fail("EEXIST", `port ${port} already has a handler`);
    this.setupPort(port);
    this.#irqs.set(port, { refcnt: 1, user });
    this.unmask(port);
  }

  /**
   * evtchn_unbind_from_user: masks the port, drops the handler and the
   * binding's reference. The Xen port is closed only when no unmap
   * notification holds a reference any more.
   */
  unbindUser(port: number): void {
    const irq = this.#irqs.get(port);
    if (!irq || !irq.user) return;
    irq.user = null;
    this.xen.state.mask(port);
    this.put(port);
  }

  /** evtchn_get: takes a reference on a port that has an irq; false (the caller's EINVAL) otherwise. */
  get(port: number): boolean {
    const irq = Number.isInteger(port) ? this.#irqs.get(port) : undefined;
    if (!irq || irq.refcnt <= 0) return false;
    irq.refcnt++;
    return true;
  }

  /** evtchn_put: drops a reference; the last one masks and closes the Xen port. */
  put(port: number): void {
    const irq = this.#irqs.get(port);
    if (!irq) return;
    if (--irq.refcnt > 0) return;
    this.#irqs.delete(port);
    if (this.#dead) return;
    this.xen.state.mask(port);
    if (this.xen.isOpen(port)) this.xen.close(port);
  }

  /** notify_remote_via_evtchn: EVTCHNOP_send with the result ignored, as Linux does. */
  notify(port: number): void {
    if (this.#dead) return;
    try {
      this.xen.send(port);
    } catch (e) {
      if (!(e instanceof SimErrno)) throw e;
    }
  }

  /** xen_irq_lateeoi -> unmask_evtchn: unmasks; a pending port is delivered now. */
  unmask(port: number): void {
    const r = this.xen.state.unmask(port);
    if (r.upcall !== NO_UPCALL) this.#upcall(r.upcall);
  }

  /** The domain died: forget every irq without touching Xen (its table is destroyed). */
  destroy(): void {
    this.#dead = true;
    this.#irqs.clear();
  }

  /** xen_evtchn_do_upcall: scans until no new upcall arrived during the scan. */
  #upcall(vcpu: number): void {
    if (this.#scanning) {
      this.#again = true;
      return;
    }
    this.#scanning = true;
    try {
      do {
        this.#again = false;
        this.xen.state.scan(vcpu, this.#deliver);
      } while (this.#again);
    } finally {
      this.#scanning = false;
    }
  }

  /** The per-port handler: lateeoi ack (PENDING already cleared by scan, now mask), then the user. */
  #deliver = (port: number): void => {
    this.xen.state.mask(port);
    const irq = this.#irqs.get(port);
    if (irq?.user) irq.user.interrupt(port);
  };
}
