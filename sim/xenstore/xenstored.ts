/**
 * SimXenStore: a simulated xenstored with the semantics of C xenstored
 * 4.17 (tools/xenstore/xenstored_{core,transaction,watch,domain}.c at
 * RELEASE-4.17.7; line numbers below refer to those files). One store per
 * SimHypervisor. Pure TypeScript, no permissions.
 *
 * Modelled: every request type of Xen 4.17 with its payload format and
 * errors; node permissions (entry 0 = owner and default, perm_for_conn);
 * dom0 privileged; the unprivileged quotas (entries, watches, node size,
 * transactions, perms per node, nodes per transaction, path length);
 * transactions checked by generation count at commit (EAGAIN); watches
 * with C's firing rules (the node and its descendants, per-node events on
 * rm of a subtree, read permission of the watcher, queued until commit,
 * relative paths, the initial event, duplicate suppression in the output
 * queue); @introduceDomain and @releaseDomain with their special
 * permissions; the domain lifecycle as libxl and xenstored drive it.
 *
 * @module
 */
import { XenUsageError } from "../../core/errors.ts";
import type { XenStoreServer, XenStoreTransport } from "../../core/xenstore/transport.ts";
import {
  XENSTORE_PAYLOAD_MAX,
  XENSTORE_REL_PATH_MAX,
  type XsMessage,
  XsType,
} from "../../core/xenstore/wire.ts";
import { binaryBytes, binaryString, type SimWatch, SimXenStoreConnection } from "./connection.ts";
import {
  baseOf,
  childPath,
  Database,
  type NodeRecord,
  parentOf,
  type Perm,
  PERM_ALL,
  PERM_NONE,
  PERM_OWNER,
  PERM_READ,
  PERM_WRITE,
  recordSize,
  StoreErrno,
  Transaction,
} from "./database.ts";

/**
 * The quotas C xenstored 4.17 applies to unprivileged domains
 * (xenstored_core.c:105-111; set with xenstored -E -W -S -T -A -M -Q).
 * Privileged connections (dom0) are exempt from all of them.
 */
export interface SimXenStoreQuotas {
  /** quota_nb_entry_per_domain: nodes a domain may own (1000; ENOSPC). */
  readonly entriesPerDomain?: number;
  /** quota_nb_watch_per_domain (128; E2BIG). C allows one more than this (:266 uses ">"). */
  readonly watchesPerDomain?: number;
  /** quota_max_entry_size: bytes of a node record (2048; ENOSPC when reached). */
  readonly nodeSize?: number;
  /** quota_max_transaction (10; ENOSPC). C allows one more than this (transaction.c:496 uses ">"). */
  readonly transactionsPerConnection?: number;
  /** quota_nb_perms_per_node (5; ENOSPC). */
  readonly permsPerNode?: number;
  /** quota_trans_nodes: nodes one transaction may touch (1024; ENOSPC). */
  readonly nodesPerTransaction?: number;
  /** quota_max_path_len: path length after /local/domain/<id>/ (2048; EINVAL; applies to everyone). */
  readonly pathLength?: number;
}

/** The resolved quotas. */
export type SimXenStoreLimits = Required<SimXenStoreQuotas>;

/** The defaults of C xenstored 4.17. */
export const XENSTORED_DEFAULT_QUOTAS: SimXenStoreLimits = Object.freeze({
  entriesPerDomain: 1000,
  watchesPerDomain: 128,
  nodeSize: 2048,
  transactionsPerConnection: 10,
  permsPerNode: 5,
  nodesPerTransaction: 1024,
  pathLength: XENSTORE_REL_PATH_MAX,
});

/** Construction options of SimXenStore. */
export interface SimXenStoreOptions {
  readonly quotas?: SimXenStoreQuotas;
  /**
   * Whether a domain exists in the (simulated) hypervisor, used where C
   * asks Xen (domain_alloc_permrefs, INTRODUCE). Default: the domains
   * introduced to this store.
   */
  readonly domainExists?: (domid: number) => boolean;
}

/** What `inspect` returns for one node. */
export interface SimXenStoreNodeInfo {
  readonly value: Uint8Array;
  readonly children: readonly string[];
  /** The permissions in wire form ("n0", "r5", ...). */
  readonly permissions: readonly string[];
  readonly generation: number;
}

/** Leak-check counters of the store. */
export interface SimXenStoreStats {
  readonly connections: number;
  readonly watches: number;
  readonly transactions: number;
  readonly nodes: number;
}

/** One live connection, as `connectionInfo` reports it (for leak reports). */
export interface SimXenStoreConnectionInfo {
  /** The domain whose identity the connection has. */
  readonly domid: number;
  /** The daemon's number for it (1, 2, ... in order of connection). */
  readonly serial: number;
  /** Its label, e.g. "simulated xenstored: domain 1, process 2". */
  readonly description: string;
  /** The paths (or "@..." names) of its watches, in registration order. */
  readonly watches: readonly string[];
  /** Its open transactions. */
  readonly transactions: number;
}

/** The value of a node without data (shared: records never change their bytes). */
const NO_DATA = new Uint8Array(0);

/** DOMID_SELF (xen.h). */
const DOMID_SELF = 0x7ff0;

const LETTER: Record<number, string> = { 0: "n", 1: "r", 2: "w", 3: "b" };

/** Formats one permission entry as xs_perm_to_string does (the ignore flag is not shown). */
function permString(p: Perm): string {
  return `${LETTER[p.bits & (PERM_READ | PERM_WRITE)]}${p.domid}`;
}

/** C atoi: leading whitespace, a sign and digits; anything else gives 0. */
function atoi(text: string): number {
  const m = /^[ \t\n\v\f\r]*([+-]?[0-9]+)/.exec(text);
  if (!m) return 0;
  const n = Number.parseInt(m[1], 10);
  return Number.isFinite(n) ? n | 0 : 0;
}

