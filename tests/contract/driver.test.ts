/**
 * Contract tests of the driver interface itself (core/driver.ts): the
 * behaviour both backends promise below the public handles: `closed`, the
 * asynchronous wait around close(), refusals of memory a driver does not
 * own, and the state those failures leave. Written once, run on the
 * simulator and (in dom0) on the FFI backend.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { POLLNVAL, type XenBackend } from "../../core/driver.ts";
import { ClosedHandleError, XenUsageError } from "../../core/errors.ts";
import { createFfiBackend } from "../../ffi/mod.ts";
import { SimHypervisor } from "../../sim/mod.ts";
import { contractTargets } from "../helpers/backends.ts";

for (const target of await contractTargets()) {
  const backend = (): Promise<XenBackend> =>
    target.name === "sim" ? Promise.resolve(new SimHypervisor().backend(0)) : createFfiBackend();
  const test = (name: string, fn: (backend: XenBackend) => void | Promise<void>) =>
    it(`${name} [${target.name}]`, { skip: target.skip }, async () => fn(await backend()));

  describe(`driver contract [${target.name}]`, () => {
    test("event channels: closed, POLLNVAL for a wait cut by close, then rejections", async (b) => {
      const d = b.openEventChannels();
      assert.equal(d.closed, false);
      const port = d.bindUnboundPort(0);
      const waiting = d.waitReadable();
      d.close();
      assert.equal(await waiting, POLLNVAL);
      assert.equal(d.closed, true);
      await assert.rejects(d.waitReadable(), ClosedHandleError);
      assert.throws(() => d.notify(port), ClosedHandleError);
      assert.throws(() => d.pollNow(), ClosedHandleError);
      d.close(); // idempotent
    });

    test("event channels: an aborted wait resolves 0 and the handle stays usable", async (b) => {
      const d = b.openEventChannels();
      try {
        const stop = new AbortController();
        const waiting = d.waitReadable(stop.signal);
        stop.abort();
        assert.equal(await waiting, 0);
        const port = d.bindUnboundPort(0);
        const peer = d.bindInterdomain(0, port);
        assert.equal(d.pollNow() & 1, 1, "the bind-time event is pending");
        assert.equal(d.pending(), peer);
      } finally {
        d.close();
      }
    });

    test("grant table: unmap of foreign or released memory is XenUsageError, nothing changes", (b) => {
      const shr = b.openGrantShare();
      const a = b.openGrantTable();
      const other = b.openGrantTable();
      try {
        assert.equal(a.closed, false);
        const shared = shr.sharePages(0, 1, true);
        const mine = a.map([0], [shared.refs[0]], true);
        const theirs = other.map([0], [shared.refs[0]], true);
        mine.bytes[0] = 7;
        assert.throws(() => a.unmap(theirs), XenUsageError);
        assert.equal(theirs.bytes[0], 7, "the other handle's mapping still works");
        a.unmap(mine);
        assert.equal(mine.bytes.length, 0, "views are detached by unmap");
        assert.throws(() => a.unmap(mine), XenUsageError);
        assert.throws(
          () => a.map([0, 0], [shared.refs[0], shared.refs[0]], true, { offset: 0 }),
          XenUsageError,
        );
        assert.throws(() => shr.unshare({ refs: [], memory: theirs }), XenUsageError);
        other.unmap(theirs);
        shr.unshare(shared);
        assert.throws(() => shr.unshare(shared), XenUsageError);
      } finally {
        a.close();
        other.close();
        shr.close();
      }
      assert.equal(a.closed, true);
      assert.equal(shr.closed, true);
      assert.throws(() => a.setMaxGrants(1), ClosedHandleError);
      assert.throws(() => shr.sharePages(0, 1, true), ClosedHandleError);
    });

    test("close releases what the driver still tracks, detaching its views", (b) => {
      const shr = b.openGrantShare();
      const gnt = b.openGrantTable();
      const shared = shr.sharePages(0, 2, true);
      const mapped = gnt.map(0, [...shared.refs], true);
      gnt.close();
      assert.equal(mapped.bytes.length, 0);
      shr.close();
      assert.equal(shared.memory.bytes.length, 0);
    });
  });
}
