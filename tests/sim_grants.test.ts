/**
 * Simulator grant tables against the driver interfaces (GrantTableDriver,
 * GrantShareDriver): gntalloc sharing, gntdev mapping, unmap notifications,
 * limits, grant copy statuses, and the views' aliasing/detach behaviour.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ClosedHandleError, XenUsageError } from "../core/errors.ts";
import { serverAndClient } from "./helpers/sim.ts";
import { callFailed } from "./helpers/errors.ts";
import { DOMID_SELF, GNTST, GTF_permit_access, GTF_readonly, SimHypervisor } from "../sim/mod.ts";

const code = callFailed;

const MAP = "xengnttab_map_grant_refs";
const MAP1 = "xengnttab_map_grant_ref";
const MAPN = "xengnttab_map_grant_ref_notify";

/** d1 shares pages with dom0; dom0 maps them. */
function setup() {
  const hv = new SimHypervisor();
  const d1 = hv.createDomain();
  const p1 = hv.backend(d1);
  const shr = p1.openGrantShare();
  const p0 = hv.backend(0);
  const gnt = p0.openGrantTable();
  return { hv, d1, p0, p1, shr, gnt };
}

describe("sim grants: sharing", () => {
  it("shares zeroed, contiguous pages with refs from 8 upward", () => {
    const { hv, d1, shr } = setup();
    const s = shr.sharePages(0, 3, true);
    assert.deepEqual(s.refs, [8, 9, 10]);
    assert.equal(s.memory.count, 3);
    assert.equal(s.memory.bytes.length, 3 * 4096);
    assert.ok(s.memory.bytes.every((b) => b === 0));
    s.memory.pages[1][5] = 42;
    assert.equal(s.memory.bytes[4096 + 5], 42, "pages alias bytes");
    const st = hv.grantStatus(d1, 9)!;
    assert.equal(st.domid, 0);
    assert.equal(st.flags & GTF_permit_access, GTF_permit_access);
    assert.equal(st.readonly, false);
    const ro = shr.sharePages(0, 1, false);
    assert.equal(hv.grantStatus(d1, ro.refs[0])!.flags & GTF_readonly, GTF_readonly);
  });

  it("unshare frees the refs for reuse; twice or foreign -> XenUsageError, nothing changes", () => {
    const { hv, d1, shr, p1 } = setup();
    const s = shr.sharePages(0, 2, true);
    shr.unshare(s);
    assert.equal(hv.grantStatus(d1, 8), undefined);
    assert.equal(s.memory.bytes.length, 0);
    assert.throws(() => shr.unshare(s), /xengntshr_unshare: already unshared/);
    const other = p1.openGrantShare();
    const t = other.sharePages(0, 1, true);
    // Linux's free list is LIFO: the last ref freed (9) comes back first, as on a real dom0.
    assert.deepEqual(t.refs, [9]);
    assert.throws(
      () => shr.unshare(t),
      (e) => e instanceof XenUsageError && /not shared by this handle/.test(e.message),
    );
    assert.equal(hv.grantStatus(d1, 9)!.pins, 0, "the other handle's share is untouched");
    assert.equal(t.memory.bytes.length, 4096);
  });

  it("ENOSPC past the gntalloc limit; EINVAL for zero pages; XenUsageError for bad counts", () => {
    const hv = new SimHypervisor();
    const d = hv.createDomain({ gntallocLimit: 4 });
    const shr = hv.backend(d).openGrantShare();
    const s = shr.sharePages(0, 3, true);
    assert.throws(() => shr.sharePages(0, 2, true), code("xengntshr_share_pages", "ENOSPC"));
    shr.unshare(s);
    shr.sharePages(0, 4, true);
    assert.throws(() => shr.sharePages(0, 0, true), code("xengntshr_share_pages", "EINVAL"));
    assert.throws(() => shr.sharePages(0, -1, true), XenUsageError);
    assert.throws(() => shr.sharePages(0x1_0000, 1, true), XenUsageError);
  });

  it("ENOSPC when the grant table reaches max_grant_frames (512 refs per frame, 8 reserved)", () => {
    const hv = new SimHypervisor();
    const d = hv.createDomain({ maxGrantFrames: 2, gntallocLimit: 5000 });
    const shr = hv.backend(d).openGrantShare();
    const s = shr.sharePages(0, 1024 - 8, true);
    assert.equal(s.refs.at(-1), 1023);
    assert.throws(() => shr.sharePages(0, 1, true), code("xengntshr_share_pages", "ENOSPC"));
    assert.equal(hv.stats(d).activeGrants, 1016);
  });
});

