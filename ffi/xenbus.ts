/**
 * /dev/xen/xenbus (else /proc/xen/xenbus) as a XenStoreTransport: the dom0
 * kernel's xenbus device, which carries requests over dom0's ring to
 * xenstored (Linux drivers/xen/xenbus/xenbus_dev_frontend.c).
 *
 * The device is opened O_RDWR | O_NONBLOCK | O_CLOEXEC through libc. Reads
 * happen when the shared poller (ffi/poller.ts) reports POLLIN, so the
 * JavaScript event loop never blocks on them. A write hands one whole
 * message to the kernel; for WATCH and UNWATCH the kernel registers the
 * watch with xenstored inside that write(2), a short wait bounded by the
 * daemon's answer.
 *
 * Kernel facts the transport reports: the request buffer holds the 16-byte
 * header too, so the largest request payload is 4080; watches are handled
 * in the kernel (kernelWatches): events leave req_id and tx_id unset, an
 * UNWATCH of an unknown watch answers OK, and each WATCH gets its own
 * kernel token, so a duplicate (path, token) is not EEXIST.
 *
 * @module
 */
import { XenCallError, XenUsageError } from "../core/errors.ts";
import type { XenStoreTransport, XenStoreTransportSink } from "../core/xenstore/transport.ts";
import {
  XENSTORE_PAYLOAD_MAX,
  XS_HEADER_SIZE,
  XS_READ_PAYLOAD_LIMIT,
} from "../core/xenstore/wire.ts";
import { cString, type LibcLibrary, loadLibc } from "./load.ts";
import { type FdPoller, sharedPoller } from "./poller.ts";

/** The largest request payload /dev/xen/xenbus accepts (4096 minus the header). */
export const XENBUS_PAYLOAD_MAX = XENSTORE_PAYLOAD_MAX - XS_HEADER_SIZE;

/** The devices tried in order when no path is given (libxenstore xs_domain_dev). */
export const XENBUS_DEVICES: readonly string[] = ["/dev/xen/xenbus", "/proc/xen/xenbus"];

const O_RDWR = 0o2;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const POLLIN = 0x001;
const POLLERR = 0x008;
const POLLHUP = 0x010;
const POLLNVAL = 0x020;
const EINTR = 4;
const EAGAIN = 11;
const ENOENT = 2;

/** Options of openXenbus. */
export interface XenbusOptions {
  /** The device path (default: /dev/xen/xenbus, else /proc/xen/xenbus). */
  readonly path?: string;
}

class XenbusTransport implements XenStoreTransport {
  readonly kind = "xenbus";
  readonly maxRequestPayload = XENBUS_PAYLOAD_MAX;
  readonly kernelWatches = true;
  readonly description: string;
  readonly #libs: LibcLibrary;
  readonly #poller: FdPoller;
  readonly #fd: number;
  readonly #stop = new AbortController();
  readonly #buffer = new Uint8Array(XS_HEADER_SIZE + XS_READ_PAYLOAD_LIMIT);
  #sink: XenStoreTransportSink | undefined;
  #closed = false;
  #ended = false;
  #reading: Promise<void> | undefined;

  constructor(libs: LibcLibrary, fd: number, path: string) {
    this.#libs = libs;
    this.#poller = sharedPoller(libs);
    this.#fd = fd;
    this.description = `xenbus device ${path}`;
  }

  attach(sink: XenStoreTransportSink): void {
    if (this.#sink) throw new XenUsageError("a XenStore transport takes one sink only");
    this.#sink = sink;
    this.#reading = this.#readLoop();
  }

  send(message: Uint8Array): void {
    if (this.#closed) throw new Error(`${this.description} is closed`);
    if (this.#ended) throw new Error(`${this.description} has ended`);
    for (;;) {
      const n = this.#libs.libc.symbols.write(this.#fd, message, BigInt(message.length));
      if (n >= 0n) {
        if (Number(n) !== message.length) {
          throw new XenCallError("write", EAGAIN, `${n} of ${message.length} bytes written`);
        }
        return;
      }
      const errno = this.#libs.errno();
      if (errno !== EINTR) throw new XenCallError("write", errno, this.description);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stop.abort();
    const fd = this.#fd;
    const libc = this.#libs.libc.symbols;
    // The poller needs the fd open until its wait settled (it settles on abort).
    void (this.#reading ?? Promise.resolve()).finally(() => libc.close(fd));
  }

  #end(error?: Error): void {
    if (this.#ended || this.#closed) return;
    this.#ended = true;
    this.#sink?.end(error);
  }

  async #readLoop(): Promise<void> {
    // Start after attach() returned: the sink is never called from inside it.
    await Promise.resolve();
    const libc = this.#libs.libc.symbols;
    try {
      while (!this.#closed && !this.#ended) {
        const n = libc.read(this.#fd, this.#buffer, BigInt(this.#buffer.length));
        if (n > 0n) {
          this.#sink?.data(this.#buffer.slice(0, Number(n)));
          continue;
        }
        if (n === 0n) {
          this.#end();
          return;
        }
        const errno = this.#libs.errno();
        if (errno === EINTR) continue;
        if (errno !== EAGAIN) {
          this.#end(new XenCallError("read", errno, this.description));
          return;
        }
        const revents = await this.#poller.wait(this.#fd, POLLIN, this.#stop.signal);
        if (this.#closed) return;
        if ((revents & (POLLERR | POLLNVAL)) !== 0 || revents === POLLHUP) {
          this.#end(
            new Error(`${this.description} reported poll events 0x${revents.toString(16)}`),
          );
          return;
        }
      }
    } catch (error) {
      this.#end(error instanceof Error ? error : new Error(String(error)));
    }
  }
}

/**
 * Opens the xenbus device. Resolves with a transport the caller owns (hand
 * it to `new XenStore()`). Rejects with XenCallError("open") carrying errno:
 * ENOENT when no device exists (or the kernel has no store event channel,
 * xen_store_evtchn == 0), EACCES when not root; LibraryNotFoundError when
 * libc cannot be loaded; Deno's NotCapable without --allow-ffi. Without
 * `path`, /dev/xen/xenbus is tried first and /proc/xen/xenbus after an ENOENT.
 */
export async function openXenbus(options: XenbusOptions = {}): Promise<XenStoreTransport> {
  if (options.path !== undefined && (typeof options.path !== "string" || options.path === "")) {
    throw new XenUsageError(`path must be a non-empty string, got ${String(options.path)}`);
  }
  const libs = await loadLibc();
  const candidates = options.path ? [options.path] : XENBUS_DEVICES;
  let last: XenCallError | undefined;
  for (const path of candidates) {
    const fd = libs.libc.symbols.open(cString(path), O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0) return new XenbusTransport(libs, fd, path);
    last = new XenCallError("open", libs.errno(), path);
    if (last.errno !== ENOENT) break;
  }
  throw last ?? new XenCallError("open", ENOENT, candidates.join(", "));
}
