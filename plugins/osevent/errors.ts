/**
 * The errors of the event machinery. Both extend XenError
 * (core/errors.ts); usage mistakes (reentrancy, registering hooks twice,
 * calling the context from a disaster handler) are plain XenUsageError.
 *
 * @module
 */
import { errnoName, XenError } from "../../core/errors.ts";
import type { EventTypeValue } from "./types.ts";

/**
 * An application hook refused a registration (libxl's
 * ERROR_OSEVENT_REG_FAIL). `cause` is what the hook threw; `operation` is
 * the hook that failed ("fdRegister", "fdModify", "timeoutRegister"). The
 * registration state is unchanged.
 */
export class OsEventRegError extends XenError {
  override name = "OsEventRegError";
  /** `operation`: the hook that threw; `cause`: what it threw. Throws nothing. */
  constructor(readonly operation: string, cause: unknown) {
    super(
      `the application's ${operation} hook failed: ${(cause as Error)?.message ?? String(cause)}`,
      { cause },
    );
  }
}

/**
 * An unrecoverable failure while producing events (libxl's "disaster"),
 * reported with no disaster handler registered. `eventType` is the type of
 * events that may be missing (0: any type), `errno`/`code` the system error
 * (0/"" when there is none).
 *
 * Once raised, the context is failed: it has deregistered every fd and
 * timeout, every waiter rejected with this error, and every later call
 * (except close) throws it.
 */
export class DisasterError extends XenError {
  override name = "DisasterError";
  readonly code: string;
  /** Builds the error; `code` is derived from `errno`. Throws nothing. */
  constructor(
    readonly eventType: EventTypeValue | 0,
    readonly detail: string,
    readonly errno: number,
    cause?: unknown,
  ) {
    const code = errno > 0 ? errnoName(errno) : "";
    super(
      `xenchan event disaster (event type ${eventType || "any"}): ${detail}${
        code ? ` (${code})` : ""
      }`,
      { cause },
    );
    this.code = code;
  }
}
