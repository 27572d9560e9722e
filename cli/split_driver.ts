/**
 * The two ends of the demo's split driver, written once and used both in
 * one process (simulator) and across processes (real Xen, dom0 loopback).
 *
 * Front end: produces `requests` requests (id 0..n-1, payload
 * requestPayload(id)) and checks every response (same id, in order,
 * status 0, the payload's FNV-1a). Back end: answers every request with
 * its checksum. Both wait for events on their port with pending() (never
 * spinning), unmask, and re-check the ring, following ring.h's
 * final-check rule so no notification is lost or needlessly sent.
 *
 * @module
 */
import type { EventChannels, GrantMapping, GrantTable } from "../mod.ts";
import {
  BackRing,
  fnv1a,
  FrontRing,
  LIVE_OFFSET,
  MAX_PAYLOAD,
  requestPayload,
  RESPONSE_SIZE,
  SharedRing,
} from "./ring.ts";

/** What one end did. */
export interface EndStats {
  /** Requests produced (front) or consumed (back). */
  readonly requests: number;
  /** Responses consumed (front) or produced (back). */
  readonly responses: number;
  /** notify() calls made on its port. */
  readonly notifiesSent: number;
  /** Events received on its port (pending() returns). */
  readonly eventsReceived: number;
  /** Bytes this end wrote into the ring slots (8-byte headers + payloads, or responses). */
  readonly bytesWritten: number;
  /** Responses that failed a check (front end only); empty when all were right. */
  readonly errors: string[];
  /** Milliseconds from the first request to the last response. */
  readonly ms: number;
}

/** What both loops need. */
export interface EndOptions {
  readonly evtchn: EventChannels;
  /** This end's local port. */
  readonly port: number;
  readonly ring: SharedRing;
  readonly requests: number;
  /** Aborting makes the loop reject with the signal's reason. */
  readonly signal?: AbortSignal;
}

/** Waits for one event on `port`, unmasks it. Rejects on abort or for an unexpected port. */
async function awaitEvent(options: EndOptions): Promise<void> {
  const got = await options.evtchn.pending({ signal: options.signal });
  options.evtchn.unmask(got);
  if (got !== options.port) throw new Error(`event on port ${got}, expected ${options.port}`);
}

/**
 * The front end: issues `requests` requests and checks the responses.
 * Resolves with its stats (errors lists wrong responses, at most 10).
 * Rejects when the signal aborts or the event channel fails.
 */
export async function runFrontEnd(options: EndOptions): Promise<EndStats> {
  const front = new FrontRing(options.ring);
  const n = options.requests;
  let sent = 0;
  let received = 0;
  let notifies = 0;
  let events = 0;
  let bytes = 0;
  const errors: string[] = [];
  const t0 = performance.now();
  while (received < n) {
    let produced = false;
    while (sent < n && front.freeRequests() > 0) {
      const payload = requestPayload(sent);
      front.putRequest(sent, payload);
      bytes += 8 + payload.length;
      sent++;
      produced = true;
    }
    if (produced && front.pushRequests()) {
      options.evtchn.notify(options.port);
      notifies++;
    }
    let got = 0;
    while (front.unconsumedResponses() > 0) {
      const r = front.takeResponse();
      const expected = requestPayload(received);
      if (
        r.id !== received || r.status !== 0 || r.checksum !== fnv1a(expected) ||
        r.len !== expected.length
      ) {
        if (errors.length < 10) {
          errors.push(
            `response #${received}: id ${r.id} status ${r.status} checksum ${r.checksum} len ${r.len}`,
          );
        }
      }
      received++;
      got++;
    }
    if (received === n || got > 0) continue;
    if (front.finalCheckForResponses()) continue;
    await awaitEvent(options);
    events++;
  }
  return {
    requests: sent,
    responses: received,
    notifiesSent: notifies,
    eventsReceived: events,
    bytesWritten: bytes,
    errors,
    ms: performance.now() - t0,
  };
}

/**
 * The back end: answers requests until it has answered `requests` of them.
 * Resolves with its stats. Rejects when the signal aborts, the event
 * channel fails, or a request is malformed (RangeError).
 */
export async function runBackEnd(options: EndOptions): Promise<EndStats> {
  const back = new BackRing(options.ring);
  const n = options.requests;
  let answered = 0;
  let notifies = 0;
  let events = 0;
  const t0 = performance.now();
  for (;;) {
    while (answered < n && back.unconsumedRequests() > 0) {
      const { id, payload } = back.takeRequest();
      back.putResponse({ id, status: 0, checksum: fnv1a(payload), len: payload.length });
      answered++;
    }
    if (back.pushResponses()) {
      options.evtchn.notify(options.port);
      notifies++;
    }
    if (answered === n) break;
    if (back.finalCheckForRequests()) continue;
    await awaitEvent(options);
    events++;
  }
  return {
    requests: answered,
    responses: answered,
    notifiesSent: notifies,
    eventsReceived: events,
    bytesWritten: answered * RESPONSE_SIZE,
    errors: [],
    ms: performance.now() - t0,
  };
}

/** Bytes the front end writes for `n` requests (8-byte headers plus payloads). */
export function requestBytes(n: number): number {
  let total = 0;
  for (let id = 0; id < n; id++) total += 8 + 1 + (id % MAX_PAYLOAD);
  return total;
}

/** A front end attached to the back end's ring and port. */
export interface AttachedFrontEnd {
  /** The front end's local port (bound to the back end's). */
  readonly port: number;
  /** The ring page mapped with unmap notification. */
  readonly mapping: GrantMapping;
  readonly ring: SharedRing;
}

/**
 * The front end's setup, as a Xen front end driver does it: binds to the
 * back end's unbound port, consumes the event Xen raises on a freshly bound
 * port, maps the ring page with unmap notification (clear the live byte and
 * notify its port when the mapping goes away, for example when this process
 * dies) and sets the live byte to 1. Rejects with the library's errors, or
 * the signal's reason when the bind-time event does not come.
 */
export async function attachFrontEnd(
  evtchn: EventChannels,
  grants: GrantTable,
  backDomid: number,
  backPort: number,
  ref: number,
  signal?: AbortSignal,
): Promise<AttachedFrontEnd> {
  const port = evtchn.bindInterdomain(backDomid, backPort);
  const first = await evtchn.pending({ signal });
  evtchn.unmask(first);
  const mapping = grants.mapGrantRefNotify(backDomid, ref, {
    writable: true,
    notifyOffset: LIVE_OFFSET,
    notifyPort: port,
  });
  const ring = new SharedRing(mapping.pages[0]);
  ring.bytes[LIVE_OFFSET] = 1;
  return { port, mapping, ring };
}
