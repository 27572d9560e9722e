/**
 * What an event source inside plugins/osevent/ gets from its EventContext:
 * the registry to watch fds and deadlines with, a way to hand over a
 * generated event, and the disaster report. Internal to plugins/osevent/.
 *
 * @module
 */
import type { OsEventRegistry } from "./registry.ts";
import type { EventTypeValue, XenEvent } from "./types.ts";

/** The context seen from an event source. */
export interface EventSink {
  /** The context's OS-event registry. */
  readonly registry: OsEventRegistry;
  /**
   * Hands over one generated event: to eventOccurs (if its type is in the
   * callback mask), else to the oldest matching waiter, else to the queue.
   * Dropped when the context is closed or failed. Throws nothing.
   */
  emit(event: XenEvent): void;
  /**
   * Reports an unrecoverable failure (libxl's disaster). With a handler it
   * is called at once; without one the context fails (see DisasterError).
   * Throws nothing itself.
   */
  disaster(type: EventTypeValue | 0, message: string, errno: number, cause?: unknown): void;
}
