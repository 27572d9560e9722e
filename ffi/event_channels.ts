/**
 * The FFI event channel driver: an open xenevtchn_handle.
 *
 * @module
 */
import { POLLIN, POLLNVAL } from "../core/driver.ts";
import type { EventChannelDriver } from "../core/driver.ts";
import { ClosedHandleError, XenCallError } from "../core/errors.ts";
import type { XenLibraries } from "./load.ts";
import type { FdPoller } from "./poller.ts";
import type { Ptr } from "./types.ts";

const ENOSYS = 38;

/** An open xenevtchn_handle; see EventChannelDriver for each method. */
export class FfiEventChannels implements EventChannelDriver {
  readonly fd: number;
  readonly #libs: XenLibraries;
  readonly #poller: FdPoller;
  readonly #closing = new AbortController();
  #combined: { readonly of: AbortSignal; readonly stop: AbortSignal } | undefined;
  #handle: Ptr | null;

  /** Opens /dev/xen/evtchn. Throws XenCallError("xenevtchn_open") with errno (ENOENT off Xen). */
  constructor(libs: XenLibraries, poller: FdPoller) {
    this.#libs = libs;
    this.#poller = poller;
    const handle = libs.evtchn.symbols.xenevtchn_open(libs.logger, 0);
    if (handle === null) throw new XenCallError("xenevtchn_open", libs.errno());
    this.#handle = handle;
    this.fd = libs.evtchn.symbols.xenevtchn_fd(handle);
  }

  /** True once close() ran. */
  get closed(): boolean {
    return this.#handle === null;
  }

  #live(): Ptr {
    if (this.#handle === null) throw new ClosedHandleError("event channel handle");
    return this.#handle;
  }

  #check(call: string, result: number): number {
    if (result < 0) throw new XenCallError(call, this.#libs.errno());
    return result;
  }

  notify(port: number): void {
    this.#check("xenevtchn_notify", this.#libs.evtchn.symbols.xenevtchn_notify(this.#live(), port));
  }

  bindUnboundPort(remoteDomid: number): number {
    const s = this.#libs.evtchn.symbols;
    return this.#check(
      "xenevtchn_bind_unbound_port",
      s.xenevtchn_bind_unbound_port(this.#live(), remoteDomid),
    );
  }

  bindInterdomain(remoteDomid: number, remotePort: number): number {
    const s = this.#libs.evtchn.symbols;
    const port = s.xenevtchn_bind_interdomain(this.#live(), remoteDomid, remotePort);
    return this.#check("xenevtchn_bind_interdomain", port);
  }

  bindVirq(virq: number): number {
    return this.#check(
      "xenevtchn_bind_virq",
      this.#libs.evtchn.symbols.xenevtchn_bind_virq(this.#live(), virq),
    );
  }

  unbind(port: number): void {
    this.#check("xenevtchn_unbind", this.#libs.evtchn.symbols.xenevtchn_unbind(this.#live(), port));
  }

  unmask(port: number): void {
    this.#check("xenevtchn_unmask", this.#libs.evtchn.symbols.xenevtchn_unmask(this.#live(), port));
  }

  restrict(domid: number): void {
    const restrict = this.#libs.evtchn.symbols.xenevtchn_restrict;
    const handle = this.#live();
    if (restrict === null) {
      throw new XenCallError("xenevtchn_restrict", ENOSYS, "libxenevtchn older than 1.1");
    }
    this.#check("xenevtchn_restrict", restrict(handle, domid));
  }

  pending(): number {
    return this.#check(
      "xenevtchn_pending",
      this.#libs.evtchn.symbols.xenevtchn_pending(this.#live()),
    );
  }

  waitReadable(signal?: AbortSignal, inline = true): Promise<number> {
    if (this.#handle === null) return Promise.reject(new ClosedHandleError("event channel handle"));
    const stop = signal ? this.#stopWith(signal) : this.#closing.signal;
    // A close() during the wait aborts it: report POLLNVAL, as the contract says.
    return this.#poller.wait(this.fd, POLLIN, stop, inline).then((revents) =>
      this.#handle === null ? POLLNVAL : revents
    );
  }

  /**
   * `signal` combined with this handle's closing signal; the last one is
   * kept, so a caller that waits again and again with the same signal (a
   * pump) does not build a new dependent signal per wait.
   */
  #stopWith(signal: AbortSignal): AbortSignal {
    if (this.#combined?.of !== signal) {
      this.#combined = { of: signal, stop: AbortSignal.any([signal, this.#closing.signal]) };
    }
    return this.#combined.stop;
  }

  pollNow(timeoutMs = 0): number {
    this.#live();
    return this.#poller.pollNow(this.fd, POLLIN, timeoutMs);
  }

  close(): void {
    const handle = this.#handle;
    if (handle === null) return;
    this.#closing.abort();
    this.#handle = null;
    this.#libs.evtchn.symbols.xenevtchn_close(handle);
  }
}
