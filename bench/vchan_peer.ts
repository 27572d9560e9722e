/**
 * vchan_peer.ts: the TypeScript twin of bench/c/vchan_peer.c, over the
 * project's vchan (plugins/vchan) and XenStore client on real Xen, for the
 * real-Xen interop tests (tests/dom0/vchan_guest.test.ts) and the vchan
 * benchmark (scripts/bench_xen.mjs). Runs in dom0 or in a guest, under Deno
 * or Bun; one or more jobs one after the other, separated by `--`:
 *
 *   vchan_peer.ts server|client MODE DOMID PATH [BYTES [WRITE]] [-- JOB ...]
 *
 *   echo      copy everything read back to the peer until it closes
 *   drive     write BYTES (default 1 MiB) pseudo-random bytes (xorshift32,
 *             seed 1) in WRITE-byte writes while reading as many back from
 *             an echoing peer; print {"mode":"drive","bytes","sent","got",
 *             "equal"} (sha-256 in hex of what went out and what came back)
 *   source    write BYTES (default 64 MiB) in WRITE-byte writes (default
 *             4096), wait until the peer read them, print a JSON row, close
 *             ("waits": writes that found too little space and waited)
 *   sink      read until the peer closes, print a JSON row (the throughput
 *             from the first byte to the last; "reads": reads that returned
 *             data, "waits": reads that found the ring empty and waited for
 *             an event)
 *   pingpong  BYTES one-byte round trips (the client initiates and prints)
 *   flood     write WRITE-byte chunks until the vchan fails; after the first
 *             256 KiB print "flooding" and create the file $VCHAN_FLOOD_MARK
 *             (when set), so a test knows when to kill this process
 *
 * The server takes VCHAN_READ_MIN / VCHAN_WRITE_MIN (bytes) like the C peer
 * and waits for its client before it starts. Rows are the C peer's, with
 * "backend" the runtime ("deno" or "bun"). Exit status: 0 when every job
 * succeeded, 1 when one failed (the error on stderr), 2 for bad arguments,
 * 3 when a flood ended (how it ended on stdout: "flood-ended <code>").
 *
 * @module
 */
import process from "node:process";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { openXenStore, selectBackend } from "../mod.ts";
import { connectVchan, listenVchan, type Vchan, VchanError } from "../plugins/vchan/mod.ts";
import { loadLibc, type PollerStats, sharedPoller } from "../ffi/mod.ts";

const runtime = "Deno" in globalThis ? "deno" : "bun";

interface Job {
  readonly role: "server" | "client";
  readonly mode: string;
  readonly domid: number;
  readonly path: string;
  readonly bytes?: number;
  readonly write?: number;
}

const MODES = ["echo", "drive", "source", "sink", "pingpong", "flood"];

function usage(why: string): never {
  console.error(`vchan_peer.ts: ${why}`);
  console.error(
    "usage: vchan_peer.ts server|client echo|drive|source|sink|pingpong|flood DOMID PATH " +
      "[BYTES [WRITE]] [-- JOB ...]",
  );
  process.exit(2);
}

function parseJobs(argv: readonly string[]): Job[] {
  const jobs: Job[] = [];
  let words: string[] = [];
  for (const arg of [...argv, "--"]) {
    if (arg !== "--") {
      words.push(arg);
      continue;
    }
    if (words.length === 0) continue;
    const [role, mode, domid, path, bytes, write] = words;
    if (role !== "server" && role !== "client") usage(`bad role ${JSON.stringify(role)}`);
    if (!MODES.includes(mode)) usage(`bad mode ${JSON.stringify(mode)}`);
    if (!/^\d+$/.test(domid ?? "")) usage(`bad DOMID ${JSON.stringify(domid)}`);
    if (!path?.startsWith("/")) usage(`bad PATH ${JSON.stringify(path)}`);
    const num = (text: string | undefined, name: string) => {
      if (text === undefined) return undefined;
      if (!/^\d+$/.test(text) || Number(text) === 0) usage(`bad ${name} ${JSON.stringify(text)}`);
      return Number(text);
    };
    jobs.push({
      role,
      mode,
      domid: Number(domid),
      path,
      bytes: num(bytes, "BYTES"),
      write: num(write, "WRITE"),
    });
    words = [];
  }
  if (jobs.length === 0) usage("no job");
  return jobs;
}

