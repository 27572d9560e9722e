/**
 * Indexed storage for queued events and for waiting callers, so that the
 * common lookups cost O(1) however many events are queued or callers wait
 * (libxl's libxl_event_check is O(n) in queued events; this is not).
 *
 * Queued events and waiters are kept in FIFOs per event type, per (type,
 * domid) and per (type, forUser). A lookup by type alone, by type + domid or
 * by type + forUser looks only at the head of the matching FIFOs. A
 * predicate function can only be answered by scanning: O(n) in the events
 * (or waiters) of the types it covers, which is documented where it is
 * accepted. Removal is lazy (entries are marked dead and skipped), and the
 * indices are rebuilt when dead entries outnumber live ones, so every
 * operation is amortised O(1) for the indexed cases.
 *
 * Internal to plugins/osevent/.
 *
 * @module
 */
import { type EventFilter, type EventSelector, EventType, type XenEvent } from "./types.ts";

const KNOWN_TYPES: readonly number[] = Object.values(EventType);

interface Entry {
  readonly seq: number;
  dead: boolean;
}

/** A FIFO with lazy removal: dead entries are skipped and dropped from the head. */
class Fifo<T extends Entry> {
  #items: T[] = [];
  #head = 0;

  /** Appends `item`. O(1). */
  push(item: T): void {
    this.#items.push(item);
  }

