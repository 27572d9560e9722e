/**
 * Vchan: one end of a connected (or, for a server, connecting) vchan, the
 * same class for both roles. Byte-stream I/O (read/write, and a Web Streams
 * pair with backpressure), packet I/O with libxenvchan_send/recv semantics
 * (all or nothing), and the notification protocol of io.c:
 *
 * - request_notify(bit): atomically OR the bit into the PEER's notify byte
 *   (a server sets cli_notify, a client srv_notify), then re-read the
 *   indices before sleeping, so a peer that moved its index between the
 *   first read and the request is not missed.
 * - send_notify(bit): after publishing an index, atomically clear the bit in
 *   OUR OWN notify byte (server srv_notify, client cli_notify) and notify the
 *   event channel only if it was set.
 * - A reader requests NOTIFY_WRITE, a writer NOTIFY_READ; a reader sends
 *   NOTIFY_READ after consuming, a writer NOTIFY_WRITE after producing.
 *
 * One task per vchan waits on its event channel handle (never blocking the
 * event loop) and re-checks the page on every event: the peer's live byte
 * (0: the peer closed or crashed, its unmap notification cleared it), the
 * ring orders (must never change) and, through the rings, the indices.
 * Anything the protocol does not allow fails the vchan with VchanError
 * EPROTO; a peer that is gone fails it with ECONNRESET once the data it left
 * in the ring has been read (as in C, data pending at close can still be
 * read). Either way every waiting operation rejects within that one event;
 * nothing spins.
 *
 * @module
 */
import { ClosedHandleError, XenCallError, XenUsageError } from "../../core/errors.ts";
import type { EventChannels } from "../../core/event_channels.ts";
import { VchanError } from "./errors.ts";
import {
  LIVE_CONNECTED,
  LIVE_GONE,
  LIVE_WAITING,
  NOTIFY_READ,
  NOTIFY_WRITE,
  OFFSET,
  type VchanHeader,
} from "./layout.ts";
import { RingFault, type RingReader, type RingWriter } from "./ring.ts";
import type { VchanStore } from "./store.ts";

/** Which end. */
export type VchanRole = "server" | "client";

/**
 * The state of a vchan: "waiting" (a server whose client has not connected
 * yet; writes are allowed and fill the ring), "open", "peer-gone" (the peer
 * closed, crashed, or its domain died; what it wrote can still be read),
 * "failed" (the peer broke the protocol), "closed" (close() ran).
 */
export type VchanState = "waiting" | "open" | "peer-gone" | "failed" | "closed";

/** Options of every operation that may wait. */
export interface VchanIoOptions {
  /** Aborting rejects the operation with the signal's reason; the vchan stays usable. */
  readonly signal?: AbortSignal;
}

/** @internal What server.ts and client.ts hand over; the Vchan owns all of it. */
export interface VchanParts {
  readonly role: VchanRole;
  readonly path: string;
  readonly peerDomid: number;
  readonly evtchn: EventChannels;
  /** The local event channel port. */
  readonly port: number;
  readonly header: VchanHeader;
  readonly reader: RingReader;
  readonly writer: RingWriter;
  /** The orders as this end set (server) or read once (client) them. */
  readonly leftOrder: number;
  readonly rightOrder: number;
  /** Step 1 of close: unmap or unshare the separately granted data rings. */
  readonly releaseRings: () => void;
  /** Step 3 of close (after our live byte went to 0): unmap or unshare the shared page. */
  readonly releasePage: () => void;
  /** Last step of close: close the grant handle. */
  readonly closeGrantHandle: () => void;
  /** Server: removes the rendezvous path (xs_rm). */
  readonly removePath?: () => Promise<void>;
  readonly store?: VchanStore;
  readonly peerCloseEndsStream: boolean;
  readonly chunkSize: number;
}

const MAX_CHUNK = 0x7fffffff;

function checkBytes(name: string, value: unknown): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new XenUsageError(`${name} must be a Uint8Array, got ${typeof value}`);
  }
  return value;
}

