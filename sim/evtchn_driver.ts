/**
 * A simulated /dev/xen/evtchn handle driven through libxenevtchn, modelled
 * on Linux drivers/xen/evtchn.c (per_user_data: rb-tree of user_evtchn with
 * `enabled`, the port ring that starts at 64 slots and doubles so there is
 * one slot per bound port, ring_overflow -> EFBIG/POLLERR, restrict_domid)
 * and tools/libs/evtchn/linux.c (pending = read(4), unmask = write(4), every
 * other call an ioctl whose errno the library returns).
 *
 * @module
 */
import { POLLERR, POLLIN, POLLNVAL } from "../core/driver.ts";
import type { EventChannelDriver } from "../core/driver.ts";
import { callError, ClosedHandleError, XenUsageError } from "../core/errors.ts";
import { DOMID_FIRST_RESERVED, DOMID_SELF, EVTCHN_RING_INITIAL } from "./constants.ts";
import type { HandleOwner } from "./context.ts";
import type { SimDomain, SimHandle } from "./domain.ts";
import { checkDomid, checkU32, fail, translate } from "./errno.ts";
import { checkInteger, checkSignal } from "../core/validate.ts";
import type { EvtchnUser } from "./linux_kernel.ts";

const UNRESTRICTED = -1;

interface Waiter {
  resolve(revents: number): void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/**
 * One event channel handle of a simulated process (EventChannelDriver).
 * Ownership: the creating process; the kernel closes it when the process
 * crashes, and abandons it when the domain dies. Single reader: the
 * simulator does not police concurrent waitReadable/pending pairs. Once
 * closed, every method but close() throws ClosedHandleError (waitReadable
 * rejects with it); arguments that do not fit the C types (port/virq
 * uint32_t, domid uint16_t) throw XenUsageError before anything happens.
 */
export class SimEventChannelDriver implements EventChannelDriver, SimHandle {
  readonly kind = "evtchn" as const;
  readonly fd: number;
  readonly #owner: HandleOwner;
  readonly #domain: SimDomain;
  #ports = new Map<number, { enabled: boolean }>();
  #ring = new Int32Array(0);
  #prod = 0;
  #cons = 0;
  #overflow = false;
  #restrict = UNRESTRICTED;
  #waiters = new Set<Waiter>();
  #closed = false;
  readonly #user: EvtchnUser = { interrupt: (port) => this.#interrupt(port) };

  /** Opens the handle for `owner` (xenevtchn_open already passed its checks). */
  constructor(owner: HandleOwner) {
    this.#owner = owner;
    this.#domain = owner.domain;
    this.fd = owner.ctx.allocFd();
    owner.attach(this);
  }

  /** True once closed: by close(), the process crashing or the domain dying. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Ports bound through this handle. */
  get boundPorts(): number {
    return this.#ports.size;
  }

