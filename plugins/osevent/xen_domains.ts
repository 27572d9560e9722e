/**
 * Real domain lifecycle for an EventContext: a DomainEventSource built, as
 * libxl builds DOMAIN_SHUTDOWN / DOMAIN_DEATH (libxl_domain.c:882-1004,
 * domain_death_xswatch_callback), from
 *  (a) a XenStore watch of "@releaseDomain", which xenstored fires when it
 *      sees an introduced domain shut down, crash, start dying or go away
 *      (in Xen 4.17 the event carries no domid), and
 *  (b) domain information: on each event the domain list is read again
 *      (xc_domain_getinfolist through ffi/mod.ts DomainControl, or any
 *      object with the same list()/info()) and diffed against the last
 *      known state of each domain:
 *        - a known domid missing from the list, flagged dying, or now
 *          carrying another handle (a new domain reusing the domid): "death";
 *        - the shutdown flag newly set: "shutdown" with the reason
 *          (flags >> 16) & 0xff, reported once per shut-down period.
 *
 * Both dependencies are structural, so the source runs on the real client
 * (core/xenstore/client.ts XenStore.watch, ffi DomainControl), on the
 * simulator (plugins/osevent/sim_domains.ts simDomainInfo and a
 * @releaseDomain watch) and on test fakes alike.
 *
 * Which domains are tracked: every domain in the list when a subscription
 * starts or a scan runs, and every domain an enable asked about
 * (domainState). A domain created and destroyed between two scans that
 * nobody enabled is never seen, as with libxl.
 *
 * @module
 */
import type {
  DomainEventSource,
  DomainState,
  RawDomainEvent,
  SourceFailure,
} from "./domain_events.ts";

/** The XenStore path xenstored fires when a domain shuts down or goes away. */
export const RELEASE_DOMAIN = "@releaseDomain";

/**
 * The part of the XenStore client the source uses: `watch(path, { signal })`
 * registers a watch and returns an async iterable that yields the initial
 * event first (as xenstored sends one on WATCH), then one per firing; aborting
 * `signal` removes the watch and ends (or rejects) the iteration.
 */
export interface ReleaseDomainWatcher {
  watch(
    path: string,
    options: { readonly signal?: AbortSignal },
  ): AsyncIterable<{ readonly path: string }>;
}

/** What the source reads of one domain (a subset of ffi/mod.ts DomainInfo). */
export interface DomainStatusLike {
  readonly domid: number;
  readonly flags: { readonly dying: boolean; readonly shutdown: boolean };
  /** SHUTDOWN_* code when flags.shutdown. */
  readonly shutdownReason?: number;
  /** The domain's UUID handle, when known: tells a reused domid apart. */
  readonly handle?: string;
}

/**
 * Domain information (ffi/mod.ts DomainControl, or the simulator's adapter).
 * `list()` returns every existing domain; `info(domid)` one domain or
 * undefined. Both are synchronous and may throw (the source reports it).
 */
export interface DomainInfoProvider {
  list(): readonly DomainStatusLike[];
  info(domid: number): DomainStatusLike | undefined;
}

/** Options of xenDomainSource. */
export interface XenDomainSourceOptions {
  /** Where the @releaseDomain watch comes from (an open XenStore handle). */
  readonly xenstore: ReleaseDomainWatcher;
  /** Where domain states come from (an open DomainControl). */
  readonly domains: DomainInfoProvider;
}

/** Counts for tests and leak checks. */
export interface XenDomainSourceStats {
  /** Subscriptions whose watch is still registered. */
  readonly subscriptions: number;
  /** Domain list reads triggered by @releaseDomain events (all subscriptions). */
  readonly scans: number;
  /** Domains tracked (summed over subscriptions). */
  readonly tracked: number;
}

interface Known {
  readonly handle?: string;
  shutdownSeen: boolean;
}

interface Subscription {
  readonly known: Map<number, Known>;
  readonly listener: (event: RawDomainEvent) => void;
  readonly controller: AbortController;
}

/** See the module comment; made by xenDomainSource. */
export class XenDomainSource implements DomainEventSource {
  readonly #xenstore: ReleaseDomainWatcher;
  readonly #domains: DomainInfoProvider;
  readonly #subs = new Set<Subscription>();
  #scans = 0;

  /** Keeps the two dependencies; opens nothing. Throws nothing. */
  constructor(options: XenDomainSourceOptions) {
    this.#xenstore = options.xenstore;
    this.#domains = options.domains;
  }

