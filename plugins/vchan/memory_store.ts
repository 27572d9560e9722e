/**
 * An in-memory XenStore with the semantics a vchan rendezvous needs (the
 * VchanStore interface), for the simulator (tests, `xenchan vchan
 * --simulate`) until the simulated xenstored is available: nodes
 * with values and permission lists (entry 0 = owner and default; dom0
 * privileged), relative paths under /local/domain/<id>, new nodes that
 * inherit their parent's permissions with the creator as owner (C
 * xenstored), watches that fire once on registration and on every change at
 * or below their path, "@releaseDomain" on a simulated domain's shutdown or
 * death, and isDomainIntroduced for dom0. Transactions run their body
 * directly but hold back the watch events until the body finished, so a
 * watcher sees the result only once it is complete, as with a commit (no
 * isolation from other connections and no EAGAIN: enough for the vchan
 * rendezvous, not a model of xenstored's transactions).
 *
 * @module
 */
import { XenStoreError } from "../../core/xenstore/errors.ts";
import type { XenStoreAccess, XenStorePermission } from "../../core/xenstore/permissions.ts";
import type { VchanStore, VchanStoreOperations, VchanStoreWatchEvent } from "./store.ts";

/** What the store needs of a simulated hypervisor (SimHypervisor has it). */
export interface DomainLifecycle {
  /** Subscribes to domain events; returns the unsubscribe function. */
  onDomainEvent(listener: (event: { readonly type: string }) => void): () => void;
  /** Something for a live domain, undefined once it is gone. */
  domainInfo(domid: number): unknown;
}

interface Node {
  value: string;
  perms: XenStorePermission[];
}

interface Watch {
  readonly path: string;
  readonly token: string;
  push(path: string): void;
}

function parentOf(path: string): string {
  const at = path.lastIndexOf("/");
  return at <= 0 ? "/" : path.slice(0, at);
}

function under(path: string, watched: string): boolean {
  return path === watched || path.startsWith(watched === "/" ? "/" : `${watched}/`);
}

