/**
 * vchan between dom0 and a real PV guest, in the dom0 booted with guests by
 * scripts/test_xen.mjs, under this test's runtime (and the same runtime in
 * the guest): interop with C libxenvchan (bench/c/vchan_peer.c, built by the
 * harness and put into dom0 and every guest image) in both roles and both
 * domains, TypeScript <-> TypeScript across the domains, and the peer
 * killed mid-stream (SIGKILL of the guest's process, then the guest's
 * destruction): the surviving side's streams end with VchanError
 * ECONNRESET, no hang. Every exchange moves 1 MiB of xorshift32 bytes to an
 * echoing peer and back and compares sha-256 hashes. The TypeScript peer in
 * the guest is bench/vchan_peer.ts. A guest waits for the key xenchan/go in
 * its XenStore home before it connects, so dom0 can set up its servers for
 * the guest's domid first. Skipped outside the harness dom0.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { openXenStore, selectBackend, type XenBackend, type XenStore } from "../../mod.ts";
import {
  connectVchan,
  listenVchan,
  type Vchan,
  VchanError,
  vchanPath,
} from "../../plugins/vchan/mod.ts";
import { type GuestResult, type RunningGuest, startGuest, whyNoGuests } from "../helpers/guest.ts";
import { patternBytes } from "../helpers/vchan.ts";

const skip = whyNoGuests() ?? false;
const runtime = "Deno" in globalThis ? "deno" : "bun";
const SLOW = { timeout: 900_000 };
const MIB = 1 << 20;
const EXPECTED = createHash("sha256").update(patternBytes(MIB)).digest("hex");
const AGENT = runtime === "deno"
  ? "deno run -A --no-check bench/vchan_peer.ts"
  : "bun run bench/vchan_peer.ts";
const GO_WAIT = "until xenstore-read xenchan/go >/dev/null 2>&1; do sleep 0.2; done";
/** A path in the guest's command: the guest's domid is $XENCHAN_DOMID there. */
const fromDom0 = (port: number) => `/local/domain/0/data/vchan/$XENCHAN_DOMID/${port}`;
const fromGuest = (port: number) => `/local/domain/$XENCHAN_DOMID/data/vchan/0/${port}`;

interface Dom0 extends Disposable {
  readonly backend: XenBackend;
  readonly store: XenStore;
}

async function dom0(): Promise<Dom0> {
  const { backend } = await selectBackend("ffi");
  const store = await openXenStore({ backend: "ffi" });
  return { backend, store, [Symbol.dispose]: () => store.close() };
}

function explain(r: GuestResult): string {
  return `status ${r.status}\n--- output ---\n${r.output}\n--- helper ---\n${r.stderr}`;
}

/** Writes 1 MiB of pattern bytes into `v` while reading them back from the echoing peer. */
async function drive(v: Vchan, label: string): Promise<void> {
  const data = patternBytes(MIB);
  const got = new Uint8Array(MIB);
  const t0 = performance.now();
  const reading = (async () => {
    for (let at = 0; at < MIB;) {
      const chunk = await v.read(MIB - at);
      got.set(chunk, at);
      at += chunk.length;
    }
  })();
  for (let at = 0; at < MIB; at += 4096) await v.write(data.subarray(at, at + 4096));
  await reading;
  const ms = performance.now() - t0;
  const hash = createHash("sha256").update(got).digest("hex");
  console.log(`${label}: 1 MiB out and back in ${ms.toFixed(0)} ms, sha-256 ${hash.slice(0, 16)}`);
  assert.equal(hash, EXPECTED, `${label}: the bytes that came back differ`);
}

/** A C vchan_peer process in dom0: its exit status and output. */
function cPeer(args: readonly string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("vchan_peer", args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (d: string) => (out += d));
    child.stderr.on("data", (d: string) => (out += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, out }));
  });
}

