/**
 * Domain event generation: DOMAIN_SHUTDOWN, DOMAIN_DEATH and DISK_EJECT
 * (libxl_evenable_domain_death / libxl_evenable_disk_eject), driven by a
 * DomainEventSource such as the simulator (plugins/osevent/sim_domains.ts).
 *
 * How it runs, like libxl's xenstore watch: the source's listener only
 * records what happened (for domains somebody enabled) and arranges, through
 * the registry, a timeout "as soon as possible" (deadline 0). When the
 * application's loop reports that timeout (afterpoll, occurredTimeout or a
 * built-in loop), the records are turned into events, in order. So events
 * are generated inside the application's loop, never inside the
 * simulator's call that changed the domain, and every style of loop sees
 * them the same way.
 *
 * Rules (the seed's "general rules for event request functions"):
 * - each occurrence is delivered exactly once per enable; enabling the same
 *   thing twice gives two events, each with its own user value;
 * - a domain that is destroyed before it shuts down gives only
 *   DOMAIN_DEATH; after DOMAIN_DEATH an enable generates nothing more;
 * - enabling for a domain that has already shut down reports
 *   DOMAIN_SHUTDOWN, and for a domain that no longer exists DOMAIN_DEATH
 *   (the state is read when enabling);
 * - disabling stops generation, but events already generated stay queued
 *   and may still be returned;
 * - disk-eject enables end with the domain's death (a later domain reusing
 *   the domid is a different domain).
 *
 * Internal to plugins/osevent/ (EventContext exposes it).
 *
 * @module
 */
import { XenUsageError } from "../../core/errors.ts";
import { describe } from "../../core/validate.ts";
import type { TimeoutWatch } from "./registry.ts";
import type { EventSink } from "./sink.ts";
import { EventType } from "./types.ts";

/** What a domain event source reports (the raw material of the events). */
export type RawDomainEvent =
  | { readonly type: "shutdown"; readonly domid: number; readonly reasonCode: number }
  | { readonly type: "death"; readonly domid: number }
  | { readonly type: "disk-eject"; readonly domid: number; readonly vdev: string };

/** A domain's state now, as a source reports it. */
export interface DomainState {
  /** SHUTDOWN_* code if the domain has shut down (and still exists). */
  readonly shutdownReason?: number;
}

/**
 * How a source reports that it can no longer see every change (its watch
 * failed, a domain list could not be read): `message` says what it was
 * doing, `cause` is the error (or undefined). The context turns it into a
 * disaster (libxl: LIBXL__EVENT_DISASTER "get domain info list").
 */
export type SourceFailure = (message: string, cause: unknown) => void;

/**
 * Where domain events come from. `subscribe` must call the listener after
 * each state change it detects (the simulator: synchronously inside the
 * change; a real source: after the scan that found it), never inside
 * subscribe itself, and return an unsubscribe function; it may call
 * `onFailure` (optional to implement) when it loses track. `domainState`
 * returns undefined for a domain that does not exist (never created,
 * destroyed or dying); it is called once per enable, so a source that
 * watches domains one by one (libxl) starts watching there. `release`
 * (optional) is called when the application has disabled the last
 * generator of `domid`: such a source may stop watching it.
 */
export interface DomainEventSource {
  subscribe(listener: (event: RawDomainEvent) => void, onFailure?: SourceFailure): () => void;
  domainState(domid: number): DomainState | undefined;
  release?(domid: number): void;
}

/** SHUTDOWN_* names (xen/include/public/sched.h). */
const REASON_NAMES = ["poweroff", "reboot", "suspend", "crash", "watchdog", "soft_reset"];

/** The name of a SHUTDOWN_* code, or "unknown". Throws nothing. */
export function shutdownReasonName(code: number): string {
  return REASON_NAMES[code] ?? "unknown";
}

/** What the two event generators share: enabled state, disable() and dispose. */
abstract class EventGenerator<Self> implements Disposable {
  #enabled = true;

  /** `disableFn` is the owning context's; it also identifies that context. */
  constructor(readonly disableFn: (gen: Self) => void) {}

  /** Whether it still generates events. */
  get enabled(): boolean {
    return this.#enabled;
  }

  /** @internal Marks it disabled; returns false if it already was. */
  markDisabled(): boolean {
    const was = this.#enabled;
    this.#enabled = false;
    return was;
  }

  /**
   * Stops generating events (libxl_evdisable_domain_death /
   * libxl_evdisable_disk_eject). Events already generated may still be
   * returned. Idempotent; a no-op once the context is closed. Throws
   * XenUsageError from inside a disaster handler.
   */
  disable(): void {
    this.disableFn(this as unknown as Self);
  }

  /** Calls disable() (for `using`). */
  [Symbol.dispose](): void {
    this.disable();
  }
}

