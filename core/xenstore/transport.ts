/**
 * The seam between the XenStore client and what carries its bytes: the
 * xenstored unix socket and /dev/xen/xenbus (ffi/), or a connection to the
 * simulated xenstored (sim/). The client (core/xenstore/client.ts) is
 * written once against it.
 *
 * @module
 */

/** Which kind of connection carries the messages. */
export type XenStoreTransportKind = "socket" | "xenbus" | "sim";

/** Callbacks a transport delivers to its one client. */
export interface XenStoreTransportSink {
  /** Bytes from the daemon, in order, in chunks of any size (whole messages or not). */
  data(chunk: Uint8Array): void;
  /**
   * The connection ended: the daemon closed it or died (`error` undefined for
   * an orderly end of stream), or reading failed (`error` set). Called at most
   * once, never after `close()` returned.
   */
  end(error?: Error): void;
}

/**
 * A byte stream to one XenStore daemon.
 *
 * Ownership: the client that attached a sink owns the transport and closes it.
 * Reentrancy: `send` may be called from inside `sink.data`; a transport never
 * calls the sink synchronously from inside `send` or `attach`.
 */
export interface XenStoreTransport {
  readonly kind: XenStoreTransportKind;
  /** What it is connected to, for messages: the socket path, the device, the simulated domain. */
  readonly description: string;
  /**
   * The largest request payload this transport carries: 4096 for the socket,
   * 4080 for /dev/xen/xenbus (the kernel's buffer holds the 16-byte header
   * too, xenbus_dev_frontend.c).
   */
  readonly maxRequestPayload: number;
  /**
   * True when the kernel handles WATCH/UNWATCH itself (/dev/xen/xenbus): its
   * watch events leave req_id and tx_id unset, and its UNWATCH of an unknown
   * watch answers OK instead of ENOENT.
   */
  readonly kernelWatches: boolean;
  /** Starts delivery to `sink`. Called once, before any `send`. */
  attach(sink: XenStoreTransportSink): void;
  /**
   * Queues one whole encoded message. Throws Error when the transport is
   * closed or has ended; never blocks the JavaScript event loop.
   */
  send(message: Uint8Array): void;
  /** Closes the connection; idempotent. No sink call follows. */
  close(): void;
}

/** Something that accepts XenStore connections: the simulated xenstored. */
export interface XenStoreServer {
  /** A new connection with the identity of domain `domid` (0 = privileged dom0). */
  connect(domid: number): XenStoreTransport;
}