describe("sim grants: mapping", () => {
  it("a mapping aliases the sharer's pages both ways", () => {
    const { d1, shr, gnt } = setup();
    const s = shr.sharePages(0, 2, true);
    const m = gnt.map([d1, d1], [...s.refs], true);
    assert.equal(m.count, 2);
    s.memory.bytes.set([1, 2, 3], 4096);
    assert.deepEqual([...m.pages[1].subarray(0, 3)], [1, 2, 3]);
    m.bytes[7] = 99;
    assert.equal(s.memory.pages[0][7], 99);
    assert.equal(m.bytes.length, 8192);
  });

  it("refs that are not adjacent pages of one share are refused at map time, nothing pinned", () => {
    const { hv, d1, shr, gnt } = setup();
    const s = shr.sharePages(0, 3, true);
    const single = shr.sharePages(0, 1, true);
    for (
      const refs of [
        [s.refs[2], s.refs[0]], // out of order
        [s.refs[0], s.refs[2]], // a gap
        [s.refs[0], single.refs[0]], // two shares
        [s.refs[1], s.refs[1]], // the same page twice
      ]
    ) {
      assert.throws(
        () => gnt.map([d1, d1], refs, true),
        (e) => e instanceof XenUsageError && /^simulator limitation: /.test(e.message),
      );
      assert.throws(
        () => gnt.map(d1, refs, true),
        (e) => e instanceof XenUsageError && /not adjacent pages of one share/.test(e.message),
      );
    }
    assert.equal(hv.stats(0).mappings, 0);
    for (const ref of [...s.refs, ...single.refs]) assert.equal(hv.grantStatus(d1, ref)!.pins, 0);
    // A bad ref is still EINVAL, as on real Xen: the grant check comes first.
    assert.throws(() => gnt.map([d1, d1], [s.refs[2], 4000], true), code(MAP, "EINVAL"));
    // Adjacent refs in order map, and bytes is their one contiguous view.
    const m = gnt.map(d1, [s.refs[1], s.refs[2]], true);
    m.bytes[4096] = 5;
    assert.equal(s.memory.pages[2][0], 5);
    assert.equal(m.bytes.length, 8192);
  });

  it("every refused map is EINVAL: wrong domain, not granted, beyond the table, no domain, r/o", () => {
    const { hv, d1, shr, gnt } = setup();
    const d2 = hv.createDomain();
    const forD2 = shr.sharePages(d2, 1, true).refs[0];
    const ro = shr.sharePages(0, 1, false).refs[0];
    assert.throws(() => gnt.map([d1], [forD2], true), code(MAP1, "EINVAL"));
    assert.throws(() => gnt.map([d1], [300], true), code(MAP1, "EINVAL"));
    assert.throws(() => gnt.map([d1], [5000], false), code(MAP1, "EINVAL"));
    assert.throws(() => gnt.map([77], [8], false), code(MAP1, "EINVAL"));
    assert.throws(() => gnt.map([d1], [ro], true), code(MAP1, "EINVAL"));
    const ok = gnt.map([d1], [ro], false);
    assert.equal(ok.count, 1);
    assert.throws(() => gnt.map([d1, d1], [ro, 5000], false), code(MAP, "EINVAL"));
    assert.equal(hv.stats(0).mappings, 1, "failed maps leave nothing mapped");
    assert.equal(hv.grantStatus(d1, ro)!.pins, 1);
  });

  it("count 0 or > 65536 is EINVAL; malformed arguments are XenUsageError", () => {
    const { d1, gnt } = setup();
    assert.throws(() => gnt.map([], [], true), code(MAP, "EINVAL"));
    const big = new Array(65_537).fill(8);
    assert.throws(() => gnt.map(big.map(() => d1), big, true), code(MAP, "EINVAL"));
    assert.throws(() => gnt.map([d1], [8, 9], true), XenUsageError);
    assert.throws(() => gnt.map([d1, d1], [8, 9], true, { port: 1 }), XenUsageError);
    assert.throws(() => gnt.map([d1], [8], true, { offset: 4096 }), XenUsageError);
    assert.throws(() => gnt.map([d1], [-8], true), XenUsageError);
  });

  it("maptrack exhaustion (max_maptrack_frames) refuses further maps with EINVAL", () => {
    const hv = new SimHypervisor({ dom0: { maxMaptrackFrames: 1 } });
    const d1 = hv.createDomain({ gntallocLimit: 600 });
    const s = hv.backend(d1).openGrantShare().sharePages(0, 513, true);
    const gnt = hv.backend(0).openGrantTable();
    for (let i = 0; i < 512; i++) gnt.map([d1], [s.refs[i]], true);
    assert.throws(() => gnt.map([d1], [s.refs[512]], true), code(MAP1, "EINVAL"));
  });

  it("setMaxGrants is accepted and ignored (modern Linux); bad counts are XenUsageError", () => {
    const { d1, shr, gnt } = setup();
    gnt.setMaxGrants(1);
    const s = shr.sharePages(0, 3, true);
    assert.equal(gnt.map([d1, d1, d1], [...s.refs], true).count, 3);
    assert.throws(() => gnt.setMaxGrants(-1), XenUsageError);
  });
});

