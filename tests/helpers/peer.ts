/**
 * The other end of a multi-domain test: a process in another domain that
 * opens event channels and grant handles there and does what the test asks.
 * One command set (PeerCommand) and one executor (PeerExecutor) serve both
 * targets of tests/contract/multidomain.test.ts: on the simulator the
 * executor runs in-process over a simulated domain's backend; on real Xen
 * it runs in a PV guest (tests/fixtures/domu_agent.ts) and the test sends it
 * commands through XenStore (tests/helpers/peer_rpc.ts). Results and errors
 * travel as plain data, errors as {name, code}, so both targets report the
 * same thing.
 *
 * @module
 */
import {
  type EventChannels,
  type GrantMapping,
  type GrantShare,
  type GrantTable,
  openEventChannels,
  openGrantShare,
  openGrantTable,
  type OpenOptions,
  type SharedGrant,
  XenCallError,
} from "../../mod.ts";

/** One command for the peer. Ids name the peer's grant objects (shares and mappings). */
export type PeerCommand =
  | { readonly op: "ping" }
  | { readonly op: "bindUnbound"; readonly domid: number }
  | { readonly op: "bindInterdomain"; readonly domid: number; readonly port: number }
  | { readonly op: "notify"; readonly port: number }
  | { readonly op: "unmask"; readonly port: number }
  | { readonly op: "unbind"; readonly port: number }
  /** Waits up to timeoutMs for a pending port; the value is the port or null. */
  | { readonly op: "pending"; readonly timeoutMs: number }
  | {
    readonly op: "share";
    readonly domid: number;
    readonly count: number;
    readonly writable: boolean;
    /** With notify: sharePageNotify (count must be 1). */
    readonly notify?: { readonly offset?: number; readonly port?: number };
  }
  | {
    readonly op: "map";
    readonly domid: number;
    readonly refs: readonly number[];
    readonly writable: boolean;
    /** With notify: mapGrantRefNotify (one ref). */
    readonly notify?: { readonly offset?: number; readonly port?: number };
  }
  | { readonly op: "read"; readonly id: number; readonly offset: number; readonly length: number }
  | {
    readonly op: "write";
    readonly id: number;
    readonly offset: number;
    readonly bytes: readonly number[];
  }
  /** Unmaps a mapping or unshares a share. */
  | { readonly op: "release"; readonly id: number }
  /** Closes every handle the peer holds (its kernel cleans up as on close()). */
  | { readonly op: "close" }
  /** The peer's process dies at once, without closing anything (SIGKILL). */
  | { readonly op: "kill" };

/** A command's error: the error class name and, for XenCallError, the errno name. */
export interface PeerFailure {
  readonly name: string;
  readonly code: string | null;
  readonly message: string;
}

/** What a command gives back. */
export type PeerOutcome =
  | { readonly ok: true; readonly value: PeerValue }
  | { readonly ok: false; readonly error: PeerFailure };

/** A command's value: a port, refs of a share, an id, bytes, or nothing. */
export type PeerValue =
  | null
  | number
  | string
  | { readonly id: number; readonly refs: readonly number[] }
  | readonly number[];

/** A failed peer command, thrown by the Peer convenience methods. */
export class PeerError extends Error {
  override readonly name = "PeerError";
  /** The class name of the error the peer saw (XenCallError, XenUsageError, ...). */
  readonly errorName: string;
  /** The errno name for XenCallError, else null. */
  readonly code: string | null;
  constructor(failure: PeerFailure) {
    super(`peer: ${failure.name}${failure.code ? ` ${failure.code}` : ""}: ${failure.message}`);
    this.errorName = failure.name;
    this.code = failure.code;
  }
}

/** The failure record of any thrown value. */
export function failureOf(error: unknown): PeerFailure {
  if (error instanceof XenCallError) {
    return { name: "XenCallError", code: error.code, message: error.message };
  }
  if (error instanceof Error) return { name: error.name, code: null, message: error.message };
  return { name: "Error", code: null, message: String(error) };
}

/**
 * Executes PeerCommands with one set of handles opened with `options` in
 * the executor's process. Not reentrant: run one command at a time.
 * execute() never throws: a failed command resolves {ok: false}. "kill" is
 * the caller's business (the executor cannot kill its own process): it
 * resolves {ok: false, error: {name: "Unsupported"}} here.
 */
export class PeerExecutor {
  readonly #options: OpenOptions;
  #events: EventChannels | undefined;
  #table: GrantTable | undefined;
  #share: GrantShare | undefined;
  readonly #objects = new Map<number, GrantMapping | SharedGrant>();
  #nextId = 1;

  constructor(options: OpenOptions) {
    this.#options = options;
  }