/** strtol(p, &end, 0) that must consume the whole string (xs_strings_to_perms). */
function strtolWhole(text: string): number | undefined {
  const m = /^[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(text);
  if (!m) return undefined;
  const body = m[2];
  const v = /^0[xX]/.test(body)
    ? Number.parseInt(body.slice(2), 16)
    : body.length > 1 && body.startsWith("0")
    ? Number.parseInt(body, 8)
    : Number.parseInt(body, 10);
  return (m[1] === "-" ? -v : v) >>> 0;
}

/** The NUL-terminated strings of a payload, at most `max` (get_strings :1010-1027). */
function getStrings(payload: Uint8Array, max: number): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < payload.length && out.length < max; i++) {
    if (payload[i] === 0) {
      out.push(binaryString(payload.subarray(start, i)));
      start = i + 1;
    }
  }
  return out;
}

/** onearg (:1198-1207): exactly one NUL, at the end; else undefined. */
function oneArg(payload: Uint8Array): string | undefined {
  if (payload.length === 0 || payload.indexOf(0) !== payload.length - 1) return undefined;
  return binaryString(payload.subarray(0, payload.length - 1));
}

/** xs_count_strings: the number of NUL bytes. */
function countStrings(payload: Uint8Array): number {
  let n = 0;
  for (const b of payload) if (b === 0) n++;
  return n;
}

const VALID_CHARS = /^[A-Za-z0-9\-/_@]*$/;

/** What one request works with. */
interface Request {
  readonly conn: SimXenStoreConnection;
  readonly msg: XsMessage;
  /** The transaction the request runs in (conn->transaction), if any. */
  readonly tx: Transaction | undefined;
  readonly privileged: boolean;
}

/**
 * The simulated xenstored. Implements XenStoreServer: `connect(domid)`
 * gives a client transport with the identity of domain `domid`.
 * Single-threaded; every method completes synchronously except that
 * request processing and output delivery happen in microtasks.
 */