  /** Current counts (see XenDomainSourceStats). */
  stats(): XenDomainSourceStats {
    let tracked = 0;
    for (const sub of this.#subs) tracked += sub.known.size;
    return { subscriptions: this.#subs.size, scans: this.#scans, tracked };
  }

  /**
   * Reads the domain list (the baseline), then registers the @releaseDomain
   * watch and diffs on each of its events (the initial one included, which
   * covers changes between the baseline and the watch). `listener` runs
   * once per change found, after the scan that found it, never inside
   * subscribe. `onFailure` is told when a scan's list() throws (the watch
   * stays, the next event scans again) or when the watch fails or ends on
   * its own. The returned function aborts the watch; it is idempotent.
   * Throws what list() or watch() throw synchronously (nothing is left
   * registered then).
   */
  subscribe(listener: (event: RawDomainEvent) => void, onFailure?: SourceFailure): () => void {
    const sub: Subscription = { known: new Map(), listener, controller: new AbortController() };
    for (const d of this.#domains.list()) this.#remember(sub, d);
    const signal = sub.controller.signal;
    const iterable = this.#xenstore.watch(RELEASE_DOMAIN, { signal });
    this.#subs.add(sub);
    const stop = () => {
      this.#subs.delete(sub);
      sub.controller.abort();
    };
    const run = async () => {
      for await (const _event of iterable) {
        if (signal.aborted) return;
        this.#scan(sub, onFailure);
      }
      if (!signal.aborted) {
        this.#subs.delete(sub);
        onFailure?.("the @releaseDomain watch ended", undefined);
      }
    };
    run().catch((error: unknown) => {
      if (signal.aborted) return;
      this.#subs.delete(sub);
      onFailure?.("the @releaseDomain watch failed", error);
    });
    return stop;
  }

  /**
   * The state of `domid` now (info()): undefined when it does not exist or is
   * dying, else its shutdown reason if shut down. The domain becomes tracked
   * by every subscription, so its later death is found even if it was
   * created after the last scan. Throws what info() throws.
   */
  domainState(domid: number): DomainState | undefined {
    const d = this.#domains.info(domid);
    if (!d || d.domid !== domid || d.flags.dying) return undefined;
    for (const sub of this.#subs) if (!sub.known.has(domid)) this.#remember(sub, d);
    return d.flags.shutdown ? { shutdownReason: d.shutdownReason ?? -1 } : {};
  }

  #remember(sub: Subscription, d: DomainStatusLike): void {
    if (d.flags.dying) return;
    sub.known.set(d.domid, { handle: d.handle, shutdownSeen: d.flags.shutdown });
  }

  #scan(sub: Subscription, onFailure: SourceFailure | undefined): void {
    this.#scans++;
    let list: readonly DomainStatusLike[];
    try {
      list = this.#domains.list();
    } catch (error) {
      onFailure?.("cannot read the domain list after @releaseDomain", error);
      return;
    }
    const now = new Map<number, DomainStatusLike>();
    for (const d of list) now.set(d.domid, d);
    const ids = [...new Set([...sub.known.keys(), ...now.keys()])].sort((a, b) => a - b);
    const found: RawDomainEvent[] = [];
    for (const domid of ids) {
      const was = sub.known.get(domid);
      const d = now.get(domid);
      if (was) {
        const replaced = d !== undefined && was.handle !== undefined &&
          d.handle !== undefined && d.handle !== was.handle;
        if (!d || d.flags.dying || replaced) {
          sub.known.delete(domid);
          found.push({ type: "death", domid });
          if (!d || d.flags.dying) continue;
        }
      }
      if (!d || d.flags.dying) continue;
      let k = sub.known.get(domid);
      if (!k) {
        k = { handle: d.handle, shutdownSeen: false };
        sub.known.set(domid, k);
      }
      if (d.flags.shutdown && !k.shutdownSeen) {
        k.shutdownSeen = true;
        found.push({ type: "shutdown", domid, reasonCode: d.shutdownReason ?? -1 });
      } else if (!d.flags.shutdown) {
        k.shutdownSeen = false; // resumed (after a suspend): a later shutdown is new
      }
    }
    for (const event of found) {
      if (sub.controller.signal.aborted) return;
      sub.listener(event);
    }
  }
}

/**
 * A DomainEventSource over a @releaseDomain watch and domain information:
 * pass it as `domains` when creating an EventContext. Opens nothing itself:
 * the caller owns the XenStore and DomainControl handles and closes them
 * after the context. Throws nothing.
 */
export function xenDomainSource(options: XenDomainSourceOptions): XenDomainSource {
  return new XenDomainSource(options);
}