function checkSize(name: string, value: number, min: number): number {
  if (!Number.isSafeInteger(value) || value < min || value > MAX_CHUNK) {
    throw new XenUsageError(
      `${name} must be an integer from ${min} to ${MAX_CHUNK}, got ${String(value)}`,
    );
  }
  return value;
}

/**
 * One end of a vchan. Create it with listenVchan (server) or connectVchan
 * (client). Single-threaded; concurrent operations are allowed (each copy
 * and index update is synchronous), but two concurrent readers (or writers)
 * get the bytes in an unspecified split. Release it with close(), `using`
 * or `await using` (which also waits for the server's XenStore cleanup).
 */
export class Vchan implements Disposable, AsyncDisposable {
  /** "server" or "client". */
  readonly role: VchanRole;
  /** The XenStore path of the rendezvous. */
  readonly path: string;
  /** The other end's domain. */
  readonly peerDomid: number;
  /** The local event channel port. */
  readonly port: number;
  /** Bytes this end can have in flight towards the peer (its write ring). */
  readonly writeSize: number;
  /** Bytes the peer can have in flight towards this end (its read ring). */
  readonly readSize: number;

  readonly #parts: VchanParts;
  readonly #header: VchanHeader;
  readonly #reader: RingReader;
  readonly #writer: RingWriter;
  readonly #evtchn: EventChannels;
  readonly #peerLiveAt: number;
  readonly #ownLiveAt: number;
  readonly #peerNotifyAt: number;
  readonly #ownNotifyAt: number;
  readonly #stop = new AbortController();
  readonly #waiters = new Set<() => void>();
  #peerConnected: boolean;
  #failure?: VchanError;
  #closed = false;
  #removal: Promise<void> = Promise.resolve();
  #readable?: ReadableStream<Uint8Array>;
  #readController?: ReadableStreamDefaultController<Uint8Array>;
  #readableDone = false;
  #pulling = false;
  #writable?: WritableStream<Uint8Array>;
  #writeController?: WritableStreamDefaultController;

  /** @internal use listenVchan or connectVchan. */
  constructor(parts: VchanParts) {
    this.#parts = parts;
    this.role = parts.role;
    this.path = parts.path;
    this.peerDomid = parts.peerDomid;
    this.port = parts.port;
    this.#header = parts.header;
    this.#reader = parts.reader;
    this.#writer = parts.writer;
    this.#evtchn = parts.evtchn;
    this.readSize = parts.reader.size;
    this.writeSize = parts.writer.size;
    const server = parts.role === "server";
    this.#peerLiveAt = server ? OFFSET.cliLive : OFFSET.srvLive;
    this.#ownLiveAt = server ? OFFSET.srvLive : OFFSET.cliLive;
    this.#peerNotifyAt = server ? OFFSET.cliNotify : OFFSET.srvNotify;
    this.#ownNotifyAt = server ? OFFSET.srvNotify : OFFSET.cliNotify;
    this.#peerConnected = !server;
    void this.#pump();
    if (parts.store?.isDomainIntroduced) void this.#watchPeerDomain(parts.store);
  }

