/**
 * listenVchan: the server end (libxenvchan_server_init, init.c of Xen 4.17),
 * in the same order as C: an unbound port for the client (unmasked), the
 * shared page with unmap notification on srv_live (so the client sees a
 * crashed server), the header (orders, cli_live 2, srv_live 1, cli_notify
 * NOTIFY_WRITE), the separately granted rings for orders >= 12 (left refs
 * first), then the XenStore keys `<path>/ring-ref` and
 * `<path>/event-channel`, each with permissions `n<own> r<client>`, in one
 * transaction when the store offers one. The returned Vchan accepts writes
 * at once (they wait in the ring); `connected()` resolves when the client
 * arrives.
 *
 * @module
 */
import type { XenBackend } from "../../core/driver.ts";
import { XenUsageError } from "../../core/errors.ts";
import { EventChannels } from "../../core/event_channels.ts";
import { GrantShare, type SharedGrant } from "../../core/grants.ts";
import type { XenStorePermission } from "../../core/xenstore/permissions.ts";
import { VchanError } from "./errors.ts";
import {
  inPageOffset,
  LIVE_CONNECTED,
  LIVE_WAITING,
  NOTIFY_WRITE,
  OFFSET,
  PAGE_SIZE,
  ringPages,
  serverOrders,
  VchanHeader,
} from "./layout.ts";
import { RingMemory, RingReader, RingWriter } from "./ring.ts";
import type { VchanStore, VchanStoreOperations } from "./store.ts";
import { Vchan } from "./vchan.ts";

/** Options shared by listenVchan and connectVchan. */
export interface VchanCommonOptions {
  /** Where the handles come from: a XenBackend (the FFI backend, or `hv.backend(domid)`). */
  readonly backend: XenBackend;
  /** The XenStore connection of this end (a XenStore client, or anything with VchanStore's methods). */
  readonly store: VchanStore;
  /** The rendezvous path (see vchanPath for the convention). */
  readonly path: string;
  /**
   * When the peer goes away, end the readable stream normally instead of
   * with VchanError ECONNRESET (the peer's close and its crash look the same
   * on the wire). Default false.
   */
  readonly peerCloseEndsStream?: boolean;
  /** The largest chunk the readable stream yields (default 65536). */
  readonly chunkSize?: number;
}

/** Options of listenVchan. */
export interface VchanServerOptions extends VchanCommonOptions {
  /** The client's domain. */
  readonly domid: number;
  /** At least this many bytes in the ring the server reads (left); default 0. */
  readonly readMin?: number;
  /** At least this many bytes in the ring the server writes (right); default 0. */
  readonly writeMin?: number;
}

/** @internal Argument checks shared with the client. */
export function checkCommon(options: VchanCommonOptions): { path: string; chunkSize: number } {
  if (typeof options !== "object" || options === null) {
    throw new XenUsageError(`options must be an object, got ${String(options)}`);
  }
  const backend = options.backend as Partial<XenBackend> | undefined;
  if (typeof backend?.openEventChannels !== "function") {
    throw new XenUsageError(`backend must be a XenBackend, got ${String(options.backend)}`);
  }
  const store = options.store as Partial<VchanStore> | undefined;
  for (const method of ["read", "write", "rm", "setPermissions", "watch"] as const) {
    if (typeof store?.[method] !== "function") {
      throw new XenUsageError(`store must be a XenStore connection: it has no ${method}()`);
    }
  }
  const path = options.path;
  if (typeof path !== "string" || path === "" || path.endsWith("/") || path.includes("\0")) {
    throw new XenUsageError(`path must be a XenStore path, got ${JSON.stringify(path)}`);
  }
  const chunkSize = options.chunkSize ?? 65536;
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 1 || chunkSize > 0x7fffffff) {
    throw new XenUsageError(`chunkSize must be a positive integer, got ${String(chunkSize)}`);
  }
  return { path, chunkSize };
}

/** @internal */
export function checkDomidOption(domid: number): number {
  if (!Number.isSafeInteger(domid) || domid < 0 || domid >= 0x7ff0) {
    throw new XenUsageError(`domid must be a domain id from 0 to 32751, got ${String(domid)}`);
  }
  return domid;
}

