/**
 * The xenstored unix socket as a XenStoreTransport (node:net, which Deno and
 * Bun both provide). The path follows libxenstore (tools/xenstore/xs_lib.c
 * xs_daemon_socket): the caller's path, else $XENSTORED_PATH, else
 * ${XENSTORED_RUNDIR:-/var/run/xenstored}/socket. The socket is mode 0600
 * in dom0, so connecting needs root.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createConnection, type Socket } from "node:net";
import type { XenStoreTransport, XenStoreTransportSink } from "../core/xenstore/transport.ts";
import { XENSTORE_PAYLOAD_MAX } from "../core/xenstore/wire.ts";
import { XenUsageError } from "../core/errors.ts";
import { XenStoreError } from "../core/xenstore/errors.ts";
import { readEnv } from "./load.ts";

/** The default run directory of Debian's libxenstore (XEN_RUN_STORED). */
export const XENSTORED_RUNDIR_DEFAULT = "/var/run/xenstored";

/**
 * The socket path libxenstore would use: $XENSTORED_PATH, else
 * ${XENSTORED_RUNDIR:-/var/run/xenstored}/socket. Reads the environment
 * (an unreadable variable counts as unset).
 */
export function xenstoredSocketPath(): string {
  const explicit = readEnv("XENSTORED_PATH");
  if (explicit) return explicit;
  return `${readEnv("XENSTORED_RUNDIR") || XENSTORED_RUNDIR_DEFAULT}/socket`;
}

/** Options of connectXenStoreSocket. */
export interface XenStoreSocketConnectOptions {
  /** The socket path (default: xenstoredSocketPath()). */
  readonly path?: string;
}

class SocketTransport implements XenStoreTransport {
  readonly kind = "socket";
  readonly maxRequestPayload = XENSTORE_PAYLOAD_MAX;
  readonly kernelWatches = false;
  readonly description: string;
  readonly #socket: Socket;
  #sink: XenStoreTransportSink | undefined;
  #closed = false;
  #ended = false;
  #queued: Uint8Array[] = [];

  constructor(socket: Socket, path: string) {
    this.#socket = socket;
    this.description = `xenstored socket ${path}`;
    socket.pause();
    socket.on("data", (chunk: Buffer) => {
      if (this.#closed) return;
      this.#sink?.data(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    });
    socket.on("error", (error: Error) => this.#end(error));
    socket.on("close", () => this.#end());
    socket.on("end", () => this.#end());
  }

  #end(error?: Error): void {
    if (this.#ended || this.#closed) return;
    this.#ended = true;
    this.#sink?.end(error);
  }

  attach(sink: XenStoreTransportSink): void {
    if (this.#sink) throw new XenUsageError("a XenStore transport takes one sink only");
    this.#sink = sink;
    if (this.#ended) {
      queueMicrotask(() => sink.end());
      return;
    }
    this.#socket.resume();
  }

  send(message: Uint8Array): void {
    if (this.#closed) throw new Error(`${this.description} is closed`);
    if (this.#ended) throw new Error(`${this.description} has ended`);
    // Messages sent in one turn of the event loop go out in one write.
    this.#queued.push(message);
    if (this.#queued.length === 1) queueMicrotask(() => this.#flush());
  }

  #flush(): void {
    const queued = this.#queued;
    this.#queued = [];
    if (this.#closed || this.#ended || queued.length === 0) return;
    const bytes = queued.length === 1 ? queued[0] : concat(queued);
    this.#socket.write(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.destroy();
  }
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Connects to the xenstored unix socket. Resolves with a transport the
 * caller owns (hand it to `new XenStore()`). Rejects with XenStoreError
 * (op "CONNECT", path = the socket path, code = the system error: ENOENT no
 * socket, ECONNREFUSED no daemon, EACCES not root), or Deno's NotCapable
 * without read/write permission. XenUsageError for a bad path option.
 */
export function connectXenStoreSocket(
  options: XenStoreSocketConnectOptions = {},
): Promise<XenStoreTransport> {
  if (options.path !== undefined && (typeof options.path !== "string" || options.path === "")) {
    return Promise.reject(
      new XenUsageError(`path must be a non-empty string, got ${String(options.path)}`),
    );
  }
  const path = options.path ?? xenstoredSocketPath();
  return new Promise((resolve, reject) => {
    let socket: Socket;
    try {
      socket = createConnection({ path });
    } catch (error) {
      reject(connectError(path, error));
      return;
    }
    const onError = (error: Error) => {
      socket.destroy();
      reject(connectError(path, error));
    };
    socket.once("error", onError);
    socket.once("connect", () => {
      socket.off("error", onError);
      resolve(new SocketTransport(socket, path));
    });
  });
}

function connectError(path: string, error: unknown): Error {
  const name = (error as { name?: string } | null)?.name;
  if (name === "NotCapable" || name === "PermissionDenied") return error as Error;
  const code = (error as { code?: unknown } | null)?.code;
  return new XenStoreError(
    typeof code === "string" && /^E[A-Z0-9]+$/.test(code) ? code : "ECONNREFUSED",
    "CONNECT",
    path,
    (error as Error)?.message ?? String(error),
  );
}
