/**
 * vchan throughput and latency on the simulator: a TypeScript server in
 * simulated dom0 and a TypeScript client in a simulated guest. Prints one
 * JSON row per measurement (stdout), so the real-Xen harness can later put
 * the same rows next to the C peer's (bench/c/vchan_peer.c) and print ratios.
 *
 *   node_modules/.bin/deno run -A bench/vchan.ts [--quick]
 *   node_modules/.bin/bun run bench/vchan.ts [--quick]
 *
 * Rows: {"bench":"vchan","backend":"sim","runtime":...,"mode":"throughput",
 * "write":4096,"ring":...,"bytes":...,"seconds":...,"mbPerSecond":...} and
 * {"mode":"pingpong","rounds":...,"microsPerRound":...}. The simulator's
 * figures measure this code's own cost (copies, index and notify protocol,
 * promise hand-offs), not a hypervisor's.
 *
 * @module
 */
import process from "node:process";
import { SimHypervisor } from "../sim/mod.ts";
import { connectVchan, listenVchan, MemoryXenStore, vchanPath } from "../plugins/vchan/mod.ts";

const quick = process.argv.includes("--quick");
const runtime = "Deno" in globalThis ? "deno" : "bun";

async function pair(readMin: number, writeMin: number) {
  const hv = new SimHypervisor();
  const guest = hv.createDomain();
  const xs = new MemoryXenStore(hv);
  const path = vchanPath(0, guest, 1);
  const server = await listenVchan({
    backend: hv.backend(0),
    store: xs.connect(0),
    domid: guest,
    path,
    readMin,
    writeMin,
  });
  const client = await connectVchan({
    backend: hv.backend(guest),
    store: xs.connect(guest),
    domid: 0,
    path,
  });
  await server.connected();
  return { server, client };
}

async function throughput(writeSize: number, ring: number): Promise<void> {
  const { server, client } = await pair(ring, 0);
  const total = (quick ? 8 : 64) << 20;
  const chunk = new Uint8Array(writeSize).fill(7);
  const t0 = performance.now();
  const reading = (async () => {
    for (let got = 0; got < total;) got += (await server.read(1 << 20)).length;
  })();
  for (let sent = 0; sent < total; sent += writeSize) await client.write(chunk);
  await reading;
  const seconds = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({
    bench: "vchan",
    backend: "sim",
    runtime,
    mode: "throughput",
    write: writeSize,
    ring: server.readSize,
    bytes: total,
    seconds: Number(seconds.toFixed(4)),
    mbPerSecond: Number((total / seconds / 1e6).toFixed(1)),
  }));
  client.close();
  server.close();
}

async function pingpong(): Promise<void> {
  const { server, client } = await pair(0, 0);
  const rounds = quick ? 2000 : 20000;
  const one = new Uint8Array([1]);
  const echo = (async () => {
    for (let i = 0; i < rounds; i++) await server.send(await server.recv(1));
  })();
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++) {
    await client.send(one);
    await client.recv(1);
  }
  const micros = ((performance.now() - t0) * 1000) / rounds;
  await echo;
  console.log(JSON.stringify({
    bench: "vchan",
    backend: "sim",
    runtime,
    mode: "pingpong",
    rounds,
    microsPerRound: Number(micros.toFixed(2)),
  }));
  client.close();
  server.close();
}

for (const [write, ring] of [[4096, 0], [4096, 65536], [65536, 65536], [65536, 1 << 20]]) {
  await throughput(write, ring);
}
await pingpong();
