/**
 * The bridge from a doorbell to Xen: a notifier that sends an event on an
 * event channel port, so a matching guest write wakes a peer domain (or a
 * peer handle in the same domain) through Xen instead of an eventfd. Works
 * with any backend behind EventChannels: the simulator, or real
 * libxenevtchn in dom0.
 *
 * @module
 */
import type { EventChannels } from "../../core/event_channels.ts";
import { XenUsageError } from "../../core/errors.ts";
import { checkPort } from "../../core/validate.ts";
import type { DoorbellNotifier } from "./notifier.ts";

/**
 * A DoorbellNotifier whose notify() is `handle.notify(port)`
 * (xenevtchn_notify). `port` is a local port bound through `handle` to the
 * peer (bindUnboundPort + the peer's bindInterdomain, or bindInterdomain).
 *
 * The notifier borrows the handle: it never closes or unbinds anything, and
 * the caller keeps the handle open while a doorbell registration uses this
 * notifier. Xen coalesces: several hits while the peer's port is pending
 * (or masked) are delivered as one event, unlike an eventfd counter.
 */
export class EventChannelNotifier implements DoorbellNotifier {
  /** The handle events are sent through (borrowed). */
  readonly handle: EventChannels;
  /** The local port notified on each hit. */
  readonly port: number;
  #sent = 0;

  /**
   * Throws XenUsageError when `handle` is not an EventChannels-like object
   * or `port` is not a uint32 port number. The port's binding is checked by
   * Xen at the first notify, not here.
   */
  constructor(handle: EventChannels, port: number) {
    if (typeof (handle as { notify?: unknown } | null)?.notify !== "function") {
      throw new XenUsageError("EventChannelNotifier needs an EventChannels handle");
    }
    this.handle = handle;
    this.port = checkPort(port);
  }

  /** How many notifies were sent successfully. */
  get sent(): number {
    return this.#sent;
  }

  /**
   * Sends one event on the port. Throws what EventChannels.notify throws:
   * XenCallError (ENOTCONN / EINVAL: port not bound through this handle),
   * ClosedHandleError when the handle is closed.
   */
  notify(): void {
    this.handle.notify(this.port);
    this.#sent++;
  }
}