export class SimXenStore implements XenStoreServer {
  /** The quotas in force (C xenstored 4.17 defaults unless configured). */
  readonly quotas: SimXenStoreLimits;
  readonly #db: Database;
  readonly #connections = new Set<SimXenStoreConnection>();
  readonly #introduced = new Set<number>();
  readonly #shutdown = new Set<number>();
  readonly #targets = new Map<number, number>();
  readonly #special = new Map<string, Perm[]>([
    ["@releaseDomain", [{ domid: 0, bits: PERM_NONE, ignore: false }]],
    ["@introduceDomain", [{ domid: 0, bits: PERM_NONE, ignore: false }]],
  ]);
  readonly #domainExists: (domid: number) => boolean;
  #serial = 0;
  /** Connections with output queued by the request being processed. */
  readonly #dirty = new Set<SimXenStoreConnection>();

  /**
   * Creates the store with the nodes C xenstored starts with ("/",
   * "/tool", "/tool/xenstored", all "n0"; setup_structure :2376-2396).
   * No domain is introduced yet (SimHypervisor introduces dom0).
   * XenUsageError for a quota that is not a positive integer.
   */
  constructor(options: SimXenStoreOptions = {}) {
    const q = { ...XENSTORED_DEFAULT_QUOTAS, ...options.quotas };
    for (const [name, v] of Object.entries(q)) {
      if (!(Number.isInteger(v) && v >= 1)) {
        throw new XenUsageError(`quotas.${name} must be a positive integer, got ${String(v)}`);
      }
    }
    q.pathLength = Math.min(q.pathLength, XENSTORE_REL_PATH_MAX);
    this.quotas = Object.freeze(q);
    this.#db = new Database({ nodesPerTransaction: q.nodesPerTransaction });
    this.#domainExists = options.domainExists ?? ((d) => this.#introduced.has(d));
    const n0: Perm[] = [{ domid: 0, bits: PERM_NONE, ignore: false }];
    const empty = new Uint8Array(0);
    this.#db.write({ name: "/", data: empty, children: ["tool"], perms: n0 }, undefined, true);
    this.#db.write(
      { name: "/tool", data: empty, children: ["xenstored"], perms: n0 },
      undefined,
      true,
    );
    this.#db.write(
      { name: "/tool/xenstored", data: empty, children: [], perms: n0 },
      undefined,
      true,
    );
  }

  /**
   * XenStoreServer.connect: a new connection with the identity of domain
   * `domid` (0 = privileged dom0). Its implicit path for relative paths is
   * /local/domain/<domid>. XenUsageError for a domid outside 0..65535 or a
   * domain not introduced to the store. The caller owns the transport.
   */
  connect(domid: number, label?: string): XenStoreTransport {
    return this.openConnection(domid, label);
  }

  /** connect() with the concrete type (for the simulator's processes). */
  openConnection(domid: number, label?: string): SimXenStoreConnection {
    if (!(Number.isInteger(domid) && domid >= 0 && domid <= 0xffff)) {
      throw new XenUsageError(`domid must be an integer in 0..65535, got ${String(domid)}`);
    }
    if (!this.#introduced.has(domid)) {
      throw new XenUsageError(`domain ${domid} is not introduced to the simulated xenstored`);
    }
    const conn = new SimXenStoreConnection(
      { receive: (c, m) => this.#receive(c, m), forget: (c) => this.#forget(c) },
      domid,
      ++this.#serial,
      label,
    );
    this.#connections.add(conn);
    return conn;
  }

  /**
   * The toolstack's part of creating a domain, then XS_INTRODUCE: creates
   * /local/domain/<domid> as libxl does (libxl__domain_make: the directory,
   * device and control "n0 r<domid>"; control/shutdown, data, drivers,
   * feature, attr and error owned by the domain, "n<domid>"; for dom0 the
   * "domid" and "name" nodes xen-init-dom0 writes), marks the domain
   * introduced and fires @introduceDomain (introduce_domain,
   * xenstored_domain.c:600-640). A guest given a `name` also gets the
   * "name" node libxl writes ("n0 r<domid>"). Does nothing for a domain
   * already introduced. XenUsageError for a bad domid or a name that is not
   * a non-empty string.
   */
  introduceDomain(domid: number, name?: string): void {
    if (!(Number.isInteger(domid) && domid >= 0 && domid < DOMID_SELF)) {
      throw new XenUsageError(`domid must be an integer in 0..${DOMID_SELF - 1}, got ${domid}`);
    }
    if (name !== undefined && (typeof name !== "string" || name === "")) {
      throw new XenUsageError(`name must be a non-empty string, got ${String(name)}`);
    }
    if (this.#introduced.has(domid)) return;
    this.#introduced.add(domid);
    this.#shutdown.delete(domid);
    const path = `/local/domain/${domid}`;
    const ro = `n0 r${domid}`;
    const rw = `n${domid}`;
    if (domid === 0) {
      this.#toolstackWrite(path, undefined, "n0");
      this.#toolstackWrite(`${path}/domid`, "0", "n0");
      this.#toolstackWrite(`${path}/name`, "Domain-0", "n0");
    } else {
      this.#toolstackWrite(path, undefined, ro);
      for (const sub of ["device", "control"]) {
        this.#toolstackWrite(`${path}/${sub}`, undefined, ro);
      }
      for (const sub of ["control/shutdown", "data", "drivers", "feature", "attr", "error"]) {
        this.#toolstackWrite(`${path}/${sub}`, undefined, rw);
      }
      this.#toolstackWrite(`${path}/domid`, String(domid), ro);
      if (name !== undefined) this.#toolstackWrite(`${path}/name`, name, ro);
    }
    this.#fire(undefined, "@introduceDomain", undefined, true, undefined);
    this.#flushAll();
  }

  /**
   * The domain shut down or crashed: fires @releaseDomain once per shutdown
   * (check_domains, xenstored_domain.c:344-383). Returns false (and fires
   * nothing) when already reported or not introduced.
   */
  domainShutdown(domid: number): boolean {
    if (!this.#introduced.has(domid) || this.#shutdown.has(domid)) return false;
    this.#shutdown.add(domid);
    this.#fire(undefined, "@releaseDomain", undefined, true, undefined);
    this.#flushAll();
    return true;
  }

  /**
   * The domain was destroyed: its connections end (their sinks get an
   * Error), libxl removes /local/domain/<domid> (firing watches), the
   * permission entries naming it stop applying (XS_PERM_IGNORE), and
   * destroy_domain fires @releaseDomain (xenstored_domain.c:306-334).
   * Nothing happens for a domain not introduced. XenUsageError for dom0.
   */
  destroyDomain(domid: number): void {
    if (domid === 0) throw new XenUsageError("dom0 cannot be destroyed");
    if (!this.#introduced.has(domid)) return;
    this.#endDomainConnections(domid, new Error(`domain ${domid} was destroyed`));
    this.#toolstackRm(`/local/domain/${domid}`);
    this.#forgetDomain(domid);
    this.#fire(undefined, "@releaseDomain", undefined, true, undefined);
    this.#flushAll();
  }

  /** Whether `domid` is introduced (what IS_DOMAIN_INTRODUCED answers). */
  isIntroduced(domid: number): boolean {
    return this.#introduced.has(domid);
  }

  /**
   * A node of the main database (outside any transaction), for inspection
   * and tests, or undefined when there is none. The value is a copy.
   */
  inspect(path: string): SimXenStoreNodeInfo | undefined {
    const node = this.#db.main(path);
    if (!node) return undefined;
    return {
      value: node.data.slice(),
      children: [...node.children],
      permissions: node.perms.map(permString),
      generation: node.generation,
    };
  }

  /** Every path of the main database, sorted. */
  paths(): string[] {
    return [...this.#db.names()].sort();
  }

  /** Nodes owned by `domid` (its entry count). */
  entries(domid: number): number {
    return this.#db.entries(domid);
  }

  /**
   * Every live connection (neither closed by its client nor ended by the
   * daemon), in order of connection, with its watches and open
   * transactions. A snapshot; throws nothing.
   */
  connectionInfo(): SimXenStoreConnectionInfo[] {
    return [...this.#connections].sort((a, b) => a.serial - b.serial).map((c) => ({
      domid: c.domid,
      serial: c.serial,
      description: c.description,
      watches: c.watches.map((w) => w.node),
      transactions: c.transactions.size,
    }));
  }

  /**
   * Ends every live connection as if the daemon went away: watches and
   * transactions are dropped now, each client's sink gets
   * end(Error(`reason`)) in a microtask. Returns how many were ended.
   * Throws nothing; the store and its nodes stay as they are.
   */
  endConnections(reason: string): number {
    const all = [...this.#connections];
    for (const c of all) c.end(new Error(reason));
    return all.length;
  }

  /** Leak-check counters. */
  stats(): SimXenStoreStats {
    let watches = 0;
    let transactions = 0;
    for (const c of this.#connections) {
      watches += c.watches.length;
      transactions += c.transactions.size;
    }
    return { connections: this.#connections.size, watches, transactions, nodes: this.#db.size };
  }

  // ---------------------------------------------------------------------
  // Connections and dispatch

  #receive(conn: SimXenStoreConnection, msg: XsMessage): void {
    queueMicrotask(() => {
      if (!conn.alive) return;
      this.#process(conn, msg);
      this.#flushAll();
    });
  }

  #forget(conn: SimXenStoreConnection): void {
    this.#connections.delete(conn);
    conn.watches = [];
    conn.transactions.clear();
    this.#dirty.delete(conn);
  }

  #flushAll(): void {
    const dirty = [...this.#dirty];
    this.#dirty.clear();
    for (const c of dirty) c.flush();
  }

  #reply(req: Request, type: number, payload: Uint8Array): void {
    // send_reply (:1046-1056): a reply over the payload limit becomes E2BIG.
    if (payload.length > XENSTORE_PAYLOAD_MAX) {
      this.#error(req, "E2BIG");
      return;
    }
    req.conn.queueReply(type, req.msg.reqId, req.msg.txId, payload);
    this.#dirty.add(req.conn);
  }

  #ack(req: Request): void {
    this.#reply(req, req.msg.type, binaryBytes("OK\0"));
  }

  #error(req: Request, code: string): void {
    req.conn.queueReply(XsType.ERROR, req.msg.reqId, req.msg.txId, binaryBytes(`${code}\0`));
    this.#dirty.add(req.conn);
  }

  /** process_message (:2000-2046). */
  #process(conn: SimXenStoreConnection, msg: XsMessage): void {
    const privileged = !this.#unprivileged(conn.domid);
    const base: Request = { conn, msg, tx: undefined, privileged };
    const handler = SimXenStore.#handlers.get(msg.type);
    if (!handler) return this.#error(base, "ENOSYS");
    if (handler.privileged && !privileged) return this.#error(base, "EACCES");
    let tx: Transaction | undefined;
    if (!handler.noTx && msg.txId !== 0) {
      tx = conn.transactions.get(msg.txId);
      if (!tx) return this.#error(base, "ENOENT");
    }
    const req: Request = { ...base, tx };
    try {
      handler.run(this, req);
    } catch (e) {
      if (!(e instanceof StoreErrno)) throw e;
      this.#error(req, e.code);
    }
  }

  /** domain_is_unprivileged (xenstored_domain.c:400-409): every domain but dom0. */
  #unprivileged(domid: number): boolean {
    return domid !== 0;
  }

  #endDomainConnections(domid: number, error: Error): void {
    for (const c of [...this.#connections]) if (c.domid === domid) c.end(error);
  }

  #forgetDomain(domid: number): void {
    this.#introduced.delete(domid);
    this.#shutdown.delete(domid);
    this.#targets.delete(domid);
    for (const [d, t] of [...this.#targets]) if (t === domid) this.#targets.delete(d);
    this.#db.ignoreDomain(domid);
    // remove_domid_from_perm (xenstored_domain.c:285-304) for the special nodes.
    for (const [name, perms] of this.#special) {
      this.#special.set(name, perms.filter((p, i) => i === 0 || p.domid !== domid));
    }
  }

  // ---------------------------------------------------------------------
  // Permissions and paths

  /** perm_for_conn (:861-879). */
  #permFor(domid: number, perms: readonly Perm[]): number {
    const target = this.#targets.get(domid);
    if (!this.#unprivileged(domid) || perms[0].domid === domid || perms[0].domid === target) {
      return PERM_ALL;
    }
    for (let i = 1; i < perms.length; i++) {
      const p = perms[i];
      if (!p.ignore && (p.domid === domid || p.domid === target)) return p.bits;
    }
    return perms[0].bits;
  }

  /** canonicalize (:1229-1239) with get_implicit_path (xenstored_domain.c:832-837). */
  #canonical(conn: SimXenStoreConnection, path: string): string {
    if (path.startsWith("/") || path.startsWith("@")) return path;
    return `/local/domain/${conn.domid}/${path}`;
  }

  /** is_valid_nodename (:1173-1196). */
  #validName(name: string): boolean {
    if (!name.startsWith("/")) return false;
    if (name.endsWith("/") && name !== "/") return false;
    if (name.includes("//")) return false;
    const local = /^\/local\/domain\/[0-9]{1,5}\//.exec(name);
    const localOff = local ? local[0].length : 0;
    if (name.length > localOff + this.quotas.pathLength) return false;
    return VALID_CHARS.test(name);
  }

  /** get_node (:957-983) with errno_from_parents / ask_parents (:897-947). */
  #getNode(req: Request, name: string | undefined, perm: number): NodeRecord {
    if (name === undefined || !this.#validName(name)) throw new StoreErrno("EINVAL");
    const node = this.#read(req, name);
    let code = "ENOENT";
    if (node) {
      if ((this.#permFor(req.conn.domid, node.perms) & perm) === perm) return node;
      code = "EACCES";
    }
    // Clean up errno if they weren't supposed to know: the nearest existing ancestor decides.
    let parentPerm = PERM_NONE;
    let at = name;
    while (at !== "/") {
      at = parentOf(at);
      const parent = this.#read(req, at);
      if (parent) {
        parentPerm = this.#permFor(req.conn.domid, parent.perms);
        break;
      }
    }
    throw new StoreErrno(parentPerm & perm ? code : "EACCES");
  }

  #read(req: Request, name: string): NodeRecord | undefined {
    return this.#db.read(name, req.tx, req.privileged);
  }

  /**
   * write_node (:838-857): the record size quota for unprivileged callers
   * (write_node_raw :806-809; a failure inside a transaction fails it).
   */
  #write(req: Request, node: Omit<NodeRecord, "generation">): NodeRecord {
    this.#checkSize(req, node, 0);
    return this.#db.write(node, req.tx, req.privileged);
  }

  /** The quota check of write_node_raw for `node` with `extra` more bytes of child list. */
  #checkSize(req: Request, node: Omit<NodeRecord, "generation">, extra: number): void {
    if (req.privileged) return;
    if (recordSize({ ...node, generation: 0 }) + extra >= this.quotas.nodeSize) {
      if (req.tx) req.tx.fail = true;
      throw new StoreErrno(
        "ENOSPC",
        `node ${node.name} would exceed ${this.quotas.nodeSize} bytes`,
      );
    }
  }

  /** domain_entry_inc / domain_entry_dec (xenstored_domain.c:961-1076). */
  #entryChange(req: Request, domid: number, delta: number): void {
    req.tx?.addEntries(domid, delta);
  }

  // ---------------------------------------------------------------------
  // Node operations

  /** create_node with construct_node (:1386-1530). Returns the new node. */
  #create(req: Request, name: string, data: Uint8Array): NodeRecord {
    const names = [name];
    let parentName = parentOf(name);
    let parent = this.#read(req, parentName);
    while (!parent) {
      if (parentName === "/") throw new StoreErrno("ENOENT");
      names.push(parentName);
      parentName = parentOf(parentName);
      parent = this.#read(req, parentName);
    }
    if (req.tx) req.tx.nodeCreated = true;
    // Walk down constructing the missing nodes; each inherits its parent's
    // permissions, and an unprivileged creator owns what it creates.
    const built: Omit<NodeRecord, "generation">[] = [];
    let above: Omit<NodeRecord, "generation"> = parent;
    const topChild = baseOf(names[names.length - 1]);
    for (let level = names.length - 1; level >= 0; level--) {
      const perms = above.perms.map((p) => ({ ...p }));
      if (!req.privileged) perms[0] = { ...perms[0], domid: req.conn.domid };
      const node = {
        name: names[level],
        data: level === 0 ? data : NO_DATA,
        children: level === 0 ? [] : [baseOf(names[level - 1])],
        perms,
      };
      built.push(node);
      above = node;
    }
    // Write bottom up: quota per new node, then the existing parent.
    const written: string[] = [];
    try {
      for (let i = built.length - 1; i >= 0; i--) {
        const node = built[i];
        if (!req.privileged && this.#db.entries(req.conn.domid) >= this.quotas.entriesPerDomain) {
          throw new StoreErrno("ENOSPC", `domain ${req.conn.domid} owns too many nodes`);
        }
        this.#write(req, node);
        written.push(node.name);
        this.#entryChange(req, node.perms[0].domid, 1);
      }
      this.#checkSize(req, parent, topChild.length + 1);
      this.#db.setChildren(parent, () => [...parent.children, topChild], req.tx, req.privileged, {
        add: topChild,
      });
    } catch (e) {
      // Undo what was written (destroy_node; in a transaction it fails).
      for (const n of written) {
        this.#db.delete(n, req.tx, req.privileged);
        const perms = built.find((b) => b.name === n)?.perms;
        if (perms) this.#entryChange(req, perms[0].domid, -1);
        if (req.tx) req.tx.fail = true;
      }
      throw e;
    }
    return this.#read(req, name) as NodeRecord;
  }

  /** rm_node with delnode_sub (:1628-1690): post-order, firing per node. */
  #rmNode(req: Request, name: string): void {
    const parent = this.#read(req, parentOf(name));
    if (!parent) throw new StoreErrno("EINVAL");
    const walk = (path: string, node: NodeRecord, parentNode: NodeRecord | undefined) => {
      for (const child of node.children) {
        const c = this.#read(req, childPath(path, child));
        if (c) walk(c.name, c, node);
      }
      this.#db.delete(path, req.tx, req.privileged);
      this.#fire(req, path, node, path !== name, undefined, parentNode);
      this.#entryChange(req, node.perms[0].domid, -1);
    };
    const root = this.#read(req, name);
    if (root) walk(name, root, undefined);
    const fresh = this.#read(req, parent.name) ?? parent;
    const base = baseOf(name);
    // delete_child (:1599-1615): a parent that does not list the node is
    // corruption, EIO, after the subtree was deleted. It happens inside a
    // transaction that read the node before another connection removed it
    // and never read the parent: the parent comes from the main database.
    if (!fresh.children.includes(base)) throw new StoreErrno("EIO");
    this.#db.setChildren(
      fresh,
      () => fresh.children.filter((c) => c !== base),
      req.tx,
      req.privileged,
      {
        remove: base,
      },
    );
  }

  // ---------------------------------------------------------------------
  // Watches

  /** is_child (xenstored_watch.c:56-72). */
  static #isChild(child: string, parent: string): boolean {
    if (parent === "/") return true;
    if (!child.startsWith(parent)) return false;
    return child.length === parent.length || child[parent.length] === "/";
  }

  /** watch_permitted (xenstored_watch.c:89-125), reading the main database. */
  #watchPermitted(
    domid: number,
    name: string,
    node: NodeRecord | undefined,
    perms: readonly Perm[] | undefined,
    parentNode: NodeRecord | undefined,
  ): boolean {
    if (perms && this.#permFor(domid, perms) & PERM_READ) return true;
    const n = node ?? this.#db.main(name);
    if (!n) return false;
    if (this.#permFor(domid, n.perms) & PERM_READ) return true;
    const parent = parentNode ?? (name === "/" ? undefined : this.#db.main(parentOf(name)));
    if (!parent) return false;
    return (this.#permFor(domid, parent.perms) & PERM_READ) !== 0;
  }

  /**
   * fire_watches (xenstored_watch.c:134-170): inside a transaction the
   * event is queued on the accessed node (queue_watches,
   * xenstored_transaction.c:343-365: a non-exact event replaces an exact
   * one); otherwise every connection allowed to see it gets one event per
   * matching watch.
   */
  #fire(
    req: Request | undefined,
    name: string,
    node: NodeRecord | undefined,
    exact: boolean,
    perms: readonly Perm[] | undefined,
    parentNode?: NodeRecord,
  ): void {
    if (req?.tx) {
      const a = req.tx.accessed.get(name);
      if (!a) {
        req.tx.fail = true;
        return;
      }
      if (!a.fireWatch) {
        a.fireWatch = true;
        a.watchExact = exact;
      } else if (!exact) {
        a.watchExact = false;
      }
      return;
    }
    const special = name.startsWith("@");
    for (const conn of this.#connections) {
      if (special) {
        const p = this.#special.get(name);
        if (!p || !(this.#permFor(conn.domid, p) & PERM_READ)) continue;
      } else if (!this.#watchPermitted(conn.domid, name, node, perms, parentNode)) {
        continue;
      }
      for (const w of conn.watches) {
        const match = exact ? name === w.node : SimXenStore.#isChild(name, w.node);
        if (match && conn.queueEvent(watchPath(w, name), w.token)) this.#dirty.add(conn);
      }
    }
  }

  // ---------------------------------------------------------------------
  // Toolstack helpers (privileged, outside any connection)

  #toolstack: Request | undefined;

  #toolstackRequest(): Request {
    this.#toolstack ??= {
      conn: new SimXenStoreConnection({ receive: () => {}, forget: () => {} }, 0, 0, "toolstack"),
      msg: { type: XsType.WRITE, reqId: 0, txId: 0, payload: new Uint8Array(0) },
      tx: undefined,
      privileged: true,
    };
    return this.#toolstack;
  }

  #toolstackWrite(path: string, value: string | undefined, perms: string): void {
    const req = this.#toolstackRequest();
    let node = this.#db.main(path);
    if (!node) node = this.#create(req, path, value ? binaryBytes(value) : NO_DATA);
    else if (value !== undefined) node = this.#write(req, { ...node, data: binaryBytes(value) });
    const parsed = perms.split(" ").map((s) => ({
      domid: Number(s.slice(1)),
      bits: "nrwb".indexOf(s[0]),
      ignore: false,
    }));
    node = this.#write(req, { ...node, perms: parsed });
    this.#fire(undefined, path, node, false, undefined);
  }

  #toolstackRm(path: string): void {
    const req = this.#toolstackRequest();
    if (this.#db.main(path)) this.#rmNode(req, path);
  }

  // ---------------------------------------------------------------------
  // Request handlers (the wire_funcs table, :1965-1990)

  /** READ <path>| -> the raw value, no NUL (do_read, xenstored_core.c:1329-1341). */
  #opRead(req: Request): void {
    const name = this.#nameArg(req);
    const node = this.#getNode(req, name, PERM_READ);
    this.#reply(req, XsType.READ, node.data);
  }

  /** WRITE <path>|<value>: creates missing parents (do_write :1535-1571). */
  #opWrite(req: Request): void {
    const p = req.msg.payload;
    const nul = p.indexOf(0);
    if (nul < 0) throw new StoreErrno("EINVAL");
    const name = this.#canonical(req.conn, binaryString(p.subarray(0, nul)));
    const data = p.slice(nul + 1);
    let node: NodeRecord;
    try {
      const old = this.#getNode(req, name, PERM_WRITE);
      node = this.#write(req, { ...old, data });
    } catch (e) {
      if (!(e instanceof StoreErrno) || e.code !== "ENOENT") throw e;
      node = this.#create(req, name, data);
    }
    this.#fire(req, name, node, false, undefined);
    this.#ack(req);
  }

  /** MKDIR <path>|: OK if it exists, no event then (do_mkdir :1573-1595). */
  #opMkdir(req: Request): void {
    const name = this.#nameArg(req);
    try {
      this.#getNode(req, name, PERM_WRITE);
    } catch (e) {
      if (!(e instanceof StoreErrno) || e.code !== "ENOENT" || name === undefined) throw e;
      const node = this.#create(req, name, new Uint8Array(0));
      this.#fire(req, name, node, false, undefined);
    }
    this.#ack(req);
  }

  /** RM <path>|: a missing node is OK when its parent exists; "/" is EINVAL (do_rm :1692-1727). */
  #opRm(req: Request): void {
    const name = this.#nameArg(req);
    try {
      this.#getNode(req, name, PERM_WRITE);
    } catch (e) {
      if (!(e instanceof StoreErrno) || e.code !== "ENOENT" || name === undefined) throw e;
      // Didn't exist already? Fine, if the parent exists (:1706-1720).
      if (this.#read(req, parentOf(name))) return this.#ack(req);
      throw new StoreErrno("ENOENT");
    }
    if (name === "/") throw new StoreErrno("EINVAL");
    this.#rmNode(req, name as string);
    this.#ack(req);
  }

  /** DIRECTORY <path>| -> child|child|...; E2BIG over 4096 (send_directory :1256-1269). */
  #opDirectory(req: Request): void {
    const node = this.#getNode(req, this.#nameArg(req), PERM_READ);
    this.#reply(req, XsType.DIRECTORY, binaryBytes(node.children.map((c) => `${c}\0`).join("")));
  }

  /** DIRECTORY_PART <path>|<offset>| -> <gen>|children...; an extra NUL ends the list (send_directory_part :1271-1327). */
  #opDirectoryPart(req: Request): void {
    const p = req.msg.payload;
    if (countStrings(p) !== 2) throw new StoreErrno("EINVAL");
    const [path, offText] = getStrings(p, 2);
    const node = this.#getNode(req, this.#canonical(req.conn, path), PERM_READ);
    const children = node.children.map((c) => `${c}\0`).join("");
    const off = atoi(offText) >>> 0;
    const gen = `${node.generation}\0`;
    if (off >= children.length) {
      return this.#reply(req, XsType.DIRECTORY_PART, binaryBytes(`${gen}\0`));
    }
    const maxlen = XENSTORE_PAYLOAD_MAX - gen.length - 1;
    let len = 0;
    let at = off;
    for (;;) {
      const end = children.indexOf("\0", at);
      const childLen = end - at;
      if (!(len + childLen < maxlen)) break;
      len += childLen + 1;
      at = end + 1;
      if (off + len === children.length) break;
    }
    let body = gen + children.slice(off, off + len);
    if (off + len === children.length) body += "\0";
    this.#reply(req, XsType.DIRECTORY_PART, binaryBytes(body));
  }

  /** GET_PERMS <path>| -> perm|perm|... (do_get_perms :1730-1749). */
  #opGetPerms(req: Request): void {
    const node = this.#getNode(req, this.#nameArg(req), PERM_READ);
    this.#reply(
      req,
      XsType.GET_PERMS,
      binaryBytes(node.perms.map((x) => `${permString(x)}\0`).join("")),
    );
  }

  /** SET_PERMS <path>|perm|...: owner or dom0 only; "@" names set the special permissions (do_set_perms :1751-1833). */
  #opSetPerms(req: Request): void {
    const p = req.msg.payload;
    const count = countStrings(p);
    if (count < 2) throw new StoreErrno("EINVAL");
    const num = count - 1;
    if (!req.privileged && num > this.quotas.permsPerNode) throw new StoreErrno("ENOSPC");
    const strings = getStrings(p, count);
    const perms: Perm[] = [];
    for (const text of strings.slice(1)) {
      const bits = "nrwb".indexOf(text[0] ?? "");
      const id = strtolWhole(text.slice(1));
      if (bits < 0 || text.length < 2 || id === undefined) throw new StoreErrno("EINVAL");
      // domain_alloc_permrefs (xenstored_domain.c:1005-1025).
      perms.push({ domid: id, bits, ignore: !this.#domainExists(id) });
    }
    if (perms[0].ignore) throw new StoreErrno("ENOENT");
    const path = strings[0];
    if (path.startsWith("@")) {
      // set_perms_special (xenstored_domain.c:860-879).
      const current = this.#special.get(path);
      if (!current) throw new StoreErrno("EINVAL");
      if (
        (this.#permFor(req.conn.domid, current) & (PERM_WRITE | PERM_OWNER)) !==
          (PERM_WRITE | PERM_OWNER)
      ) {
        throw new StoreErrno("EACCES");
      }
      this.#special.set(path, perms);
      return this.#ack(req);
    }
    const name = this.#canonical(req.conn, path);
    const node = this.#getNode(req, name, PERM_WRITE | PERM_OWNER);
    if (!req.privileged && perms[0].domid !== node.perms[0].domid) throw new StoreErrno("EPERM");
    const written = this.#write(req, { ...node, perms });
    this.#entryChange(req, node.perms[0].domid, -1);
    this.#entryChange(req, perms[0].domid, 1);
    this.#fire(req, name, written, false, node.perms);
    this.#ack(req);
  }

  /** WATCH <path>|<token>|: OK, then the initial event (do_watch, xenstored_watch.c:246-284). */
  #opWatch(req: Request): void {
    const [rawPath, token] = getStrings(req.msg.payload, 2);
    if (token === undefined) throw new StoreErrno("EINVAL");
    const conn = req.conn;
    let node = rawPath;
    let relativeTo: string | undefined;
    // check_watch_path (xenstored_watch.c:178-200).
    if (rawPath.startsWith("@")) {
      if (rawPath.length > XENSTORE_REL_PATH_MAX) throw new StoreErrno("EINVAL");
    } else {
      if (!rawPath.startsWith("/")) relativeTo = `/local/domain/${conn.domid}`;
      node = this.#canonical(conn, rawPath);
      if (!this.#validName(node)) throw new StoreErrno("EINVAL");
    }
    if (conn.watches.some((w) => w.node === node && w.token === token)) {
      throw new StoreErrno("EEXIST");
    }
    if (!req.privileged && this.#domainWatches(conn.domid) > this.quotas.watchesPerDomain) {
      throw new StoreErrno("E2BIG");
    }
    const watch: SimWatch = { node, token, relativeTo };
    conn.watches.push(watch);
    this.#ack(req);
    // We fire once up front (:278-281).
    if (conn.queueEvent(watchPath(watch, node), token)) this.#dirty.add(conn);
  }

  /** UNWATCH <path>|<token>|: ENOENT when unknown (do_unwatch, xenstored_watch.c:286-310). */
  #opUnwatch(req: Request): void {
    const [rawPath, token] = getStrings(req.msg.payload, 2);
    if (token === undefined) throw new StoreErrno("EINVAL");
    const node = this.#canonical(req.conn, rawPath);
    const i = req.conn.watches.findIndex((w) => w.node === node && w.token === token);
    if (i < 0) throw new StoreErrno("ENOENT");
    req.conn.watches.splice(i, 1);
    this.#ack(req);
  }

  /** TRANSACTION_START | -> <id>|; ids per connection from 1 (do_transaction_start, xenstored_transaction.c:485-528). */
  #opTransactionStart(req: Request): void {
    const conn = req.conn;
    if (req.tx) throw new StoreErrno("EBUSY");
    if (!req.privileged && conn.transactions.size > this.quotas.transactionsPerConnection) {
      throw new StoreErrno("ENOSPC");
    }
    let id: number;
    do {
      id = conn.nextTransactionId;
      conn.nextTransactionId = (conn.nextTransactionId + 1) >>> 0;
    } while (id === 0 || conn.transactions.has(id));
    conn.transactions.set(id, new Transaction(id, ++this.#db.generation));
    this.#reply(req, XsType.TRANSACTION_START, binaryBytes(`${id}\0`));
  }

  /** TRANSACTION_END T| commits (EAGAIN on a conflict), F| aborts (do_transaction_end, xenstored_transaction.c:554-595). */
  #opTransactionEnd(req: Request): void {
    const arg = oneArg(req.msg.payload);
    if (arg !== "T" && arg !== "F") throw new StoreErrno("EINVAL");
    const tx = req.tx;
    if (!tx) throw new StoreErrno("ENOENT");
    req.conn.transactions.delete(tx.id);
    const done: Request = { ...req, tx: undefined };
    if (arg === "T") {
      if (tx.fail) throw new StoreErrno("ENOMEM");
      // transaction_fix_domains (xenstored_transaction.c:535-551).
      const checkQuota = tx.nodeCreated && !req.privileged;
      for (const [domid, delta] of tx.entryDelta) {
        const cnt = Math.max(0, this.#db.entries(domid) + delta);
        if (checkQuota && this.#unprivileged(domid) && cnt >= this.quotas.entriesPerDomain) {
          throw new StoreErrno("ENOSPC");
        }
      }
      if (!this.#db.unchanged(tx)) throw new StoreErrno("EAGAIN");
      for (const a of this.#db.commit(tx)) {
        this.#fire(undefined, a.name, undefined, a.watchExact, a.perms);
      }
    }
    this.#ack(done);
  }

  /** GET_DOMAIN_PATH <domid>| -> /local/domain/<domid>| (xenstored_domain.c:768-784). */
  #opGetDomainPath(req: Request): void {
    const arg = oneArg(req.msg.payload);
    if (arg === undefined) throw new StoreErrno("EINVAL");
    this.#reply(req, XsType.GET_DOMAIN_PATH, binaryBytes(`/local/domain/${atoi(arg) >>> 0}\0`));
  }

  /** IS_DOMAIN_INTRODUCED <domid>| -> T| or F| (xenstored_domain.c:786-806). */
  #opIsDomainIntroduced(req: Request): void {
    const arg = oneArg(req.msg.payload);
    if (arg === undefined) throw new StoreErrno("EINVAL");
    const domid = atoi(arg) >>> 0;
    const yes = domid === DOMID_SELF || this.#introduced.has(domid);
    this.#reply(req, XsType.IS_DOMAIN_INTRODUCED, binaryBytes(yes ? "T\0" : "F\0"));
  }

  /** RESET_WATCHES |: drops the caller's watches and transactions (xenstored_domain.c:808-817). */
  #opResetWatches(req: Request): void {
    req.conn.watches = [];
    req.conn.transactions.clear();
    this.#ack({ ...req, tx: undefined });
  }

  /** INTRODUCE <domid>|<gfn>|<port>|: introduces a live domain, or resets its connections (xenstored_domain.c:642-677). */
  #opIntroduce(req: Request): void {
    const v = getStrings(req.msg.payload, 3);
    if (v.length < 3) throw new StoreErrno("EINVAL");
    const domid = atoi(v[0]) >>> 0;
    if ((atoi(v[2]) >>> 0) === 0) throw new StoreErrno("EINVAL");
    if (!this.#domainExists(domid) || domid >= DOMID_SELF) throw new StoreErrno("EINVAL");
    if (!this.#introduced.has(domid)) {
      this.#introduced.add(domid);
      this.#shutdown.delete(domid);
      this.#fire(undefined, "@introduceDomain", undefined, true, undefined);
    } else {
      // domain_conn_reset (xenstored_domain.c:549-563).
      for (const c of this.#connections) {
        if (c.domid === domid && c !== req.conn) {
          c.watches = [];
          c.transactions.clear();
        }
      }
    }
    this.#ack(req);
  }

  /** onearg_domain (xenstored_domain.c:719-734). */
  #domainArg(req: Request): number {
    const arg = oneArg(req.msg.payload);
    if (arg === undefined) throw new StoreErrno("EINVAL");
    const domid = atoi(arg) >>> 0;
    if (domid === 0) throw new StoreErrno("EINVAL");
    if (!this.#introduced.has(domid)) throw new StoreErrno("ENOENT");
    return domid;
  }

  /** RELEASE <domid>|: ends the domain's connections and fires @releaseDomain (xenstored_domain.c:736-750). */
  #opRelease(req: Request): void {
    const domid = this.#domainArg(req);
    this.#endDomainConnections(domid, new Error(`domain ${domid} was released from xenstored`));
    this.#forgetDomain(domid);
    this.#fire(undefined, "@releaseDomain", undefined, true, undefined);
    this.#ack(req);
  }

  /** RESUME <domid>|: clears the reported shutdown (xenstored_domain.c:752-766). */
  #opResume(req: Request): void {
    this.#shutdown.delete(this.#domainArg(req));
    this.#ack(req);
  }

  /** SET_TARGET <domid>|<target>|: the domain gets the target's rights (xenstored_domain.c:691-717). */
  #opSetTarget(req: Request): void {
    const v = getStrings(req.msg.payload, 2);
    if (v.length < 2) throw new StoreErrno("EINVAL");
    const domid = atoi(v[0]) >>> 0;
    const target = atoi(v[1]) >>> 0;
    if (!this.#introduced.has(domid) || !this.#introduced.has(target)) {
      throw new StoreErrno("ENOENT");
    }
    this.#targets.set(domid, target);
    this.#ack(req);
  }

  /** CONTROL <cmd>|...: "check", "print" and "help" are modelled; other commands give EINVAL. */
  #opControl(req: Request): void {
    const p = req.msg.payload;
    if (p.length === 0 || p[p.length - 1] !== 0) throw new StoreErrno("EINVAL");
    const [cmd] = getStrings(p, 1);
    // do_control (xenstored_control.c): only the side-effect-free commands are modelled.
    if (cmd === "check" || cmd === "print") return this.#ack(req);
    if (cmd === "help") {
      return this.#reply(req, XsType.CONTROL, binaryBytes("check\nprint <string>\nhelp\n\0"));
    }
    throw new StoreErrno("EINVAL");
  }

  #nameArg(req: Request): string | undefined {
    const arg = oneArg(req.msg.payload);
    return arg === undefined ? undefined : this.#canonical(req.conn, arg);
  }

  /** Watches of all connections of `domid` (domain->nbwatch). */
  #domainWatches(domid: number): number {
    let n = 0;
    for (const c of this.#connections) if (c.domid === domid) n += c.watches.length;
    return n;
  }

  /** The wire_funcs table (xenstored_core.c:1965-1990). */
  static readonly #handlers: ReadonlyMap<number, Handler> = new Map<number, Handler>([
    [XsType.CONTROL, { run: (s, r) => s.#opControl(r), privileged: true }],
    [XsType.DIRECTORY, { run: (s, r) => s.#opDirectory(r) }],
    [XsType.READ, { run: (s, r) => s.#opRead(r) }],
    [XsType.GET_PERMS, { run: (s, r) => s.#opGetPerms(r) }],
    [XsType.WATCH, { run: (s, r) => s.#opWatch(r), noTx: true }],
    [XsType.UNWATCH, { run: (s, r) => s.#opUnwatch(r), noTx: true }],
    [XsType.TRANSACTION_START, { run: (s, r) => s.#opTransactionStart(r) }],
    [XsType.TRANSACTION_END, { run: (s, r) => s.#opTransactionEnd(r) }],
    [XsType.INTRODUCE, { run: (s, r) => s.#opIntroduce(r), privileged: true }],
    [XsType.RELEASE, { run: (s, r) => s.#opRelease(r), privileged: true }],
    [XsType.GET_DOMAIN_PATH, { run: (s, r) => s.#opGetDomainPath(r) }],
    [XsType.WRITE, { run: (s, r) => s.#opWrite(r) }],
    [XsType.MKDIR, { run: (s, r) => s.#opMkdir(r) }],
    [XsType.RM, { run: (s, r) => s.#opRm(r) }],
    [XsType.SET_PERMS, { run: (s, r) => s.#opSetPerms(r) }],
    [XsType.IS_DOMAIN_INTRODUCED, { run: (s, r) => s.#opIsDomainIntroduced(r), privileged: true }],
    [XsType.RESUME, { run: (s, r) => s.#opResume(r), privileged: true }],
    [XsType.SET_TARGET, { run: (s, r) => s.#opSetTarget(r), privileged: true }],
    [XsType.RESET_WATCHES, { run: (s, r) => s.#opResetWatches(r) }],
    [XsType.DIRECTORY_PART, { run: (s, r) => s.#opDirectoryPart(r) }],
  ]);
}

/** get_watch_path (xenstored_watch.c:74-86): relative watches see relative paths. */
function watchPath(watch: SimWatch, name: string): string {
  if (!watch.relativeTo) return name;
  let path = name.slice(watch.relativeTo.length);
  if (path.startsWith("/")) path = path.slice(1);
  return path;
}

interface Handler {
  readonly run: (s: SimXenStore, req: Request) => void;
  /** XS_FLAG_PRIV: privileged domains only. */
  readonly privileged?: boolean;
  /** XS_FLAG_NOTID: the tx_id is ignored. */
  readonly noTx?: boolean;
}
