/**
 * A XenStore server (the simulated xenstored) listening on a unix socket,
 * the way C xenstored serves dom0's tools (xenstored_core.c:2570-2592:
 * the socket file is removed if stale, created, and made mode 0600). The
 * stock C tools (xenstore-read, -write, -ls, -watch, ... of Debian's
 * xenstore-utils) reach it with XENSTORED_PATH=<socket>. Uses node:net
 * and node:fs, which Deno and Bun both provide.
 *
 * @module
 */
import { chmodSync, lstatSync, unlinkSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { XenUsageError } from "../core/errors.ts";
import type { XenStoreServer, XenStoreTransport } from "../core/xenstore/transport.ts";

/** Options of serveXenStoreSocket. */
export interface XenStoreSocketOptions {
  /** The identity every accepted connection gets (default 0: privileged dom0, as C xenstored gives socket clients). */
  readonly domid?: number;
}

/** A listening socket; close() stops it. */
export interface XenStoreSocketServer {
  /** The socket path. */
  readonly path: string;
  /** Connections currently open. */
  readonly connections: number;
  /**
   * Stops listening, ends every open connection (their transports are
   * closed), and removes the socket file. Idempotent; resolves once the
   * listener is closed.
   */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Serves `server` on a unix socket at `path`: each accepted connection is
 * `server.connect(options.domid ?? 0)`, bytes in both directions are passed
 * through unchanged. A stale socket file at `path` is removed first; any
 * other existing file is left alone and is an error.
 *
 * Returns once listening. Errors: XenUsageError for a bad domid or an empty
 * path, or when `path` exists and is not a socket; the listen error
 * (EACCES, ENOENT of the directory, EADDRINUSE, ...) as node:net reports
 * it. After a failure nothing is left listening. If `server.connect`
 * throws for an accepted connection, that socket is closed.
 */
export async function serveXenStoreSocket(
  server: XenStoreServer,
  path: string,
  options: XenStoreSocketOptions = {},
): Promise<XenStoreSocketServer> {
  const domid = options.domid ?? 0;
  if (!(Number.isInteger(domid) && domid >= 0 && domid <= 0xffff)) {
    throw new XenUsageError(`domid must be an integer in 0..65535, got ${String(domid)}`);
  }
  if (typeof path !== "string" || path.length === 0) {
    throw new XenUsageError(`path must be a non-empty socket path, got ${JSON.stringify(path)}`);
  }
  removeStaleSocket(path);
  const sockets = new Set<Socket>();
  const listener: Server = createServer((socket) => accept(server, domid, socket, sockets));
  await new Promise<void>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen(path, () => {
      listener.off("error", reject);
      resolve();
    });
  });
  try {
    chmodSync(path, 0o600);
  } catch (e) {
    listener.close();
    throw e;
  }
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      listener.close(() => resolve());
      for (const s of sockets) s.destroy();
      sockets.clear();
      try {
        unlinkSync(path);
      } catch {
        // Already gone (removed by someone else, or the runtime did it).
      }
    });
    return closing;
  };
  return {
    path,
    get connections() {
      return sockets.size;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

function removeStaleSocket(path: string): void {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return; // nothing there
  }
  if (!isSocket) {
    throw new XenUsageError(`${path} exists and is not a socket; refusing to replace it`);
  }
  unlinkSync(path);
}

function accept(server: XenStoreServer, domid: number, socket: Socket, sockets: Set<Socket>): void {
  let transport: XenStoreTransport;
  try {
    transport = server.connect(domid);
  } catch {
    socket.destroy();
    return;
  }
  sockets.add(socket);
  transport.attach({
    data: (chunk) => {
      if (!socket.destroyed) socket.write(chunk);
    },
    end: () => socket.destroy(),
  });
  socket.on("data", (chunk: Uint8Array) => {
    try {
      transport.send(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    } catch {
      socket.destroy();
    }
  });
  socket.on("error", () => socket.destroy());
  socket.on("close", () => {
    sockets.delete(socket);
    transport.close();
  });
}
