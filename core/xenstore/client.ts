/**
 * The XenStore client: one connection to a xenstored (the unix socket,
 * /dev/xen/xenbus, or the simulated daemon), speaking the wire protocol of
 * Xen 4.17 over a XenStoreTransport.
 *
 * Many requests may be in flight at once. Each gets its own req_id (chosen
 * here; the daemon echoes it, /dev/xen/xenbus restores it) and its reply is
 * matched by req_id. Watch events (type XS_WATCH_EVENT) are dispatched by
 * message type and token, never by req_id: the kernel's xenbus driver leaves
 * req_id and tx_id unset on events.
 *
 * Checks made before anything is sent (nothing reaches the daemon):
 * - every argument's type and range: XenUsageError naming the argument and
 *   the value given;
 * - every path with invalidPathReason (characters, "//", trailing "/",
 *   XENSTORE_ABS_PATH_MAX / XENSTORE_REL_PATH_MAX): XenUsageError;
 * - the encoded payload against the transport's maxRequestPayload (4096 for
 *   the socket, 4080 for /dev/xen/xenbus): XenStoreError with code "E2BIG"
 *   and the detail "not sent". The daemon would kill the connection (C
 *   xenstored) or the kernel would refuse the write, so the request is
 *   refused here with the code the daemon uses for too-big data.
 *
 * Failures of the connection reject every request in flight with
 * XenStoreError: "ECONNRESET" (the daemon closed the stream or died),
 * "EPROTO" (a malformed message: bad length, unknown type, a reply nobody
 * asked for; the connection is closed) or "ECLOSED" (close() was called).
 *
 * @module
 */
import { XenUsageError } from "../errors.ts";
import { checkFunction, checkInteger, checkOptions, checkSignal } from "../validate.ts";
import { XenStoreError } from "./errors.ts";
import {
  checkPermissions,
  formatPermission,
  parsePermission,
  type XenStorePermission,
} from "./permissions.ts";
import type { XenStoreTransport, XenStoreTransportKind } from "./transport.ts";
import {
  encodeMessage,
  errorNameOf,
  fromUtf8,
  invalidPathReason,
  payloadOf,
  splitNul,
  XS_TYPE_NAMES,
  XsDecoder,
  type XsMessage,
  XsProtocolError,
  XsType,
} from "./wire.ts";

/** One watch event: the path that changed (relative if the watch was) and the watch's token. */
export interface XenStoreWatchEvent {
  readonly path: string;
  readonly token: string;
}

/** Options of XenStore.watch. */
export interface XenStoreWatchOptions {
  /** Aborting ends the iteration (it returns done) and unregisters the watch. */
  readonly signal?: AbortSignal;
  /**
   * The token to register (default: a fresh one unique on this connection).
   * Give one only to reproduce daemon behaviour, e.g. EEXIST for a duplicate.
   */
  readonly token?: string;
}

/** Options of XenStore.transaction. */
export interface XenStoreTransactionOptions {
  /** How many times the body may run in all (1..1000, default 10). */
  readonly maxAttempts?: number;
}

/**
 * The operations that work both directly and inside a transaction.
 * Every method checks its arguments before sending (see the module comment),
 * may be called concurrently with others, and leaves the connection usable
 * after a XenStoreError from the daemon.
 */
