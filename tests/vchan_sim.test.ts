/**
 * vchan on the simulator: a TypeScript server in dom0 and a TypeScript
 * client in a guest, through the in-memory XenStore. The page layout, the
 * rendezvous keys and their permissions, every ring order class, both
 * directions, streams with backpressure, packets, crash and close from
 * either side, domain death, abort and disposal.
 *
 * @module
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ClosedHandleError, XenUsageError } from "../core/errors.ts";
import { XenStoreError } from "../core/xenstore/errors.ts";
import {
  connectVchan,
  listenVchan,
  NOTIFY_READ,
  NOTIFY_WRITE,
  serverOrders,
  VCHAN_OFFSET,
  VchanError,
  vchanPath,
} from "../plugins/vchan/mod.ts";
import { SimHypervisor } from "../sim/mod.ts";
import { GrantTable } from "../core/grants.ts";
import { collect, patternBytes, readExactly, settle, vchanPair } from "./helpers/vchan.ts";
import { SimVchanStore } from "./helpers/vchan_store.ts";

function isVchanError(code: string) {
  return (error: unknown) => {
    assert.ok(error instanceof VchanError, `expected VchanError ${code}, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return true;
  };
}

/** Maps the vchan page from another process of the client's domain, to look at the header. */
function peek(hv: SimHypervisor, d1: number, ref: number): DataView {
  const gnt = new GrantTable("sim", hv.backend(d1).openGrantTable());
  const m = gnt.mapGrantRef(0, ref);
  return new DataView(m.bytes.buffer, m.bytes.byteOffset, 4096);
}

test("server sizing follows init.c [vchan:sim]", () => {
  assert.deepEqual(serverOrders(0, 0), { read: 10, write: 11 });
  assert.deepEqual(serverOrders(1024, 2048), { read: 10, write: 11 });
  assert.deepEqual(serverOrders(2048, 1024), { read: 11, write: 10 });
  assert.deepEqual(serverOrders(2048, 4096), { read: 11, write: 12 });
  assert.deepEqual(serverOrders(4097, 100), { read: 13, write: 11 });
  assert.deepEqual(serverOrders(5000, 70000), { read: 13, write: 17 });
  assert.deepEqual(serverOrders(1 << 20, 1 << 20), { read: 20, write: 20 });
  assert.throws(() => serverOrders((1 << 20) + 1, 0), XenUsageError);
  assert.throws(() => serverOrders(-1, 0), /readMin must be an integer/);
});

test("rendezvous: keys, permissions n<server> r<client>, header after connect [vchan:sim]", async () => {
  const { hv, d1, xs, path, server, client } = await vchanPair();
  assert.equal(path, `/local/domain/0/data/vchan/${d1}/5`);
  const ref = Number(xs.node(`${path}/ring-ref`)?.value);
  const port = Number(xs.node(`${path}/event-channel`)?.value);
  assert.ok(ref > 0 && port > 0);
  const perms = [{ domid: 0, access: "none" }, { domid: d1, access: "read" }];
  assert.deepEqual(xs.node(`${path}/ring-ref`)?.perms, perms);
  assert.deepEqual(xs.node(`${path}/event-channel`)?.perms, perms);
  assert.equal(server.port, port);
  const page = peek(hv, d1, ref);
  assert.equal(page.getUint16(VCHAN_OFFSET.leftOrder, true), 10);
  assert.equal(page.getUint16(VCHAN_OFFSET.rightOrder, true), 11);
  assert.equal(page.getUint8(VCHAN_OFFSET.cliLive), 1);
  assert.equal(page.getUint8(VCHAN_OFFSET.srvLive), 1);
  assert.equal(server.readSize, 1024);
  assert.equal(server.writeSize, 2048);
  assert.equal(client.readSize, 2048);
  assert.equal(client.writeSize, 1024);
  assert.equal(server.state, "open");
  assert.equal(client.isOpen(), true);
  // A third domain cannot read the keys: the client side's read is refused.
  const d2 = hv.createDomain();
  await assert.rejects(
    connectVchan({ backend: hv.backend(d2), store: xs.connect(d2), domid: 0, path }),
    (e: unknown) => e instanceof XenStoreError && e.code === "EACCES",
  );
  client.close();
  await server.closeAndWait();
  assert.deepEqual(xs.paths(path), [], "the server removes its path on close");
});