/** The store; `connect(domid)` gives one domain's connection. */
export class MemoryXenStore {
  readonly #nodes = new Map<string, Node>([["/", {
    value: "",
    perms: [{ domid: 0, access: "none" }],
  }]]);
  readonly #watches = new Set<Watch>();
  readonly #hv?: DomainLifecycle;
  #tokens = 0;
  /** Every successful write, rm and setPermissions, in order (for tests). */
  readonly log: string[] = [];

  /** With `hv`, domain shutdown and death fire "@releaseDomain" and isDomainIntroduced asks it. */
  constructor(hv?: DomainLifecycle) {
    this.#hv = hv;
    hv?.onDomainEvent((event) => {
      if (event.type === "shutdown" || event.type === "death") this.#fire("@releaseDomain");
    });
    this.#introduce(0);
  }

  #introduce(domid: number): void {
    const home = `/local/domain/${domid}`;
    if (this.#nodes.has(home)) return;
    for (const p of ["/local", "/local/domain"]) {
      if (!this.#nodes.has(p)) {
        this.#nodes.set(p, { value: "", perms: [{ domid: 0, access: "read" }] });
      }
    }
    this.#nodes.set(home, {
      value: "",
      perms: [{ domid: 0, access: "none" }, { domid, access: "read" }],
    });
    this.#nodes.set(`${home}/domid`, {
      value: String(domid),
      perms: [{ domid: 0, access: "none" }, { domid, access: "read" }],
    });
    this.#nodes.set(`${home}/data`, { value: "", perms: [{ domid, access: "none" }] });
  }

  /** A connection with the identity of `domid` (creating its home nodes like libxl). */
  connect(domid: number): MemoryStoreConnection {
    this.#introduce(domid);
    return new MemoryStoreConnection(this, domid);
  }

  /** The raw node (tests): value and permissions, or undefined. */
  node(path: string): { value: string; perms: readonly XenStorePermission[] } | undefined {
    const n = this.#nodes.get(path);
    return n && { value: n.value, perms: [...n.perms] };
  }

  /** Every path at or below `path` (tests). */
  paths(path: string): string[] {
    return [...this.#nodes.keys()].filter((p) => under(p, path)).sort();
  }

  #access(domid: number, node: Node): XenStoreAccess {
    if (domid === 0 || node.perms[0].domid === domid) return "both";
    return node.perms.slice(1).find((p) => p.domid === domid)?.access ?? node.perms[0].access;
  }

  #can(domid: number, node: Node, want: "read" | "write"): boolean {
    const a = this.#access(domid, node);
    return a === "both" || a === want;
  }

  #held?: string[];

  /** @internal runs `body` with watch events held back until it settles. */
  async batch<T>(body: () => Promise<T>): Promise<T> {
    const outer = this.#held === undefined;
    this.#held ??= [];
    try {
      return await body();
    } finally {
      if (outer) {
        const held = this.#held;
        this.#held = undefined;
        for (const p of held) this.#fire(p);
      }
    }
  }

  #fire(path: string): void {
    if (this.#held) return void this.#held.push(path);
    for (const w of this.#watches) {
      if (path.startsWith("@") ? w.path === path : under(path, w.path)) w.push(path);
    }
  }

  /** @internal */
  read(domid: number, path: string): string {
    const node = this.#nodes.get(path);
    if (!node) throw new XenStoreError("ENOENT", "READ", path);
    if (!this.#can(domid, node, "read")) throw new XenStoreError("EACCES", "READ", path);
    return node.value;
  }

  /** @internal */
  write(domid: number, path: string, value: string): void {
    const existing = this.#nodes.get(path);
    if (existing) {
      if (!this.#can(domid, existing, "write")) throw new XenStoreError("EACCES", "WRITE", path);
      existing.value = value;
    } else {
      const missing: string[] = [];
      let p = path;
      while (!this.#nodes.has(p)) {
        missing.unshift(p);
        p = parentOf(p);
      }
      const ancestor = this.#nodes.get(p)!;
      if (!this.#can(domid, ancestor, "write")) throw new XenStoreError("EACCES", "WRITE", path);
      const perms = [{ domid, access: ancestor.perms[0].access }, ...ancestor.perms.slice(1)];
      for (const m of missing) {
        this.#nodes.set(m, { value: m === path ? value : "", perms: [...perms] });
      }
    }
    this.log.push(`write ${path}=${value}`);
    this.#fire(path);
  }

  /** @internal */
  rm(domid: number, path: string): void {
    const node = this.#nodes.get(path);
    if (!node) {
      if (!this.#nodes.has(parentOf(path))) throw new XenStoreError("ENOENT", "RM", path);
      return;
    }
    if (!this.#can(domid, node, "write")) throw new XenStoreError("EACCES", "RM", path);
    for (const p of this.paths(path)) this.#nodes.delete(p);
    this.log.push(`rm ${path}`);
    this.#fire(path);
  }

  /** @internal */
  setPermissions(domid: number, path: string, perms: readonly XenStorePermission[]): void {
    const node = this.#nodes.get(path);
    if (!node) throw new XenStoreError("ENOENT", "SET_PERMS", path);
    if (domid !== 0 && node.perms[0].domid !== domid) {
      throw new XenStoreError("EACCES", "SET_PERMS", path);
    }
    node.perms = perms.map((p) => ({ ...p }));
    this.log.push(`perms ${path}=${perms.map((p) => `${p.access[0]}${p.domid}`).join(" ")}`);
    this.#fire(path);
  }

  /** @internal */
  isDomainIntroduced(domid: number, target: number): boolean {
    if (domid !== 0) throw new XenStoreError("EACCES", "IS_DOMAIN_INTRODUCED");
    return target === 0 || this.#hv?.domainInfo(target) !== undefined;
  }

  /** @internal */
  watch(path: string, signal?: AbortSignal): AsyncIterableIterator<VchanStoreWatchEvent> {
    const token = `t${++this.#tokens}`;
    const queue: VchanStoreWatchEvent[] = [{ path, token }];
    let done = false;
    let wake: (() => void) | undefined;
    const watches = this.#watches;
    const watch: Watch = {
      path,
      token,
      push: (p) => {
        queue.push({ path: p, token });
        wake?.();
      },
    };
    const finish = () => {
      done = true;
      watches.delete(watch);
      wake?.();
    };
    watches.add(watch);
    if (signal?.aborted) finish();
    signal?.addEventListener("abort", finish, { once: true });
    const iterator: AsyncIterableIterator<VchanStoreWatchEvent> = {
      [Symbol.asyncIterator]: () => iterator,
      async next() {
        for (;;) {
          if (done) return { value: undefined, done: true };
          const event = queue.shift();
          if (event) return { value: event, done: false };
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
        }
      },
      return() {
        finish();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
    return iterator;
  }

  /** Number of registered watches (leak checks). */
  get watchCount(): number {
    return this.#watches.size;
  }
}

/** One domain's connection: a VchanStore. Relative paths are under /local/domain/<domid>. */
export class MemoryStoreConnection implements VchanStore {
  constructor(readonly store: MemoryXenStore, readonly domid: number) {}

  #abs(path: string): string {
    return path.startsWith("/") || path.startsWith("@")
      ? path
      : `/local/domain/${this.domid}/${path}`;
  }

  read(path: string): Promise<string> {
    return this.#run(() => this.store.read(this.domid, this.#abs(path)));
  }

  write(path: string, value: string): Promise<void> {
    return this.#run(() => this.store.write(this.domid, this.#abs(path), value));
  }

  rm(path: string): Promise<void> {
    return this.#run(() => this.store.rm(this.domid, this.#abs(path)));
  }

  setPermissions(path: string, permissions: readonly XenStorePermission[]): Promise<void> {
    return this.#run(() => this.store.setPermissions(this.domid, this.#abs(path), permissions));
  }

  watch(
    path: string,
    options: { readonly signal?: AbortSignal } = {},
  ): AsyncIterableIterator<VchanStoreWatchEvent> {
    return this.store.watch(this.#abs(path), options.signal);
  }

  transaction<T>(body: (tx: VchanStoreOperations) => Promise<T>): Promise<T> {
    return this.store.batch(() => body(this));
  }

  isDomainIntroduced(domid: number): Promise<boolean> {
    return this.#run(() => this.store.isDomainIntroduced(this.domid, domid));
  }

  /** Answers asynchronously, as a daemon does. */
  async #run<T>(op: () => T): Promise<T> {
    await Promise.resolve();
    return op();
  }
}
