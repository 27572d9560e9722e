/**
 * Fakes for the real domain event source (plugins/osevent/xen_domains.ts): a
 * XenStore whose @releaseDomain watch the test fires by hand, and a
 * hypervisor's domain list the test edits (create, shut down, mark dying,
 * destroy), both with counters for leak checks.
 *
 * @module
 */
import type { DomainFlags, DomainInfo } from "../../mod.ts";
import type {
  DomainInfoProvider,
  DomainStatusLike,
  ReleaseDomainWatcher,
} from "../../plugins/osevent/mod.ts";

/** A XenStore with only watch(): each watch yields the initial event, then one per fire(). */
export class FakeReleaseWatch implements ReleaseDomainWatcher {
  /** Watches registered so far. */
  registered = 0;
  /** Watches whose signal aborted (or whose iterator was returned). */
  removed = 0;
  /** Paths asked for, in order. */
  readonly paths: string[] = [];
  #queues = new Set<{ pending: number; wake: (() => void) | null; error?: unknown }>();

  /** Watches still registered. */
  get active(): number {
    return this.registered - this.removed;
  }

  /** Registers a watch; its iterator ends when `signal` aborts, and throws after fail(). */
  watch(
    path: string,
    options: { readonly signal?: AbortSignal } = {},
  ): AsyncGenerator<{ path: string; token: string }> {
    this.paths.push(path);
    this.registered++;
    const q: { pending: number; wake: (() => void) | null; error?: unknown } = {
      pending: 1,
      wake: null,
    };
    this.#queues.add(q);
    const poke = () => {
      const w = q.wake;
      q.wake = null;
      w?.();
    };
    const queues = this.#queues;
    const onRemoved = () => this.removed++;
    const signal = options.signal;
    signal?.addEventListener("abort", poke, { once: true });
    async function* events(): AsyncGenerator<{ path: string; token: string }> {
      try {
        while (!signal?.aborted) {
          if (q.error !== undefined) throw q.error;
          if (q.pending === 0) {
            await new Promise<void>((resolve) => q.wake = resolve);
            continue;
          }
          q.pending--;
          yield { path, token: "t" };
        }
      } finally {
        queues.delete(q);
        onRemoved();
        signal?.removeEventListener("abort", poke);
      }
    }
    return events();
  }

  /** xenstored fires @releaseDomain once (to every registered watch). */
  fire(): void {
    for (const q of this.#queues) {
      q.pending++;
      const w = q.wake;
      q.wake = null;
      w?.();
    }
  }

  /** The connection fails: every watch's iterator throws `error`. */
  fail(error: unknown): void {
    for (const q of this.#queues) {
      q.error = error;
      const w = q.wake;
      q.wake = null;
      w?.();
    }
  }
}

/** A mutable domain list behind list()/info(). */
export class FakeDomains implements DomainInfoProvider {
  readonly #domains = new Map<number, DomainStatusLike>();
  /** list() calls so far. */
  lists = 0;
  /** When set, list() throws it. */
  listError: unknown;
  #serial = 0;

  constructor(...domids: number[]) {
    for (const domid of [0, ...domids]) this.create(domid);
  }

  /** A new running domain with a fresh handle. */
  create(domid: number): number {
    this.#serial++;
    const handle = `00000000-0000-0000-0000-${this.#serial.toString(16).padStart(12, "0")}`;
    this.#domains.set(domid, { domid, flags: { dying: false, shutdown: false }, handle });
    return domid;
  }

  /** SCHEDOP_shutdown with `reason` (SHUTDOWN_* code). */
  shutdown(domid: number, reason: number): void {
    const d = this.#get(domid);
    this.#domains.set(domid, {
      ...d,
      flags: { ...d.flags, shutdown: true },
      shutdownReason: reason,
    });
  }

  /** domain_kill started: still listed, flagged dying. */
  dying(domid: number): void {
    const d = this.#get(domid);
    this.#domains.set(domid, { ...d, flags: { ...d.flags, dying: true } });
  }

  /** Gone from the list. */
  destroy(domid: number): void {
    this.#get(domid);
    this.#domains.delete(domid);
  }

  #get(domid: number): DomainStatusLike {
    const d = this.#domains.get(domid);
    if (!d) throw new Error(`fake: no domain ${domid}`);
    return d;
  }

  list(): DomainStatusLike[] {
    this.lists++;
    if (this.listError !== undefined) throw this.listError;
    return [...this.#domains.values()].sort((a, b) => a.domid - b.domid);
  }

  info(domid: number): DomainStatusLike | undefined {
    return this.#domains.get(domid);
  }
}

/** Lets queued microtasks and zero-delay timers run (the source's watch loop). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setTimeout(resolve, 0));
}

/** A full DomainInfo (as ffi/mod.ts DomainControl returns) with the given flags and memory. */
export function fakeDomainInfo(
  domid: number,
  options: {
    readonly flags?: Partial<DomainFlags>;
    readonly shutdownReason?: number;
    readonly memoryKb?: number;
    readonly handle?: string;
  } = {},
): DomainInfo {
  const memoryKb = options.memoryKb ?? 262144;
  const flags: DomainFlags = {
    dying: false,
    hvm: false,
    shutdown: false,
    paused: false,
    blocked: true,
    running: false,
    debugged: false,
    xsDomain: false,
    hap: false,
    ...options.flags,
  };
  const info: DomainInfo = {
    domid,
    flags,
    rawFlags: 0,
    totPages: memoryKb / 4,
    maxPages: memoryKb / 4,
    outstandingPages: 0,
    sharedPages: 0,
    pagedPages: 0,
    memoryKb,
    onlineVcpus: 1,
    maxVcpuId: 0,
    cpuTimeNs: 0n,
    ssidref: 0,
    handle: options.handle ?? `00000000-0000-0000-0000-${domid.toString(16).padStart(12, "0")}`,
    cpupool: 0,
  };
  return flags.shutdown ? { ...info, shutdownReason: options.shutdownReason ?? 0 } : info;
}

/** DomainControl's shape over a mutable map of full DomainInfo entries. */
export class FakeDomainControl {
  readonly domains = new Map<number, DomainInfo>();
  readonly libraryPath = "fake libxenctrl";
  closes = 0;

  constructor(...entries: DomainInfo[]) {
    for (const d of entries) this.domains.set(d.domid, d);
  }

  list(): DomainInfo[] {
    return [...this.domains.values()].sort((a, b) => a.domid - b.domid);
  }

  info(domid: number): DomainInfo | undefined {
    return this.domains.get(domid);
  }

  /** Shuts `domid` down with `reason` (SHUTDOWN_* code). */
  shutdown(domid: number, reason: number): void {
    const d = this.domains.get(domid)!;
    this.domains.set(
      domid,
      fakeDomainInfo(domid, {
        flags: { ...d.flags, shutdown: true },
        shutdownReason: reason,
        memoryKb: d.memoryKb,
        handle: d.handle,
      }),
    );
  }

  close(): void {
    this.closes++;
  }
}