test("server header before a client: cli_live 2, cli_notify WRITE; client sets srv_notify [vchan:sim]", async () => {
  const hv = new SimHypervisor();
  const d1 = hv.createDomain();
  const xs = new SimVchanStore(hv);
  const path = vchanPath(0, d1, 7);
  await using server = await listenVchan({
    backend: hv.backend(0),
    store: xs.connect(0),
    domid: d1,
    path,
  });
  const page = peek(hv, d1, Number(xs.node(`${path}/ring-ref`)?.value));
  assert.equal(page.getUint8(VCHAN_OFFSET.cliLive), 2);
  assert.equal(page.getUint8(VCHAN_OFFSET.srvLive), 1);
  assert.equal(page.getUint8(VCHAN_OFFSET.cliNotify), NOTIFY_WRITE);
  assert.equal(server.state, "waiting");
  assert.equal(server.isOpen(), true, "libxenvchan_is_open counts cli_live 2 as open");
  // The server may write before the client exists; the bytes wait in the ring.
  await server.write(new TextEncoder().encode("early"));
  const connected = server.connected();
  await using client = await connectVchan({
    backend: hv.backend(d1),
    store: xs.connect(d1),
    domid: 0,
    path,
  });
  await connected;
  assert.equal(server.state, "open");
  assert.equal(new TextDecoder().decode(await client.recv(5)), "early");
  // The server consumed its startup event; reading an empty ring requests NOTIFY_WRITE from the client.
  assert.equal(server.tryRead(), null);
  assert.equal(page.getUint8(VCHAN_OFFSET.cliNotify) & NOTIFY_WRITE, NOTIFY_WRITE);
  // A reader requests NOTIFY_WRITE in the peer's byte: the client asks the server via srv_notify.
  assert.equal(client.tryRead(), null);
  assert.equal(page.getUint8(VCHAN_OFFSET.srvNotify) & NOTIFY_WRITE, NOTIFY_WRITE);
  // A writer that finds the ring full requests NOTIFY_READ.
  assert.equal(client.tryWrite(new Uint8Array(5000)), 1024);
  assert.equal(client.tryWrite(new Uint8Array(1)), 0);
  assert.equal(page.getUint8(VCHAN_OFFSET.srvNotify) & NOTIFY_READ, NOTIFY_READ);
});

for (
  const [readMin, writeMin, left, right] of [
    [0, 0, 10, 11],
    [2048, 1024, 11, 10],
    [4096, 4096, 12, 12],
    [8192, 65536, 13, 16],
    [1 << 20, 0, 20, 11],
  ] as const
) {
  test(`data both ways with orders ${left}/${right} [vchan:sim]`, async () => {
    const { hv, d1, xs, path, server, client } = await vchanPair({ readMin, writeMin });
    const page = peek(hv, d1, Number(xs.node(`${path}/ring-ref`)?.value));
    assert.equal(page.getUint16(VCHAN_OFFSET.leftOrder, true), left);
    assert.equal(page.getUint16(VCHAN_OFFSET.rightOrder, true), right);
    assert.equal(server.readSize, 1 << left);
    assert.equal(client.readSize, 1 << right);
    // More than the ring in each direction, at once: the writes wait for the reads.
    const up = patternBytes(3 * (1 << left) + 17, 3);
    const down = patternBytes(2 * (1 << right) + 5, 4);
    const [gotUp, gotDown] = await Promise.all([
      readExactly(server, up.length),
      readExactly(client, down.length),
      client.write(up),
      server.write(down),
    ]);
    assert.deepEqual(gotUp, up);
    assert.deepEqual(gotDown, down);
    client.close();
    server.close();
  });
}

