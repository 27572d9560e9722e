/**
 * The FFI backend on any machine with the Debian libraries installed: the
 * real libraries load, every symbol resolves, and off Xen opening fails with
 * a typed ENOENT error; a missing library gives a clear, actionable error.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ffiLibraryFacts } from "../ffi/backend.ts";
import {
  openEventChannels,
  openGrantShare,
  openGrantTable,
  selectBackend,
  XenCallError,
} from "../mod.ts";
import { firstLine, startFixture } from "./helpers/child.ts";
import { whyNoXen } from "./helpers/xen.ts";

const offXen = (await whyNoXen()) !== null;

describe("FFI backend on the host", () => {
  it("loads the real libraries and resolves every symbol, optional ones included", async () => {
    const facts = await ffiLibraryFacts();
    assert.equal(facts.runtime, "Deno" in globalThis ? "deno" : "bun");
    assert.match(facts.evtchn, /libxenevtchn\.so/);
    assert.match(facts.gnttab, /libxengnttab\.so/);
    assert.deepEqual(facts.optional, {
      xenevtchn_fdopen: true,
      xenevtchn_restrict: true,
      xengnttab_grant_copy: true,
    });
  });

  const opens = [
    ["xenevtchn_open", openEventChannels],
    ["xengnttab_open", openGrantTable],
    ["xengntshr_open", openGrantShare],
  ] as const;
  for (const [call, open] of opens) {
    it(`off Xen, ${call} fails with XenCallError ENOENT`, {
      skip: !offXen && "this machine is a Xen dom0",
    }, async () => {
      const error = await open({ backend: "ffi" }).then(() => null, (e) => e);
      assert.ok(error instanceof XenCallError, `expected XenCallError, got ${error}`);
      assert.equal(error.call, call);
      assert.equal(error.code, "ENOENT");
      assert.equal(error.errno, 2);
    });
  }

  it("a missing library names the path tried, the package and the variable", async () => {
    const child = startFixture("load_missing_library.ts", [], {
      XENCHAN_LIBXENEVTCHN: "/nonexistent/libxenevtchn.so.1",
    });
    const result = JSON.parse(await firstLine(child));
    assert.equal(result.name, "LibraryNotFoundError");
    assert.deepEqual(result.tried, ["/nonexistent/libxenevtchn.so.1"]);
    assert.equal(result.install, "libxenevtchn1");
    assert.equal(result.envVar, "XENCHAN_LIBXENEVTCHN");
    assert.match(result.message, /apt-get install libxenevtchn1/);
  });

  it("auto selection explains why it chose its backend", {
    skip: !offXen && "this machine is a Xen dom0",
  }, async () => {
    const selection = await selectBackend("auto");
    assert.equal(selection.kind, "sim");
    assert.match(selection.reason, /\/dev\/xen\/evtchn does not exist/);
  });
});
