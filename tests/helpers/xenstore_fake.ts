/**
 * A scripted XenStore transport for client tests: it records every request
 * the client sends and lets the test answer with whatever bytes it likes
 * (well-formed replies, events, or garbage), asynchronously as a real
 * daemon does.
 *
 * @module
 */
import type { XenStoreTransport, XenStoreTransportSink } from "../../mod.ts";
import {
  encodeMessage,
  payloadOf,
  splitNul,
  XS_READ_PAYLOAD_LIMIT,
  XsDecoder,
  type XsMessage,
  XsType,
} from "../../core/xenstore/wire.ts";

/** A fake daemon behind one connection; see the module comment. */
export class FakeTransport implements XenStoreTransport {
  readonly kind = "sim";
  readonly description = "a scripted fake daemon";
  readonly kernelWatches: boolean;
  readonly maxRequestPayload: number;
  /** Every request sent, decoded, in order. */
  readonly requests: XsMessage[] = [];
  /** Every request sent, as the exact bytes. */
  readonly raw: Uint8Array[] = [];
  closed = false;
  #sink: XenStoreTransportSink | undefined;
  readonly #decoder = new XsDecoder();
  readonly #waiters: Array<() => void> = [];
  /** Called (in a microtask) for each request; answer through reply()/send helpers. */
  onRequest: ((request: XsMessage) => void) | undefined;

  constructor(options: { maxRequestPayload?: number; kernelWatches?: boolean } = {}) {
    this.maxRequestPayload = options.maxRequestPayload ?? 4096;
    this.kernelWatches = options.kernelWatches ?? false;
  }

  attach(sink: XenStoreTransportSink): void {
    this.#sink = sink;
  }

  send(message: Uint8Array): void {
    if (this.closed) throw new Error("fake transport is closed");
    this.raw.push(message.slice());
    for (const m of this.#decoder.push(message)) {
      this.requests.push(m);
      queueMicrotask(() => this.onRequest?.(m));
    }
    for (const w of this.#waiters.splice(0)) w();
  }

  close(): void {
    this.closed = true;
  }

  /** Resolves once at least `n` requests were sent. */
  async waitRequests(n: number): Promise<void> {
    while (this.requests.length < n) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  /** Delivers raw bytes to the client (asynchronously). */
  bytes(chunk: Uint8Array): void {
    queueMicrotask(() => this.closed || this.#sink?.data(chunk));
  }

  /** Ends the stream (asynchronously). */
  end(error?: Error): void {
    queueMicrotask(() => this.closed || this.#sink?.end(error));
  }

  /** Replies to `request` with its own type and `payload`. */
  reply(request: XsMessage, payload: Uint8Array | string = "OK\0"): void {
    this.bytes(message(request.type, request.reqId, request.txId, payload));
  }

  /** Replies to `request` with XS_ERROR `name`. */
  error(request: XsMessage, name: string): void {
    this.bytes(message(XsType.ERROR, request.reqId, request.txId, `${name}\0`));
  }

  /** Sends a watch event, with req_id/tx_id as given (the kernel leaves them unset). */
  event(path: string, token: string, reqId = 0, txId = 0): void {
    this.bytes(encodeMessage({
      type: XsType.WATCH_EVENT,
      reqId,
      txId,
      payload: payloadOf([path, token]),
    }, XS_READ_PAYLOAD_LIMIT));
  }
}

/** Encodes one message with a string (UTF-8) or byte payload, no size limit below 64 KiB. */
export function message(
  type: number,
  reqId: number,
  txId: number,
  payload: Uint8Array | string,
): Uint8Array {
  const bytes = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
  return encodeMessage({ type, reqId, txId, payload: bytes }, XS_READ_PAYLOAD_LIMIT);
}

/** The NUL-separated strings of a request's payload. */
export function argsOf(request: XsMessage): string[] {
  return splitNul(request.payload);
}

/** Hex of bytes, for golden comparisons. */
export function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Rejects if `promise` does not settle within `ms` (so a hang fails the test). */
export function within<T>(promise: Promise<T>, ms = 5000, what = "the operation"): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