describe("sim grants: unmap and views", () => {
  it("unmap empties the getters; twice or unknown -> XenUsageError", () => {
    const { hv, d1, shr, gnt, p0 } = setup();
    const s = shr.sharePages(0, 1, true);
    const m = gnt.map([d1], [s.refs[0]], true);
    const stash = m.pages[0];
    gnt.unmap(m);
    assert.equal(m.bytes.length, 0);
    assert.equal(m.pages[0].length, 0);
    assert.throws(() => gnt.unmap(m), /xengnttab_unmap: already unmapped/);
    const other = p0.openGrantTable();
    const m2 = other.map([d1], [s.refs[0]], true);
    assert.throws(
      () => gnt.unmap(m2),
      (e) => e instanceof XenUsageError && /not a mapping of this handle/.test(e.message),
    );
    assert.equal(m2.bytes.length, 4096, "the other handle's mapping is untouched");
    // Documented limitation: a view taken before unmap aliases until the pages are freed.
    s.memory.bytes[0] = 3;
    assert.equal(stash[0], 3);
    other.unmap(m2);
    shr.unshare(s);
    assert.equal(stash.length, 0, "freed pages detach every view");
    assert.equal(hv.stats().mappings, 0);
  });

  it("unshare while mapped: the mapping stays valid, the ref is freed at the last unmap", () => {
    const { hv, d1, shr, gnt } = setup();
    const s = shr.sharePages(0, 1, true);
    const ref = s.refs[0];
    const m = gnt.map([d1], [ref], true);
    const view = m.pages[0];
    shr.unshare(s);
    assert.equal(s.memory.bytes.length, 0);
    view[1] = 8;
    assert.equal(view[1], 8, "the grantee's page is still alive");
    const st = hv.grantStatus(d1, ref)!;
    assert.ok(st.ended && st.pins === 1);
    const m2 = gnt.map([d1], [ref], true); // Linux could not revoke it yet
    gnt.unmap(m);
    gnt.unmap(m2);
    assert.equal(hv.grantStatus(d1, ref), undefined);
    assert.equal(view.length, 0);
    assert.equal(hv.stats(d1).activeGrants, 0);
  });

  it("close unmaps everything; then every call is ClosedHandleError", () => {
    const { hv, d1, shr, gnt } = setup();
    const s = shr.sharePages(0, 2, true);
    const m = gnt.map([d1, d1], [...s.refs], true);
    gnt.close();
    gnt.close();
    assert.equal(m.bytes.length, 0);
    assert.throws(() => gnt.map([d1], [s.refs[0]], true), ClosedHandleError);
    assert.throws(() => gnt.grantCopy([]), ClosedHandleError);
    shr.close();
    assert.throws(() => shr.sharePages(0, 1, true), ClosedHandleError);
    const all = hv.stats();
    assert.equal(all.mappings + all.shares + all.activeGrants + all.handles.total, 0);
  });
});