export interface XenStoreOperations {
  /**
   * READ: the node's value as raw bytes (a copy the caller owns). Rejects
   * with XenStoreError ENOENT (no such node), EACCES (no read permission).
   */
  readBytes(path: string): Promise<Uint8Array>;
  /** READ: the node's value decoded as UTF-8 (invalid bytes become U+FFFD). Rejects as readBytes. */
  read(path: string): Promise<string>;
  /**
   * WRITE: sets the node's value (a string is written as UTF-8, bytes as
   * they are), creating missing parents. Rejects with EACCES, ENOSPC (quota),
   * E2BIG (too big: before sending, or from the daemon), EQUOTA (oxenstored).
   */
  write(path: string, value: string | Uint8Array): Promise<void>;
  /** MKDIR: creates the node (empty value) and missing parents; OK if it exists. Rejects with EACCES, ENOSPC. */
  mkdir(path: string): Promise<void>;
  /**
   * RM: removes the node and everything below it. A missing node whose
   * parent exists is OK; rejects with ENOENT when the parent is missing too,
   * EACCES without write permission on the node.
   */
  rm(path: string): Promise<void>;
  /**
   * DIRECTORY: the names of the node's children, in the daemon's order.
   * When the reply would be too big (E2BIG) the list is fetched in parts
   * with DIRECTORY_PART, restarting when the node's generation count changes
   * between parts (at most 100 restarts, then EAGAIN); a daemon without
   * DIRECTORY_PART (ENOSYS, oxenstored 4.17) gives the original E2BIG, as
   * libxenstore's xs_directory does (xs.c:655-722). Rejects with ENOENT,
   * EACCES, E2BIG.
   */
  directory(path: string): Promise<string[]>;
  /** GET_PERMS: the node's permission list (entry 0 = owner and default). Rejects with ENOENT, EACCES. */
  getPermissions(path: string): Promise<XenStorePermission[]>;
  /**
   * SET_PERMS: replaces the node's permission list (checked with
   * checkPermissions first). Rejects with ENOENT, EACCES (not the owner),
   * ENOSPC (more entries than the daemon's per-node quota).
   */
  setPermissions(path: string, permissions: readonly XenStorePermission[]): Promise<void>;
}

/** Operations bound to one transaction id (see XenStore.transaction). */
export interface XenStoreTransaction extends XenStoreOperations {
  /** The daemon's transaction id (never 0). */
  readonly id: number;
}

/** The default bound on transaction attempts. */
export const DEFAULT_TRANSACTION_ATTEMPTS = 10;
/** The bound on DIRECTORY_PART restarts caused by a changing generation count. */
const DIRECTORY_PART_RESTARTS = 100;

interface Pending {
  readonly type: number;
  readonly op: string;
  readonly path?: string;
  readonly resolve: (message: XsMessage) => void;
  readonly reject: (error: unknown) => void;
}

function checkPath(path: unknown, name = "path", watch = false): string {
  if (typeof path !== "string") {
    throw new XenUsageError(`${name} must be a string, got ${describe(path)}`);
  }
  const reason = invalidPathReason(path, { watch });
  if (reason !== undefined) {
    throw new XenUsageError(
      `${name} must be a valid XenStore path (${reason}), got ${describe(path)}`,
    );
  }
  return path;
}

function describe(value: unknown): string {
  if (typeof value === "string") {
    return value.length > 80
      ? `${JSON.stringify(value.slice(0, 80))}... (${value.length} characters)`
      : JSON.stringify(value);
  }
  if (typeof value === "bigint") return `${value}n`;
  return String(value);
}

/**
 * One XenStore connection. Create it with `new XenStore(transport)` (or
 * `openXenStore()` in mod.ts); it owns the transport and closes it.
 * Methods may be called concurrently; replies are matched by req_id.
 * After close() (or `using` / `await using`) every method rejects with
 * XenStoreError "ECLOSED".
 */
export class XenStore implements XenStoreOperations, Disposable, AsyncDisposable {
  readonly #transport: XenStoreTransport;
  readonly #decoder = new XsDecoder();
  readonly #pending = new Map<number, Pending>();
  readonly #watches = new Map<string, Set<WatchIterator>>();
  #nextReqId = 1;
  #nextToken = 1;
  #failure: XenStoreError | undefined;
  readonly #protocolDetail = new WeakMap<XenStoreError, string>();

  /** Which kind of transport carries the connection. */
  readonly kind: XenStoreTransportKind;
  /** What the connection goes to (socket path, device, simulated domain). */
  readonly description: string;