async function publish(
  store: VchanStore,
  path: string,
  ringRef: number,
  port: number,
  perms: readonly XenStorePermission[],
): Promise<void> {
  const body = async (ops: VchanStoreOperations) => {
    await ops.write(`${path}/ring-ref`, String(ringRef));
    await ops.setPermissions(`${path}/ring-ref`, perms);
    await ops.write(`${path}/event-channel`, String(port));
    await ops.setPermissions(`${path}/event-channel`, perms);
  };
  if (store.transaction) await store.transaction(body);
  else await body(store);
}

/**
 * Creates a vchan server for client domain `domid` at `path` and publishes
 * it in XenStore. Resolves with the server's Vchan (state "waiting" until
 * the client connects). Rejects with XenUsageError for a bad option or ring
 * size (each at most 1 MiB), XenCallError from the handles (ESRCH: no such
 * domain; ENOSPC: out of grants), the store's error (EACCES: the path is
 * not writable by this domain), VchanError ENOENT when the store has no
 * relative `domid` key (C reads it the same way). On failure everything
 * already allocated is released and nothing is left in XenStore.
 */
export async function listenVchan(options: VchanServerOptions): Promise<Vchan> {
  const { path, chunkSize } = checkCommon(options);
  const domid = checkDomidOption(options.domid);
  const orders = serverOrders(options.readMin ?? 0, options.writeMin ?? 0);
  const { backend, store } = options;
  const evtchn = new EventChannels(backend.kind, backend.openEventChannels());
  let gntshr: GrantShare | undefined;
  const shares: SharedGrant[] = [];
  try {
    const port = evtchn.bindUnboundPort(domid);
    evtchn.unmask(port);
    gntshr = new GrantShare(backend.kind, backend.openGrantShare());
    const page = gntshr.sharePageNotify(domid, {
      notifyOffset: OFFSET.srvLive,
      notifyPort: port,
    });
    const header = new VchanHeader(page.bytes);
    page.bytes.fill(0, 0, PAGE_SIZE);
    header.store16(OFFSET.leftOrder, orders.read);
    header.store16(OFFSET.rightOrder, orders.write);
    header.store8(OFFSET.cliLive, LIVE_WAITING);
    header.store8(OFFSET.srvLive, LIVE_CONNECTED);
    header.store8(OFFSET.cliNotify, NOTIFY_WRITE);
    const leftPages = ringPages(orders.read);
    const memoryFor = (order: number, firstGrant: number): RingMemory => {
      const count = ringPages(order);
      if (count === 0) {
        const at = inPageOffset(order);
        return new RingMemory([page.bytes.subarray(at, at + (1 << order))]);
      }
      const share = gntshr!.sharePages(domid, count);
      shares.push(share);
      share.refs.forEach((ref, i) => header.setGrant(firstGrant + i, ref));
      return new RingMemory(share.pages);
    };
    const left = memoryFor(orders.read, 0);
    const right = memoryFor(orders.write, leftPages);
    const ownDomid = await readOwnDomid(store, path);
    await publish(store, path, page.refs[0], port, [
      { domid: ownDomid, access: "none" },
      { domid, access: "read" },
    ]);
    const share = gntshr;
    return new Vchan({
      role: "server",
      path,
      peerDomid: domid,
      evtchn,
      port,
      header,
      reader: new RingReader(header, "left", left),
      writer: new RingWriter(header, "right", right),
      leftOrder: orders.read,
      rightOrder: orders.write,
      releaseRings: () => shares.forEach((s) => s.unshare()),
      releasePage: () => page.unshare(),
      closeGrantHandle: () => share.close(),
      removePath: () => store.rm(path),
      store,
      peerCloseEndsStream: options.peerCloseEndsStream ?? false,
      chunkSize,
    });
  } catch (error) {
    gntshr?.close();
    evtchn.close();
    await store.rm(path).catch(() => {});
    throw error;
  }
}

async function readOwnDomid(store: VchanStore, path: string): Promise<number> {
  let text: string;
  try {
    text = await store.read("domid");
  } catch (error) {
    throw new VchanError(
      "ENOENT",
      path,
      "cannot read this domain's relative XenStore key 'domid'",
      { cause: error },
    );
  }
  const domid = Number(text);
  if (!/^[0-9]{1,5}$/.test(text) || domid > 0xffff) {
    throw new VchanError("ENOENT", path, `this domain's 'domid' key holds ${JSON.stringify(text)}`);
  }
  return domid;
}
