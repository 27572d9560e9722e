/**
 * The node database of the simulated xenstored, modelled on C xenstored
 * 4.17 (tools/xenstore/xenstored_core.c and xenstored_transaction.c at
 * RELEASE-4.17.7): nodes with data, an ordered child list, a permission
 * list and a generation count; a global generation counter; per-domain
 * entry counts; and transactions as copy-on-access overlays that are
 * checked against the main database by generation at commit.
 *
 * Simulator-internal: the request handlers (xenstored.ts) are its only user.
 *
 * @module
 */

/** XS_PERM_* bits (xs_lib.h): READ 1, WRITE 2, OWNER 4 (internal only). */
export const PERM_NONE = 0;
export const PERM_READ = 1;
export const PERM_WRITE = 2;
export const PERM_OWNER = 4;
export const PERM_ALL = PERM_READ | PERM_WRITE | PERM_OWNER;

/** NO_GENERATION: a node that does not exist (xenstored_core.h). */
export const NO_GENERATION = -1;

/**
 * One permission entry. `ignore` is XS_PERM_IGNORE: the entry names a
 * domain that did not exist when it was set, or that died since
 * (domain_alloc_permrefs, domain_adjust_node_perms; xenstored_domain.c:
 * 1005-1050); an ignored entry matches nobody (perm_for_conn :871-874).
 */
export interface Perm {
  readonly domid: number;
  readonly bits: number;
  readonly ignore: boolean;
}

/** One node as stored (a struct xs_tdb_record_hdr record plus its name). */
export interface NodeRecord {
  readonly name: string;
  readonly data: Uint8Array;
  /** Child names in insertion order (add_child appends, :1366-1383). */
  readonly children: readonly string[];
  readonly perms: readonly Perm[];
  readonly generation: number;
}

/** sizeof(struct xs_tdb_record_hdr): u64 generation, 3 x u32, padded to 8. */
const RECORD_HEADER = 24;
/** sizeof(struct xs_permissions): enum perms + unsigned int id. */
const PERM_RECORD = 8;

/** The size C xenstored checks against quota_max_entry_size (write_node_raw :800-809). */
export function recordSize(node: NodeRecord): number {
  const childlen = node.children.reduce((n, c) => n + c.length + 1, 0);
  return RECORD_HEADER + node.perms.length * PERM_RECORD + node.data.length + childlen;
}

/** The parent of an absolute path (get_parent :884-895): "/a/b" -> "/a", "/a" -> "/". */
export function parentOf(name: string): string {
  const slash = name.lastIndexOf("/");
  return slash <= 0 ? "/" : name.slice(0, slash);
}

/** The last component of a path other than "/". */
export function baseOf(name: string): string {
  return name.slice(name.lastIndexOf("/") + 1);
}

/** child_name (:1838-1843). */
export function childPath(parent: string, child: string): string {
  return parent === "/" ? `/${child}` : `${parent}/${child}`;
}

/** One node a transaction touched (struct accessed_node, xenstored_transaction.c:120-150). */
export interface AccessedNode {
  readonly name: string;
  /** Generation in the main database at first access (NO_GENERATION if absent). */
  readonly generation: number;
  /** The node's permissions at first access (for watch permission checks at commit). */
  readonly perms?: readonly Perm[];
  /** The transaction's copy: a record, or undefined when absent in the transaction's view. */
  local: NodeRecord | undefined;
  modified: boolean;
  fireWatch: boolean;
  watchExact: boolean;
}

/** One open transaction (struct transaction, xenstored_transaction.c:152-180). */
export class Transaction {
  /** Accessed nodes in first-access order (the C list is appended to). */
  readonly accessed: Map<string, AccessedNode> = new Map();
  /** Entry count changes per owner domain (changed_domains). */
  readonly entryDelta: Map<number, number> = new Map();
  /** A node was created (ta_node_created). */
  nodeCreated = false;
  /** The transaction can no longer commit (fail_transaction): END "T" gives ENOMEM. */
  fail = false;
  constructor(readonly id: number, readonly generation: number) {}