test("streams: 4 MiB each way through 1 KiB and 2 KiB rings, with backpressure [vchan:sim]", async () => {
  const { server, client } = await vchanPair();
  const size = 4 << 20;
  const up = patternBytes(size, 11);
  const down = patternBytes(size, 12);
  // Backpressure: a 64 KiB write to a 1 KiB ring does not complete until the server reads.
  const writer = client.writable.getWriter();
  let firstDone = false;
  const first = writer.write(up.subarray(0, 65536)).then(() => (firstDone = true));
  await settle();
  assert.equal(firstDone, false, "the write waits for the reader");
  assert.equal(server.dataReady(), 1024, "the ring is full, nothing else is buffered");
  const feed = async () => {
    await first;
    for (let at = 65536; at < size; at += 65536) await writer.write(up.subarray(at, at + 65536));
    await writer.close(); // waits until the server read everything
  };
  const downWriter = server.writable.getWriter();
  const feedDown = async () => {
    for (let at = 0; at < size; at += 10000) await downWriter.write(down.subarray(at, at + 10000));
    await downWriter.close();
  };
  const [gotUp, gotDown] = await Promise.all([
    collect(server.readable, size),
    collect(client.readable, size),
    feed(),
    feedDown(),
  ]);
  assert.equal(gotUp.length, size);
  assert.deepEqual(gotUp, up);
  assert.deepEqual(gotDown, down);
  client.close();
  server.close();
});

test("pipeTo and pipeThrough: an echo server [vchan:sim]", async () => {
  const { server, client } = await vchanPair({ readMin: 8192, writeMin: 8192 });
  const done = server.readable.pipeTo(server.writable).catch((e) => e);
  const message = patternBytes(200000, 5);
  const [echoed] = await Promise.all([
    collect(client.readable, message.length),
    client.write(message),
  ]);
  assert.deepEqual(echoed, message);
  client.close();
  const ended = await done;
  assert.ok(ended instanceof VchanError && ended.code === "ECONNRESET", String(ended));
  server.close();
});

test("packets: all or nothing, exact sizes, EMSGSIZE [vchan:sim]", async () => {
  const { server, client } = await vchanPair();
  // The client's write ring is 1024 bytes.
  assert.equal(client.trySend(new Uint8Array(1000).fill(1)), true);
  assert.equal(client.trySend(new Uint8Array(100).fill(2)), false, "does not fit: nothing written");
  assert.equal(server.dataReady(), 1000);
  await assert.rejects(client.send(new Uint8Array(1025)), isVchanError("EMSGSIZE"));
  assert.throws(() => server.tryRecv(1025), isVchanError("EMSGSIZE"));
  // A blocked send completes once the server made room, in one piece.
  let sent = false;
  const pending = client.send(new Uint8Array(100).fill(2)).then(() => (sent = true));
  await settle();
  assert.equal(sent, false);
  assert.equal(server.dataReady(), 1000);
  assert.deepEqual(await server.recv(1000), new Uint8Array(1000).fill(1));
  await pending;
  assert.equal(server.dataReady(), 100);
  // recv waits for exactly its size.
  const got = server.recv(150);
  await settle();
  assert.equal(server.dataReady(), 100);
  await client.send(new Uint8Array(50).fill(3));
  const packet = await got;
  assert.equal(packet.length, 150);
  assert.deepEqual(packet.subarray(0, 100), new Uint8Array(100).fill(2));
  assert.deepEqual(packet.subarray(100), new Uint8Array(50).fill(3));
  assert.equal(server.tryRecv(1), null);
  // Many small packets each way.
  for (let i = 0; i < 500; i++) {
    const p = patternBytes(1 + (i % 300), i + 1);
    const [, back] = await Promise.all([server.send(p), client.recv(p.length)]);
    assert.deepEqual(back, p);
  }
  client.close();
  server.close();
});

test("client crash mid-stream: the server's streams end with ECONNRESET within one event [vchan:sim]", async () => {
  const { server, client, clientProcess } = await vchanPair();
  const reading = collect(server.readable);
  const writer = server.writable.getWriter();
  const writing = (async () => {
    for (;;) await writer.write(new Uint8Array(4096));
  })();
  await client.write(new Uint8Array(500));
  await settle();
  clientProcess.crash(); // gntdev's unmap notification clears cli_live and signals the port
  await assert.rejects(reading, isVchanError("ECONNRESET"));
  await assert.rejects(writing, isVchanError("ECONNRESET"));
  assert.equal(server.state, "peer-gone");
  assert.equal(server.isOpen(), false);
  await assert.rejects(server.send(new Uint8Array(1)), isVchanError("ECONNRESET"));
  server.close();
  client.close();
});

