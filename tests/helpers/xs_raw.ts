/**
 * A raw XenStore wire speaker for tests of the simulated xenstored: sends
 * encoded requests over a XenStoreTransport and matches replies by req_id,
 * collecting watch events separately (core/xenstore/wire.ts only; no
 * client library).
 */
import assert from "node:assert/strict";
import type { XenStoreTransport } from "../../core/xenstore/transport.ts";
import {
  encodeMessage,
  errorNameOf,
  fromUtf8,
  payloadOf,
  splitNul,
  XsDecoder,
  type XsMessage,
  XsType,
} from "../../core/xenstore/wire.ts";

/** One received watch event. */
export interface RawEvent {
  readonly path: string;
  readonly token: string;
}

/** A test's view of one connection. */
export class RawXs {
  readonly events: RawEvent[] = [];
  /** Every message in arrival order (replies and events). */
  readonly log: XsMessage[] = [];
  ended: Error | undefined | null = null;
  #decoder = new XsDecoder();
  #pending = new Map<number, (m: XsMessage) => void>();
  #next = 1;

  constructor(readonly transport: XenStoreTransport) {
    transport.attach({
      data: (chunk) => {
        for (const m of this.#decoder.push(chunk)) {
          this.log.push(m);
          if (m.type === XsType.WATCH_EVENT) {
            const [path, token] = splitNul(m.payload);
            this.events.push({ path, token });
            continue;
          }
          const resolve = this.#pending.get(m.reqId);
          this.#pending.delete(m.reqId);
          resolve?.(m);
        }
      },
      end: (error) => {
        this.ended = error;
        for (const r of this.#pending.values()) {
          r({ type: -1, reqId: 0, txId: 0, payload: new Uint8Array(0) });
        }
        this.#pending.clear();
      },
    });
  }

  /** Sends one request; resolves with the reply (type -1 if the connection ended). */
  request(
    type: number,
    parts: readonly (string | Uint8Array)[],
    options: { tx?: number; trailingNul?: boolean } = {},
  ): Promise<XsMessage> {
    const reqId = this.#next++;
    const reply = new Promise<XsMessage>((resolve) => this.#pending.set(reqId, resolve));
    this.transport.send(
      encodeMessage({
        type,
        reqId,
        txId: options.tx ?? 0,
        payload: payloadOf(parts, options.trailingNul ?? true),
      }),
    );
    return reply;
  }

  /** A request that must succeed; returns the reply payload as a string. */
  async ok(
    type: number,
    parts: readonly (string | Uint8Array)[],
    options: { tx?: number; trailingNul?: boolean } = {},
  ): Promise<string> {
    const m = await this.request(type, parts, options);
    assert.notEqual(
      m.type,
      XsType.ERROR,
      `type ${type} ${JSON.stringify(parts)} failed: ${errorNameOf(m.payload)}`,
    );
    assert.equal(m.type, type);
    return fromUtf8(m.payload);
  }

  /** A request that must fail; returns the error name. */
  async err(
    type: number,
    parts: readonly (string | Uint8Array)[],
    options: { tx?: number; trailingNul?: boolean } = {},
  ): Promise<string> {
    const m = await this.request(type, parts, options);
    assert.equal(m.type, XsType.ERROR, `type ${type} ${JSON.stringify(parts)} succeeded`);
    return errorNameOf(m.payload);
  }

  write(path: string, value: string | Uint8Array, tx?: number): Promise<string> {
    return this.ok(XsType.WRITE, [path, value], { tx, trailingNul: false });
  }

  read(path: string, tx?: number): Promise<string> {
    return this.ok(XsType.READ, [path], { tx });
  }

  async start(): Promise<number> {
    return Number(
      splitNul(new TextEncoder().encode(await this.ok(XsType.TRANSACTION_START, [""])))[0],
    );
  }

  /** Takes the events received so far. */
  take(): RawEvent[] {
    return this.events.splice(0);
  }
}

/** Lets queued microtasks (request processing and delivery) run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