describe("sim grants: unmap notifications", () => {
  /** d1 (client) maps a dom0 (server) page with notify; returns the pieces. */
  function vchanLike(notify: { offset?: number; port?: number }, writable = true) {
    const { hv, d1, s, sevt, sport, client, cevt, cport } = serverAndClient();
    cevt.pending();
    cevt.unmask(cport);
    const gnt = client.openGrantTable();
    const n = { ...notify, port: notify.port === -1 ? cport : notify.port };
    const m = gnt.map([0], [s.refs[0]], writable, n);
    return { hv, d1, s, sevt, sport, cevt, cport, client, gnt, m };
  }

  it("unmap clears the byte and notifies the peer (both together)", () => {
    const { s, sevt, sport, gnt, m } = vchanLike({ offset: 10, port: -1 });
    s.memory.bytes[10] = 1;
    assert.equal(sevt.pollNow(), 0);
    gnt.unmap(m);
    assert.equal(s.memory.bytes[10], 0);
    assert.equal(sevt.pending(), sport);
  });

  it("clear-byte only, and event only", () => {
    const a = vchanLike({ offset: 3 });
    a.s.memory.bytes[3] = 7;
    a.gnt.unmap(a.m);
    assert.equal(a.s.memory.bytes[3], 0);
    assert.equal(a.sevt.pollNow(), 0);
    const b = vchanLike({ port: -1 });
    b.s.memory.bytes[0] = 7;
    b.gnt.unmap(b.m);
    assert.equal(b.s.memory.bytes[0], 7);
    assert.equal(b.sevt.pending(), b.sport);
  });

  it("the notify port outlives its event channel handle until the unmap", () => {
    const { hv, d1, sevt, sport, cevt, cport, gnt, m } = vchanLike({ port: -1 });
    cevt.close();
    assert.equal(hv.portStatus(d1, cport).kind, "interdomain", "held by the notification");
    assert.equal(hv.stats(d1).boundPorts, 0);
    gnt.unmap(m);
    assert.equal(sevt.pending(), sport);
    assert.equal(hv.portStatus(d1, cport).kind, "free");
    assert.equal(hv.portStatus(0, sport).kind, "unbound");
  });

  it("closing the grant table handle fires the notifications of its mappings", () => {
    const { s, sevt, sport, gnt } = vchanLike({ offset: 1, port: -1 });
    s.memory.bytes[1] = 1;
    gnt.close();
    assert.equal(s.memory.bytes[1], 0);
    assert.equal(sevt.pending(), sport);
  });

  it("refused notifications are EINVAL and undo the mapping", () => {
    const hv = new SimHypervisor();
    const d1 = hv.createDomain();
    const s = hv.backend(0).openGrantShare().sharePages(d1, 1, false);
    const p = hv.backend(d1);
    const gnt = p.openGrantTable();
    assert.throws(() => gnt.map([0], [s.refs[0]], false, { offset: 0 }), code(MAPN, "EINVAL"));
    assert.throws(() => gnt.map([0], [s.refs[0]], false, { port: 5 }), code(MAPN, "EINVAL"));
    const dom0port = hv.backend(0).openEventChannels().bindUnboundPort(d1);
    assert.throws(() => gnt.map([0], [s.refs[0]], false, { port: dom0port }), code(MAPN, "EINVAL"));
    assert.equal(hv.stats(d1).mappings, 0);
    assert.equal(hv.grantStatus(0, s.refs[0])!.pins, 0);
    const other = hv.backend(d1).openEventChannels().bindUnboundPort(0);
    const m = gnt.map([0], [s.refs[0]], false, { port: other });
    assert.equal(m.count, 1, "a port bound by another process of the same domain is fine");
  });

  it("sharePageNotify fires on unshare: the grantee sees the byte cleared and gets the event", () => {
    const hv = new SimHypervisor();
    const d1 = hv.createDomain();
    const srv = hv.backend(0);
    const sevt = srv.openEventChannels();
    const sport = sevt.bindUnboundPort(d1);
    const shr = srv.openGrantShare();
    const s = shr.sharePageNotify(d1, true, { offset: 100, port: sport });
    const cevt = hv.backend(d1).openEventChannels();
    const cport = cevt.bindInterdomain(0, sport);
    cevt.pending();
    cevt.unmask(cport);
    const m = hv.backend(d1).openGrantTable().map([0], [s.refs[0]], true);
    m.bytes[100] = 1;
    shr.unshare(s);
    assert.equal(m.bytes[100], 0);
    assert.equal(cevt.pending(), cport);
    assert.throws(
      () => shr.sharePageNotify(d1, true, { port: 999 }),
      code("xengntshr_share_page_notify", "EINVAL"),
    );
    assert.throws(() => shr.sharePageNotify(d1, true, { offset: -1 }), XenUsageError);
  });
});