test("server crash: the client reads what was left, then ECONNRESET [vchan:sim]", async () => {
  const { server, client, serverProcess, xs, path } = await vchanPair();
  await server.write(new TextEncoder().encode("last words"));
  serverProcess.crash(); // gntalloc's unmap notification clears srv_live
  await settle();
  assert.equal(client.state, "peer-gone");
  assert.equal(new TextDecoder().decode(await client.read()), "last words");
  await assert.rejects(client.read(), isVchanError("ECONNRESET"));
  await assert.rejects(client.write(new Uint8Array(1)), isVchanError("ECONNRESET"));
  assert.equal(xs.node(`${path}/ring-ref`) !== undefined, true, "a crashed server leaves its keys");
  client.close();
  server.close();
});

test("peer's domain destroyed: ECONNRESET through @releaseDomain, with no live-byte change [vchan:sim]", async () => {
  const { hv, d1, server } = await vchanPair();
  const reading = server.read();
  hv.destroy(d1);
  await assert.rejects(reading, (e: unknown) => {
    assert.ok(e instanceof VchanError && e.code === "ECONNRESET");
    assert.match(e.message, new RegExp(`domain ${d1} was destroyed`));
    return true;
  });
  server.close();
});

test("close from either side [vchan:sim]", async () => {
  {
    const { server, client } = await vchanPair();
    await client.write(new TextEncoder().encode("bye"));
    client.close();
    assert.equal(client.state, "closed");
    await assert.rejects(client.read(), ClosedHandleError);
    assert.throws(() => client.tryWrite(new Uint8Array(1)), ClosedHandleError);
    // Zero-size operations have nothing to move but still say the vchan is closed.
    await assert.rejects(client.recv(0), ClosedHandleError);
    assert.throws(() => client.tryRecv(0), ClosedHandleError);
    await assert.rejects(client.write(new Uint8Array(0)), ClosedHandleError);
    await assert.rejects(client.send(new Uint8Array(0)), ClosedHandleError);
    assert.equal(new TextDecoder().decode(await server.read()), "bye");
    await assert.rejects(server.read(), isVchanError("ECONNRESET"));
    server.close();
  }
  {
    const { server, client, xs, path } = await vchanPair({ peerCloseEndsStream: true });
    const reading = collect(client.readable);
    await server.write(new TextEncoder().encode("done"));
    await server.closeAndWait();
    assert.equal(new TextDecoder().decode(await reading), "done", "ends normally when asked to");
    assert.deepEqual(xs.paths(path), []);
    await assert.rejects(
      client.writable.getWriter().write(new Uint8Array(1)),
      isVchanError("ECONNRESET"),
    );
    client.close();
  }
  {
    // Local close errors this end's own streams and waiters with ClosedHandleError.
    const { server, client } = await vchanPair();
    const waiting = server.read();
    const stream = collect(server.readable);
    server.close();
    await assert.rejects(waiting, ClosedHandleError);
    await assert.rejects(stream, ClosedHandleError);
    server.close(); // idempotent
    client.close();
  }
});

test("AbortSignal: an aborted wait rejects with the reason and the vchan stays usable [vchan:sim]", async () => {
  const { server, client } = await vchanPair();
  const controller = new AbortController();
  const waiting = server.recv(10, { signal: controller.signal });
  controller.abort(new Error("stop"));
  await assert.rejects(waiting, /stop/);
  await client.send(new Uint8Array(10).fill(9));
  assert.deepEqual(await server.recv(10), new Uint8Array(10).fill(9));
  await assert.rejects(
    server.read(1, { signal: AbortSignal.abort(new Error("already")) }),
    /already/,
  );
  // connectVchan with wait: aborting the wait for a server that never comes.
  const hv = new SimHypervisor();
  const d1 = hv.createDomain();
  const xs = new SimVchanStore(hv);
  const giveUp = new AbortController();
  const attempt = connectVchan({
    backend: hv.backend(d1),
    store: xs.connect(d1),
    domid: 0,
    path: vchanPath(0, d1, 9),
    wait: true,
    signal: giveUp.signal,
  });
  await settle();
  giveUp.abort(new Error("no server"));
  await assert.rejects(attempt, /no server/);
  assert.equal(xs.watchCount, 0, "the watch was removed");
  client.close();
  server.close();
});