/** Waits until a server published `<path>/event-channel`. */
async function published(store: XenStore, path: string, timeoutMs = 180_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      await store.read(`${path}/event-channel`);
      return;
    } catch {
      if (Date.now() > end) throw new Error(`no server appeared at ${path} in ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

async function go(store: XenStore, guest: RunningGuest): Promise<void> {
  await store.write(`/local/domain/${guest.domid}/xenchan/go`, "1");
}

/** The drive rows a guest printed (bench/vchan_peer.ts drive). */
function driveRows(output: string): { equal: boolean; got: string; sent: string }[] {
  return output.split("\n").filter((l) => l.startsWith('{"mode":"drive"')).map((l) =>
    JSON.parse(l)
  );
}

interface Ending {
  readonly bytes: number;
  readonly error: unknown;
  /** From the last chunk to the error, ms. */
  readonly afterLastChunkMs: number;
  readonly at: number;
}

/**
 * Reads the flood of bench/vchan_peer.ts from `v.readable` until the stream
 * errors, checking every byte against the pattern; calls `onData` once after
 * 256 KiB arrived.
 */
async function readFlood(v: Vchan, onData?: () => void): Promise<Ending> {
  const pattern = patternBytes(4096);
  const reader = v.readable.getReader();
  let bytes = 0;
  let last = performance.now();
  let called = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the stream ended without an error");
      for (let i = 0; i < value.length; i++) {
        if (value[i] !== pattern[(bytes + i) % 4096]) {
          throw new Error(`byte ${bytes + i} is ${value[i]}, not ${pattern[(bytes + i) % 4096]}`);
        }
      }
      bytes += value.length;
      last = performance.now();
      if (!called && bytes >= 256 * 1024 && onData) {
        called = true;
        onData();
      }
    }
  } catch (error) {
    if (!(error instanceof VchanError)) throw error;
    const at = performance.now();
    return { bytes, error, afterLastChunkMs: at - last, at };
  }
}

/** The stream ended with ECONNRESET soon after the flood stopped, and writing fails the same way. */
async function checkEnding(v: Vchan, e: Ending, label: string, withinMs: number): Promise<void> {
  console.log(
    `${label}: ${e.bytes} bytes, then ${(e.error as VchanError).code} ` +
      `${e.afterLastChunkMs.toFixed(0)} ms after the last chunk`,
  );
  assert.ok(e.bytes >= 256 * 1024, `${label}: only ${e.bytes} bytes before the end`);
  assert.ok(e.error instanceof VchanError);
  assert.equal(e.error.code, "ECONNRESET");
  assert.ok(e.afterLastChunkMs < withinMs, `${label}: ${e.afterLastChunkMs} ms`);
  assert.equal(v.state, "peer-gone");
  const writer = v.writable.getWriter();
  await assert.rejects(writer.write(new Uint8Array(8)), (error: unknown) => {
    assert.ok(error instanceof VchanError, String(error));
    assert.equal(error.code, "ECONNRESET");
    return true;
  });
  writer.releaseLock();
}

describe(`vchan between dom0 and a real guest (${runtime})`, { skip }, () => {
  it(
    `C libxenvchan in the guest: TS server in dom0 <-> C client, C server in the guest <-> ` +
      `TS client in dom0, 1 MiB both ways [vchan:dom0<->guest C]`,
    SLOW,
    async () => {
      using d = await dom0();
      const cmd = `${GO_WAIT}; vchan_peer client echo 0 ${fromDom0(11)}; echo c1=$?; ` +
        `vchan_peer server echo 0 ${fromGuest(12)}; echo c2=$?`;
      await using guest = await startGuest(cmd, { runtime: "none", timeoutS: 600 });
      {
        await using server = await listenVchan({
          ...d,
          domid: guest.domid,
          path: vchanPath(0, guest.domid, 11),
        });
        await go(d.store, guest);
        await server.connected();
        await drive(server, "TS server in dom0 <-> C client in the guest");
      }
      {
        await using client = await connectVchan({
          ...d,
          domid: guest.domid,
          path: vchanPath(guest.domid, 0, 12),
          wait: true,
        });
        await drive(client, "C server in the guest <-> TS client in dom0");
      }
      const r = await guest.wait(300);
      assert.equal(r.status, 0, explain(r));
      assert.match(r.output, /c1=0/, explain(r));
      assert.match(r.output, /c2=0/, explain(r));
    },
  );

  it(
    `TS in the guest: C server in dom0 <-> TS client, TS server in dom0 <-> TS client, ` +
      `TS server in the guest <-> C client in dom0, TS server in the guest <-> TS client in dom0, ` +
      `1 MiB both ways [vchan:dom0<->guest ${runtime}]`,
    SLOW,
    async () => {
      using d = await dom0();
      const cmd = `${GO_WAIT}; ${AGENT} client drive 0 ${fromDom0(13)} -- ` +
        `client echo 0 ${fromDom0(14)} -- server drive 0 ${fromGuest(15)} -- ` +
        `server echo 0 ${fromGuest(16)}; echo agent=$?`;
      await using guest = await startGuest(cmd, { runtime, timeoutS: 600 });
      const id = guest.domid;
      const cServer = cPeer(["server", "echo", String(id), vchanPath(0, id, 13)]);
      await using tsServer = await listenVchan({ ...d, domid: id, path: vchanPath(0, id, 14) });
      await published(d.store, vchanPath(0, id, 13));
      await go(d.store, guest);
      const c1 = await cServer;
      assert.equal(c1.code, 0, `C server in dom0: ${c1.out}`);
      await tsServer.connected();
      await drive(tsServer, `TS server in dom0 <-> TS client in the guest`);
      tsServer.close();
      await published(d.store, vchanPath(id, 0, 15));
      const c2 = await cPeer(["client", "echo", String(id), vchanPath(id, 0, 15)]);
      assert.equal(c2.code, 0, `C client in dom0: ${c2.out}`);
      {
        await using client = await connectVchan({
          ...d,
          domid: id,
          path: vchanPath(id, 0, 16),
          wait: true,
        });
        await drive(client, `TS server in the guest <-> TS client in dom0`);
      }
      const r = await guest.wait(300);
      assert.equal(r.status, 0, explain(r));
      assert.match(r.output, /agent=0/, explain(r));
      const rows = driveRows(r.output);
      assert.equal(rows.length, 2, explain(r));
      for (const row of rows) {
        assert.equal(row.equal, true, explain(r));
        assert.equal(row.sent, EXPECTED, "the guest's pattern is the test's");
        assert.equal(row.got, EXPECTED);
      }
      console.log(
        `C server in dom0 <-> TS client in the guest: guest hash ${rows[0].got.slice(0, 16)}`,
      );
      console.log(
        `TS server in the guest <-> C client in dom0: guest hash ${rows[1].got.slice(0, 16)}`,
      );
    },
  );

  it(
    `TS <-> TS, the guest's peer killed mid-stream (SIGKILL of the client, of the server), ` +
      `then the guest destroyed mid-stream: dom0's streams end with ECONNRESET ` +
      `[vchan:dom0<->guest ${runtime}]`,
    SLOW,
    async () => {
      using d = await dom0();
      const killed = (n: number, role: string, path: string) =>
        `VCHAN_FLOOD_MARK=/tmp/m${n} ${AGENT} ${role} flood 0 ${path} & p=$!; ` +
        `until [ -e /tmp/m${n} ]; do sleep 0.1; done; kill -9 $p; echo killed${n}`;
      const cmd = `${GO_WAIT}; ${killed(1, "client", fromDom0(17))}; ` +
        `${killed(2, "server", fromGuest(18))}; ${AGENT} client flood 0 ${fromDom0(19)}; ` +
        `echo not-destroyed; sleep 600`;
      const guest = await startGuest(cmd, { runtime, timeoutS: 900 });
      try {
        const id = guest.domid;
        {
          await using server = await listenVchan({ ...d, domid: id, path: vchanPath(0, id, 17) });
          await go(d.store, guest);
          await server.connected();
          const e = await readFlood(server);
          await checkEnding(server, e, "guest client SIGKILLed, dom0 server", 10_000);
        }
        {
          await using client = await connectVchan({
            ...d,
            domid: id,
            path: vchanPath(id, 0, 18),
            wait: true,
          });
          const e = await readFlood(client);
          await checkEnding(client, e, "guest server SIGKILLed, dom0 client", 10_000);
        }
        await guest.waitForOutput(/killed1[^]*killed2/, 60_000);
        {
          await using server = await listenVchan({ ...d, domid: id, path: vchanPath(0, id, 19) });
          await server.connected();
          let destroyAt = 0;
          let destroyed: Promise<void> = Promise.resolve();
          const e = await readFlood(server, () => {
            destroyAt = performance.now();
            destroyed = guest.destroy();
          });
          await destroyed;
          const ms = e.at - destroyAt;
          console.log(
            `guest destroyed: the stream ended ${ms.toFixed(0)} ms after xl destroy began`,
          );
          await checkEnding(server, e, "guest destroyed, dom0 server", 60_000);
          assert.ok(ms < 60_000, `${ms} ms`);
        }
      } finally {
        await guest.destroy();
      }
    },
  );
});