  /** The ports bound through this handle, ascending (for leak reports). Throws nothing. */
  boundPortList(): number[] {
    return [...this.#ports.keys()].sort((a, b) => a - b);
  }

  /** Ring capacity (0 until the first bind, then 64, 128, ...). */
  get ringSize(): number {
    return this.#ring.length;
  }

  /**
   * xenevtchn_notify: EVTCHNOP_send on a port bound by this handle.
   * ENOTCONN for any port not bound here, also one beyond the ABI's channel
   * count (Linux's IOCTL_EVTCHN_NOTIFY only looks the port up among the
   * handle's ports, unlike unbind; recorded on Xen 4.17 / Linux 6.1, see
   * tests/fidelity/). Xen's own result is ignored, as Linux's
   * notify_remote_via_evtchn does (a VIRQ port "succeeds" and does nothing).
   */
  notify(port: number): void {
    this.#open();
    checkU32(port, "port");
    if (!this.#ports.has(port)) {
      throw callError("xenevtchn_notify", "ENOTCONN", `port ${port} not bound here`);
    }
    this.#domain.kernel.notify(port);
  }

  /**
   * xenevtchn_bind_unbound_port: a new port that `remoteDomid` may bind.
   * EACCES on a restricted handle, ENOSPC when the domain is out of ports,
   * ENOMEM (fault). The remote domain is not checked (Xen with dummy XSM
   * does not check it either).
   */
  bindUnboundPort(remoteDomid: number): number {
    const call = "xenevtchn_bind_unbound_port";
    this.#open();
    checkDomid(remoteDomid, "remoteDomid");
    try {
      if (this.#restrict !== UNRESTRICTED) fail("EACCES", "handle is restricted");
      const port = this.#domain.evtchn.allocUnbound(remoteDomid, this.#domain.domid);
      return this.#bindToUser(port, call);
    } catch (e) {
      throw translate(call, e);
    }
  }

  /**
   * xenevtchn_bind_interdomain: connects to `remotePort` of `remoteDomid`.
   * EACCES if restricted to another domain, ESRCH for a domain that does not
   * exist, EINVAL for a destroyed domain that other domains' mappings keep
   * dying (a zombie: found, every port closed), ENOSPC, EINVAL unless the remote port is unbound and reserved for
   * this domain, ENOMEM (fault). The new port is pending at once (Xen sets
   * it), so the first pending() returns it.
   */
  bindInterdomain(remoteDomid: number, remotePort: number): number {
    const call = "xenevtchn_bind_interdomain";
    this.#open();
    checkDomid(remoteDomid, "remoteDomid");
    checkU32(remotePort, "remotePort");
    try {
      if (this.#restrict !== UNRESTRICTED && this.#restrict !== remoteDomid) {
        fail("EACCES", `handle is restricted to d${this.#restrict}`);
      }
      const rdom = remoteDomid === DOMID_SELF ? this.#domain : this.#owner.ctx.domain(remoteDomid);
      if (!rdom) {
        // A dying domain kept by foreign mappings is still found: its ports are closed.
        if (this.#owner.ctx.zombie(remoteDomid)) fail("EINVAL", `domain ${remoteDomid} is dying`);
        fail("ESRCH", `no domain ${remoteDomid}`);
      }
      const port = this.#domain.evtchn.bindInterdomain(rdom.evtchn, remotePort);
      return this.#bindToUser(port, call);
    } catch (e) {
      throw translate(call, e);
    }
  }

  /** xenevtchn_bind_virq: EACCES if restricted, EINVAL for virq >= 24, EEXIST if bound, ENOSPC, ENOMEM. */
  bindVirq(virq: number): number {
    const call = "xenevtchn_bind_virq";
    this.#open();
    checkU32(virq, "virq");
    try {
      if (this.#restrict !== UNRESTRICTED) fail("EACCES", "handle is restricted");
      return this.#bindToUser(this.#domain.evtchn.bindVirq(virq), call);
    } catch (e) {
      throw translate(call, e);
    }
  }

  /**
   * xenevtchn_unbind: EINVAL for a port at or beyond the kernel's channel
   * count (xen_evtchn_nr_channels(): with FIFO the event array set up so far,
   * 1024 ports until a port beyond is bound),
   * ENOTCONN for a port not bound by this handle. Ring entries already
   * queued for the port stay (pending() may still return it once).
   */
  unbind(port: number): void {
    const call = "xenevtchn_unbind";
    this.#open();
    checkU32(port, "port");
    if (port >= this.#domain.kernel.nrChannels) {
      throw callError(call, "EINVAL", `port ${port} beyond the channel count`);
    }
    if (!this.#ports.has(port)) throw callError(call, "ENOTCONN", `port ${port} not bound here`);
    this.#ports.delete(port);
    this.#domain.kernel.unbindUser(port);
  }

  /**
   * xenevtchn_unmask (the driver's write): re-enables a port this handle
   * received; an event that arrived meanwhile is delivered now. Ports not
   * bound here, or not masked, are silently ignored (as evtchn_write does).
   */
  unmask(port: number): void {
    this.#open();
    checkU32(port, "port");
    const ue = this.#ports.get(port);
    if (!ue || ue.enabled) return;
    ue.enabled = true;
    this.#domain.kernel.unmask(port);
  }

  /**
   * xenevtchn_restrict: afterwards only interdomain binds to `domid` are
   * allowed; ports bound before stay. One-shot: EACCES when already
   * restricted (even to the same domain); EINVAL for domid 0 or >= 0x7FF0.
   */
  restrict(domid: number): void {
    const call = "xenevtchn_restrict";
    this.#open();
    checkDomid(domid);
    if (this.#restrict !== UNRESTRICTED) throw callError(call, "EACCES", "already restricted");
    if (domid === 0 || domid >= DOMID_FIRST_RESERVED) {
      throw callError(call, "EINVAL", `cannot restrict to d${domid}`);
    }
    this.#restrict = domid;
  }

  /**
   * xenevtchn_pending: the next port from the ring (arrival order). EFBIG
   * once the ring overflowed (for good: libxenevtchn has no reset). With an
   * empty ring: EAGAIN (current Linux, O_NONBLOCK), or with
   * `faults.pendingWouldBlock` a XenUsageError "pending() would block".
   */
  pending(): number {
    const call = "xenevtchn_pending";
    this.#open();
    if (this.#overflow) throw callError(call, "EFBIG", "event ring overflowed");
    if (this.#cons === this.#prod) {
      if (this.#owner.ctx.faults.pendingWouldBlock) {
        throw new XenUsageError(
          `pending() would block: fd ${this.fd} has nothing pending (poll before each pending)`,
        );
      }
      throw callError(call, "EAGAIN", "nothing pending");
    }
    const ring = this.#ring;
    return ring[this.#cons++ & (ring.length - 1)];
  }

  /**
   * poll(fd, POLLIN, timeout): POLLERR after overflow, POLLIN when a port is
   * queued, else 0. It never waits: nothing can arrive while the
   * simulator's only thread would be blocked, so a timeout ends at once;
   * -1 (forever) with nothing pending throws XenUsageError, where a real
   * single-threaded program would hang, as does a timeout that is not an
   * integer from -1 to 2^31-1.
   */
  pollNow(timeoutMs = 0): number {
    this.#open();
    checkInteger("timeoutMs", timeoutMs, -1, 0x7fffffff);
    const revents = this.#revents();
    if (revents === 0 && timeoutMs < 0) {
      throw new XenUsageError(
        "poll(-1) would block forever: nothing is pending and nothing else can run",
      );
    }
    return revents;
  }

  /**
   * Resolves with POLLIN/POLLERR once ready (at once if already), with 0 when
   * `signal` aborts, and with POLLNVAL if the handle is closed meanwhile.
   * Never spins: it waits on the simulator's delivery. A closed handle
   * rejects with ClosedHandleError; a `signal` that is not an AbortSignal
   * rejects with XenUsageError.
   */
  waitReadable(signal?: AbortSignal): Promise<number> {
    if (this.#closed) return Promise.reject(this.#closedError());
    try {
      checkSignal("signal", signal);
    } catch (error) {
      return Promise.reject(error);
    }
    const now = this.#revents();
    if (now !== 0) return Promise.resolve(now);
    if (signal?.aborted) return Promise.resolve(0);
    return new Promise((resolve) => {
      const w: Waiter = { resolve, signal };
      if (signal) {
        w.onAbort = () => this.#settle(w, 0);
        signal.addEventListener("abort", w.onAbort, { once: true });
      }
      this.#waiters.add(w);
    });
  }

  /** xenevtchn_close: unbinds every port (idempotent). Pending waiters get POLLNVAL. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const port of this.#ports.keys()) this.#domain.kernel.unbindUser(port);
    this.#teardown();
  }

  /** Simulator internal: the domain died; Xen closes the ports itself. */
  abandon(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#teardown();
  }

  #teardown(): void {
    this.#ports.clear();
    this.#ring = new Int32Array(0);
    this.#prod = this.#cons = 0;
    for (const w of [...this.#waiters]) this.#settle(w, POLLNVAL);
    this.#owner.detach(this);
  }

  /** evtchn_bind_to_user: ENOMEM fault closes the new port again, as Linux does. */
  #bindToUser(port: number, call: string): number {
    const ctx = this.#owner.ctx;
    if (ctx.faults.consumeAllocation(this.#domain.domid, call)) {
      this.#domain.evtchn.close(port);
      fail("ENOMEM", "kzalloc(user_evtchn) failed (injected)");
    }
    this.#ports.set(port, { enabled: true });
    this.#resizeRing();
    this.#domain.kernel.bindUser(port, this.#user);
    return port;
  }

  #resizeRing(): void {
    const size = this.#ring.length;
    if (this.#ports.size <= size) return;
    const next = new Int32Array(size === 0 ? EVTCHN_RING_INITIAL : size * 2);
    let j = 0;
    for (let i = this.#cons; i !== this.#prod; i++) next[j++] = this.#ring[i & (size - 1)];
    this.#ring = next;
    this.#cons = 0;
    this.#prod = j;
  }

  /** evtchn_interrupt: disable the port, queue it or flag overflow, wake readers. */
  #interrupt(port: number): void {
    const ue = this.#ports.get(port);
    if (ue) ue.enabled = false;
    const size = this.#ring.length;
    if (this.#prod - this.#cons < size) {
      this.#ring[this.#prod++ & (size - 1)] = port;
    } else {
      this.#overflow = true;
    }
    if (this.#waiters.size > 0) this.#wake();
  }

  #wake(): void {
    const revents = this.#revents();
    if (revents === 0) return;
    for (const w of [...this.#waiters]) this.#settle(w, revents);
  }

  #settle(w: Waiter, revents: number): void {
    if (!this.#waiters.delete(w)) return;
    if (w.onAbort) w.signal!.removeEventListener("abort", w.onAbort);
    w.resolve(revents);
  }

  #revents(): number {
    if (this.#overflow) return POLLERR;
    return this.#prod !== this.#cons ? POLLIN : 0;
  }

  #open(): void {
    if (this.#closed) throw this.#closedError();
  }

  #closedError(): ClosedHandleError {
    return new ClosedHandleError(`event channel handle fd ${this.fd} (${this.#owner.label})`);
  }
}