describe("sim grants: grant copy", () => {
  it("copies between local memory and granted pages", () => {
    const { d1, shr, gnt } = setup();
    const s = shr.sharePages(0, 1, true);
    const src = new Uint8Array([9, 8, 7, 6]);
    const st = gnt.grantCopy([{
      source: { local: src },
      dest: { ref: s.refs[0], domid: d1, offset: 100 },
      len: 4,
    }]);
    assert.deepEqual(st, [GNTST.okay]);
    assert.deepEqual([...s.memory.bytes.subarray(100, 104)], [9, 8, 7, 6]);
    const out = new Uint8Array(2);
    gnt.grantCopy([{
      source: { ref: s.refs[0], domid: d1, offset: 101 },
      dest: { local: out },
      len: 2,
    }]);
    assert.deepEqual([...out], [8, 7]);
  });

  it("per-segment statuses: bad_domain, bad_gntref, general_error", () => {
    const { hv, d1, shr, gnt } = setup();
    const d2 = hv.createDomain();
    const s = shr.sharePages(0, 1, true);
    const ro = shr.sharePages(0, 1, false).refs[0];
    const notMine = shr.sharePages(d2, 1, true).refs[0];
    const buf = new Uint8Array(8);
    const seg = (domid: number, ref: number, toGrant = false) =>
      toGrant
        ? { source: { local: buf }, dest: { ref, domid, offset: 0 }, len: 8 }
        : { source: { ref, domid, offset: 0 }, dest: { local: buf }, len: 8 };
    const st = gnt.grantCopy([
      seg(55, 8),
      seg(d1, 4000),
      seg(d1, notMine),
      seg(d1, ro, true),
      seg(d1, ro),
      seg(d1, 400),
      seg(d1, s.refs[0], true),
    ]);
    assert.deepEqual(st, [
      GNTST.bad_domain,
      GNTST.bad_gntref,
      GNTST.general_error,
      GNTST.general_error,
      GNTST.okay,
      GNTST.general_error,
      GNTST.okay,
    ]);
  });

  it("EINVAL for a page-crossing grant side or local->local; earlier batches of 16 ran", () => {
    const { d1, shr, gnt } = setup();
    const s = shr.sharePages(0, 1, true);
    const call = "xengnttab_grant_copy";
    const one = new Uint8Array([1]);
    const cross = {
      source: { local: new Uint8Array(8) },
      dest: { ref: s.refs[0], domid: d1, offset: 4090 },
      len: 8,
    };
    assert.throws(() => gnt.grantCopy([cross]), code(call, "EINVAL"));
    const local = { source: { local: one }, dest: { local: new Uint8Array(1) }, len: 1 };
    assert.throws(() => gnt.grantCopy([local]), code(call, "EINVAL"));
    const put = (i: number) => ({
      source: { local: one },
      dest: { ref: s.refs[0], domid: d1, offset: i },
      len: 1,
    });
    const segs = [...Array.from({ length: 18 }, (_, i) => put(i)), cross];
    assert.throws(() => gnt.grantCopy(segs), code(call, "EINVAL"));
    const written = [...s.memory.bytes.subarray(0, 18)];
    assert.deepEqual(
      written,
      [...new Array(16).fill(1), 0, 0],
      "the 17th and 18th were in the dropped batch",
    );
  });

  it("DOMID_SELF names the caller's own domain; bad shapes are XenUsageError", () => {
    const hv = new SimHypervisor();
    const p = hv.backend(0);
    const s = p.openGrantShare().sharePages(0, 1, true);
    const gnt = p.openGrantTable();
    const st = gnt.grantCopy([{
      source: { local: new Uint8Array([4]) },
      dest: { ref: s.refs[0], domid: DOMID_SELF, offset: 0 },
      len: 1,
    }]);
    assert.deepEqual(st, [GNTST.okay]);
    assert.equal(s.memory.bytes[0], 4);
    assert.throws(
      () =>
        gnt.grantCopy([{
          source: { local: new Uint8Array(1) },
          dest: { local: new Uint8Array(1) },
          len: 2,
        }]),
      XenUsageError,
    );
  });
});