  /** transaction_entry_inc / _dec. */
  addEntries(domid: number, delta: number): void {
    this.entryDelta.set(domid, (this.entryDelta.get(domid) ?? 0) + delta);
  }
}

/** A failed database operation: `code` is the xsd_errors name. */
export class StoreErrno extends Error {
  override name = "StoreErrno";
  constructor(readonly code: string, detail?: string) {
    super(detail ? `${code}: ${detail}` : code);
  }
}

/** Limits the database enforces for unprivileged callers. */
export interface DatabaseLimits {
  /** quota_trans_nodes (1024). */
  readonly nodesPerTransaction: number;
}

/**
 * The main database: name -> record, the global generation counter and the
 * per-domain entry counts (struct domain nbentry).
 */
export class Database {
  readonly #nodes = new Map<string, NodeRecord>();
  readonly #entries = new Map<number, number>();
  /** domid -> names of main-database nodes with a live entry 1..n naming it. */
  readonly #refs = new Map<number, Set<string>>();
  /** The global generation counter (`generation`, xenstored_transaction.c:182). */
  generation = 0;

  constructor(readonly limits: DatabaseLimits) {}

  /** A record of the main database, ignoring transactions. */
  main(name: string): NodeRecord | undefined {
    return this.#nodes.get(name);
  }

  /** Every name in the main database (unordered). */
  names(): IterableIterator<string> {
    return this.#nodes.keys();
  }

  /** Number of nodes in the main database. */
  get size(): number {
    return this.#nodes.size;
  }

  /** Nodes owned by `domid` (perms[0]) in the main database. */
  entries(domid: number): number {
    return this.#entries.get(domid) ?? 0;
  }

  /** Stores a record in the main database, keeping the owner counts. */
  storeMain(node: NodeRecord): void {
    const old = this.#nodes.get(node.name);
    if (old) {
      this.#count(old.perms[0].domid, -1);
      this.#index(old, false);
    }
    this.#nodes.set(node.name, node);
    this.#count(node.perms[0].domid, 1);
    this.#index(node, true);
  }

  /** Deletes a record of the main database, keeping the owner counts. */
  deleteMain(name: string): void {
    const old = this.#nodes.get(name);
    if (!old) return;
    this.#count(old.perms[0].domid, -1);
    this.#index(old, false);
    this.#nodes.delete(name);
  }

  /**
   * read_node (:704-776): the node as `tx` sees it, recording the first
   * access of a transaction (access_node NODE_ACCESS_READ,
   * xenstored_transaction.c:237-300: the generation is remembered, also
   * NO_GENERATION for a missing node). Throws StoreErrno ENOSPC (and fails
   * the transaction) when an unprivileged caller's transaction would touch
   * more than nodesPerTransaction nodes.
   */
  read(name: string, tx: Transaction | undefined, privileged: boolean): NodeRecord | undefined {
    if (!tx) return this.#nodes.get(name);
    const seen = tx.accessed.get(name);
    if (seen) return seen.local;
    const node = this.#nodes.get(name);
    this.#introduce(tx, name, node, privileged);
    return node;
  }

  /**
   * write_node (:838-857) after access_node NODE_ACCESS_WRITE: the record
   * gets a new generation (++generation) and goes to the main database, or
   * to the transaction's copy.
   */
  write(
    node: Omit<NodeRecord, "generation">,
    tx: Transaction | undefined,
    privileged: boolean,
  ): NodeRecord {
    const record: NodeRecord = { ...node, generation: ++this.generation };
    if (!tx) {
      this.storeMain(record);
      return record;
    }
    const seen = tx.accessed.get(node.name) ??
      this.#introduce(tx, node.name, this.#nodes.get(node.name), privileged);
    // The transaction's copy owns its child list: `node` may carry the main
    // record's, which setChildren changes in place outside transactions.
    seen.local = { ...record, children: [...record.children] };
    seen.modified = true;
    return seen.local;
  }