/**
 * An enabled domain death watch (libxl_evgen_domain_death): generates
 * DOMAIN_SHUTDOWN then DOMAIN_DEATH, or only DOMAIN_DEATH.
 */
export class DomainDeathEnable extends EventGenerator<DomainDeathEnable> {
  /** @internal */ shutdownReported = false;
  /** @internal */ deathReported = false;

  /** Made by EventContext.enableDomainDeath; not constructed directly. */
  constructor(
    readonly domid: number,
    readonly forUser: unknown,
    disableFn: (gen: DomainDeathEnable) => void,
  ) {
    super(disableFn);
  }
}

/** An enabled disk eject watch (libxl_evgen_disk_eject): DISK_EJECT each time. */
export class DiskEjectEnable extends EventGenerator<DiskEjectEnable> {
  /** Made by EventContext.enableDiskEject; not constructed directly. */
  constructor(
    readonly domid: number,
    readonly vdev: string,
    readonly forUser: unknown,
    disableFn: (gen: DiskEjectEnable) => void,
  ) {
    super(disableFn);
  }
}

type Pending =
  | RawDomainEvent
  | {
    readonly type: "initial";
    readonly gen: DomainDeathEnable;
    readonly state: DomainState | undefined;
  };

/** The generators of one context; see the module comment. */
export class DomainEvents {
  readonly #sink: EventSink;
  readonly #source: DomainEventSource;
  readonly #death = new Map<number, Set<DomainDeathEnable>>();
  readonly #eject = new Map<number, Map<string, Set<DiskEjectEnable>>>();
  #pending: Pending[] = [];
  #timer: TimeoutWatch | null = null;
  #unsubscribe: (() => void) | null = null;
  #enabled = 0;

  /**
   * Attaches to `source` (subscribes at once). Throws what subscribe throws,
   * XenUsageError when it does not return a function.
   */
  constructor(sink: EventSink, source: DomainEventSource) {
    this.#sink = sink;
    this.#source = source;
    const unsubscribe = source.subscribe(
      (event) => this.#onRaw(event),
      (message, cause) => {
        if (!this.#unsubscribe) return;
        const errno = (cause as { errno?: unknown } | null)?.errno;
        this.#sink.disaster(0, message, typeof errno === "number" ? errno : 0, cause);
      },
    );
    if (typeof unsubscribe !== "function") {
      throw new XenUsageError(
        "the domain source's subscribe() must return its unsubscribe function",
      );
    }
    this.#unsubscribe = unsubscribe;
  }

  /** Number of enabled generators. */
  get enabledCount(): number {
    return this.#enabled;
  }

  /** Raw records not yet turned into events. */
  get backlog(): number {
    return this.#pending.length;
  }

  /**
   * Enables DOMAIN_SHUTDOWN/DOMAIN_DEATH for `domid`. Throws OsEventRegError
   * if the application's timeoutRegister hook refuses (nothing is enabled
   * then), XenUsageError for a bad domid.
   */
  enableDeath(
    domid: number,
    forUser: unknown,
    disable: (gen: DomainDeathEnable) => void,
  ): DomainDeathEnable {
    checkDomid(domid);
    const gen = new DomainDeathEnable(domid, forUser, disable);
    this.#pending.push({ type: "initial", gen, state: this.#source.domainState(domid) });
    try {
      this.#arm();
    } catch (error) {
      this.#pending.pop();
      throw error;
    }
    let set = this.#death.get(domid);
    if (!set) this.#death.set(domid, set = new Set());
    set.add(gen);
    this.#enabled++;
    return gen;
  }

  /** Disables a death generator (idempotent). */
  disableDeath(gen: DomainDeathEnable): void {
    if (!gen.markDisabled()) return;
    this.#enabled--;
    const set = this.#death.get(gen.domid);
    set?.delete(gen);
    if (set?.size === 0) {
      this.#death.delete(gen.domid);
      this.#source.release?.(gen.domid);
    }
  }

  /**
   * Enables DISK_EJECT for `vdev` of `domid`. Throws XenUsageError for a bad
   * domid or an empty vdev. A domain that does not exist generates nothing.
   */
  enableEject(
    domid: number,
    vdev: string,
    forUser: unknown,
    disable: (gen: DiskEjectEnable) => void,
  ): DiskEjectEnable {
    checkDomid(domid);
    if (typeof vdev !== "string" || vdev === "") {
      throw new XenUsageError("vdev must be a non-empty string");
    }
    const gen = new DiskEjectEnable(domid, vdev, forUser, disable);
    let byVdev = this.#eject.get(domid);
    if (!byVdev) this.#eject.set(domid, byVdev = new Map());
    let set = byVdev.get(vdev);
    if (!set) byVdev.set(vdev, set = new Set());
    set.add(gen);
    this.#enabled++;
    return gen;
  }

  /** Disables a disk eject generator (idempotent). */
  disableEject(gen: DiskEjectEnable): void {
    if (!gen.markDisabled()) return;
    this.#enabled--;
    const byVdev = this.#eject.get(gen.domid);
    const set = byVdev?.get(gen.vdev);
    set?.delete(gen);
    if (set?.size === 0) byVdev!.delete(gen.vdev);
    if (byVdev?.size === 0) this.#eject.delete(gen.domid);
  }

  /**
   * Unsubscribes and disables everything (context close or failure).
   * Throws nothing: returns what the source's unsubscribe threw (empty when
   * nothing did), for the context's error sink.
   */
  close(): unknown[] {
    const errors: unknown[] = [];
    try {
      this.#unsubscribe?.();
    } catch (error) {
      errors.push(error);
    }
    this.#unsubscribe = null;
    for (const set of this.#death.values()) for (const gen of set) gen.markDisabled();
    for (const byVdev of this.#eject.values()) {
      for (const set of byVdev.values()) for (const gen of set) gen.markDisabled();
    }
    this.#death.clear();
    this.#eject.clear();
    this.#pending = [];
    this.#enabled = 0;
    this.#timer?.deregister();
    this.#timer = null;
    return errors;
  }

  #onRaw(event: RawDomainEvent): void {
    if (!this.#unsubscribe) return;
    const wanted = event.type === "disk-eject"
      ? this.#eject.get(event.domid)?.has(event.vdev)
      : this.#death.has(event.domid) ||
        (event.type === "death" && this.#eject.has(event.domid));
    if (!wanted) return;
    this.#pending.push(event);
    try {
      this.#arm();
    } catch (error) {
      // Kept in #pending; the next successful arm delivers it.
      this.#sink.disaster(
        0,
        `cannot register a timeout to process domain ${event.domid}'s ${event.type} event`,
        0,
        error,
      );
    }
  }

  #arm(): void {
    if (this.#timer?.armed) return;
    this.#timer = this.#sink.registry.registerTimeout(0, () => {
      this.#timer = null;
      this.#process();
    });
  }