describe("sim grants: the toolstack's seeded grants", () => {
  it("a guest created with toolstackGrants grants refs 0 and 1 writable to dom0, as xl does", () => {
    const hv = new SimHypervisor();
    const guest = hv.createDomain({ toolstackGrants: true });
    for (const ref of [0, 1]) {
      const st = hv.grantStatus(guest, ref)!;
      assert.equal(st.domid, 0);
      assert.equal(st.readonly, false);
    }
    assert.equal(hv.grantStatus(guest, 2), undefined);
    const gnt = hv.backend(0).openGrantTable();
    const m = gnt.map(guest, [0, 1], true);
    assert.equal(m.count, 2);
    gnt.unmap(m);
    // The kernel's own refs still start at 8.
    const s = hv.backend(guest).openGrantShare().sharePages(0, 1, true);
    assert.deepEqual(s.refs, [8]);
  });

  it("without the option a guest's refs 0 and 1 are not granted (EINVAL); bad values are refused", () => {
    const hv = new SimHypervisor();
    const plain = hv.createDomain();
    const gnt = hv.backend(0).openGrantTable();
    assert.throws(
      () => gnt.map(plain, [0], true),
      code("xengnttab_map_domain_grant_refs", "EINVAL"),
    );
    assert.throws(
      () => hv.createDomain({ toolstackGrants: "yes" as unknown as boolean }),
      (e) =>
        e instanceof XenUsageError && /toolstackGrants must be a boolean, got yes/.test(e.message),
    );
    assert.throws(
      () => new SimHypervisor({ dom0: { toolstackGrants: true } }),
      (e) => e instanceof XenUsageError && /for guests, not dom0/.test(e.message),
    );
  });
});