  /**
   * Takes over `transport` (attaches to it; the XenStore closes it). Throws
   * XenUsageError when `transport` is not a XenStoreTransport.
   */
  constructor(transport: XenStoreTransport) {
    if (
      typeof transport !== "object" || transport === null ||
      typeof (transport as XenStoreTransport).send !== "function" ||
      typeof (transport as XenStoreTransport).attach !== "function"
    ) {
      throw new XenUsageError(`transport must be a XenStoreTransport, got ${String(transport)}`);
    }
    this.#transport = transport;
    this.kind = transport.kind;
    this.description = transport.description;
    transport.attach({
      data: (chunk) => this.#data(chunk),
      end: (error) => this.#ended(error),
    });
  }

  /** Requests sent and not yet answered (0 when nothing waits; for leak checks). */
  get pendingRequests(): number {
    return this.#pending.size;
  }

  /** Watches registered (or being registered) through this connection. */
  get activeWatches(): number {
    let n = 0;
    for (const set of this.#watches.values()) n += set.size;
    return n;
  }

  /** True once close() was called or the connection failed. */
  get closed(): boolean {
    return this.#failure !== undefined;
  }

  /** The largest request payload the transport carries (4096 socket, 4080 xenbus). */
  get maxRequestPayload(): number {
    return this.#transport.maxRequestPayload;
  }

  readBytes(path: string): Promise<Uint8Array> {
    return this.#readBytes(0, path);
  }

  async read(path: string): Promise<string> {
    return fromUtf8(await this.#readBytes(0, path));
  }

  write(path: string, value: string | Uint8Array): Promise<void> {
    return this.#write(0, path, value);
  }

  mkdir(path: string): Promise<void> {
    return this.#simple(0, XsType.MKDIR, path);
  }

  rm(path: string): Promise<void> {
    return this.#simple(0, XsType.RM, path);
  }

  directory(path: string): Promise<string[]> {
    return this.#directory(0, path);
  }

  getPermissions(path: string): Promise<XenStorePermission[]> {
    return this.#getPermissions(0, path);
  }

  setPermissions(path: string, permissions: readonly XenStorePermission[]): Promise<void> {
    return this.#setPermissions(0, path, permissions);
  }

  /**
   * GET_DOMAIN_PATH: the home path of domain `domid` ("/local/domain/<id>").
   * XenUsageError unless domid is an integer 0..65535. Any domid gets an
   * answer (the daemon does not check that the domain exists).
   */
  async getDomainPath(domid: number): Promise<string> {
    const id = checkInteger("domid", domid, 0, 0xffff);
    const reply = await this.#request(XsType.GET_DOMAIN_PATH, 0, payloadOf([String(id)]));
    return splitNul(reply.payload)[0] ?? "";
  }

  /**
   * IS_DOMAIN_INTRODUCED: whether the daemon knows domain `domid`. Rejects
   * with EACCES for an unprivileged connection (the operation is
   * privileged-only). XenUsageError unless domid is an integer 0..65535.
   */
  async isDomainIntroduced(domid: number): Promise<boolean> {
    const id = checkInteger("domid", domid, 0, 0xffff);
    const reply = await this.#request(XsType.IS_DOMAIN_INTRODUCED, 0, payloadOf([String(id)]));
    const answer = splitNul(reply.payload)[0];
    if (answer !== "T" && answer !== "F") {
      throw this.#protocol(`IS_DOMAIN_INTRODUCED answered ${JSON.stringify(answer)}`);
    }
    return answer === "T";
  }

  /**
   * WATCH: an async iterator of the events of `path` and every node below
   * it. The first event is the one the daemon sends on registration (its
   * path is `path` itself). The WATCH request is sent on the first next();
   * a daemon error (EEXIST for a duplicate (path, token), EACCES, E2BIG or
   * EQUOTA for the watch quota of an unprivileged domain) rejects that
   * next(). Relative paths give relative event paths; special paths
   * "@introduceDomain" and "@releaseDomain" are allowed. Events are queued
   * without bound until read.
   *
   * The iteration ends (UNWATCH `<path>\0<token>\0` is sent) when the loop
   * exits (break, return, throw) or `signal` aborts; close() ends it
   * without UNWATCH. A failed connection rejects the pending next() with
   * its XenStoreError. XenUsageError for a bad path, token or signal.
   */
  watch(
    path: string,
    options?: XenStoreWatchOptions,
  ): AsyncIterableIterator<XenStoreWatchEvent> {
    checkPath(path, "path", true);
    options = checkOptions("options", options);
    checkSignal("signal", options.signal);
    let token: string;
    if (options.token !== undefined) {
      if (
        typeof options.token !== "string" || options.token.length === 0 ||
        options.token.includes("\0")
      ) {
        throw new XenUsageError(
          `token must be a non-empty string without NUL, got ${describe(options.token)}`,
        );
      }
      token = options.token;
    } else {
      do token = `xenchan-${this.#nextToken++}`; while (this.#watches.has(token));
    }
    return new WatchIterator(this, path, token, options.signal);
  }

  /**
   * UNWATCH `<path>\0<token>\0` for a watch registered by `watch()` with an
   * explicit token, or by an earlier program on this connection. A local
   * iterator with that path and token ends (done) without sending a second
   * UNWATCH. Rejects with ENOENT when the daemon knows no such watch
   * (/dev/xen/xenbus answers OK instead). XenUsageError for a bad argument.
   */
  async unwatch(path: string, token: string): Promise<void> {
    checkPath(path, "path", true);
    if (typeof token !== "string" || token.length === 0 || token.includes("\0")) {
      throw new XenUsageError(
        `token must be a non-empty string without NUL, got ${describe(token)}`,
      );
    }
    for (const local of [...(this.#watches.get(token) ?? [])]) {
      if (local.path === path) void local.finish(false);
    }
    await this.#request(XsType.UNWATCH, 0, payloadOf([path, token]), path);
  }

  /**
   * Runs `body` inside a transaction: TRANSACTION_START, the body with `tx`
   * (operations bound to the transaction id), then TRANSACTION_END "T".
   * When the commit answers EAGAIN (another connection changed what the
   * transaction read), or an operation inside rejects with EAGAIN, the whole
   * body runs again in a new transaction, up to `maxAttempts` runs in all;
   * then the EAGAIN XenStoreError is thrown. When the body throws, the
   * transaction is aborted (END "F") and the body's error is rethrown
   * unchanged. Resolves with the body's result of the committed run.
   * Rejects with ENOSPC (the daemon's transaction quota), ENOENT (the
   * transaction vanished) and connection errors. `tx` must not be used after
   * the body's promise settled (its requests would carry a finished id and
   * get ENOENT). XenUsageError for a bad body or maxAttempts.
   */
  async transaction<T>(
    body: (tx: XenStoreTransaction) => Promise<T> | T,
    options?: XenStoreTransactionOptions,
  ): Promise<T> {
    checkFunction("body", body);
    const maxAttempts = checkInteger(
      "maxAttempts",
      checkOptions("options", options).maxAttempts ?? DEFAULT_TRANSACTION_ATTEMPTS,
      1,
      1000,
    );
    for (let attempt = 1;; attempt++) {
      const start = await this.#request(XsType.TRANSACTION_START, 0, payloadOf([""]));
      const idText = splitNul(start.payload)[0] ?? "";
      const id = Number(idText);
      if (!/^[0-9]+$/.test(idText) || !Number.isSafeInteger(id) || id === 0 || id > 0xffffffff) {
        throw this.#protocol(`TRANSACTION_START answered ${JSON.stringify(idText)}`);
      }
      let result: T;
      try {
        result = await body(new BoundTransaction(this, id));
      } catch (error) {
        await this.#request(XsType.TRANSACTION_END, id, payloadOf(["F"])).catch(() => {});
        if (isEagain(error) && attempt < maxAttempts) continue;
        throw error;
      }
      try {
        await this.#request(XsType.TRANSACTION_END, id, payloadOf(["T"]));
        return result;
      } catch (error) {
        if (isEagain(error) && attempt < maxAttempts) continue;
        throw error;
      }
    }
  }

  /**
   * Closes the connection: every request in flight rejects with
   * XenStoreError "ECLOSED", every watch iterator ends (done), the transport
   * is closed. Idempotent; never throws.
   */
  close(): void {
    if (this.#failure) return;
    const detail = "the XenStore handle was closed";
    this.#fail(new XenStoreError("ECLOSED", "CLOSE", undefined, detail), detail);
    try {
      this.#transport.close();
    } catch {
      // The transport's own failure changes nothing: the handle is closed.
    }
  }

  /** Same as close(). */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Same as close(). */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }

  // ---- internals shared with transactions and watch iterators ----

  /** @internal */
  async readBytesIn(txId: number, path: string): Promise<Uint8Array> {
    return await this.#readBytes(txId, path);
  }

  async #readBytes(txId: number, path: string): Promise<Uint8Array> {
    checkPath(path);
    const reply = await this.#request(XsType.READ, txId, payloadOf([path]), path);
    return reply.payload;
  }

  /** @internal */
  writeIn(txId: number, path: string, value: string | Uint8Array): Promise<void> {
    return this.#write(txId, path, value);
  }

  async #write(txId: number, path: string, value: string | Uint8Array): Promise<void> {
    checkPath(path);
    if (typeof value !== "string" && !(value instanceof Uint8Array)) {
      throw new XenUsageError(`value must be a string or a Uint8Array, got ${describe(value)}`);
    }
    await this.#request(XsType.WRITE, txId, payloadOf([path, value], false), path);
  }

  /** @internal */
  simpleIn(txId: number, type: number, path: string): Promise<void> {
    return this.#simple(txId, type, path);
  }

  async #simple(txId: number, type: number, path: string): Promise<void> {
    checkPath(path);
    await this.#request(type, txId, payloadOf([path]), path);
  }

  /** @internal */
  directoryIn(txId: number, path: string): Promise<string[]> {
    return this.#directory(txId, path);
  }

  async #directory(txId: number, path: string): Promise<string[]> {
    checkPath(path);
    let tooBig: unknown;
    try {
      const reply = await this.#request(XsType.DIRECTORY, txId, payloadOf([path]), path);
      return splitNul(reply.payload);
    } catch (error) {
      if (!(error instanceof XenStoreError) || error.code !== "E2BIG") throw error;
      tooBig = error;
    }
    try {
      return await this.#directoryParts(txId, path);
    } catch (error) {
      if (error instanceof XenStoreError && error.code === "ENOSYS") throw tooBig;
      throw error;
    }
  }

  async #directoryParts(txId: number, path: string): Promise<string[]> {
    for (let restart = 0; restart <= DIRECTORY_PART_RESTARTS; restart++) {
      const names: string[] = [];
      let generation: string | undefined;
      let offset = 0;
      let changed = false;
      for (;;) {
        const reply = await this.#request(
          XsType.DIRECTORY_PART,
          txId,
          payloadOf([path, String(offset)]),
          path,
        );
        const bytes = reply.payload;
        const genEnd = bytes.indexOf(0);
        if (genEnd < 0) throw this.#protocol("a DIRECTORY_PART reply without a generation count");
        const gen = fromUtf8(bytes.subarray(0, genEnd));
        if (generation === undefined) generation = gen;
        else if (gen !== generation) {
          changed = true;
          break;
        }
        const rest = bytes.subarray(genEnd + 1);
        // The last chunk carries one extra NUL (an empty name) after its names.
        const last = rest.length === 0 || (rest.length === 1 && rest[0] === 0) ||
          (rest.length >= 2 && rest[rest.length - 1] === 0 && rest[rest.length - 2] === 0);
        const body = last && rest.length > 0 ? rest.subarray(0, rest.length - 1) : rest;
        names.push(...splitNul(body));
        if (last) return names;
        if (body.length === 0) throw this.#protocol("a DIRECTORY_PART reply made no progress");
        offset += body.length;
      }
      if (!changed) break;
    }
    throw new XenStoreError(
      "EAGAIN",
      "DIRECTORY_PART",
      path,
      `the directory kept changing over ${DIRECTORY_PART_RESTARTS} restarts`,
    );
  }

  /** @internal */
  getPermissionsIn(txId: number, path: string): Promise<XenStorePermission[]> {
    return this.#getPermissions(txId, path);
  }

  async #getPermissions(txId: number, path: string): Promise<XenStorePermission[]> {
    checkPath(path);
    const reply = await this.#request(XsType.GET_PERMS, txId, payloadOf([path]), path);
    try {
      return splitNul(reply.payload).map(parsePermission);
    } catch (error) {
      throw this.#protocol(`GET_PERMS answered a bad permission: ${(error as Error).message}`);
    }
  }

  /** @internal */
  setPermissionsIn(
    txId: number,
    path: string,
    permissions: readonly XenStorePermission[],
  ): Promise<void> {
    return this.#setPermissions(txId, path, permissions);
  }

  async #setPermissions(
    txId: number,
    path: string,
    permissions: readonly XenStorePermission[],
  ): Promise<void> {
    checkPath(path);
    const list = checkPermissions(permissions);
    await this.#request(
      XsType.SET_PERMS,
      txId,
      payloadOf([path, ...list.map(formatPermission)]),
      path,
    );
  }

  /** @internal Registers a watch iterator's token (before WATCH is sent). */
  addWatch(watch: WatchIterator): void {
    const set = this.#watches.get(watch.token) ?? new Set();
    set.add(watch);
    this.#watches.set(watch.token, set);
  }

  /** @internal */
  removeWatch(watch: WatchIterator): void {
    const set = this.#watches.get(watch.token);
    set?.delete(watch);
    if (set?.size === 0) this.#watches.delete(watch.token);
  }

  /** @internal The connection's failure, if any (ECLOSED after close()). */
  get failure(): XenStoreError | undefined {
    return this.#failure;
  }

  /**
   * @internal Sends one request and resolves with its reply (type checked),
   * or rejects with the XenStoreError the daemon sent, E2BIG for an
   * oversized payload (not sent), or the connection's failure.
   */
  request(type: number, txId: number, payload: Uint8Array, path?: string): Promise<XsMessage> {
    return this.#request(type, txId, payload, path);
  }

  #request(type: number, txId: number, payload: Uint8Array, path?: string): Promise<XsMessage> {
    const op = XS_TYPE_NAMES.get(type) ?? `type ${type}`;
    if (this.#failure) return Promise.reject(this.#failure);
    const limit = this.#transport.maxRequestPayload;
    if (payload.length > limit) {
      return Promise.reject(
        new XenStoreError(
          "E2BIG",
          op,
          path,
          `the request payload is ${payload.length} bytes, over the ${limit}-byte limit of ` +
            `${this.#transport.kind}; not sent`,
        ),
      );
    }
    const reqId = this.#allocateReqId();
    const bytes = encodeMessage({ type, reqId, txId, payload }, limit);
    return new Promise<XsMessage>((resolve, reject) => {
      this.#pending.set(reqId, { type, op, path, resolve, reject });
      try {
        this.#transport.send(bytes);
      } catch (error) {
        this.#pending.delete(reqId);
        const code = (error as { code?: unknown } | null)?.code;
        reject(
          new XenStoreError(
            typeof code === "string" && /^E[A-Z0-9]+$/.test(code) ? code : "ECONNRESET",
            op,
            path,
            (error as Error)?.message ?? String(error),
          ),
        );
      }
    });
  }

  #allocateReqId(): number {
    for (;;) {
      const id = this.#nextReqId;
      this.#nextReqId = id >= 0xffffffff ? 1 : id + 1;
      if (!this.#pending.has(id)) return id;
    }
  }

  #data(chunk: Uint8Array): void {
    if (this.#failure) return;
    let messages: XsMessage[];
    try {
      messages = this.#decoder.push(chunk);
    } catch (error) {
      if (error instanceof XsProtocolError) {
        this.#abandon(this.#protocol(error.message));
        return;
      }
      throw error;
    }
    for (const message of messages) {
      if (this.#failure) return;
      this.#dispatch(message);
    }
  }

  #dispatch(message: XsMessage): void {
    if (message.type === XsType.WATCH_EVENT) {
      const [path, token, ...extra] = splitNul(message.payload);
      if (path === undefined || token === undefined || extra.length > 0) {
        this.#abandon(this.#protocol("a WATCH_EVENT without exactly a path and a token"));
        return;
      }
      // An event for a watch already ended (UNWATCH in flight) is dropped.
      for (const watch of this.#watches.get(token) ?? []) watch.push({ path, token });
      return;
    }
    if (!XS_TYPE_NAMES.has(message.type)) {
      this.#abandon(this.#protocol(`a message of unknown type ${message.type}`));
      return;
    }
    const pending = this.#pending.get(message.reqId);
    if (!pending) {
      this.#abandon(
        this.#protocol(
          `a ${
            XS_TYPE_NAMES.get(message.type)
          } reply for req_id ${message.reqId}, which no request has`,
        ),
      );
      return;
    }
    this.#pending.delete(message.reqId);
    if (message.type === XsType.ERROR) {
      pending.reject(new XenStoreError(errorNameOf(message.payload), pending.op, pending.path));
    } else if (message.type !== pending.type) {
      const error = this.#protocol(
        `a ${XS_TYPE_NAMES.get(message.type)} reply to a ${pending.op} request`,
      );
      pending.reject(error);
      this.#abandon(error);
    } else {
      pending.resolve(message);
    }
  }

  #protocol(detail: string): XenStoreError {
    const error = new XenStoreError("EPROTO", "RECEIVE", undefined, detail);
    this.#protocolDetail.set(error, detail);
    return error;
  }

  /** A fatal stream error: fail everything and close the transport. */
  #abandon(error: XenStoreError): void {
    if (this.#failure) return;
    this.#fail(error, this.#protocolDetail.get(error) ?? error.message);
    try {
      this.#transport.close();
    } catch {
      // Already failing: nothing more to report.
    }
  }

  #ended(error?: Error): void {
    if (this.#failure) return;
    const cut = this.#decoder.pending > 0
      ? `, ${this.#decoder.pending} bytes of a message cut short`
      : "";
    const detail = `the connection to ${this.description} ended${cut}` +
      (error ? `: ${error.message}` : "");
    this.#fail(new XenStoreError("ECONNRESET", "RECEIVE", undefined, detail), detail);
  }

  #fail(error: XenStoreError, detail: string): void {
    this.#failure = error;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) {
      p.reject(new XenStoreError(error.code, p.op, p.path, detail));
    }
    const watches = [...this.#watches.values()].flatMap((set) => [...set]);
    this.#watches.clear();
    for (const w of watches) w.connectionFailed(error);
  }
}