  /** The oldest live entry, or undefined. */
  first(): T | undefined {
    const items = this.#items;
    while (this.#head < items.length && items[this.#head].dead) this.#head++;
    if (this.#head > 64 && this.#head * 2 > items.length) {
      this.#items = items.slice(this.#head);
      this.#head = 0;
    }
    return this.#items[this.#head];
  }

  /** The oldest live entry that `test` accepts (scans). */
  find(test: (item: T) => boolean): T | undefined {
    const head = this.first();
    if (!head) return undefined;
    const items = this.#items;
    for (let i = this.#head; i < items.length; i++) {
      const item = items[i];
      if (!item.dead && test(item)) return item;
    }
    return undefined;
  }

  /** Whether no live entry is left. */
  get empty(): boolean {
    return this.first() === undefined;
  }

  /** The live entries, oldest first. */
  *live(): Generator<T> {
    for (let i = this.#head; i < this.#items.length; i++) {
      if (!this.#items[i].dead) yield this.#items[i];
    }
  }
}

/** FIFOs by type, by (type, domid) and by (type, forUser). */
class Indexed<T extends Entry> {
  byType = new Map<number, Fifo<T>>();
  byDomid = new Map<number, Map<unknown, Fifo<T>>>();
  byUser = new Map<number, Map<unknown, Fifo<T>>>();

  /** Files `item` under its type. */
  addType(type: number, item: T): void {
    let fifo = this.byType.get(type);
    if (!fifo) this.byType.set(type, fifo = new Fifo());
    fifo.push(item);
  }

  /** Files `item` under (type, domid). */
  addDomid(type: number, domid: number, item: T): void {
    bucket(this.byDomid, type, domid).push(item);
  }

  /** Files `item` under (type, forUser) (SameValueZero keys). */
  addUser(type: number, user: unknown, item: T): void {
    bucket(this.byUser, type, user).push(item);
  }

  /** Forgets every entry. */
  clear(): void {
    this.byType.clear();
    this.byDomid.clear();
    this.byUser.clear();
  }
}

function bucket<T extends Entry>(
  map: Map<number, Map<unknown, Fifo<T>>>,
  type: number,
  key: unknown,
): Fifo<T> {
  let inner = map.get(type);
  if (!inner) map.set(type, inner = new Map());
  let fifo = inner.get(key);
  if (!fifo) inner.set(key, fifo = new Fifo());
  return fifo;
}

function lookup<T extends Entry>(
  map: Map<number, Map<unknown, Fifo<T>>>,
  type: number,
  key: unknown,
): Fifo<T> | undefined {
  return map.get(type)?.get(key);
}

function older<T extends Entry>(a: T | undefined, b: T | undefined): T | undefined {
  if (!a) return b;
  if (!b) return a;
  return a.seq <= b.seq ? a : b;
}

/** Splits a selector into its indexed part and the rest. */
function parseSelector(selector: EventSelector): {
  predicate?: (event: XenEvent) => boolean;
  domid?: number;
  user?: { value: unknown };
} {
  if (selector === undefined || selector === null) return {};
  if (typeof selector === "function") return { predicate: selector };
  const filter = selector as EventFilter;
  return {
    domid: filter.domid,
    user: "forUser" in filter ? { value: filter.forUser } : undefined,
  };
}

function typesIn(mask: number): number[] {
  return KNOWN_TYPES.filter((t) => (mask >>> t) & 1);
}

interface QueuedEvent extends Entry {
  readonly event: XenEvent;
}

/**
 * Events waiting to be retrieved, in generation order. Each is stored under
 * its type, its (type, domid) and its (type, forUser).
 */
export class EventQueue {
  #index = new Indexed<QueuedEvent>();
  #seq = 0;
  #live = 0;
  #takenSinceRebuild = 0;

  /** Number of queued events. */
  get size(): number {
    return this.#live;
  }

  /** Appends an event. O(1). */
  push(event: XenEvent): void {
    const entry: QueuedEvent = { seq: ++this.#seq, dead: false, event };
    this.#put(entry);
    this.#live++;
  }

  #put(entry: QueuedEvent): void {
    const { type, domid, forUser } = entry.event;
    this.#index.addType(type, entry);
    this.#index.addDomid(type, domid, entry);
    this.#index.addUser(type, forUser, entry);
  }

  /**
   * Removes and returns the oldest event whose type is in `mask` and that
   * the selector accepts, or null. O(number of event types) for no
   * selector or a filter; a predicate function is O(n) in the queued events
   * of the masked types. Exceptions from a predicate propagate (nothing is
   * removed then).
   */
  take(mask: number, selector: EventSelector): XenEvent | null {
    const { predicate, domid, user } = parseSelector(selector);
    let best: QueuedEvent | undefined;
    for (const type of typesIn(mask)) {
      let found: QueuedEvent | undefined;
      if (domid !== undefined) {
        const fifo = lookup(this.#index.byDomid, type, domid);
        found = user ? fifo?.find((e) => Object.is(e.event.forUser, user.value)) : fifo?.first();
      } else if (user) {
        found = lookup(this.#index.byUser, type, user.value)?.first();
      } else if (predicate) {
        found = this.#index.byType.get(type)?.find((e) => predicate(e.event));
      } else {
        found = this.#index.byType.get(type)?.first();
      }
      best = older(best, found);
    }
    if (!best) return null;
    best.dead = true;
    this.#live--;
    if (++this.#takenSinceRebuild > Math.max(1024, this.#live)) this.#rebuild();
    return best.event;
  }

  /** Drops every queued event. */
  clear(): void {
    this.#index.clear();
    this.#live = 0;
  }

  #rebuild(): void {
    const all: QueuedEvent[] = [];
    for (const fifo of this.#index.byType.values()) all.push(...fifo.live());
    all.sort((a, b) => a.seq - b.seq);
    this.clear();
    for (const entry of all) this.#put(entry);
    this.#live = all.length;
    this.#takenSinceRebuild = 0;
  }
}

/** A caller waiting for an event (eventWait / events). */
export interface Waiter extends Entry {
  readonly mask: number;
  readonly selector: EventSelector;
  /** Hands the event over; called at most once, after the waiter is marked dead. */
  readonly deliver: (event: XenEvent) => void;
  /** Called instead of deliver when the waiter's predicate throws. */
  readonly fail: (error: unknown) => void;
}

/**
 * Waiting callers. A waiter with a `domid` filter is stored under (type,
 * domid), one with only a `forUser` filter under (type, forUser), others
 * (no selector, or a predicate function) under the type; so an event is
 * matched in O(1) against filtered waiters, and in O(w) only against the w
 * waiters of its type that use predicate functions.
 */
export class WaiterIndex {
  #index = new Indexed<Waiter>();
  #all = new Set<Waiter>();
  #seq = 0;
  #removedSinceRebuild = 0;

  /** Number of live waiters. */
  get size(): number {
    return this.#all.size;
  }

  /** The next sequence number for a new waiter (older waiters win). */
  nextSeq(): number {
    return ++this.#seq;
  }

  /** Adds a waiter (its seq from nextSeq()). O(number of types in its mask). */
  add(waiter: Waiter): void {
    this.#all.add(waiter);
    this.#place(waiter);
  }

  #place(waiter: Waiter): void {
    const { domid, user } = parseSelector(waiter.selector);
    for (const type of typesIn(waiter.mask)) {
      if (domid !== undefined) this.#index.addDomid(type, domid, waiter);
      else if (user) this.#index.addUser(type, user.value, waiter);
      else this.#index.addType(type, waiter);
    }
  }

  /** Marks a waiter dead (aborted, settled). O(1) amortised. */
  remove(waiter: Waiter): void {
    if (waiter.dead) return;
    waiter.dead = true;
    this.#all.delete(waiter);
    if (++this.#removedSinceRebuild > Math.max(1024, this.#all.size)) this.#rebuild();
  }

  /**
   * Finds the oldest live waiter that wants `event`, removes it and
   * delivers the event to it; returns false when no waiter wants it.
   * A waiter whose predicate throws is removed and failed with the error.
   */
  offer(event: XenEvent): boolean {
    const { type, domid, forUser } = event;
    const throwing: { waiter: Waiter; error: unknown }[] = [];
    const test = (w: Waiter): boolean => {
      const { predicate, user } = parseSelector(w.selector);
      if (user && !Object.is(user.value, forUser)) return false;
      if (!predicate) return true;
      try {
        return predicate(event) === true;
      } catch (error) {
        throwing.push({ waiter: w, error });
        return false;
      }
    };
    let best = lookup(this.#index.byDomid, type, domid)?.find(test);
    best = older(best, lookup(this.#index.byUser, type, forUser)?.first());
    best = older(best, this.#index.byType.get(type)?.find(test));
    for (const { waiter, error } of throwing) {
      this.remove(waiter);
      waiter.fail(error);
    }
    if (!best) return false;
    this.remove(best);
    best.deliver(event);
    return true;
  }

  /** Removes every waiter and returns them (for rejecting on close/failure). */
  drain(): Waiter[] {
    const all = [...this.#all];
    for (const w of all) w.dead = true;
    this.#all.clear();
    this.#index.clear();
    return all;
  }

  #rebuild(): void {
    this.#index.clear();
    for (const w of [...this.#all].sort((a, b) => a.seq - b.seq)) this.#place(w);
    this.#removedSinceRebuild = 0;
  }
}
