/**
 * The XenStore executor and trace recorder of the differential fidelity
 * engine ("dom0 xenstore" lane): runs a sequence of xs_ops.ts operations
 * through the public XenStore client on one daemon (real C xenstored 4.17
 * over its unix socket, or the simulated one of a fresh SimHypervisor) and
 * records every call with its resolved arguments, its result or its error
 * (XenStoreError: request and errno name), and the watch events each
 * connection received in response.
 *
 * The normalisation, applied while recording (the same on every daemon):
 * 1. Paths: every path of a sequence lies below its scratch node
 *    /fidelity/s<seed> (scratchPath), which the trace writes as `$S`. The
 *    seed fixes the node, so nothing is renamed; the text is only shorter.
 *    On real Xen the node is removed after the sequence (teardown), so
 *    sequences never see each other's nodes; the simulator starts each
 *    sequence with a fresh store. The scratch node's parent /fidelity
 *    persists on real Xen between sequences and is created by the
 *    sequence's opening mkdir on the simulator; no operation reaches above
 *    the scratch node (rm of `$S` itself is the highest), so that
 *    difference cannot show.
 * 2. Watch events: after every operation, each connection with a live
 *    watch makes one round trip (GET_PERMS "/", not recorded) and the
 *    recorder then yields to the event loop. C xenstored queues watch
 *    events on the watcher's connection before it answers the request that
 *    fired them (and the registration event right after the WATCH reply),
 *    and a connection's output is in order, so every event an operation
 *    caused has arrived once that round trip answered: no timing is
 *    involved. Events are recorded per operation and connection as
 *    `c<i>:<token>:<path>`, grouped by watch in registration order, each
 *    watch's events in arrival order. The interleaving of two watches'
 *    events on one connection is not compared: the client hands them to
 *    separate async iterators, and the order in which the recorder's loops
 *    over those iterators resume is the client's, not the daemon's.
 * 3. Not recorded: transaction ids and generation counts (not exposed by
 *    the public API; the EAGAIN they decide is recorded), file descriptors,
 *    and values longer than 16 bytes, which are recorded as their length
 *    and their first and last 6 bytes.
 * 4. Errors: XenStoreError as its request name and errno name; any other
 *    error as its class name; never the message.
 * 5. Transactions run with maxAttempts 1 (so an EAGAIN at commit is
 *    recorded, not retried): txStart starts one whose body waits for the
 *    txEnd operation that commits or aborts it (an abort is the body
 *    throwing, END "F"). Operations with `t` run on that transaction's
 *    connection.
 *
 * @module
 */
import { type XenStore, XenStoreError, type XenStoreTransaction } from "../../mod.ts";
import { XenError } from "../../mod.ts";
import { WATCH_SPECIAL, XS_PATHS, XS_VALUES, type XsOp } from "./xs_ops.ts";
import type { TraceEntry } from "./run.ts";

/** The most connections a sequence opens (later opens are skipped). */
export const MAX_CONNECTIONS = 4;
/** The most transactions a sequence starts (later starts are skipped). */
export const MAX_TRANSACTIONS = 8;
/** The longest wait for a watch's registration event (ms): an engine guard. */
const REGISTRATION_WAIT_MS = 10_000;

/** How the XenStore recorder reaches one daemon for one sequence. */
export interface XsTarget {
  /** Opens one new dom0 connection to the daemon. */
  open(): Promise<XenStore>;
  /**
   * Lets the client's watch iterators run after the round trips of rule 2
   * (default: one macrotask turn).
   */
  settle?(): Promise<void>;
}

/** The scratch node of a sequence (normalisation rule 1). */
export function scratchPath(seed: number): string {
  return `/fidelity/s${seed >>> 0}`;
}

/** The text recorded for a thrown value (normalisation rule 4). */
export function xsErrorText(error: unknown): string {
  if (error instanceof XenStoreError) return `!${error.op}:${error.code}`;
  if (error instanceof XenError) return `!${error.name}`;
  return `!${(error as Error)?.name ?? typeof error}`;
}

/** The text recorded for a value (normalisation rule 3). */
function valueText(value: string): string {
  if (value.length <= 16) return JSON.stringify(value);
  return `${value.length}:${JSON.stringify(value.slice(0, 6))}..${JSON.stringify(value.slice(-6))}`;
}

interface Watch {
  readonly path: string;
  readonly token: string;
  readonly events: string[];
  done: boolean;
}

interface Conn {
  readonly store: XenStore;
  readonly index: number;
  closed: boolean;
  readonly watches: Watch[];
}

interface Tx {
  readonly conn: Conn;
  readonly index: number;
  readonly tx: XenStoreTransaction;
  readonly end: (commit: boolean) => void;
  readonly result: Promise<string>;
  ended: boolean;
}

/** Thrown by a transaction body to abort (END "F"). */
class Abort extends Error {
  override name = "Abort";
}

function pick<T>(list: readonly T[], slot: number, live: (item: T) => boolean): T | undefined {
  const pool = slot % 8 !== 7 ? list.filter(live) : list;
  const from = pool.length ? pool : list;
  return from.length ? from[Math.floor(slot / 8) % from.length] : undefined;
}