  #process(): void {
    const pending = this.#pending;
    this.#pending = [];
    for (let i = 0; i < pending.length; i++) {
      if (!this.#unsubscribe) return;
      const item = pending[i];
      switch (item.type) {
        case "initial":
          this.#initial(item.gen, item.state);
          break;
        case "shutdown":
          for (const gen of [...this.#death.get(item.domid) ?? []]) {
            this.#shutdown(gen, item.reasonCode);
          }
          break;
        case "death":
          for (const gen of [...this.#death.get(item.domid) ?? []]) this.#dead(gen);
          this.#forgetEjects(item.domid);
          break;
        case "disk-eject":
          for (const gen of [...this.#eject.get(item.domid)?.get(item.vdev) ?? []]) {
            if (!gen.enabled) continue;
            this.#sink.emit({
              type: EventType.DISK_EJECT,
              domid: gen.domid,
              forUser: gen.forUser,
              vdev: gen.vdev,
            });
          }
          break;
      }
    }
  }

  #initial(gen: DomainDeathEnable, state: DomainState | undefined): void {
    if (!gen.enabled) return;
    if (state === undefined) {
      gen.shutdownReported = true; // gone before we looked: only DEATH
      this.#dead(gen);
    } else if (state.shutdownReason !== undefined) {
      this.#shutdown(gen, state.shutdownReason);
    }
  }

  #shutdown(gen: DomainDeathEnable, reasonCode: number): void {
    if (!gen.enabled || gen.shutdownReported || gen.deathReported) return;
    gen.shutdownReported = true;
    this.#sink.emit({
      type: EventType.DOMAIN_SHUTDOWN,
      domid: gen.domid,
      forUser: gen.forUser,
      shutdownReason: reasonCode,
      shutdownReasonName: shutdownReasonName(reasonCode),
    });
  }

  #dead(gen: DomainDeathEnable): void {
    if (!gen.enabled || gen.deathReported) return;
    gen.deathReported = true;
    gen.shutdownReported = true;
    // Still enabled (the application disables it), but out of the index: nothing more comes.
    const set = this.#death.get(gen.domid);
    set?.delete(gen);
    if (set?.size === 0) this.#death.delete(gen.domid);
    this.#sink.emit({ type: EventType.DOMAIN_DEATH, domid: gen.domid, forUser: gen.forUser });
  }

  #forgetEjects(domid: number): void {
    this.#eject.delete(domid);
  }
}

function checkDomid(domid: number): void {
  if (!Number.isInteger(domid) || domid < 0 || domid > 0xffff) {
    throw new XenUsageError(`domid must be an integer from 0 to 65535, got ${describe(domid)}`);
  }
}
