/**
 * vchan throughput and latency on the simulator: a TypeScript server in
 * simulated dom0 and a TypeScript client in a simulated guest. Prints one
 * JSON row per measurement (stdout), so the real-Xen harness can later put
 * the same rows next to the C peer's (bench/c/vchan_peer.c) and print ratios.
 *
 *   node_modules/.bin/deno run -A bench/vchan.ts [--quick]
 *   node_modules/.bin/bun run bench/vchan.ts [--quick]
 *
 * Rows (bench/rows.ts; suite vchan, no baseline on the simulator): case
 * "throughput write=4096 ring=1024" in MB/s with its own fields
 * {"bench":"vchan","backend":"sim","mode":"throughput","write","ring",
 * "bytes","seconds","mbPerSecond"}, and case "pingpong 1 byte" in
 * us/round with {"mode":"pingpong","rounds","microsPerRound"}. The simulator's
 * figures measure this code's own cost (copies, index and notify protocol,
 * promise hand-offs), not a hypervisor's.
 *
 * @module
 */
import process from "node:process";
import { SimHypervisor } from "../sim/mod.ts";
import { openXenStore } from "../mod.ts";
import { connectVchan, listenVchan, vchanPath } from "../plugins/vchan/mod.ts";
import { emitRow, say } from "./rows.ts";

const quick = process.argv.includes("--quick");
const runtime = "Deno" in globalThis ? "deno" : "bun";
say(`vchan on the simulator (${runtime}${quick ? ", --quick" : ""}): one JSON row per measurement`);

async function pair(readMin: number, writeMin: number) {
  const hv = new SimHypervisor();
  const guest = hv.createDomain();
  const path = vchanPath(0, guest, 1);
  const server = await listenVchan({
    backend: hv.backend(0),
    store: await openXenStore({ backend: hv.backend(0) }),
    domid: guest,
    path,
    readMin,
    writeMin,
  });
  const client = await connectVchan({
    backend: hv.backend(guest),
    store: await openXenStore({ backend: hv.backend(guest) }),
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
  const mbPerSecond = Number((total / seconds / 1e6).toFixed(1));
  emitRow({
    suite: "vchan",
    case: `throughput write=${writeSize} ring=${server.readSize}`,
    unit: "MB/s",
    better: "higher",
    value: mbPerSecond,
    stat: "single",
    summary: writeSize === 65536 && ring === 65536,
    bench: "vchan",
    backend: "sim",
    mode: "throughput",
    write: writeSize,
    ring: server.readSize,
    bytes: total,
    seconds: Number(seconds.toFixed(4)),
    mbPerSecond,
  });
  say(`  throughput write=${writeSize} ring=${server.readSize}: ${mbPerSecond} MB/s`);
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
  const microsPerRound = Number(micros.toFixed(2));
  emitRow({
    suite: "vchan",
    case: "pingpong 1 byte",
    unit: "us/round",
    better: "lower",
    value: microsPerRound,
    stat: "single",
    summary: true,
    bench: "vchan",
    backend: "sim",
    mode: "pingpong",
    rounds,
    microsPerRound,
  });
  say(`  pingpong 1 byte: ${microsPerRound} us/round`);
  client.close();
  server.close();
}

for (const [write, ring] of [[4096, 0], [4096, 65536], [65536, 65536], [65536, 1 << 20]]) {
  await throughput(write, ring);
}
await pingpong();
