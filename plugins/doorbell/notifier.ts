/**
 * The notifier interface behind every doorbell registration: the thing a
 * matching guest write signals instead of calling the region's I/O callback
 * (QEMU's EventNotifier, KVM's eventfd_ctx).
 *
 * Implementations:
 * - EventFdNotifier (eventfd_notifier.ts): a real Linux eventfd, waited on
 *   through the shared FdPoller without blocking the event loop.
 * - SimNotifier (sim_notifier.ts): a pure JavaScript counter with the same
 *   semantics, for the simulator and for code that must load with no
 *   permissions.
 * - EventChannelNotifier (evtchn_notifier.ts): a bridge that turns a hit
 *   into a Xen event channel notify to a peer.
 *
 * @module
 */

/**
 * What a doorbell needs from a notifier: one synchronous signal.
 *
 * notify() is called from MemoryRegion.write() on a matching write, at most
 * once per write, synchronously. It must not wait. An error it throws
 * propagates out of MemoryRegion.write() unchanged (the I/O callback is
 * still not called: the write matched). Object identity is part of a
 * registration's key: delEventfd() must be given the same object.
 */
export interface DoorbellNotifier {
  /** Signals once (adds 1 to a counter, or sends one event). */
  notify(): void;
}

/** Options for waiting on a notifier. */
export interface NotifierWaitOptions {
  /** Aborting stops the wait: wait() rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

/**
 * A notifier that the woken side can consume, with eventfd semantics: a
 * 64-bit counter, notify() adds 1 (saturating at 2^64 - 2, where further
 * signals are dropped because readers are already woken), read() returns the
 * counter and resets it (semaphore mode: returns 1n and decrements).
 *
 * The notifier owns what it wraps: close() releases it, rejects waits in
 * flight with ClosedHandleError, and makes every later call throw
 * ClosedHandleError. Delete a doorbell registration before closing its
 * notifier.
 */
export interface WaitableNotifier extends DoorbellNotifier, Disposable {
  /** Which implementation this is. */
  readonly kind: "eventfd" | "sim";
  /** Whether close() has run. */
  readonly closed: boolean;
  /** The counter (value, or 1n in semaphore mode) if non-zero, else null; never waits. */
  read(): bigint | null;
  /**
   * Waits until the counter is non-zero and reads it. Never blocks the event
   * loop. Rejects with the signal's reason on abort, ClosedHandleError when
   * the notifier is (or gets) closed.
   */
  wait(options?: NotifierWaitOptions): Promise<bigint>;
  /** Releases the notifier. Idempotent; never throws. */
  close(): void;
}