function isEagain(error: unknown): boolean {
  return error instanceof XenStoreError && error.code === "EAGAIN";
}

/** A transaction's operations: the XenStore methods with the transaction id. */
class BoundTransaction implements XenStoreTransaction {
  constructor(readonly store: XenStore, readonly id: number) {}
  readBytes(path: string): Promise<Uint8Array> {
    return this.store.readBytesIn(this.id, path);
  }
  async read(path: string): Promise<string> {
    return fromUtf8(await this.store.readBytesIn(this.id, path));
  }
  write(path: string, value: string | Uint8Array): Promise<void> {
    return this.store.writeIn(this.id, path, value);
  }
  mkdir(path: string): Promise<void> {
    return this.store.simpleIn(this.id, XsType.MKDIR, path);
  }
  rm(path: string): Promise<void> {
    return this.store.simpleIn(this.id, XsType.RM, path);
  }
  directory(path: string): Promise<string[]> {
    return this.store.directoryIn(this.id, path);
  }
  getPermissions(path: string): Promise<XenStorePermission[]> {
    return this.store.getPermissionsIn(this.id, path);
  }
  setPermissions(path: string, permissions: readonly XenStorePermission[]): Promise<void> {
    return this.store.setPermissionsIn(this.id, path, permissions);
  }
}