  /** The current state (re-reads the page; never throws). */
  get state(): VchanState {
    if (this.#closed) return "closed";
    this.#observe();
    if (this.#failure) return this.#failure.code === "EPROTO" ? "failed" : "peer-gone";
    return this.#peerConnected ? "open" : "waiting";
  }

  /**
   * libxenvchan_is_open: true while the peer is there (for a server, also
   * before its client connected: cli_live 2) and nothing failed; false once
   * the peer is gone, the protocol broke, or close() ran. Never throws.
   */
  isOpen(): boolean {
    const state = this.state;
    return state === "open" || state === "waiting";
  }

  /** The failure that ended this vchan (EPROTO or ECONNRESET), if any. */
  get failure(): VchanError | undefined {
    return this.#failure;
  }

  /**
   * Server: resolves once the client has connected (cli_live 1); a client
   * resolves at once. Rejects with VchanError (ECONNRESET when the client
   * went away first, EPROTO), ClosedHandleError, or the signal's reason.
   */
  async connected(options: VchanIoOptions = {}): Promise<void> {
    for (;;) {
      options.signal?.throwIfAborted();
      this.#usable();
      if (this.#failure) throw this.#failure;
      if (this.#peerConnected) return;
      await this.#sleep(options.signal);
    }
  }

  /** Bytes ready to read now, without waiting (libxenvchan_data_ready). Throws like read. */
  dataReady(): number {
    this.#usable();
    return this.#ready();
  }

  /** Bytes that can be written now (libxenvchan_buffer_space). Throws like write. */
  bufferSpace(): number {
    this.#usable();
    if (this.#failure) throw this.#failure;
    return this.#space();
  }

  /**
   * Reads between 1 and `max` bytes (default 65536), waiting until at least
   * one is there (libxenvchan_read, blocking). Returns a new array the
   * caller owns. Rejects with VchanError ECONNRESET once the peer is gone and
   * everything it wrote was read, EPROTO, ClosedHandleError, the signal's
   * reason; XenUsageError for a bad max.
   */
  read(max = 65536, options: VchanIoOptions = {}): Promise<Uint8Array> {
    checkSize("max", max, 1);
    return this.#receive(1, max, options.signal);
  }

  /** Reads up to `max` bytes if any are ready now, else returns null; never waits. Throws like read. */
  tryRead(max = 65536): Uint8Array | null {
    return this.#receiveNow(1, checkSize("max", max, 1));
  }

  /**
   * Receives exactly `size` bytes, all at once (libxenvchan_recv): waits
   * until that many are in the ring, then takes them. Rejects with VchanError
   * EMSGSIZE when size exceeds the read ring (it could never arrive), and
   * like read; a peer that went away with fewer bytes left gives ECONNRESET.
   * A size of 0 resolves with an empty array without waiting, after the same
   * checks (ClosedHandleError after close(), EPROTO once the protocol broke).
   */
  recv(size: number, options: VchanIoOptions = {}): Promise<Uint8Array> {
    this.#fitsRing("size", checkSize("size", size, 0), this.readSize, "read");
    if (size === 0) return Promise.resolve().then(() => this.#emptyReceive());
    return this.#receive(size, size, options.signal);
  }

  /** recv without waiting: the `size` bytes if they are all there now, else null. Throws like recv. */
  tryRecv(size: number): Uint8Array | null {
    this.#fitsRing("size", checkSize("size", size, 0), this.readSize, "read");
    if (size === 0) return this.#emptyReceive();
    return this.#receiveNow(size, size);
  }

  /**
   * Writes all of `data` as a byte stream (libxenvchan_write, blocking): as
   * much as fits now, then more as the peer reads. Resolves when the last
   * byte is in the ring. Rejects with VchanError ECONNRESET (the peer is
   * gone; some bytes may have been written), EPROTO, ClosedHandleError, the
   * signal's reason; XenUsageError unless data is a Uint8Array. The data is
   * copied: the caller keeps ownership.
   */
  async write(data: Uint8Array, options: VchanIoOptions = {}): Promise<void> {
    checkBytes("data", data);
    for (let pos = 0; pos < data.length;) {
      options.signal?.throwIfAborted();
      const n = this.#sendNow(data.subarray(pos), 1);
      if (n > 0) pos += n;
      else await this.#sleep(options.signal);
    }
    if (data.length === 0) this.#writableCheck();
  }

  /** Writes what fits now (possibly 0 bytes) and returns the count; never waits. Throws like write. */
  tryWrite(data: Uint8Array): number {
    checkBytes("data", data);
    return data.length === 0 ? (this.#writableCheck(), 0) : this.#sendNow(data, 1);
  }

  /**
   * Sends `data` as one packet (libxenvchan_send, blocking): waits until the
   * whole of it fits, then writes it at once; never a part. Rejects with
   * VchanError EMSGSIZE when it exceeds the write ring, and like write.
   */
  async send(data: Uint8Array, options: VchanIoOptions = {}): Promise<void> {
    checkBytes("data", data);
    this.#fitsRing("data.length", data.length, this.writeSize, "write");
    if (data.length === 0) return this.#writableCheck();
    for (;;) {
      options.signal?.throwIfAborted();
      if (this.#sendNow(data, data.length) > 0) return;
      await this.#sleep(options.signal);
    }
  }

  /** send without waiting: true when the packet was written, false when it does not fit now. */
  trySend(data: Uint8Array): boolean {
    checkBytes("data", data);
    this.#fitsRing("data.length", data.length, this.writeSize, "write");
    if (data.length === 0) return (this.#writableCheck(), true);
    return this.#sendNow(data, data.length) > 0;
  }

  /**
   * Resolves once the peer has read everything this end wrote (the write
   * ring is empty). Rejects like write (ECONNRESET if the peer went away
   * before reading it all).
   */
  async drain(options: VchanIoOptions = {}): Promise<void> {
    for (;;) {
      options.signal?.throwIfAborted();
      this.#writableCheck();
      if (this.#space() === this.writeSize) return;
      this.#requestNotify(NOTIFY_READ);
      if (this.#space() === this.writeSize) return;
      await this.#sleep(options.signal);
    }
  }

  /**
   * The bytes from the peer as a ReadableStream (the same stream on every
   * call). Pull-based with a high-water mark of 0: data stays in the ring,
   * and so pushes back on the peer, until the consumer reads. Chunks are
   * new arrays of up to `chunkSize` bytes. It errors with the VchanError that
   * ends the vchan (ECONNRESET after the last byte, EPROTO at once), or
   * closes instead of ECONNRESET when `peerCloseEndsStream` was set; it
   * errors with ClosedHandleError after close(). Cancelling it leaves the
   * vchan open.
   */
  get readable(): ReadableStream<Uint8Array> {
    this.#readable ??= this.#makeReadable();
    return this.#readable;
  }

  /**
   * The bytes to the peer as a WritableStream of Uint8Array (the same stream
   * on every call). Each write resolves once its bytes are in the ring, so
   * a fast producer waits for the peer (queue of one chunk). Closing it
   * waits until the peer has read everything (drain); the vchan stays open
   * (vchan has no half close). It errors with the VchanError that ends the
   * vchan, or ClosedHandleError after close().
   */
  get writable(): WritableStream<Uint8Array> {
    this.#writable ??= this.#makeWritable();
    return this.#writable;
  }

  /**
   * Closes this end as libxenvchan_close does: the data rings are unmapped
   * (client) or unshared (server), our live byte set to 0, the shared page
   * released (its unmap notification clears the byte again and signals the
   * peer), the peer notified, the handles closed; a server also removes its
   * rendezvous path from XenStore (asynchronously: `await using`, or
   * `closeAndWait()`, waits for it). Waiting operations reject with
   * ClosedHandleError, the streams error with it. Idempotent; never throws.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stop.abort();
    const parts = this.#parts;
    const quietly = (step: () => void) => {
      try {
        step();
      } catch {
        // Teardown continues: each resource is released independently.
      }
    };
    quietly(parts.releaseRings);
    quietly(() => this.#header.store8(this.#ownLiveAt, LIVE_GONE));
    quietly(parts.releasePage);
    quietly(() => this.#evtchn.notify(this.port));
    quietly(() => this.#evtchn.close());
    quietly(parts.closeGrantHandle);
    if (parts.removePath) this.#removal = parts.removePath().catch(() => {});
    const error = new ClosedHandleError(`vchan ${this.path}`);
    this.#writeController?.error(error);
    if (!this.#pulling) this.#endReadable(error);
    this.#wakeAll();
  }

  /** close(), then waits for the server's XenStore cleanup. Never rejects. */
  closeAndWait(): Promise<void> {
    this.close();
    return this.#removal;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.closeAndWait();
  }

  // --- internals ------------------------------------------------------------------------------

  #usable(): void {
    if (this.#closed) throw new ClosedHandleError(`vchan ${this.path}`);
    this.#observe();
    if (this.#failure?.code === "EPROTO") throw this.#failure;
  }

  #writableCheck(): void {
    this.#usable();
    if (this.#failure) throw this.#failure;
  }

  #fitsRing(name: string, size: number, ring: number, which: string): void {
    if (size > ring) {
      throw new VchanError(
        "EMSGSIZE",
        this.path,
        `${name} ${size} exceeds the ${which} ring of ${ring} bytes: it can never fit`,
      );
    }
  }

  #fault(error: unknown): never {
    if (error instanceof RingFault) {
      this.#setFailure(new VchanError("EPROTO", this.path, error.message));
      throw this.#failure;
    }
    throw error;
  }

  #ready(): number {
    try {
      return this.#reader.ready();
    } catch (error) {
      this.#fault(error);
    }
  }

  #space(): number {
    try {
      return this.#writer.space();
    } catch (error) {
      this.#fault(error);
    }
  }

  /** Re-reads the peer's live byte and the orders; records a failure. Never throws. */
  #observe(): void {
    if (this.#closed || this.#failure?.code === "EPROTO") return;
    const left = this.#header.load16(OFFSET.leftOrder);
    const right = this.#header.load16(OFFSET.rightOrder);
    if (left !== this.#parts.leftOrder || right !== this.#parts.rightOrder) {
      return this.#setFailure(
        new VchanError(
          "EPROTO",
          this.path,
          `the ring orders changed from ${this.#parts.leftOrder}/${this.#parts.rightOrder} ` +
            `to ${left}/${right}`,
        ),
      );
    }
    if (this.#failure) return;
    const live = this.#header.load8(this.#peerLiveAt);
    const name = this.role === "server" ? "cli_live" : "srv_live";
    if (live === LIVE_CONNECTED) {
      this.#peerConnected = true;
    } else if (live === LIVE_GONE) {
      this.#setFailure(
        new VchanError(
          "ECONNRESET",
          this.path,
          `the peer (domain ${this.peerDomid}) closed the vchan or died: ${name} is 0`,
        ),
      );
    } else if (!(live === LIVE_WAITING && this.role === "server" && !this.#peerConnected)) {
      this.#setFailure(
        new VchanError("EPROTO", this.path, `${name} is ${live}, which the protocol does not have`),
      );
    }
  }

  #setFailure(error: VchanError): void {
    if (this.#closed) return;
    if (this.#failure && !(error.code === "EPROTO" && this.#failure.code !== "EPROTO")) return;
    this.#failure = error;
    this.#writeController?.error(error);
    if (!this.#pulling) {
      let drained = true;
      if (error.code !== "EPROTO") {
        try {
          drained = this.#reader.ready() === 0;
        } catch {
          drained = true;
        }
      }
      if (drained) this.#endReadable(error);
    }
    this.#wakeAll();
  }

  #requestNotify(bit: number): void {
    this.#header.or8(this.#peerNotifyAt, bit);
  }

  #sendNotify(bit: number): void {
    const previous = this.#header.and8(this.#ownNotifyAt, ~bit);
    if ((previous & bit) === 0) return;
    try {
      this.#evtchn.notify(this.port);
    } catch (error) {
      if (!(error instanceof XenCallError)) throw error;
      this.#setFailure(
        new VchanError("ECONNRESET", this.path, "notifying the peer failed", { cause: error }),
      );
    }
  }

  /** A receive of 0 bytes: nothing to take, but a closed or broken vchan still says so. */
  #emptyReceive(): Uint8Array {
    this.#usable();
    return new Uint8Array(0);
  }

  #receiveNow(min: number, max: number): Uint8Array | null {
    this.#usable();
    let ready = this.#ready();
    if (ready < min) {
      if (this.#failure) throw this.#failure;
      this.#requestNotify(NOTIFY_WRITE);
      ready = this.#ready();
      if (ready < min) return null;
    }
    let data: Uint8Array;
    try {
      data = this.#reader.take(Math.min(ready, max));
    } catch (error) {
      this.#fault(error);
    }
    this.#sendNotify(NOTIFY_READ);
    return data;
  }

  async #receive(min: number, max: number, signal?: AbortSignal): Promise<Uint8Array> {
    for (;;) {
      signal?.throwIfAborted();
      const data = this.#receiveNow(min, max);
      if (data) return data;
      await this.#sleep(signal);
    }
  }

  /** Writes min(space, chunk.length) bytes if at least `min` fit; returns the count (0: none). */
  #sendNow(chunk: Uint8Array, min: number): number {
    this.#writableCheck();
    let space = this.#space();
    if (space < min) {
      this.#requestNotify(NOTIFY_READ);
      space = this.#space();
      if (space < min) return 0;
    }
    const n = Math.min(space, chunk.length);
    try {
      this.#writer.put(chunk.subarray(0, n));
    } catch (error) {
      this.#fault(error);
    }
    this.#sendNotify(NOTIFY_WRITE);
    return n;
  }

  #sleep(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = () => {
        this.#waiters.delete(wake);
        reject(signal?.reason);
      };
      const wake = () => {
        this.#waiters.delete(wake);
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      this.#waiters.add(wake);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  #wakeAll(): void {
    for (const wake of [...this.#waiters]) wake();
  }

  async #pump(): Promise<void> {
    const signal = this.#stop.signal;
    for (;;) {
      try {
        const port = await this.#evtchn.pending({ signal });
        this.#evtchn.unmask(port);
      } catch (error) {
        if (this.#closed) return;
        this.#setFailure(
          new VchanError("ECONNRESET", this.path, "waiting on the event channel failed", {
            cause: error,
          }),
        );
        return;
      }
      this.#observe();
      this.#wakeAll();
    }
  }

  async #watchPeerDomain(store: VchanStore): Promise<void> {
    try {
      for await (const _ of store.watch("@releaseDomain", { signal: this.#stop.signal })) {
        if (this.#closed) return;
        if (!(await store.isDomainIntroduced!(this.peerDomid))) {
          this.#setFailure(
            new VchanError(
              "ECONNRESET",
              this.path,
              `the peer's domain ${this.peerDomid} was destroyed`,
            ),
          );
          return;
        }
      }
    } catch {
      // The watch failed or was aborted: the ring's own signals (live byte, events) remain.
    }
  }

  #endReadable(error: unknown): void {
    if (this.#readableDone || !this.#readController) return;
    this.#readableDone = true;
    if (
      this.#parts.peerCloseEndsStream && error instanceof VchanError && error.code === "ECONNRESET"
    ) {
      this.#readController.close();
    } else {
      this.#readController.error(error);
    }
  }

  #makeReadable(): ReadableStream<Uint8Array> {
    const cancelled = new AbortController();
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#readController = controller;
        if (this.#closed) this.#endReadable(new ClosedHandleError(`vchan ${this.path}`));
      },
      pull: async (controller) => {
        this.#pulling = true;
        try {
          controller.enqueue(await this.#receive(1, this.#parts.chunkSize, cancelled.signal));
        } catch (error) {
          if (!cancelled.signal.aborted) this.#endReadable(error);
        } finally {
          this.#pulling = false;
        }
      },
      cancel: (reason) => {
        this.#readableDone = true;
        cancelled.abort(reason);
      },
    }, { highWaterMark: 0 });
  }

  #makeWritable(): WritableStream<Uint8Array> {
    const aborted = new AbortController();
    return new WritableStream<Uint8Array>({
      start: (controller) => {
        this.#writeController = controller;
        if (this.#closed) controller.error(new ClosedHandleError(`vchan ${this.path}`));
        else if (this.#failure) controller.error(this.#failure);
      },
      write: (chunk) => this.write(checkBytes("chunk", chunk), { signal: aborted.signal }),
      close: () => this.drain({ signal: aborted.signal }),
      abort: (reason) => aborted.abort(reason),
    }, { highWaterMark: 1 });
  }
}
