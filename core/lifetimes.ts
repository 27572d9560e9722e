/**
 * Lifetimes of the public handles: the garbage-collection backstop, its
 * leak reporter hook, and the inspection symbols the handles implement.
 *
 * Every EventChannels, GrantTable, GrantShare, GrantMapping and SharedGrant
 * registers with one FinalizationRegistry when it is created and
 * unregisters when it is closed (close(), unmap(), unshare(), dispose).
 * If one is garbage-collected while still open, the registry's callback
 * releases what it held through the driver (closing the handle, unmapping
 * the mapping, unsharing the share) and passes a LeakReport to the leak
 * reporter: console.warn by default, or the function given to
 * setLeakReporter. The registry holds a Backstop, which references the
 * driver and the bookkeeping records, never the public object (else the
 * object could never be collected).
 *
 * A backstop is a last resort, not a way to manage resources: when (and
 * whether) it runs is up to the garbage collector, and a mapping is
 * unmapped when its GrantMapping object is collected even if a `bytes` or
 * `pages` view taken from it is still in use (keep the mapping object
 * alive as long as its views; on real Xen such a view becomes empty).
 *
 * @module
 */
import type { BackendKind } from "./driver.ts";
import { XenUsageError } from "./errors.ts";
import { describe } from "./validate.ts";

/** The class of the object that was dropped without being closed. */
export type LeakKind =
  | "EventChannels"
  | "GrantTable"
  | "GrantShare"
  | "GrantMapping"
  | "SharedGrant";

/** What the backstop found and released for one dropped object. */
export interface LeakReport {
  readonly kind: LeakKind;
  readonly backend: BackendKind;
  /** The handle's file descriptor (the owning handle's, for a mapping or a share). */
  readonly fd: number;
  /** Event channel ports that were still bound (EventChannels), else empty. */
  readonly ports: readonly number[];
  /**
   * Mappings (GrantTable) or shares (GrantShare) still held; 1 for a
   * GrantMapping or SharedGrant; 0 for EventChannels.
   */
  readonly ranges: number;
  /** The pages in those ranges. */
  readonly pages: number;
  /** The grant refs of a SharedGrant, else empty. */
  readonly refs: readonly number[];
  /** Set when the release itself failed (it is not retried). */
  readonly error?: unknown;
  /** One line naming all of the above, e.g. for a log. */
  readonly message: string;
}

/**
 * Receives one LeakReport per object the backstop released. Runs from a
 * FinalizationRegistry callback (a separate task, never during a call of
 * ours); it should not throw (if it does, the error goes to console.error).
 */
export type LeakReporter = (report: LeakReport) => void;

/** The default reporter: console.warn(report.message). */
export function warnLeak(report: LeakReport): void {
  console.warn(report.message);
}

let reporter: LeakReporter = warnLeak;

/**
 * Sets the function that receives leak reports; null restores the default
 * (console.warn). Returns the reporter that was set before, so a caller can
 * restore it. Throws XenUsageError for anything but a function or null.
 * Process-wide; affects reports made from now on.
 */
export function setLeakReporter(fn: LeakReporter | null): LeakReporter {
  if (fn !== null && typeof fn !== "function") {
    throw new XenUsageError(`reporter must be a function or null, got ${describe(fn)}`);
  }
  const previous = reporter;
  reporter = fn ?? warnLeak;
  return previous;
}

/** What the registry holds for one object: releases it, returns the report (null: nothing held). */
export interface Backstop {
  release(): LeakReport | null;
}

const registry = new FinalizationRegistry<Backstop>((backstop) => {
  let report: LeakReport | null;
  try {
    report = backstop.release();
  } catch (error) {
    console.error("xenchan: a leak backstop failed:", error);
    return;
  }
  if (report === null) return;
  try {
    reporter(report);
  } catch (error) {
    console.error("xenchan: the leak reporter threw:", error);
  }
});

/**
 * Registers `target` with the backstop; `token` unregisters it (unguard).
 * `backstop` must not reference `target`. Throws nothing.
 */
export function guard(target: object, backstop: Backstop, token: object): void {
  registry.register(target, backstop, token);
}

/** Unregisters what `token` registered (idempotent). Throws nothing. */
export function unguard(token: object): void {
  registry.unregister(token);
}

/** The fields of a LeakReport without its message. */
export type LeakFacts = Omit<LeakReport, "message">;

/** Builds a LeakReport, writing its message. Throws nothing. */
export function leakReport(facts: LeakFacts): LeakReport {
  const pages = `${facts.pages} page${facts.pages === 1 ? "" : "s"}`;
  const held = {
    EventChannels: `ports [${facts.ports.join(", ")}]`,
    GrantTable: `${facts.ranges} mapping${facts.ranges === 1 ? "" : "s"} of ${pages}`,
    GrantShare: `${facts.ranges} share${facts.ranges === 1 ? "" : "s"} of ${pages}`,
    GrantMapping: pages,
    SharedGrant: `${pages}, refs [${facts.refs.join(", ")}]`,
  }[facts.kind];
  const outcome = facts.error === undefined
    ? "released it"
    : `could not release it: ${(facts.error as Error)?.message ?? String(facts.error)}`;
  const message = `xenchan: ${facts.kind} (${facts.backend} backend, fd ${facts.fd}, ` +
    `holding ${held}) was garbage-collected without close(); the backstop ${outcome}`;
  return { ...facts, message };
}

/** Deno's custom inspection hook (Deno.inspect, console.log in Deno). */
export const INSPECT_DENO: unique symbol = Symbol.for("Deno.customInspect");
/** Node's custom inspection hook (node:util inspect, Bun.inspect, console.log in Bun). */
export const INSPECT_NODE: unique symbol = Symbol.for("nodejs.util.inspect.custom");

/** Formats `fields` as `Name { a: 1, b: "x", c: [1, 2] }` for the inspection hooks. */
export function describeObject(name: string, fields: Record<string, unknown>): string {
  const show = (v: unknown): string =>
    Array.isArray(v)
      ? `[${v.map(show).join(", ")}]`
      : typeof v === "string"
      ? JSON.stringify(v)
      : typeof v === "bigint"
      ? `0x${v.toString(16)}`
      : String(v);
  return `${name} { ${Object.entries(fields).map(([k, v]) => `${k}: ${show(v)}`).join(", ")} }`;
}