/** xorshift32 bytes, seed 1: the same sequence as tests/helpers/vchan.ts patternBytes(). */
function pattern(length: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function envSize(name: string): number {
  const text = process.env[name];
  return text && /^\d+$/.test(text) ? Number(text) : 0;
}

/**
 * A profile of this process's waits from now on: call the result with a
 * count to get, per unit of it, the CPU time (µs) and how the waits ended (ffi/poller.ts: ready at
 * once, inline hits and misses, parked in the background poll), for the
 * rows: they show which wait path a case took and where its time went.
 */
async function waitProfile(): Promise<(per: number) => Record<string, unknown>> {
  const poller = sharedPoller(await loadLibc());
  const s0: PollerStats = poller.stats;
  const { user, system } = process.cpuUsage();
  return (per) => {
    const s1 = poller.stats, now = process.cpuUsage();
    return {
      cpuUsPer: Number(((now.user + now.system - user - system) / per).toFixed(1)),
      poller: {
        ready: s1.ready - s0.ready,
        inlineHits: s1.inlineHits - s0.inlineHits,
        inlineMisses: s1.inlineMisses - s0.inlineMisses,
        parked: s1.parked - s0.parked,
      },
    };
  };
}

function isReset(error: unknown): boolean {
  return error instanceof VchanError && error.code === "ECONNRESET";
}

async function echo(v: Vchan): Promise<void> {
  for (;;) {
    let chunk: Uint8Array;
    try {
      chunk = await v.read(65536);
    } catch (error) {
      if (isReset(error)) return;
      throw error;
    }
    try {
      await v.write(chunk);
    } catch (error) {
      if (isReset(error)) return;
      throw error;
    }
  }
}

async function drive(v: Vchan, bytes: number, write: number): Promise<boolean> {
  const data = pattern(bytes);
  const got = new Uint8Array(bytes);
  const reading = (async () => {
    for (let at = 0; at < bytes;) {
      const chunk = await v.read(bytes - at);
      got.set(chunk, at);
      at += chunk.length;
    }
  })();
  for (let at = 0; at < bytes; at += write) await v.write(data.subarray(at, at + write));
  await reading;
  const sent = createHash("sha256").update(data).digest("hex");
  const back = createHash("sha256").update(got).digest("hex");
  console.log(
    JSON.stringify({
      mode: "drive",
      backend: runtime,
      bytes,
      sent,
      got: back,
      equal: sent === back,
    }),
  );
  return sent === back;
}

async function source(v: Vchan, bytes: number, write: number): Promise<void> {
  const chunk = new Uint8Array(write).fill(7);
  const t0 = performance.now();
  let waits = 0;
  for (let sent = 0; sent < bytes; sent += write) {
    const part = sent + write <= bytes ? chunk : chunk.subarray(0, bytes - sent);
    if (v.bufferSpace() < part.length) waits++;
    await v.write(part);
  }
  await v.drain();
  const seconds = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({
    bench: "vchan",
    backend: runtime,
    mode: "source",
    write,
    bytes,
    seconds: Number(seconds.toFixed(4)),
    mbPerSecond: Number((bytes / seconds / 1e6).toFixed(1)),
    waits,
  }));
}

async function sink(v: Vchan): Promise<void> {
  let got = 0;
  let t0 = 0;
  let reads = 0;
  let waits = 0;
  const profile = await waitProfile();
  for (;;) {
    let n: number;
    try {
      if (got > 0 && v.dataReady() === 0) waits++;
      n = (await v.read(1 << 20)).length;
    } catch (error) {
      if (isReset(error)) break;
      throw error;
    }
    if (got === 0) t0 = performance.now();
    got += n;
    reads++;
  }
  const seconds = got ? (performance.now() - t0) / 1000 : 0;
  console.log(JSON.stringify({
    bench: "vchan",
    backend: runtime,
    mode: "sink",
    bytes: got,
    seconds: Number(seconds.toFixed(4)),
    mbPerSecond: seconds > 0 ? Number((got / seconds / 1e6).toFixed(1)) : 0,
    reads,
    waits,
    ...profile(Math.max(reads, 1)),
  }));
}

async function pingpong(v: Vchan, initiator: boolean, rounds: number): Promise<void> {
  let byte: Uint8Array = new Uint8Array([1]);
  const profile = await waitProfile();
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++) {
    if (initiator) await v.send(byte);
    byte = await v.recv(1);
    if (!initiator) await v.send(byte);
  }
  const seconds = (performance.now() - t0) / 1000;
  if (initiator) {
    console.log(JSON.stringify({
      bench: "vchan",
      backend: runtime,
      mode: "pingpong",
      rounds,
      microsPerRound: Number((seconds * 1e6 / rounds).toFixed(2)),
      ...profile(rounds),
    }));
  }
}

async function flood(v: Vchan, write: number): Promise<never> {
  const data = pattern(write);
  let sent = 0;
  let marked = false;
  try {
    for (;;) {
      await v.write(data);
      sent += write;
      if (!marked && sent >= 256 * 1024) {
        marked = true;
        console.log("flooding");
        const mark = process.env.VCHAN_FLOOD_MARK;
        if (mark) writeFileSync(mark, String(sent));
      }
    }
  } catch (error) {
    console.log(`flood-ended ${(error as { code?: string }).code ?? String(error)} after ${sent}`);
    process.exit(3);
  }
}

async function run(job: Job): Promise<boolean> {
  const { backend } = await selectBackend("ffi");
  using store = await openXenStore({ backend: "ffi" });
  const common = { backend, store, path: job.path, domid: job.domid };
  await using v = job.role === "server"
    ? await listenVchan({
      ...common,
      readMin: envSize("VCHAN_READ_MIN"),
      writeMin: envSize("VCHAN_WRITE_MIN"),
    })
    : await connectVchan({ ...common, wait: true });
  await v.connected();
  switch (job.mode) {
    case "echo":
      await echo(v);
      return true;
    case "drive":
      return await drive(v, job.bytes ?? 1 << 20, job.write ?? 4096);
    case "source":
      await source(v, job.bytes ?? 64 << 20, job.write ?? 4096);
      return true;
    case "sink":
      await sink(v);
      return true;
    case "pingpong":
      await pingpong(v, job.role === "client", job.bytes ?? 10000);
      return true;
    default:
      return await flood(v, job.write ?? 4096);
  }
}

let ok = true;
for (const job of parseJobs(process.argv.slice(2))) {
  try {
    if (!(await run(job))) ok = false;
  } catch (error) {
    console.error(
      `vchan_peer.ts: ${job.role} ${job.mode} ${job.path}: ${(error as Error)?.stack ?? error}`,
    );
    ok = false;
  }
}
process.exit(ok ? 0 : 1);
