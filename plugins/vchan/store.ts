/**
 * The XenStore a vchan needs for its rendezvous, as a small interface: the
 * XenStore client of core/xenstore/client.ts satisfies it as it is (against
 * a real xenstored, or the simulator's: sim/xenstore).
 *
 * The rendezvous (init.c, Xen 4.17): the server writes `<path>/ring-ref`
 * (the grant ref of the shared page) and `<path>/event-channel` (its unbound
 * port), each with the permissions `n<server> r<client>` (owner the server,
 * nobody else but the client may read), in one transaction; the client reads
 * both. The server removes `<path>` when it closes; a crashed server leaves
 * the keys behind. The usual path is
 * `/local/domain/<server>/data/vchan/<client>/<port>` (vchanPath).
 *
 * @module
 */
import { XenUsageError } from "../../core/errors.ts";
import type { XenStorePermission } from "../../core/xenstore/permissions.ts";

/** One watch event: the path that fired and the watch's token. */
export interface VchanStoreWatchEvent {
  readonly path: string;
  readonly token: string;
}

/** The operations a vchan uses, directly or inside a transaction. */
export interface VchanStoreOperations {
  /**
   * The node's value as a string. Rejects with an error whose `code` is
   * "ENOENT" when the node does not exist, "EACCES" without read access.
   * A relative path is relative to the caller's domain home
   * (/local/domain/<own domid>).
   */
  read(path: string): Promise<string>;
  /** Sets the node's value, creating missing parents. Rejects with EACCES, ENOSPC. */
  write(path: string, value: string): Promise<void>;
  /** Removes the node and everything below it. Rejects with EACCES. */
  rm(path: string): Promise<void>;
  /** Replaces the node's permission list (entry 0 = owner and default). Rejects with ENOENT, EACCES. */
  setPermissions(path: string, permissions: readonly XenStorePermission[]): Promise<void>;
}

/** What the rendezvous needs from a XenStore connection. */
export interface VchanStore extends VchanStoreOperations {
  /**
   * Events for `path` and every node below it, the first one on
   * registration; the iteration ends (and the watch is removed) when the
   * loop exits or `signal` aborts. "@releaseDomain" is allowed.
   */
  watch(
    path: string,
    options?: { readonly signal?: AbortSignal },
  ): AsyncIterableIterator<VchanStoreWatchEvent>;
  /**
   * Runs `body` in a transaction, rerunning it on EAGAIN (optional: without
   * it the server writes the two keys one after the other, ring-ref first,
   * so a client that sees event-channel also sees ring-ref).
   */
  transaction?<T>(body: (tx: VchanStoreOperations) => Promise<T>): Promise<T>;
  /**
   * Whether the daemon still knows domain `domid` (privileged callers only;
   * optional). With it, a vchan watches "@releaseDomain" and fails with
   * ECONNRESET within one event when the peer's domain is destroyed, which
   * no ring byte shows (a dead domain's kernel runs no unmap notification).
   */
  isDomainIntroduced?(domid: number): Promise<boolean>;
}

function checkId(name: string, value: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new XenUsageError(`${name} must be an integer from 0 to ${max}, got ${String(value)}`);
  }
  return value;
}

/**
 * The conventional rendezvous path `/local/domain/<server>/data/vchan/<client>/<port>`
 * (Qubes and ocaml-vchan; libxenvchan itself takes any path). `port` is the
 * application's number for the service, not an event channel. Throws
 * XenUsageError for a domid outside 0..65535 or a port outside 0..2^31-1.
 */
export function vchanPath(serverDomid: number, clientDomid: number, port: number): string {
  checkId("serverDomid", serverDomid, 0xffff);
  checkId("clientDomid", clientDomid, 0xffff);
  checkId("port", port, 0x7fffffff);
  return `/local/domain/${serverDomid}/data/vchan/${clientDomid}/${port}`;
}

/**
 * Parses a rendezvous value as the client does (atoi, then "0 means
 * failure"), but strictly: decimal digits only, 1..2^32-1. Returns
 * undefined for anything else.
 */
export function parseRendezvousNumber(text: string): number | undefined {
  if (!/^[0-9]{1,10}$/.test(text.trim())) return undefined;
  const n = Number(text.trim());
  return n >= 1 && n <= 0xffffffff ? n : undefined;
}

/** The `code` of a XenStore error (any object with a string code), else undefined. */
export function storeErrorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}
