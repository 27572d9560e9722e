/**
 * openXenStore (mod.ts) on every backend choice, and the /dev/xen/xenbus
 * transport's FFI path (open, poller-driven nonblocking reads, writes,
 * close) exercised over a FIFO, which echoes each request back: a request
 * read back is a well-formed reply of its own type.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  openXenStore,
  serveXenStoreSocket,
  SimHypervisor,
  type XenBackend,
  XenStoreError,
  XenUsageError,
} from "../mod.ts";
import { openXenbus, xenstoredSocketPath } from "../ffi/mod.ts";
import { XenStore } from "../mod.ts";
import { within } from "./helpers/xenstore_fake.ts";

function tempDir(): { path: string } & Disposable {
  const path = mkdtempSync(join(tmpdir(), "xenchan-xs-open-"));
  return { path, [Symbol.dispose]: () => rmSync(path, { recursive: true, force: true }) };
}

describe("openXenStore", () => {
  it('"sim" is the default simulator as dom0 (privileged)', async () => {
    await using store = await openXenStore({ backend: "sim" });
    assert.equal(store.kind, "sim");
    assert.equal(await store.isDomainIntroduced(0), true);
    await store.write("/xenchan-open-test", "1");
    assert.equal(await store.read("/xenchan-open-test"), "1");
    await store.rm("/xenchan-open-test");
  });

  it("a simulated domain's backend connects with that domain's identity", async () => {
    const hv = new SimHypervisor();
    const domid = hv.createDomain();
    await using guest = await openXenStore({ backend: hv.backend(domid) });
    await assert.rejects(guest.isDomainIntroduced(0), (e) => {
      assert.ok(e instanceof XenStoreError);
      return e.code === "EACCES";
    });
    assert.equal(await guest.getDomainPath(domid), `/local/domain/${domid}`);
  });

  it("a path to a unix socket connects to it", async () => {
    using dir = tempDir();
    const hv = new SimHypervisor();
    await using server = await serveXenStoreSocket(hv.xenstore, join(dir.path, "s"));
    await using store = await openXenStore({ path: server.path });
    assert.equal(store.kind, "socket");
    assert.equal(await store.getDomainPath(3), "/local/domain/3");
  });

  it('"auto" connects to a real daemon, or falls back to the simulator', async () => {
    await using store = await openXenStore();
    assert.ok(store.kind === "sim" || store.kind === "socket" || store.kind === "xenbus");
    assert.equal(await store.getDomainPath(0), "/local/domain/0");
  });

  it('"ffi" without a daemon: XenStoreError from CONNECT naming what was tried', async () => {
    const result = await openXenStore({ backend: "ffi" }).then((s) => s, (e) => e);
    if (result instanceof XenStore) {
      result.close(); // a real xenstored runs here: nothing to check
      return;
    }
    assert.ok(result instanceof XenStoreError, String(result));
    assert.equal(result.op, "CONNECT");
    assert.match(result.message, new RegExp(xenstoredSocketPath().replace(/[/.]/g, "\\$&")));
  });

  it("bad options and backends without XenStore: XenUsageError", async () => {
    await assert.rejects(openXenStore({ backend: "nope" as "sim" }), XenUsageError);
    await assert.rejects(openXenStore({ path: "" }), XenUsageError);
    const bare = { kind: "sim", description: "a bare backend" } as unknown as XenBackend;
    await assert.rejects(openXenStore({ backend: bare }), /has no XenStore/);
  });
});

describe("xenbus transport (FFI) over a FIFO", () => {
  it("opens, writes, reads through the poller, and closes", async () => {
    using dir = tempDir();
    const fifo = join(dir.path, "xenbus");
    execFileSync("mkfifo", [fifo]);
    const transport = await openXenbus({ path: fifo });
    assert.equal(transport.kind, "xenbus");
    assert.equal(transport.maxRequestPayload, 4080);
    assert.equal(transport.kernelWatches, true);
    const store = new XenStore(transport);
    // The FIFO returns the READ request itself: a READ reply whose value is "/foo\0".
    assert.equal(await within(store.read("/foo")), "/foo\0");
    const values = await within(Promise.all([store.read("/a"), store.read("/b")]));
    assert.deepEqual(values, ["/a\0", "/b\0"]);
    await assert.rejects(store.write("/x", "v".repeat(4080)), (e) => {
      assert.ok(e instanceof XenStoreError);
      return e.code === "E2BIG";
    });
    assert.equal(store.pendingRequests, 0);
    store.close();
    await assert.rejects(store.read("/foo"), /ECLOSED/);
  });

  it("a missing device: XenCallError ENOENT from open", async () => {
    using dir = tempDir();
    await assert.rejects(openXenbus({ path: join(dir.path, "none") }), (e: unknown) => {
      assert.equal((e as { call?: string }).call, "open");
      assert.equal((e as { code?: string }).code, "ENOENT");
      return true;
    });
  });
});
