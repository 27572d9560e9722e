/**
 * One connection to the simulated xenstored, seen from the client as a
 * XenStoreTransport (core/xenstore/transport.ts). The client attaches a
 * sink and sends encoded requests; the daemon processes each request in a
 * microtask of its own, in arrival order, and delivers that request's
 * output (its reply and any watch events it caused, on every connection)
 * when it is done: never synchronously inside `send` or `attach`.
 *
 * @module
 */
import type { XenStoreTransport, XenStoreTransportSink } from "../../core/xenstore/transport.ts";
import {
  encodeMessage,
  XENSTORE_PAYLOAD_MAX,
  XsDecoder,
  type XsMessage,
  XsProtocolError,
  XsType,
} from "../../core/xenstore/wire.ts";
import type { Transaction } from "./database.ts";

/** A registered watch (struct watch, xenstored_watch.c:34-47). */
export interface SimWatch {
  /** The absolute path watched, or the "@..." special name. */
  readonly node: string;
  /** The token, as the bytes sent (a binary string: one char per byte). */
  readonly token: string;
  /** The implicit path the watch was relative to, if it was relative. */
  readonly relativeTo?: string;
}

/** What the daemon provides to its connections. */
export interface SimConnectionHost {
  /** Queues `message` of `conn` for processing (in a microtask, in order). */
  receive(conn: SimXenStoreConnection, message: XsMessage): void;
  /** The connection is gone (closed by the client or ended by the daemon). */
  forget(conn: SimXenStoreConnection): void;
}

type State = "new" | "open" | "ended" | "closed";

/**
 * A connection of domain `domid` to the simulated xenstored. The transport
 * half (attach/send/close) belongs to the client; the rest is used by the
 * daemon. Single-threaded; not reentrant in any special way: `send` may be
 * called from inside the sink's `data`.
 */
export class SimXenStoreConnection implements XenStoreTransport {
  readonly kind = "sim" as const;
  readonly description: string;
  readonly maxRequestPayload: number = XENSTORE_PAYLOAD_MAX;
  readonly kernelWatches = false;
  /** Watches in registration order (conn->watches). */
  watches: SimWatch[] = [];
  /** Open transactions by id (conn->transaction_list). */
  readonly transactions: Map<number, Transaction> = new Map();
  /** The next transaction id to try (conn->next_transaction_id, from 1). */
  nextTransactionId = 1;
  #sink: XenStoreTransportSink | undefined;
  #state: State = "new";
  readonly #decoder = new XsDecoder(XENSTORE_PAYLOAD_MAX);
  #outbox: Uint8Array[] = [];
  #outboxEvents: string[] = [];

  /** Made by SimXenStore.connect. `serial` numbers the daemon's connections. */
  constructor(
    readonly host: SimConnectionHost,
    readonly domid: number,
    readonly serial: number,
    label?: string,
  ) {
    this.description = label ?? `simulated xenstored: domain ${domid}, connection ${serial}`;
  }

  /** True until the client closed it or the daemon ended it. */
  get alive(): boolean {
    return this.#state === "new" || this.#state === "open";
  }

  /** XenStoreTransport.attach: once, before any send. Throws Error otherwise. */
  attach(sink: XenStoreTransportSink): void {
    if (this.#state !== "new" || this.#sink) {
      throw new Error(`${this.description}: attach called twice or after the end`);
    }
    this.#sink = sink;
    this.#state = "open";
  }

  /**
   * XenStoreTransport.send: accepts bytes of whole or partial messages.
   * Throws Error before attach, after close and after the daemon ended the
   * connection. A header announcing more than XENSTORE_PAYLOAD_MAX payload
   * bytes makes the daemon drop the connection, as C xenstored does
   * (handle_input, xenstored_core.c:2153-2158): the sink's `end` follows
   * with an Error, asynchronously.
   */
  send(message: Uint8Array): void {
    if (this.#state !== "open") {
      throw new Error(`${this.description}: cannot send, the connection is ${this.#state}`);
    }
    let messages: XsMessage[];
    try {
      messages = this.#decoder.push(message);
    } catch (e) {
      if (!(e instanceof XsProtocolError)) throw e;
      this.end(new Error(`xenstored dropped the connection: ${e.message}`));
      return;
    }
    for (const m of messages) this.host.receive(this, m);
  }

  /** XenStoreTransport.close: idempotent; the daemon forgets the connection; no sink call follows. */
  close(): void {
    if (this.#state === "closed") return;
    const wasAlive = this.alive;
    this.#state = "closed";
    this.#outbox = [];
    this.#outboxEvents = [];
    if (wasAlive) this.host.forget(this);
  }

  /**
   * Daemon side: ends the connection (the process died, the domain was
   * destroyed or released, or the client broke the protocol). Watches and
   * transactions are dropped now; undelivered output is lost; the sink's
   * `end(error)` runs in a microtask unless the client closes first.
   * Idempotent.
   */
  end(error: Error): void {
    if (!this.alive) return;
    const attached = this.#state === "open";
    this.#state = "ended";
    this.#outbox = [];
    this.#outboxEvents = [];
    this.host.forget(this);
    if (!attached) return;
    queueMicrotask(() => {
      if (this.#state === "ended") this.#sink?.end(error);
    });
  }

  /** Daemon side: queues a reply (send_reply, xenstored_core.c:1046-1090). */
  queueReply(type: number, reqId: number, txId: number, payload: Uint8Array): void {
    if (!this.alive) return;
    this.#outbox.push(encodeMessage({ type, reqId, txId, payload }));
    this.#outboxEvents.push("");
  }

  /**
   * Daemon side: queues a watch event (send_event, xenstored_core.c:
   * 1096-1152): an event over XENSTORE_PAYLOAD_MAX is dropped, and so is a
   * non-"@" event identical to one still waiting in the output queue.
   * Returns whether it was queued.
   */
  queueEvent(path: string, token: string): boolean {
    if (!this.alive) return false;
    const payload = binaryBytes(`${path}\0${token}\0`);
    if (payload.length > XENSTORE_PAYLOAD_MAX) return false;
    const key = `${path}\0${token}`;
    if (!path.startsWith("@") && this.#outboxEvents.includes(key)) return false;
    this.#outbox.push(
      encodeMessage({ type: XsType.WATCH_EVENT, reqId: 0, txId: 0, payload }),
    );
    this.#outboxEvents.push(key);
    return true;
  }

  /** Daemon side: delivers the queued output to the sink, in order. */
  flush(): void {
    if (this.#state !== "open" || this.#outbox.length === 0) return;
    const out = this.#outbox;
    this.#outbox = [];
    this.#outboxEvents = [];
    for (const bytes of out) {
      if (this.#state !== "open") return;
      this.#sink?.data(bytes);
    }
  }
}

/** Bytes of a binary string (one char per byte, 0..255). */
export function binaryBytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0xff;
  return out;
}

/** A binary string of bytes (lossless: one char per byte). */
export function binaryString(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return s;
}