  /**
   * Writes `node` with a new child list (add_child / remove_child_entry).
   * Outside a transaction the main record's list is changed in place when
   * `change` says how, so a directory with many children is not copied per
   * child; otherwise `children()` gives the new list.
   */
  setChildren(
    node: NodeRecord,
    children: () => readonly string[],
    tx: Transaction | undefined,
    privileged: boolean,
    change: { add?: string; remove?: string },
  ): NodeRecord {
    const main = this.#nodes.get(node.name);
    if (!tx && main && main.children === node.children) {
      const list = main.children as string[];
      if (change.add !== undefined) list.push(change.add);
      if (change.remove !== undefined) {
        const i = list.indexOf(change.remove);
        if (i >= 0) list.splice(i, 1);
      }
      const record: NodeRecord = { ...main, generation: ++this.generation };
      this.#nodes.set(node.name, record);
      return record;
    }
    return this.write({ ...node, children: children() }, tx, privileged);
  }

  /** Deletes a node (delnode_sub :1628-1656 after access_node NODE_ACCESS_DELETE). */
  delete(name: string, tx: Transaction | undefined, privileged: boolean): void {
    ++this.generation;
    if (!tx) {
      this.deleteMain(name);
      return;
    }
    const seen = tx.accessed.get(name) ??
      this.#introduce(tx, name, this.#nodes.get(name), privileged);
    seen.local = undefined;
    seen.modified = true;
  }

  /**
   * finalize_transaction (xenstored_transaction.c:376-442) check phase:
   * true when every node the transaction accessed still has the generation
   * it had at first access (a missing node counts as NO_GENERATION).
   */
  unchanged(tx: Transaction): boolean {
    for (const a of tx.accessed.values()) {
      const now = this.#nodes.get(a.name)?.generation ?? NO_GENERATION;
      if (now !== a.generation) return false;
    }
    return true;
  }

  /**
   * finalize_transaction write phase: every modified node goes to the main
   * database with a new generation, or is deleted. Returns the accessed
   * nodes that fire watches, in access order.
   */
  commit(tx: Transaction): AccessedNode[] {
    const fire: AccessedNode[] = [];
    for (const a of tx.accessed.values()) {
      if (!a.modified) continue;
      if (a.local) this.storeMain({ ...a.local, generation: ++this.generation });
      else if (a.generation !== NO_GENERATION) this.deleteMain(a.name);
      if (a.fireWatch) fire.push(a);
    }
    return fire;
  }

  /** Marks every entry 1..n naming `domid` as ignored (the domain is gone). */
  ignoreDomain(domid: number): void {
    for (const name of [...(this.#refs.get(domid) ?? [])]) {
      const node = this.#nodes.get(name);
      if (!node) continue;
      const perms = node.perms.map((p, i) =>
        i > 0 && p.domid === domid ? { ...p, ignore: true } : p
      );
      this.#index(node, false);
      const updated = { ...node, perms };
      this.#nodes.set(name, updated);
      this.#index(updated, true);
    }
    this.#refs.delete(domid);
  }

  #index(node: NodeRecord, add: boolean): void {
    for (let i = 1; i < node.perms.length; i++) {
      const p = node.perms[i];
      if (p.ignore) continue;
      let set = this.#refs.get(p.domid);
      if (add) {
        if (!set) this.#refs.set(p.domid, set = new Set());
        set.add(node.name);
      } else {
        set?.delete(node.name);
      }
    }
  }

  #introduce(
    tx: Transaction,
    name: string,
    node: NodeRecord | undefined,
    privileged: boolean,
  ): AccessedNode {
    if (tx.accessed.size >= this.limits.nodesPerTransaction && !privileged) {
      tx.fail = true;
      throw new StoreErrno("ENOSPC", "too many nodes in one transaction");
    }
    const a: AccessedNode = {
      name,
      generation: node?.generation ?? NO_GENERATION,
      perms: node?.perms,
      // The transaction's copy owns its child list (the main record's may change in place).
      local: node ? { ...node, children: [...node.children] } : undefined,
      modified: false,
      fireWatch: false,
      watchExact: false,
    };
    tx.accessed.set(name, a);
    return a;
  }

  #count(domid: number, delta: number): void {
    this.#entries.set(domid, (this.#entries.get(domid) ?? 0) + delta);
  }
}
