/**
 * A doorbell notifier backed by a real Linux eventfd (ffi/eventfd.ts), the
 * same object KVM's ioeventfd and QEMU's EventNotifier signal. Loop plugins
 * can wait on it through wait() (the shared FdPoller) or watch `fd` in their
 * own poll loop; neither blocks the JavaScript event loop.
 *
 * @module
 */
import { EventFd, type EventFdOptions } from "../../ffi/mod.ts";
import type { NotifierWaitOptions, WaitableNotifier } from "./notifier.ts";

/**
 * A WaitableNotifier over one eventfd, which it owns. notify() writes 1 like
 * QEMU's event_notifier_set(): a write refused with EAGAIN (counter at
 * 2^64 - 2) counts as delivered, since readers are already woken.
 */
export class EventFdNotifier implements WaitableNotifier {
  /** Always "eventfd". */
  readonly kind = "eventfd" as const;
  /** The eventfd this notifier owns. */
  readonly eventfd: EventFd;

  /**
   * Creates a notifier with a fresh eventfd (EFD_NONBLOCK | EFD_CLOEXEC,
   * EFD_SEMAPHORE when asked). Rejects like EventFd.create():
   * XenUsageError, XenCallError("eventfd"), LibraryNotFoundError.
   */
  static async create(options: EventFdOptions = {}): Promise<EventFdNotifier> {
    return new EventFdNotifier(await EventFd.create(options));
  }

  /** Wraps an open eventfd; the notifier owns it from now on (close() closes it). */
  constructor(eventfd: EventFd) {
    this.eventfd = eventfd;
  }

  /** The eventfd's descriptor, for poll loops. Throws ClosedHandleError after close(). */
  get fd(): number {
    return this.eventfd.fd;
  }

  /** Whether close() has run. */
  get closed(): boolean {
    return this.eventfd.closed;
  }

  /**
   * Adds 1 to the eventfd counter (write(2)). Throws XenCallError("write")
   * for a failure other than EAGAIN, ClosedHandleError after close().
   */
  notify(): void {
    this.eventfd.signal(1n);
  }

  /** Reads the counter without waiting (null when zero). Throws like EventFd.read(). */
  read(): bigint | null {
    return this.eventfd.read();
  }

  /** Waits (FdPoller, non-blocking) and reads. Rejects like EventFd.wait(). */
  wait(options: NotifierWaitOptions = {}): Promise<bigint> {
    return this.eventfd.wait(options);
  }

  /** Closes the eventfd after cancelling waits. Idempotent; never throws. */
  close(): void {
    this.eventfd.close();
  }

  /** Same as close(). */
  [Symbol.dispose](): void {
    this.close();
  }
}