const yieldToLoop = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/**
 * Records one XenStore sequence on one daemon, operation by operation. Not
 * reentrant: one step at a time; `finish` closes everything it opened and
 * removes the scratch node.
 */
export class XsRecorder {
  readonly #target: XsTarget;
  readonly #scratch: string;
  readonly #conns: Conn[] = [];
  readonly #txs: Tx[] = [];
  /** The entries recorded so far. */
  readonly trace: TraceEntry[] = [];
  #finished = false;

  /** A recorder for the sequence of `seed` (its scratch node) on `target`. */
  constructor(target: XsTarget, seed: number) {
    this.#target = target;
    this.#scratch = scratchPath(seed);
  }

  #path(p: number): string {
    if (p < XS_PATHS.length) return this.#scratch + XS_PATHS[p];
    return WATCH_SPECIAL[(p - XS_PATHS.length) % WATCH_SPECIAL.length];
  }

  #text(path: string): string {
    return path.startsWith(this.#scratch) ? `$S${path.slice(this.#scratch.length)}` : path;
  }

  /** Runs one operation and records its entry. Throws only for an engine error. */
  async step(op: XsOp): Promise<TraceEntry> {
    const [call, out, early] = await this.#execute(op);
    const events = await this.#collect(early);
    const entry = events.length
      ? `${call} => ${out} | ev ${events.join(",")}`
      : `${call} => ${out}`;
    this.trace.push(entry);
    return entry;
  }

  /**
   * Ends every transaction still open (abort), closes every connection,
   * then removes the scratch node on a fresh connection (its outcome is not
   * recorded: the scratch node's parent exists on real Xen from earlier
   * sequences, so an rm of a missing scratch node is OK there and ENOENT on
   * a fresh simulator), and records the `teardown` entry. Idempotent.
   */
  async finish(): Promise<TraceEntry> {
    if (this.#finished) return this.trace[this.trace.length - 1];
    this.#finished = true;
    for (const t of this.#txs) {
      if (t.ended) continue;
      t.ended = true;
      t.end(false);
      await t.result;
    }
    for (const c of this.#conns) {
      c.closed = true;
      c.store.close();
    }
    await yieldToLoop();
    // Cleanup, not compared: on real Xen the scratch node's parent outlives the sequence.
    const store = await this.#target.open();
    try {
      await store.rm(this.#scratch).catch(() => {});
    } finally {
      store.close();
    }
    const entry = "teardown => ok";
    this.trace.push(entry);
    return entry;
  }

  /** Normalisation rule 2: the events every connection received, after a round trip on each. */
  async #collect(early: readonly string[]): Promise<string[]> {
    for (const c of this.#conns) {
      if (c.closed || !c.watches.some((w) => !w.done)) continue;
      await c.store.getPermissions("/").catch(() => {});
    }
    await (this.#target.settle?.() ?? yieldToLoop());
    const out: string[] = [...early];
    for (const c of this.#conns) {
      for (const w of c.watches) {
        for (const e of w.events.splice(0)) out.push(`c${c.index}:${w.token}:${this.#text(e)}`);
      }
    }
    return out;
  }

  async #execute(op: XsOp): Promise<[string, string, string[]]> {
    if (op.kind === "xsOpen") {
      if (this.#conns.length >= MAX_CONNECTIONS) return ["xsOpen", "skip", []];
      const store = await this.#target.open();
      this.#conns.push({ store, index: this.#conns.length, closed: false, watches: [] });
      return ["xsOpen", `c${this.#conns.length - 1}`, []];
    }
    if (op.kind === "txEnd") {
      const t = pick(this.#txs, op.t, (x) => !x.ended);
      if (!t) return ["txEnd", "skip", []];
      const call = `t${t.index}.end(${op.commit})`;
      if (t.ended) return [call, "ended", []];
      t.ended = true;
      t.end(op.commit);
      return [call, await t.result, []];
    }
    const inTx = "t" in op && op.t !== undefined;
    if (inTx) {
      const t = pick(this.#txs, op.t!, (x) => !x.ended);
      if (!t) return [op.kind, "skip", []];
      return await this.#node(op, `t${t.index}`, t.tx);
    }
    const c = pick(this.#conns, (op as { c: number }).c, (x) => !x.closed);
    if (!c) return [op.kind, "skip", []];
    const name = `c${c.index}`;
    switch (op.kind) {
      case "xsClose":
        c.closed = true;
        c.store.close();
        for (const t of this.#txs) {
          if (t.conn !== c || t.ended) continue;
          t.ended = true;
          t.end(false);
        }
        return [`${name}.close()`, "ok", []];
      case "txStart":
        return await this.#txStart(c);
      case "watch":
        return await this.#watch(c, op.p, op.token);
      case "unwatch": {
        const path = this.#path(op.p);
        return [
          `${name}.unwatch(${this.#text(path)},${op.token})`,
          await c.store.unwatch(path, op.token).then(() => "ok", xsErrorText),
          [],
        ];
      }
      case "introduced":
        return [
          `${name}.isDomainIntroduced(${op.domid})`,
          await c.store.isDomainIntroduced(op.domid).then(String, xsErrorText),
          [],
        ];
      default:
        return await this.#node(op, name, c.store);
    }
  }

  async #node(
    op: XsOp,
    name: string,
    on: XenStore | XenStoreTransaction,
  ): Promise<[string, string, string[]]> {
    const settle = async (call: string, p: Promise<string>) =>
      [call, await p.catch(xsErrorText), []] as [string, string, string[]];
    switch (op.kind) {
      case "xsRead": {
        const path = this.#path(op.p);
        return await settle(`${name}.read(${this.#text(path)})`, on.read(path).then(valueText));
      }
      case "xsWrite": {
        const path = this.#path(op.p);
        const value = XS_VALUES[op.v % XS_VALUES.length];
        return await settle(
          `${name}.write(${this.#text(path)},${valueText(value)})`,
          on.write(path, value).then(() => "ok"),
        );
      }
      case "xsMkdir": {
        const path = this.#path(op.p);
        return await settle(`${name}.mkdir(${this.#text(path)})`, on.mkdir(path).then(() => "ok"));
      }
      case "xsRm": {
        const path = this.#path(op.p);
        return await settle(`${name}.rm(${this.#text(path)})`, on.rm(path).then(() => "ok"));
      }
      case "xsDir": {
        const path = this.#path(op.p);
        return await settle(
          `${name}.directory(${this.#text(path)})`,
          on.directory(path).then((names) => `=[${names.join(",")}]`),
        );
      }
      case "xsGetPerms": {
        const path = this.#path(op.p);
        return await settle(
          `${name}.getPermissions(${this.#text(path)})`,
          on.getPermissions(path).then((perms) =>
            `=${perms.map((p) => `${p.access[0]}${p.domid}`).join(" ")}`
          ),
        );
      }
      case "xsSetPerms": {
        const path = this.#path(op.p);
        const access = { n: "none", r: "read", w: "write", b: "both" } as const;
        const perms = op.perms.map(([domid, a]) => ({ domid, access: access[a] }));
        return await settle(
          `${name}.setPermissions(${this.#text(path)},${
            op.perms.map(([d, a]) => a + d).join(" ")
          })`,
          on.setPermissions(path, perms).then(() => "ok"),
        );
      }
      default:
        throw new Error(`unreachable: ${op.kind} on a node`);
    }
  }

  async #txStart(c: Conn): Promise<[string, string, string[]]> {
    const call = `c${c.index}.transaction()`;
    if (this.#txs.length >= MAX_TRANSACTIONS) return [call, "skip", []];
    let ready!: (tx: XenStoreTransaction) => void;
    const started = new Promise<XenStoreTransaction>((resolve) => (ready = resolve));
    let end!: (commit: boolean) => void;
    const gate = new Promise<boolean>((resolve) => (end = resolve));
    const result = c.store.transaction(async (tx) => {
      ready(tx);
      if (!await gate) throw new Abort();
    }, { maxAttempts: 1 }).then(
      () => "ok",
      (error) => error instanceof Abort ? "aborted" : xsErrorText(error),
    );
    const first = await Promise.race([started, result]);
    if (typeof first === "string") return [call, first, []];
    const t: Tx = { conn: c, index: this.#txs.length, tx: first, end, result, ended: false };
    this.#txs.push(t);
    return [call, `t${t.index}`, []];
  }

  async #watch(c: Conn, p: number, token: string): Promise<[string, string, string[]]> {
    const path = this.#path(p);
    const call = `c${c.index}.watch(${this.#text(path)},${token})`;
    const it = c.store.watch(path, { token });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), REGISTRATION_WAIT_MS);
    });
    let first: IteratorResult<{ path: string; token: string }> | "timeout";
    try {
      first = await Promise.race([it.next(), timeout]);
    } catch (error) {
      return [call, xsErrorText(error), []];
    } finally {
      clearTimeout(timer);
    }
    if (first === "timeout") throw new Error(`${call}: no registration event in 10 s`);
    if (first.done) return [call, "done", []];
    const w: Watch = { path, token, events: [], done: false };
    c.watches.push(w);
    void (async () => {
      try {
        for (;;) {
          const r = await it.next();
          if (r.done) break;
          w.events.push(r.value.path);
        }
      } catch (error) {
        w.events.push(xsErrorText(error));
      } finally {
        w.done = true;
      }
    })();
    return [call, "ok", [`c${c.index}:${token}:${this.#text(first.value.path)}`]];
  }
}

/**
 * Runs `ops` for the sequence of `seed` on `target` and returns the trace:
 * one entry per operation and a final `teardown` entry. Everything the run
 * opened is closed before it returns, also when the engine throws.
 */
export async function recordXsTrace(
  ops: readonly XsOp[],
  seed: number,
  target: XsTarget,
): Promise<TraceEntry[]> {
  const rec = new XsRecorder(target, seed);
  try {
    for (const op of ops) await rec.step(op);
  } finally {
    await rec.finish();
  }
  return rec.trace;
}