/** The iterator behind XenStore.watch (see its contract). */
class WatchIterator implements AsyncIterableIterator<XenStoreWatchEvent> {
  readonly #store: XenStore;
  readonly #signal: AbortSignal | undefined;
  readonly #queue: XenStoreWatchEvent[] = [];
  #waiter:
    | { resolve: (r: IteratorResult<XenStoreWatchEvent>) => void; reject: (e: unknown) => void }
    | undefined;
  #registered: Promise<void> | undefined;
  #done = false;
  #error: unknown;
  #unwatch: Promise<void> | undefined;
  readonly #onAbort = () => void this.#end();

  constructor(
    store: XenStore,
    readonly path: string,
    readonly token: string,
    signal?: AbortSignal,
  ) {
    this.#store = store;
    this.#signal = signal;
    signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<XenStoreWatchEvent>> {
    if (!this.#done && this.#signal?.aborted) await this.#end();
    if (this.#error !== undefined) throw this.#error;
    if (this.#done && this.#queue.length === 0) return { done: true, value: undefined };
    if (!this.#registered) {
      const failure = this.#store.failure;
      if (failure) {
        this.finish(false);
        if (failure.code === "ECLOSED") return { done: true, value: undefined };
        throw failure;
      }
      this.#store.addWatch(this);
      this.#registered = this.#store
        .request(XsType.WATCH, 0, payloadOf([this.path, this.token]), this.path)
        .then(() => {});
      try {
        await this.#registered;
      } catch (error) {
        this.#store.removeWatch(this);
        this.#done = true;
        this.#queue.length = 0;
        this.#signal?.removeEventListener("abort", this.#onAbort);
        if (error instanceof XenStoreError && error.code === "ECLOSED") {
          return { done: true, value: undefined };
        }
        throw error;
      }
    }
    const queued = this.#queue.shift();
    if (queued) return { done: false, value: queued };
    if (this.#done) {
      if (this.#error !== undefined) throw this.#error;
      return { done: true, value: undefined };
    }
    return new Promise((resolve, reject) => (this.#waiter = { resolve, reject }));
  }

  async return(): Promise<IteratorResult<XenStoreWatchEvent>> {
    await this.#end();
    return { done: true, value: undefined };
  }

  async throw(error?: unknown): Promise<IteratorResult<XenStoreWatchEvent>> {
    await this.#end();
    throw error;
  }

  /** An event for this token. */
  push(event: XenStoreWatchEvent): void {
    if (this.#done) return;
    const waiter = this.#waiter;
    if (waiter) {
      this.#waiter = undefined;
      waiter.resolve({ done: false, value: event });
    } else {
      this.#queue.push(event);
    }
  }

  /** Ends the iteration locally (no UNWATCH when `unwatch` is false). */
  finish(unwatch: boolean): Promise<void> {
    if (this.#done) return this.#unwatch ?? Promise.resolve();
    this.#done = true;
    this.#queue.length = 0;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.resolve({ done: true, value: undefined });
    const registered = this.#registered;
    if (!unwatch || !registered || this.#store.failure) {
      this.#store.removeWatch(this);
      return Promise.resolve();
    }
    this.#unwatch = registered.then(
      async () => {
        try {
          await this.#store.request(
            XsType.UNWATCH,
            0,
            payloadOf([this.path, this.token]),
            this.path,
          );
        } catch (error) {
          // A connection that ended took the watch with it.
          if (!(error instanceof XenStoreError) || !isConnectionCode(error.code)) throw error;
        } finally {
          this.#store.removeWatch(this);
        }
      },
      () => this.#store.removeWatch(this),
    );
    return this.#unwatch;
  }

  #end(): Promise<void> {
    return this.finish(true);
  }

  /** The connection failed or was closed. */
  connectionFailed(error: XenStoreError): void {
    const closedByUser = error.code === "ECLOSED";
    if (!closedByUser) this.#error = error;
    this.#done = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (!waiter) return;
    if (closedByUser) waiter.resolve({ done: true, value: undefined });
    else waiter.reject(error);
  }
}

function isConnectionCode(code: string): boolean {
  return code === "ECLOSED" || code === "ECONNRESET" || code === "EPROTO";
}
