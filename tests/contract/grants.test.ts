/**
 * Contract tests for grant sharing, mapping, copying and unmap
 * notification: written once, run on every backend (dom0 loopback on real
 * Xen: dom0 grants pages to itself).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  ClosedHandleError,
  openEventChannels,
  openGrantShare,
  openGrantTable,
  type OpenOptions,
  PAGE_SIZE,
  XenUsageError,
} from "../../mod.ts";
import { contractTargets } from "../helpers/backends.ts";
import { deadline } from "../helpers/xen.ts";

const GNTST_OKAY = 0;

function fill(page: Uint8Array, seed: number): void {
  for (let i = 0; i < page.length; i++) page[i] = (i * 31 + seed) & 0xff;
}

for (const target of await contractTargets()) {
  const test = (name: string, fn: (options: OpenOptions) => Promise<void>) =>
    it(`${name} [${target.name}]`, { skip: target.skip }, () => fn(target.options()));

  describe(`grants contract [${target.name}]`, () => {
    test("share one page and map it: bytes seen both ways", async (options) => {
      using shr = await openGrantShare(options);
      using gnt = await openGrantTable(options);
      const share = shr.sharePages(0, 1, { writable: true });
      assert.equal(share.refs.length, 1);
      assert.equal(share.bytes.length, PAGE_SIZE);
      assert.ok(share.bytes.every((b) => b === 0), "shared pages start zeroed");
      fill(share.bytes, 7);
      const mapping = gnt.mapGrantRef(0, share.refs[0]);
      assert.deepEqual(mapping.bytes, share.bytes);
      mapping.bytes[100] = 0xab;
      assert.equal(share.bytes[100], 0xab);
      mapping.unmap();
      share.unshare();
      assert.deepEqual(gnt.holdings(), { ranges: 0, pages: 0 });
      assert.deepEqual(shr.holdings(), { ranges: 0, pages: 0 });
    });

    test("share four pages, map them per domain and per ref: each page aliases", async (options) => {
      using shr = await openGrantShare(options);
      using gnt = await openGrantTable(options);
      const share = shr.sharePages(0, 4);
      share.pages.forEach((page, i) => fill(page, i));
      const byDomain = gnt.mapDomainGrantRefs(0, share.refs);
      const byRef = gnt.mapGrantRefs(share.refs.map((ref) => ({ domid: 0, ref })));
      assert.equal(byDomain.count, 4);
      assert.equal(byRef.pages.length, 4);
      for (let i = 0; i < 4; i++) {
        assert.deepEqual(byDomain.pages[i], share.pages[i]);
        byRef.pages[i][0] = 0xf0 + i;
        assert.equal(share.pages[i][0], 0xf0 + i);
        assert.equal(byDomain.pages[i][0], 0xf0 + i);
      }
      assert.deepEqual(gnt.holdings(), { ranges: 2, pages: 8 });
    });

    test("unmap detaches every view of the mapping", async (options) => {
      using shr = await openGrantShare(options);
      using gnt = await openGrantTable(options);
      const share = shr.sharePages(0, 2);
      const mapping = gnt.mapDomainGrantRefs(0, share.refs);
      const page = mapping.pages[1];
      mapping.unmap();
      mapping.unmap(); // idempotent through the mapping
      assert.equal(mapping.released, true);
      assert.equal(mapping.bytes.length, 0);
      assert.throws(() => gnt.unmap(mapping), XenUsageError);
      share.pages[1][0] = 1; // the sharer's pages are unaffected
      assert.equal(share.pages[1][0], 1);
      if (target.name === "ffi") {
        assert.equal(page.byteLength, 0, "an old view reads as empty, never as freed memory");
      } else {
        // Pure JS cannot detach one of two aliasing views: the simulator empties
        // every view when the frame is freed, i.e. once the sharer lets go too.
        share.unshare();
        assert.equal(page.byteLength, 0, "an old view reads as empty once the frame is freed");
      }
    });

    test("read-only grants map read-only and refuse a writable map", async (options) => {
      using shr = await openGrantShare(options);
      using gnt = await openGrantTable(options);
      const share = shr.sharePages(0, 1, { writable: false });
      fill(share.bytes, 3);
      using mapping = gnt.mapGrantRef(0, share.refs[0], { writable: false });
      assert.deepEqual(mapping.bytes, share.bytes);
      assert.throws(() => gnt.mapGrantRef(0, share.refs[0], { writable: true }), {
        name: "XenCallError",
      });
      assert.equal(gnt.holdings().ranges, 1);
    });

    test("mapping a ref that was never granted fails with no mapping left", async (options) => {
      using gnt = await openGrantTable(options);
      assert.throws(() => gnt.mapGrantRef(0, 0xfffff), { name: "XenCallError" });
      assert.throws(() => gnt.mapDomainGrantRefs(0, []), { name: "XenCallError" });
      assert.deepEqual(gnt.holdings(), { ranges: 0, pages: 0 });
    });

    test("unmap notification on unmap: byte cleared and port notified", async (options) => {
      using shr = await openGrantShare(options);
      using gnt = await openGrantTable(options);
      using sharer = await openEventChannels(options);
      using mapper = await openEventChannels(options);
      const sharerPort = sharer.bindUnboundPort(0);
      const mapperPort = mapper.bindInterdomain(0, sharerPort);
      const share = shr.sharePages(0, 1);
      share.bytes[9] = 1;
      const mapping = gnt.mapGrantRefNotify(0, share.refs[0], {
        notifyOffset: 9,
        notifyPort: mapperPort,
      });
      assert.equal(mapping.bytes[9], 1);
      mapping.unmap();
      assert.equal(await sharer.pending({ signal: deadline() }), sharerPort);
      assert.equal(share.bytes[9], 0);
    });

    test("unmap notification errors: read-only clear, unknown port", async (options) => {
      using shr = await openGrantShare(options);
      using gnt = await openGrantTable(options);
      const share = shr.sharePages(0, 1, { writable: false });
      assert.throws(
        () => gnt.mapGrantRefNotify(0, share.refs[0], { writable: false, notifyOffset: 0 }),
        { name: "XenCallError", code: "EINVAL" },
      );
      const rw = shr.sharePages(0, 1);
      assert.throws(() => gnt.mapGrantRefNotify(0, rw.refs[0], { notifyPort: 0xffff0 }), {
        name: "XenCallError",
        code: "EINVAL",
      });
      assert.throws(
        () => gnt.mapGrantRefNotify(0, rw.refs[0], { notifyOffset: PAGE_SIZE }),
        XenUsageError,
      );
      assert.deepEqual(gnt.holdings(), { ranges: 0, pages: 0 });
    });

    test("sharePageNotify: unshare clears the byte the mapper sees and notifies", async (options) => {
      using shr = await openGrantShare(options);
      using gnt = await openGrantTable(options);
      using sharer = await openEventChannels(options);
      using mapper = await openEventChannels(options);
      const sharerPort = sharer.bindUnboundPort(0);
      const mapperPort = mapper.bindInterdomain(0, sharerPort);
      assert.equal(await mapper.pending({ signal: deadline() }), mapperPort);
      mapper.unmask(mapperPort);
      const share = shr.sharePageNotify(0, { notifyOffset: 3, notifyPort: sharerPort });
      share.bytes[3] = 1;
      using mapping = gnt.mapGrantRef(0, share.refs[0]);
      assert.equal(mapping.bytes[3], 1);
      share.unshare();
      assert.equal(await mapper.pending({ signal: deadline() }), mapperPort);
      assert.equal(mapping.bytes[3], 0, "the page lives on while mapped, with the byte cleared");
    });

    test("grant copy between grant refs and local buffers", async (options) => {
      using shr = await openGrantShare(options);
      using gnt = await openGrantTable(options);
      const share = shr.sharePages(0, 1);
      fill(share.bytes, 11);
      const local = new Uint8Array(64);
      const ref = share.refs[0];
      const statuses = gnt.grantCopy([
        { source: { ref, domid: 0, offset: 128 }, dest: { local }, len: 64 },
        {
          source: { local: Uint8Array.from([1, 2, 3, 4]) },
          dest: { ref, domid: 0, offset: 4000 },
          len: 4,
        },
      ]);
      assert.deepEqual(statuses, [GNTST_OKAY, GNTST_OKAY]);
      assert.deepEqual(local, share.bytes.slice(128, 192));
      assert.deepEqual(share.bytes.slice(4000, 4004), Uint8Array.from([1, 2, 3, 4]));
      const bad = gnt.grantCopy([{
        source: { ref: 0xfffff, domid: 0, offset: 0 },
        dest: { local },
        len: 8,
      }]);
      assert.ok(bad[0] < 0, `a bad ref gives a negative GNTST status, got ${bad[0]}`);
      assert.throws(
        () => gnt.grantCopy([{ source: { ref, domid: 0, offset: 0 }, dest: { local }, len: 65 }]),
        XenUsageError,
      );
    });

    test("setMaxGrants is accepted before mapping", async (options) => {
      using gnt = await openGrantTable(options);
      gnt.setMaxGrants(64);
      assert.throws(() => gnt.setMaxGrants(-1), XenUsageError);
    });

    test("wrong counts and bad arguments give typed errors and hold nothing", async (options) => {
      using shr = await openGrantShare(options);
      assert.throws(() => shr.sharePages(0, 0), { name: "XenCallError" });
      assert.throws(() => shr.sharePages(0, -1), XenUsageError);
      assert.throws(() => shr.sharePages(0x10000, 1), XenUsageError);
      assert.deepEqual(shr.holdings(), { ranges: 0, pages: 0 });
    });

    test("close releases every mapping and share; closed handles refuse calls", async (options) => {
      const shr = await openGrantShare(options);
      const gnt = await openGrantTable(options);
      const share = shr.sharePages(0, 2);
      const mapping = gnt.mapDomainGrantRefs(0, share.refs);
      const view = mapping.bytes;
      gnt.close();
      if (target.name === "ffi") assert.equal(view.byteLength, 0);
      assert.equal(mapping.released, true);
      assert.deepEqual(gnt.holdings(), { ranges: 0, pages: 0 });
      assert.throws(() => gnt.mapGrantRef(0, share.refs[0]), ClosedHandleError);
      assert.throws(() => gnt.setMaxGrants(1), ClosedHandleError);
      shr.close();
      shr.close();
      assert.equal(share.released, true);
      assert.throws(() => shr.sharePages(0, 1), ClosedHandleError);
      assert.equal(view.byteLength, 0, "every view is empty once nothing holds the pages");
    });
  });
}
