/**
 * Vchan test fixtures on the simulator: a server in dom0 and a client in a
 * new domain, joined through the simulated xenstored.
 *
 * @module
 */
import { SimHypervisor } from "../../sim/mod.ts";
import type { SimDomainBackend } from "../../sim/mod.ts";
import { connectVchan, listenVchan, type Vchan, vchanPath } from "../../plugins/vchan/mod.ts";
import { SimVchanStore } from "./vchan_store.ts";

/** What vchanPair() sets up. */
export interface VchanPair {
  readonly hv: SimHypervisor;
  readonly d1: number;
  readonly xs: SimVchanStore;
  readonly path: string;
  readonly serverProcess: SimDomainBackend;
  readonly clientProcess: SimDomainBackend;
  readonly server: Vchan;
  readonly client: Vchan;
}

/** Options of vchanPair. */
export interface VchanPairOptions {
  readonly readMin?: number;
  readonly writeMin?: number;
  readonly peerCloseEndsStream?: boolean;
  readonly chunkSize?: number;
}

/** A connected server (dom0) and client (domain d1) at /local/domain/0/data/vchan/<d1>/5. */
export async function vchanPair(options: VchanPairOptions = {}): Promise<VchanPair> {
  const hv = new SimHypervisor();
  const d1 = hv.createDomain();
  const xs = new SimVchanStore(hv);
  const path = vchanPath(0, d1, 5);
  const serverProcess = hv.backend(0);
  const clientProcess = hv.backend(d1);
  const server = await listenVchan({
    backend: serverProcess,
    store: xs.connect(0),
    domid: d1,
    path,
    ...options,
  });
  const client = await connectVchan({
    backend: clientProcess,
    store: xs.connect(d1),
    domid: 0,
    path,
    peerCloseEndsStream: options.peerCloseEndsStream,
    chunkSize: options.chunkSize,
  });
  await server.connected();
  return { hv, d1, xs, path, serverProcess, clientProcess, server, client };
}

/** Deterministic pseudo-random bytes (xorshift32). */
export function patternBytes(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Reads from `vchan` until `length` bytes arrived; returns them. */
export async function readExactly(vchan: Vchan, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  for (let at = 0; at < length;) {
    const chunk = await vchan.read(length - at);
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** Collects a readable stream into one array (until it ends; rejects as it does). */
export async function collect(
  stream: ReadableStream<Uint8Array>,
  limit = Infinity,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  const reader = stream.getReader();
  try {
    while (total < limit) {
      const { value, done } = await reader.read();
      if (done) break;
      parts.push(value);
      total += value.length;
    }
  } finally {
    reader.releaseLock();
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Lets the simulator's promise chains run `turns` macrotask turns. */
export async function settle(turns = 3): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((resolve) => setTimeout(resolve, 0));
}
