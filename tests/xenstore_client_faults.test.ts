/**
 * The XenStore client against a scripted fake daemon (and a fake unix-socket
 * daemon): exact request bytes, replies in any chunking and order, and every
 * kind of bad reply or lost connection. Each case checks the typed error,
 * that nothing hangs (bounded by within()), and that no request is left
 * waiting afterwards.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { XenStore, XenStoreError, XenUsageError } from "../mod.ts";
import { connectXenStoreSocket } from "../ffi/mod.ts";
import fc from "fast-check";
import { encodeMessage, fromUtf8, utf8, XsDecoder, XsType } from "../core/xenstore/wire.ts";
import { argsOf, FakeTransport, hex, message, within } from "./helpers/xenstore_fake.ts";

function open(options?: ConstructorParameters<typeof FakeTransport>[0]) {
  const fake = new FakeTransport(options);
  return { fake, store: new XenStore(fake) };
}

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<XenStoreError> {
  const error = await within(promise.then(() => assert.fail(`expected ${code}`), (e) => e));
  assert.ok(error instanceof XenStoreError, `expected a XenStoreError, got ${String(error)}`);
  assert.equal(error.code, code, error.message);
  return error;
}

describe("XenStore client: request bytes", () => {
  it("encodes READ /foo as the golden bytes, req_id chosen by the client", async () => {
    const { fake, store } = open();
    fake.onRequest = (r) => fake.reply(r, "bar");
    assert.equal(await within(store.read("/foo")), "bar");
    assert.equal(
      hex(fake.raw[0]),
      "02000000" + "01000000" + "00000000" + "05000000" + "2f666f6f00",
    );
    store.close();
  });

  it("encodes every operation's payload as xenstore.txt says", async () => {
    const { fake, store } = open();
    fake.onRequest = (r) => {
      switch (r.type) {
        case XsType.TRANSACTION_START:
          return fake.reply(r, "7\0");
        case XsType.GET_DOMAIN_PATH:
          return fake.reply(r, "/local/domain/3\0");
        case XsType.IS_DOMAIN_INTRODUCED:
          return fake.reply(r, "T\0");
        case XsType.GET_PERMS:
          return fake.reply(r, "n0\0r5\0");
        case XsType.DIRECTORY:
          return fake.reply(r, "a\0b\0");
        case XsType.READ:
          return fake.reply(r, new Uint8Array([1, 0, 2]));
        default:
          return fake.reply(r);
      }
    };
    await store.write("/w", "v\0x");
    await store.write("/w", new Uint8Array([0xff, 0]));
    await store.mkdir("/m");
    await store.rm("/m");
    assert.deepEqual(await store.directory("/d"), ["a", "b"]);
    assert.deepEqual(await store.readBytes("/r"), new Uint8Array([1, 0, 2]));
    assert.deepEqual(await store.getPermissions("/p"), [
      { domid: 0, access: "none" },
      { domid: 5, access: "read" },
    ]);
    await store.setPermissions("/p", [{ domid: 1, access: "both" }, { domid: 2, access: "write" }]);
    assert.equal(await store.getDomainPath(3), "/local/domain/3");
    assert.equal(await store.isDomainIntroduced(3), true);
    await store.transaction(async (tx) => await tx.write("/t", "1"));
    const seen = fake.requests.map((r) => [r.type, r.txId, hex(r.payload)]);
    const h = (s: string) => hex(new TextEncoder().encode(s));
    assert.deepEqual(seen, [
      [XsType.WRITE, 0, h("/w\0v\0x")], // no trailing NUL, value kept as given
      [XsType.WRITE, 0, h("/w\0") + "ff00"],
      [XsType.MKDIR, 0, h("/m\0")],
      [XsType.RM, 0, h("/m\0")],
      [XsType.DIRECTORY, 0, h("/d\0")],
      [XsType.READ, 0, h("/r\0")],
      [XsType.GET_PERMS, 0, h("/p\0")],
      [XsType.SET_PERMS, 0, h("/p\0b1\0w2\0")],
      [XsType.GET_DOMAIN_PATH, 0, h("3\0")],
      [XsType.IS_DOMAIN_INTRODUCED, 0, h("3\0")],
      [XsType.TRANSACTION_START, 0, h("\0")],
      [XsType.WRITE, 7, h("/t\x001")],
      [XsType.TRANSACTION_END, 7, h("T\0")],
    ]);
    const ids = fake.requests.map((r) => r.reqId);
    assert.equal(new Set(ids).size, ids.length, "every request has its own req_id");
    assert.equal(store.pendingRequests, 0);
    store.close();
  });

  it("sends WATCH and UNWATCH as <path>\\0<token>\\0, in that order", async () => {
    const { fake, store } = open();
    fake.onRequest = (r) => {
      fake.reply(r);
      if (r.type === XsType.WATCH) fake.event(argsOf(r)[0], argsOf(r)[1]);
    };
    for await (const event of store.watch("/w", { token: "tk" })) {
      assert.deepEqual(event, { path: "/w", token: "tk" });
      break;
    }
    assert.deepEqual(fake.requests.map((r) => [r.type, hex(r.payload)]), [
      [XsType.WATCH, hex(new TextEncoder().encode("/w\0tk\0"))],
      [XsType.UNWATCH, hex(new TextEncoder().encode("/w\0tk\0"))],
    ]);
    assert.equal(store.activeWatches, 0);
    store.close();
  });
});

describe("XenStore client: reply matching and chunking", () => {
  it("assembles a reply fed one byte at a time", async () => {
    const { fake, store } = open();
    fake.onRequest = (r) => {
      const bytes = message(r.type, r.reqId, 0, "hello");
      for (let i = 0; i < bytes.length; i++) fake.bytes(bytes.subarray(i, i + 1));
    };
    assert.equal(await within(store.read("/x")), "hello");
    assert.equal(store.pendingRequests, 0);
    store.close();
  });

  it("matches 64 replies sent in reverse order by req_id", async () => {
    const { fake, store } = open();
    const reads = Array.from({ length: 64 }, (_, i) => store.read(`/n${i}`));
    await within(fake.waitRequests(64));
    assert.equal(store.pendingRequests, 64);
    const all = fake.requests.slice().reverse().map((r) =>
      message(r.type, r.reqId, 0, `value of ${argsOf(r)[0]}`)
    );
    const joined = new Uint8Array(all.reduce((n, b) => n + b.length, 0));
    let at = 0;
    for (const b of all) (joined.set(b, at), at += b.length);
    fake.bytes(joined); // all replies in one chunk
    assert.deepEqual(
      await within(Promise.all(reads)),
      reads.map((_, i) => `value of /n${i}`),
    );
    assert.equal(store.pendingRequests, 0);
    store.close();
  });

  it("dispatches watch events by type even with garbage req_id/tx_id (the kernel's)", async () => {
    const { fake, store } = open({ kernelWatches: true, maxRequestPayload: 4080 });
    fake.onRequest = (r) => {
      fake.reply(r);
      if (r.type === XsType.WATCH) {
        fake.event("/w", argsOf(r)[1], 0xdeadbeef, 0x1234);
        fake.event("/w/child", argsOf(r)[1], r.reqId, 99); // even a req_id that is in use
      }
    };
    const paths: string[] = [];
    for await (const event of store.watch("/w")) {
      paths.push(event.path);
      if (paths.length === 2) break;
    }
    assert.deepEqual(paths, ["/w", "/w/child"]);
    assert.equal(store.pendingRequests, 0);
    store.close();
  });

  it("accepts a reply larger than 4096 bytes (oxenstored over its socket)", async () => {
    const { fake, store } = open();
    const names = Array.from({ length: 600 }, (_, i) => `child-${i}`);
    fake.onRequest = (r) => fake.reply(r, names.map((n) => `${n}\0`).join(""));
    assert.deepEqual(await within(store.directory("/big")), names);
    store.close();
  });

  it("keeps error names as sent, known or not", async () => {
    const { fake, store } = open();
    const names = ["ENOENT", "EQUOTA", "EWHATEVER"];
    fake.onRequest = (r) => fake.error(r, names[fake.requests.indexOf(r)]);
    for (const name of names) {
      const error = await rejectsWith(store.read("/x"), name);
      assert.equal(error.op, "READ");
      assert.equal(error.path, "/x");
    }
    assert.equal(store.closed, false);
    store.close();
  });
});

describe("XenStore client: malformed replies and lost connections", () => {
  it("a short header then the end of the stream: ECONNRESET, nothing waiting", async () => {
    const { fake, store } = open();
    fake.onRequest = (r) => {
      fake.bytes(message(r.type, r.reqId, 0, "x").subarray(0, 7));
      fake.end();
    };
    const error = await rejectsWith(store.read("/x"), "ECONNRESET");
    assert.match(error.message, /7 bytes of a message cut short/);
    assert.equal(store.pendingRequests, 0);
    await rejectsWith(store.read("/x"), "ECONNRESET");
  });

  it("a length past the payload limit: EPROTO for all in flight, transport closed", async () => {
    const { fake, store } = open();
    const a = store.read("/a");
    const b = store.read("/b");
    await within(fake.waitRequests(2));
    const header = new Uint8Array(16);
    new DataView(header.buffer).setUint32(0, XsType.READ, true);
    new DataView(header.buffer).setUint32(4, fake.requests[0].reqId, true);
    new DataView(header.buffer).setUint32(12, 1 << 20, true);
    fake.bytes(header);
    await rejectsWith(a, "EPROTO");
    await rejectsWith(b, "EPROTO");
    assert.equal(store.pendingRequests, 0);
    assert.equal(fake.closed, true);
    await rejectsWith(store.read("/c"), "EPROTO");
    assert.equal(fake.requests.length, 2, "nothing sent after the failure");
  });

  it("an unknown message type: EPROTO", async () => {
    const { fake, store } = open();
    fake.onRequest = (r) => fake.bytes(message(77, r.reqId, 0, "OK\0"));
    await rejectsWith(store.read("/x"), "EPROTO");
    assert.equal(store.pendingRequests, 0);
  });

  it("a reply to no request, or of the wrong type: EPROTO", async () => {
    {
      const { fake, store } = open();
      fake.onRequest = (r) => fake.bytes(message(r.type, r.reqId + 1000, 0, "x"));
      await rejectsWith(store.read("/x"), "EPROTO");
      assert.equal(store.pendingRequests, 0);
    }
    {
      const { fake, store } = open();
      fake.onRequest = (r) => fake.bytes(message(XsType.WRITE, r.reqId, 0, "OK\0"));
      await rejectsWith(store.read("/x"), "EPROTO");
      assert.equal(store.pendingRequests, 0);
    }
  });

  it("the daemon ends the stream mid-request: ECONNRESET; watch iterators fail too", async () => {
    const { fake, store } = open();
    fake.onRequest = (r) => {
      if (r.type === XsType.WATCH) fake.reply(r);
    };
    const watch = store.watch("/w");
    const first = watch.next();
    await within(fake.waitRequests(1));
    const read = store.read("/x");
    await within(fake.waitRequests(2));
    fake.end(new Error("daemon died"));
    const error = await rejectsWith(read, "ECONNRESET");
    assert.match(error.message, /daemon died/);
    await rejectsWith(first, "ECONNRESET");
    assert.equal(store.pendingRequests, 0);
    assert.equal(store.activeWatches, 0);
  });

  it("close(): requests in flight reject ECLOSED, watch iterators end", async () => {
    const { fake, store } = open();
    fake.onRequest = (r) => {
      if (r.type === XsType.WATCH) (fake.reply(r), fake.event("/w", argsOf(r)[1]));
    };
    const watch = store.watch("/w");
    assert.equal((await within(watch.next())).value?.path, "/w");
    const waiting = watch.next();
    const read = store.read("/x");
    await within(fake.waitRequests(2));
    store[Symbol.dispose]();
    await rejectsWith(read, "ECLOSED");
    assert.deepEqual(await within(waiting), { done: true, value: undefined });
    assert.equal(fake.closed, true);
    assert.equal(store.pendingRequests, 0);
    await rejectsWith(store.write("/x", "1"), "ECLOSED");
    store.close(); // idempotent
  });

  it("a send that throws rejects that request only", async () => {
    const { fake, store } = open();
    fake.closed = true;
    await rejectsWith(store.read("/x"), "ECONNRESET");
    assert.equal(store.pendingRequests, 0);
  });
});

describe("XenStore client: refused before sending", () => {
  it("a request over the transport's payload limit: E2BIG, not sent, connection usable", async () => {
    const { fake, store } = open({ maxRequestPayload: 4080 });
    fake.onRequest = (r) => fake.reply(r);
    const error = await rejectsWith(store.write("/x", "v".repeat(4080)), "E2BIG");
    assert.match(error.message, /over the 4080-byte limit.*not sent/);
    assert.equal(fake.requests.length, 0);
    await within(store.write("/x", "v".repeat(4077))); // "/x\0" + 4077 = 4080
    assert.equal(fake.requests.length, 1);
    store.close();
  });

  it("invalid paths: XenUsageError naming the argument and value, nothing sent", async () => {
    const { fake, store } = open();
    const bad = [
      "",
      "/a b",
      "/a//b",
      "/a/",
      "/a\0b",
      "/" + "x".repeat(3072),
      "y".repeat(2049),
      "/é",
    ];
    for (const path of bad) {
      await assert.rejects(store.read(path), (e: unknown) => {
        assert.ok(e instanceof XenUsageError, String(e));
        assert.match(e.message, /^path must be/);
        return true;
      });
      assert.throws(() => store.watch(path), XenUsageError);
    }
    await assert.rejects(store.read(42 as unknown as string), /path must be a string, got 42/);
    await assert.rejects(store.write("/x", 5 as unknown as string), /value must be a string/);
    await assert.rejects(store.getDomainPath(-1), /domid must be an integer/);
    await assert.rejects(store.isDomainIntroduced(1.5), /domid must be an integer/);
    await assert.rejects(
      store.setPermissions("/x", [{ domid: 0, access: "all" as "both" }]),
      XenUsageError,
    );
    await assert.rejects(store.setPermissions("/x", []), XenUsageError);
    await assert.rejects(store.transaction(async () => {}, { maxAttempts: 0 }), /maxAttempts/);
    assert.throws(() => store.watch("/x", { token: "a\0b" }), /token must be/);
    assert.throws(() => store.watch("@bad path"), XenUsageError);
    assert.equal(fake.requests.length, 0);
    assert.equal(store.pendingRequests, 0);
    // The longest valid paths do go out.
    fake.onRequest = (r) => fake.reply(r, "");
    await within(store.read("/" + "x".repeat(3071)));
    await within(store.read("y".repeat(2048)));
    store.close();
  });
});

describe("XenStore client: transactions and large directories against scripted replies", () => {
  it("reruns the body on EAGAIN up to maxAttempts, then throws EAGAIN", async () => {
    const { fake, store } = open();
    let tx = 0;
    fake.onRequest = (r) => {
      if (r.type === XsType.TRANSACTION_START) return fake.reply(r, `${++tx}\0`);
      if (r.type === XsType.TRANSACTION_END) return fake.error(r, "EAGAIN");
      fake.reply(r);
    };
    let runs = 0;
    await rejectsWith(
      store.transaction(async (t) => (runs++, await t.write("/a", "1")), { maxAttempts: 3 }),
      "EAGAIN",
    );
    assert.equal(runs, 3);
    assert.deepEqual(
      fake.requests.filter((r) => r.type === XsType.TRANSACTION_END).map((r) => r.txId),
      [1, 2, 3],
    );
    assert.equal(store.pendingRequests, 0);
    store.close();
  });

  it("aborts with END F when the body throws, and rethrows the body's error", async () => {
    const { fake, store } = open();
    fake.onRequest = (r) => fake.reply(r, r.type === XsType.TRANSACTION_START ? "4\0" : "OK\0");
    const oops = new Error("body failed");
    await assert.rejects(store.transaction(() => Promise.reject(oops)), (e) => e === oops);
    const end = fake.requests.find((r) => r.type === XsType.TRANSACTION_END)!;
    assert.deepEqual([end.txId, argsOf(end)], [4, ["F"]]);
    store.close();
  });

  it("directory falls back to DIRECTORY_PART on E2BIG, restarting on a new generation", async () => {
    const { fake, store } = open();
    let gen = 5;
    fake.onRequest = (r) => {
      if (r.type === XsType.DIRECTORY) return fake.error(r, "E2BIG");
      const offset = Number(argsOf(r)[1]);
      const parts: Record<number, string> = { 0: "a\0bb\0", 5: "ccc\0\0" };
      if (offset === 5 && gen === 5) gen = 6; // the node changed between parts
      fake.reply(r, `${gen}\0${parts[offset]}`);
    };
    assert.deepEqual(await within(store.directory("/d")), ["a", "bb", "ccc"]);
    assert.deepEqual(
      fake.requests.filter((r) => r.type === XsType.DIRECTORY_PART).map((r) => argsOf(r)),
      [["/d", "0"], ["/d", "5"], ["/d", "0"], ["/d", "5"]],
    );
    store.close();
  });

  it("a daemon without DIRECTORY_PART (ENOSYS) gives the original E2BIG", async () => {
    const { fake, store } = open();
    fake.onRequest = (r) => fake.error(r, r.type === XsType.DIRECTORY ? "E2BIG" : "ENOSYS");
    const error = await rejectsWith(store.directory("/d"), "E2BIG");
    assert.equal(error.op, "DIRECTORY");
    store.close();
  });
});

describe("XenStore client over a fake unix-socket daemon", () => {
  async function serve(onConnection: (socket: Socket) => void) {
    const dir = mkdtempSync(join(tmpdir(), "xenchan-xs-"));
    const path = join(dir, "socket");
    const server: Server = createServer(onConnection);
    await new Promise<void>((resolve) => server.listen(path, resolve));
    return {
      path,
      async [Symbol.asyncDispose]() {
        await new Promise<void>((resolve) => server.close(() => resolve()));
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }

  it("reads through the socket, then the daemon closes mid-request: ECONNRESET", async () => {
    let count = 0;
    await using daemon = await serve((socket) => {
      socket.on("data", (chunk: Uint8Array) => {
        const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        const reqId = view.getUint32(4, true);
        if (count++ === 0) socket.write(message(XsType.READ, reqId, 0, "from socket"));
        else socket.destroy();
      });
    });
    const store = new XenStore(await within(connectXenStoreSocket({ path: daemon.path })));
    assert.equal(store.kind, "socket");
    assert.equal(await within(store.read("/x")), "from socket");
    await rejectsWith(store.read("/y"), "ECONNRESET");
    assert.equal(store.pendingRequests, 0);
    store.close();
  });

  it("a short header then close over the socket: ECONNRESET", async () => {
    await using daemon = await serve((socket) => {
      socket.once("data", () => socket.end(new Uint8Array([2, 0, 0])));
    });
    const store = new XenStore(await within(connectXenStoreSocket({ path: daemon.path })));
    await rejectsWith(store.read("/x"), "ECONNRESET");
    assert.equal(store.pendingRequests, 0);
    store.close();
  });

  it("no daemon behind the path: XenStoreError from CONNECT", async () => {
    const dir = mkdtempSync(join(tmpdir(), "xenchan-xs-"));
    try {
      const error = await within(
        connectXenStoreSocket({ path: join(dir, "none") }).then(() => null, (e) => e),
      );
      assert.ok(error instanceof XenStoreError, String(error));
      assert.equal(error.op, "CONNECT");
      assert.equal(error.code, "ENOENT");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("XenStore wire codec fast paths", { timeout: 60_000 }, () => {
  it("utf8/fromUtf8 agree with TextEncoder/TextDecoder on any input", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 120 }), (text) => {
        assert.equal(hex(utf8(text)), hex(new TextEncoder().encode(text)));
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), (bytes) => {
        assert.equal(fromUtf8(bytes), new TextDecoder().decode(bytes));
      }),
      { numRuns: 300 },
    );
  });

  it("the decoder gives the same messages however the stream is cut", () => {
    const arbMessage = fc.record({
      type: fc.integer({ min: 0, max: 22 }),
      reqId: fc.nat(),
      txId: fc.nat(),
      payload: fc.uint8Array({ maxLength: 64 }),
    });
    fc.assert(
      fc.property(fc.array(arbMessage, { maxLength: 8 }), fc.array(fc.nat(40)), (ms, cuts) => {
        const stream = ms.map((m) => encodeMessage(m));
        const all = new Uint8Array(stream.reduce((n, b) => n + b.length, 0));
        let at = 0;
        for (const b of stream) (all.set(b, at), at += b.length);
        const decoder = new XsDecoder();
        const got = [];
        let from = 0;
        for (const cut of cuts) {
          got.push(...decoder.push(all.subarray(from, Math.min(all.length, from + cut))));
          from = Math.min(all.length, from + cut);
        }
        got.push(...decoder.push(all.subarray(from)));
        assert.deepEqual(got, ms.map((m) => ({ ...m })));
        assert.equal(decoder.pending, 0);
      }),
      { numRuns: 200 },
    );
  });
});