test("connect: ENOENT without a server; wait: true waits for it [vchan:sim]", async () => {
  const hv = new SimHypervisor();
  const d1 = hv.createDomain();
  const xs = new SimVchanStore(hv);
  const path = vchanPath(0, d1, 3);
  // A missing node under dom0's data, which the guest may not read: xenstored
  // (C 4.17) checks the nearest existing ancestor and answers EACCES, and the
  // client passes the store's error on.
  await assert.rejects(
    connectVchan({ backend: hv.backend(d1), store: xs.connect(d1), domid: 0, path }),
    (error: unknown) => {
      assert.equal((error as { code?: string }).code, "EACCES", String(error));
      return true;
    },
  );
  // A missing node where the guest may read: VchanError ENOENT.
  await assert.rejects(
    connectVchan({
      backend: hv.backend(d1),
      store: xs.connect(d1),
      domid: 0,
      path: `/local/domain/${d1}/data/vchan/0/3`,
    }),
    isVchanError("ENOENT"),
  );
  const clientProcess = hv.backend(d1);
  const connecting = connectVchan({
    backend: clientProcess,
    store: xs.connect(d1),
    domid: 0,
    path,
    wait: true,
  });
  await settle();
  await using server = await listenVchan({
    backend: hv.backend(0),
    store: xs.connect(0),
    domid: d1,
    path,
  });
  await using client = await connecting;
  await server.connected();
  await client.send(new Uint8Array([1, 2, 3]));
  assert.deepEqual(await server.recv(3), new Uint8Array([1, 2, 3]));
  // A garbage key is not a rendezvous.
  await xs.connect(0).write(`${path}x/ring-ref`, "12abc");
  await xs.connect(0).write(`${path}x/event-channel`, "3");
  await xs.connect(0).setPermissions(`${path}x/ring-ref`, [{ domid: 0, access: "read" }]);
  await assert.rejects(
    connectVchan({ backend: hv.backend(d1), store: xs.connect(d1), domid: 0, path: `${path}x` }),
    isVchanError("ENOENT"),
  );
});

test("using releases every handle; bad options are XenUsageError [vchan:sim]", async () => {
  const hv = new SimHypervisor();
  const d1 = hv.createDomain();
  const xs = new SimVchanStore(hv);
  const path = vchanPath(0, d1, 1);
  const serverProcess = hv.backend(0);
  const clientProcess = hv.backend(d1);
  {
    await using server = await listenVchan({
      backend: serverProcess,
      store: xs.connect(0),
      domid: d1,
      path,
      readMin: 100000,
      writeMin: 100000,
    });
    using client = await connectVchan({
      backend: clientProcess,
      store: xs.connect(d1),
      domid: 0,
      path,
    });
    await client.send(new Uint8Array(5));
    assert.equal(serverProcess.openHandles, 2);
    assert.equal(clientProcess.openHandles, 2);
    void server;
  }
  assert.equal(serverProcess.openHandles, 0);
  assert.equal(clientProcess.openHandles, 0);
  assert.deepEqual(xs.paths(path), []);
  const store = xs.connect(0);
  await assert.rejects(
    listenVchan({ backend: serverProcess, store, domid: -1, path }),
    /domid must be a domain id/,
  );
  await assert.rejects(
    listenVchan({ backend: serverProcess, store, domid: d1, path: "" }),
    XenUsageError,
  );
  await assert.rejects(
    listenVchan({ backend: serverProcess, store, domid: d1, path, readMin: 2 << 20 }),
    XenUsageError,
  );
  assert.equal(serverProcess.openHandles, 0);
  // A guest may not publish under dom0's home: EACCES, its handles released, nothing left.
  const guestProcess = hv.backend(d1);
  await assert.rejects(
    listenVchan({ backend: guestProcess, store: xs.connect(d1), domid: 0, path }),
    (e: unknown) => e instanceof XenStoreError && e.code === "EACCES",
  );
  assert.equal(guestProcess.openHandles, 0);
  assert.deepEqual(xs.paths(path), []);
});
