/**
 * connectVchan: the client end (libxenvchan_client_init, init.c of Xen
 * 4.17), in the same order as C: read `<path>/ring-ref` and
 * `<path>/event-channel` (0 or garbage is a failure), bind the server's
 * port (unmasked), map the shared page with unmap notification on cli_live
 * (so the server sees a crashed client), read the orders ONCE and check them
 * (10..20, not both the same in-page slot), map the left ring read-write and
 * the right ring read-only from the grant list, then set cli_live 1 and
 * srv_notify NOTIFY_WRITE and notify the server.
 *
 * Everything this end later does uses its own copies of the orders and the
 * grant refs: a server that rewrites them afterwards cannot move a ring.
 *
 * @module
 */
import { XenUsageError } from "../../core/errors.ts";
import { EventChannels } from "../../core/event_channels.ts";
import { type GrantMapping, GrantTable } from "../../core/grants.ts";
import { VchanError } from "./errors.ts";
import {
  badOrdersReason,
  inPageOffset,
  LIVE_CONNECTED,
  LIVE_GONE,
  MAX_GRANTS,
  NOTIFY_WRITE,
  OFFSET,
  ringPages,
  VchanHeader,
} from "./layout.ts";
import { RingMemory, RingReader, RingWriter } from "./ring.ts";
import { checkCommon, checkDomidOption, type VchanCommonOptions } from "./server.ts";
import { parseRendezvousNumber, storeErrorCode, type VchanStore } from "./store.ts";
import { Vchan } from "./vchan.ts";

/** Options of connectVchan. */
export interface VchanClientOptions extends VchanCommonOptions {
  /** The server's domain. */
  readonly domid: number;
  /**
   * Wait for the server to publish the keys (watching `path`, as
   * vchan-socket-proxy does) instead of failing with ENOENT. Default false.
   */
  readonly wait?: boolean;
  /** Aborts the wait (rejects with the signal's reason). */
  readonly signal?: AbortSignal;
}

interface Rendezvous {
  readonly ref: number;
  readonly port: number;
}

async function readKey(store: VchanStore, path: string, key: string): Promise<number> {
  let text: string;
  try {
    text = await store.read(`${path}/${key}`);
  } catch (error) {
    if (storeErrorCode(error) === "ENOENT") {
      throw new VchanError("ENOENT", path, `no ${key} key: no server here (yet)`, {
        cause: error,
      });
    }
    throw error;
  }
  const value = parseRendezvousNumber(text);
  if (value === undefined) {
    throw new VchanError("ENOENT", path, `${key} holds ${JSON.stringify(text)}, not a number`);
  }
  return value;
}

async function readRendezvous(store: VchanStore, path: string): Promise<Rendezvous> {
  const ref = await readKey(store, path, "ring-ref");
  const port = await readKey(store, path, "event-channel");
  return { ref, port };
}

async function awaitRendezvous(
  store: VchanStore,
  path: string,
  signal?: AbortSignal,
): Promise<Rendezvous> {
  const stop = new AbortController();
  const onAbort = () => stop.abort(signal?.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const _ of store.watch(path, { signal: stop.signal })) {
      try {
        return await readRendezvous(store, path);
      } catch (error) {
        // Not there yet, or written but not yet readable by us (a server without a
        // transaction sets the permissions after the value): retry on the next event.
        const notYet = (error instanceof VchanError && error.code === "ENOENT") ||
          storeErrorCode(error) === "EACCES";
        if (!notYet) throw error;
      }
    }
    signal?.throwIfAborted();
    throw new VchanError("ENOENT", path, "the watch ended before a server appeared");
  } finally {
    signal?.removeEventListener("abort", onAbort);
    stop.abort();
  }
}

/**
 * Connects to the vchan server in domain `domid` at `path`. Resolves with
 * the client's Vchan, open. Rejects with VchanError ENOENT (no server: the
 * keys are missing or not numbers; with `wait`, which retries on every
 * watch event while the keys are missing or not yet readable, only when the
 * watch ends),
 * EPROTO (the server's page holds orders the protocol forbids, or a grant
 * list longer than the page), ECONNRESET (the server is already gone:
 * srv_live 0), XenCallError from binding or mapping (EINVAL: a port or ref
 * not offered to this domain), the store's errors (EACCES), the signal's
 * reason; XenUsageError for a bad option. On failure everything mapped or
 * bound is released.
 */
export async function connectVchan(options: VchanClientOptions): Promise<Vchan> {
  const { path, chunkSize } = checkCommon(options);
  const domid = checkDomidOption(options.domid);
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    throw new XenUsageError(`signal must be an AbortSignal, got ${String(options.signal)}`);
  }
  const { backend, store } = options;
  options.signal?.throwIfAborted();
  const rendezvous = options.wait
    ? await awaitRendezvous(store, path, options.signal)
    : await readRendezvous(store, path);
  const gnttab = new GrantTable(backend.kind, backend.openGrantTable());
  const evtchn = new EventChannels(backend.kind, backend.openEventChannels());
  const mappings: GrantMapping[] = [];
  try {
    const port = evtchn.bindInterdomain(domid, rendezvous.port);
    evtchn.unmask(port);
    const page = gnttab.mapGrantRefNotify(domid, rendezvous.ref, {
      notifyOffset: OFFSET.cliLive,
      notifyPort: port,
    });
    mappings.push(page);
    const header = new VchanHeader(page.bytes);
    // The orders are read once; every later use is of these copies.
    const writeOrder = header.load16(OFFSET.leftOrder);
    const readOrder = header.load16(OFFSET.rightOrder);
    const bad = badOrdersReason(writeOrder, readOrder);
    if (bad) throw new VchanError("EPROTO", path, `the server's page is unusable: ${bad}`);
    const writePages = ringPages(writeOrder);
    const readPages = ringPages(readOrder);
    if (writePages + readPages > MAX_GRANTS) {
      throw new VchanError("EPROTO", path, "the grant list does not fit in the page");
    }
    const refs = Array.from({ length: writePages + readPages }, (_, i) => header.grant(i));
    const memoryFor = (order: number, grants: number[], writable: boolean): RingMemory => {
      if (grants.length === 0) {
        const at = inPageOffset(order);
        return new RingMemory([page.bytes.subarray(at, at + (1 << order))]);
      }
      const mapping = gnttab.mapDomainGrantRefs(domid, grants, { writable });
      mappings.push(mapping);
      return new RingMemory(mapping.pages);
    };
    const left = memoryFor(writeOrder, refs.slice(0, writePages), true);
    const right = memoryFor(readOrder, refs.slice(writePages), false);
    if (header.load8(OFFSET.srvLive) === LIVE_GONE) {
      throw new VchanError("ECONNRESET", path, "the server is gone: srv_live is 0");
    }
    const reader = new RingReader(header, "right", right);
    const writer = new RingWriter(header, "left", left);
    header.store8(OFFSET.cliLive, LIVE_CONNECTED);
    header.store8(OFFSET.srvNotify, NOTIFY_WRITE);
    evtchn.notify(port);
    return new Vchan({
      role: "client",
      path,
      peerDomid: domid,
      evtchn,
      port,
      header,
      reader,
      writer,
      leftOrder: writeOrder,
      rightOrder: readOrder,
      releaseRings: () => mappings.slice(1).forEach((m) => m.unmap()),
      releasePage: () => page.unmap(),
      closeGrantHandle: () => gnttab.close(),
      store,
      peerCloseEndsStream: options.peerCloseEndsStream ?? false,
      chunkSize,
    });
  } catch (error) {
    gnttab.close();
    evtchn.close();
    throw error;
  }
}