  async #evt(): Promise<EventChannels> {
    return this.#events ??= await openEventChannels(this.#options);
  }
  async #gnt(): Promise<GrantTable> {
    return this.#table ??= await openGrantTable(this.#options);
  }
  async #shr(): Promise<GrantShare> {
    return this.#share ??= await openGrantShare(this.#options);
  }

  #object(id: number): GrantMapping | SharedGrant {
    const o = this.#objects.get(id);
    if (!o) throw new Error(`no grant object ${id}`);
    return o;
  }

  #keep(o: GrantMapping | SharedGrant): number {
    const id = this.#nextId++;
    this.#objects.set(id, o);
    return id;
  }

  /** Runs one command; resolves with its outcome (never rejects). */
  async execute(cmd: PeerCommand): Promise<PeerOutcome> {
    try {
      return { ok: true, value: await this.#run(cmd) };
    } catch (error) {
      return { ok: false, error: failureOf(error) };
    }
  }

  async #run(cmd: PeerCommand): Promise<PeerValue> {
    switch (cmd.op) {
      case "ping":
        return "pong";
      case "bindUnbound":
        return (await this.#evt()).bindUnboundPort(cmd.domid);
      case "bindInterdomain":
        return (await this.#evt()).bindInterdomain(cmd.domid, cmd.port);
      case "notify":
        (await this.#evt()).notify(cmd.port);
        return null;
      case "unmask":
        (await this.#evt()).unmask(cmd.port);
        return null;
      case "unbind":
        (await this.#evt()).unbind(cmd.port);
        return null;
      case "pending": {
        const events = await this.#evt();
        try {
          return await events.pending({ signal: AbortSignal.timeout(cmd.timeoutMs) });
        } catch (error) {
          if (error instanceof DOMException || (error as Error).name === "TimeoutError") {
            return null;
          }
          throw error;
        }
      }
      case "share": {
        const shr = await this.#shr();
        const grant = cmd.notify
          ? shr.sharePageNotify(cmd.domid, {
            writable: cmd.writable,
            notifyOffset: cmd.notify.offset,
            notifyPort: cmd.notify.port,
          })
          : shr.sharePages(cmd.domid, cmd.count, { writable: cmd.writable });
        return { id: this.#keep(grant), refs: [...grant.refs] };
      }
      case "map": {
        const gnt = await this.#gnt();
        const mapping = cmd.notify
          ? gnt.mapGrantRefNotify(cmd.domid, cmd.refs[0], {
            writable: cmd.writable,
            notifyOffset: cmd.notify.offset,
            notifyPort: cmd.notify.port,
          })
          : gnt.mapDomainGrantRefs(cmd.domid, cmd.refs, { writable: cmd.writable });
        return this.#keep(mapping);
      }
      case "read":
        return [...this.#object(cmd.id).bytes.subarray(cmd.offset, cmd.offset + cmd.length)];
      case "write":
        this.#object(cmd.id).bytes.set(cmd.bytes, cmd.offset);
        return null;
      case "release": {
        const o = this.#object(cmd.id);
        if ("unmap" in o) o.unmap();
        else o.unshare();
        this.#objects.delete(cmd.id);
        return null;
      }
      case "close":
        this.close();
        return null;
      case "kill":
        throw Object.assign(new Error("kill is handled by the peer's process"), {
          name: "Unsupported",
        });
    }
  }

  /** Closes every handle (mappings and shares go with their handles). Idempotent. */
  close(): void {
    this.#objects.clear();
    this.#table?.close();
    this.#share?.close();
    this.#events?.close();
    this.#table = this.#share = this.#events = undefined;
  }
}

/**
 * A peer in another domain, as the multi-domain contract tests see it. Every
 * method resolves with the value or rejects with PeerError; every call is
 * bounded in time (an RPC peer rejects with PeerError {name: "Timeout"}).
 */
export interface Peer {
  /** The peer's domain. */
  readonly domid: number;
  /** Runs one command; resolves with its outcome (rejects only when the peer is unreachable). */
  call(cmd: PeerCommand): Promise<PeerOutcome>;
  bindUnbound(domid: number): Promise<number>;
  bindInterdomain(domid: number, port: number): Promise<number>;
  notify(port: number): Promise<void>;
  unmask(port: number): Promise<void>;
  unbind(port: number): Promise<void>;
  /** The next pending port within timeoutMs, or null. */
  pending(timeoutMs: number): Promise<number | null>;
  share(
    domid: number,
    count: number,
    writable: boolean,
    notify?: { offset?: number; port?: number },
  ): Promise<{ id: number; refs: readonly number[] }>;
  map(
    domid: number,
    refs: readonly number[],
    writable: boolean,
    notify?: { offset?: number; port?: number },
  ): Promise<number>;
  read(id: number, offset: number, length: number): Promise<number[]>;
  write(id: number, offset: number, bytes: readonly number[]): Promise<void>;
  release(id: number): Promise<void>;
  /** Closes all the peer's handles. */
  close(): Promise<void>;
  /**
   * The peer's process is killed (its kernel cleans up its handles); the
   * peer then comes back as a fresh process in the same domain, holding
   * nothing. Resolves once the fresh process answers.
   */
  kill(): Promise<void>;
}

/** The Peer convenience methods over a `call` function (the transport). */
export function peerMethods(
  domid: number,
  call: (cmd: PeerCommand) => Promise<PeerOutcome>,
  kill: () => Promise<void>,
): Peer {
  const value = async (cmd: PeerCommand): Promise<PeerValue> => {
    const r = await call(cmd);
    if (!r.ok) throw new PeerError(r.error);
    return r.value;
  };
  return {
    domid,
    call,
    bindUnbound: async (d) => await value({ op: "bindUnbound", domid: d }) as number,
    bindInterdomain: async (d, port) =>
      await value({ op: "bindInterdomain", domid: d, port }) as number,
    notify: async (port) => void await value({ op: "notify", port }),
    unmask: async (port) => void await value({ op: "unmask", port }),
    unbind: async (port) => void await value({ op: "unbind", port }),
    pending: async (timeoutMs) => await value({ op: "pending", timeoutMs }) as number | null,
    share: async (d, count, writable, notify) =>
      await value({ op: "share", domid: d, count, writable, notify }) as {
        id: number;
        refs: readonly number[];
      },
    map: async (d, refs, writable, notify) =>
      await value({ op: "map", domid: d, refs, writable, notify }) as number,
    read: async (
      id,
      offset,
      length,
    ) => [...await value({ op: "read", id, offset, length }) as number[]],
    write: async (id, offset, bytes) => void await value({ op: "write", id, offset, bytes }),
    release: async (id) => void await value({ op: "release", id }),
    close: async () => void await value({ op: "close" }),
    kill,
  };
}
