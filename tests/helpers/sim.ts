/**
 * Simulator test fixtures.
 *
 * @module
 */
import type { EventChannelDriver, SharedPages } from "../../core/driver.ts";
import { type SimDomainBackend, SimHypervisor } from "../../sim/mod.ts";

/** What serverAndClient() sets up. */
export interface ServerAndClient {
  readonly hv: SimHypervisor;
  readonly d1: number;
  readonly server: SimDomainBackend;
  readonly sevt: EventChannelDriver;
  readonly sport: number;
  readonly s: SharedPages;
  readonly client: SimDomainBackend;
  readonly cevt: EventChannelDriver;
  readonly cport: number;
}

/**
 * A server process in dom0 and a client process in a new domain d1, joined
 * by an interdomain event channel (server `sport`, client `cport`), with one
 * writable page `s` that the server shares with d1. The client's bind-time
 * event is still pending.
 */
export function serverAndClient(hv: SimHypervisor = new SimHypervisor()): ServerAndClient {
  const d1 = hv.createDomain();
  const server = hv.backend(0);
  const sevt = server.openEventChannels();
  const sport = sevt.bindUnboundPort(d1);
  const s = server.openGrantShare().sharePages(d1, 1, true);
  const client = hv.backend(d1);
  const cevt = client.openEventChannels();
  const cport = cevt.bindInterdomain(0, sport);
  return { hv, d1, server, sevt, sport, s, client, cevt, cport };
}
