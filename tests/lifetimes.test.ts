/**
 * Lifetimes of the public handles (core/lifetimes.ts): the garbage
 * collection backstop and its leak reporter, handles of a crashed simulated
 * process, and what the handles print under Deno.inspect / Bun.inspect /
 * node:util inspect.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { inspect } from "node:util";
import {
  ClosedHandleError,
  openEventChannels,
  openGrantShare,
  openGrantTable,
  setLeakReporter,
  SimHypervisor,
  warnLeak,
} from "../mod.ts";
import type { SimStats } from "../sim/mod.ts";
import { runBackstop } from "./helpers/child.ts";

describe("lifetimes: the garbage-collection backstop (sim)", () => {
  it("an EventChannels dropped open is closed and reported; a closed one is not", async () => {
    const run = await runBackstop<{ ports: number[]; before: SimStats; after: SimStats }>(
      "sim-evtchn",
    );
    const { ports, before, after } = run.facts;
    assert.equal(run.reports.length, 1, JSON.stringify(run.reports));
    const [report] = run.reports;
    assert.equal(report.kind, "EventChannels");
    assert.equal(report.backend, "sim");
    assert.deepEqual(report.ports, ports);
    assert.equal(report.failed, false);
    assert.match(report.message, /EventChannels \(sim backend, fd \d+, holding ports \[1, 2\]\)/);
    assert.equal(before.boundPorts, 2);
    assert.equal(before.handles.evtchn, 1);
    assert.equal(after.boundPorts, 0, "the backstop unbound the ports");
    assert.equal(after.openPorts, 0);
    assert.equal(after.handles.total, 0);
  });

  it("a GrantMapping dropped while its table lives is unmapped and reported", async () => {
    interface Side {
      stats: SimStats;
      holdings: { ranges: number; pages: number };
    }
    const run = await runBackstop<
      { before: Side; after: Side; pins: number[]; tableClosed: boolean }
    >("sim-mapping");
    const { before, after, pins, tableClosed } = run.facts;
    assert.deepEqual(run.reports.map((r) => [r.kind, r.ranges, r.pages]), [["GrantMapping", 1, 2]]);
    assert.deepEqual(before.holdings, { ranges: 1, pages: 2 });
    assert.equal(before.stats.mappedPages, 2);
    assert.deepEqual(after.holdings, { ranges: 0, pages: 0 }, "the table no longer holds it");
    assert.equal(after.stats.mappings, 0);
    assert.deepEqual(pins, [0, 0], "the granter's pages are no longer pinned");
    assert.equal(tableClosed, false);
    assert.equal(after.stats.handles.gnttab, 1);
  });

  it("a SharedGrant dropped while its handle lives is unshared (grants ended) and reported", async () => {
    interface Side {
      stats: SimStats;
      holdings: { ranges: number; pages: number };
    }
    const run = await runBackstop<
      { refs: number[]; before: Side; after: Side; grants: unknown[] }
    >("sim-share");
    const { refs, before, after, grants } = run.facts;
    assert.equal(run.reports.length, 1);
    assert.equal(run.reports[0].kind, "SharedGrant");
    assert.deepEqual(run.reports[0].refs, refs);
    assert.match(run.reports[0].message, /holding 3 pages, refs \[8, 9, 10\]/);
    assert.equal(before.stats.activeGrants, 3);
    assert.equal(after.stats.activeGrants, 0);
    assert.equal(after.stats.shares, 0);
    assert.deepEqual(after.holdings, { ranges: 0, pages: 0 });
    assert.deepEqual(grants, [null, null, null]);
  });

  it("a GrantTable dropped with its mappings releases everything, reported once each", async () => {
    const run = await runBackstop<{ before: SimStats; after: SimStats; pins: number[] }>(
      "sim-table",
    );
    const { before, after, pins } = run.facts;
    assert.equal(before.mappings, 2);
    assert.equal(after.mappings, 0);
    assert.equal(after.handles.total, 0);
    assert.deepEqual(pins, [0, 0, 0]);
    const kinds = run.reports.map((r) => r.kind);
    assert.equal(kinds.filter((k) => k === "GrantTable").length, 1);
    // Whichever order the collector finalizes them in, every page is reported once.
    const pages = run.reports.reduce((n, r) => n + r.pages, 0);
    assert.equal(pages, 3);
  });
});

describe("lifetimes: the leak reporter hook", () => {
  it("setLeakReporter returns the previous reporter; null restores the default", () => {
    const mine = () => {};
    assert.equal(setLeakReporter(mine), warnLeak);
    assert.equal(setLeakReporter(null), mine);
    assert.equal(setLeakReporter(null), warnLeak);
    assert.throws(() => setLeakReporter("warn" as unknown as null), {
      name: "XenUsageError",
      message: /reporter must be a function or null, got "warn"/,
    });
  });
});

describe("lifetimes: a crashed simulated process", () => {
  it("every public handle reads closed, holds nothing, and refuses calls", async () => {
    const hv = new SimHypervisor();
    const d1 = hv.createDomain();
    const front = hv.backend(d1);
    const back = hv.backend(0);
    await using backEvents = await openEventChannels({ backend: back });
    using backShare = await openGrantShare({ backend: back });
    const events = await openEventChannels({ backend: front });
    const table = await openGrantTable({ backend: front });
    const share = await openGrantShare({ backend: front });
    const backPort = backEvents.bindUnboundPort(d1);
    const port = events.bindInterdomain(0, backPort);
    const ring = backShare.sharePages(d1, 2);
    const mapping = table.mapDomainGrantRefs(0, ring.refs);
    const mine = share.sharePages(0, 1);
    assert.deepEqual(events.holdings().ports, [port]);
    assert.equal(hv.stats(d1).handles.total, 3);

    front.crash();

    assert.deepEqual(hv.stats(d1).handles, { evtchn: 0, gnttab: 0, gntshr: 0, total: 0 });
    assert.equal(hv.stats(d1).mappings, 0);
    assert.equal(hv.stats(d1).shares, 0);
    for (const handle of [events, table, share]) assert.equal(handle.closed, true);
    assert.deepEqual(events.holdings(), { ports: [], reading: false });
    assert.deepEqual(table.holdings(), { ranges: 0, pages: 0 });
    assert.deepEqual(share.holdings(), { ranges: 0, pages: 0 });
    for (const range of [mapping, mine]) {
      assert.equal(range.released, true);
      assert.equal(range.bytes.length, 0);
      assert.equal(range.pages.length, 0);
    }
    assert.throws(() => events.notify(port), ClosedHandleError);
    assert.throws(() => events.fd, ClosedHandleError);
    assert.throws(() => table.mapGrantRef(0, ring.refs[0]), ClosedHandleError);
    assert.throws(() => table.unmap(mapping), ClosedHandleError);
    assert.throws(() => share.sharePages(0, 1), ClosedHandleError);
    await assert.rejects(events.pending(), ClosedHandleError);
    mapping.unmap(); // released: a no-op
    mine.unshare();
    events.close(); // idempotent after the backend closed it
    table.close();
    share.close();
    assert.equal(hv.portStatus(0, backPort).kind, "unbound", "the peer sees the port unbound");
    assert.ok(inspect(events).includes("closed: true"));
  });

  it("a waiting pending() rejects with ClosedHandleError when the process crashes", async () => {
    const hv = new SimHypervisor();
    const proc = hv.backend(0);
    const events = await openEventChannels({ backend: proc });
    events.bindUnboundPort(0);
    const waiting = events.pending();
    proc.crash();
    await assert.rejects(waiting, ClosedHandleError);
    assert.equal(events.closed, true);
  });

  it("destroying the domain closes its processes' handles the same way", async () => {
    const hv = new SimHypervisor();
    const d1 = hv.createDomain();
    const table = await openGrantTable({ backend: hv.backend(d1) });
    using shr = await openGrantShare({ backend: hv.backend(0) });
    const mapping = table.mapGrantRef(0, shr.sharePages(d1, 1).refs[0]);
    hv.destroy(d1);
    assert.equal(table.closed, true);
    assert.equal(mapping.released, true);
    assert.deepEqual(table.holdings(), { ranges: 0, pages: 0 });
    assert.throws(() => table.fd, ClosedHandleError);
  });
});

/** The inspection functions this runtime has: node:util's, plus Deno.inspect or Bun.inspect. */
function inspectors(): [string, (value: unknown) => string][] {
  const list: [string, (value: unknown) => string][] = [["node:util", (v) => inspect(v)]];
  const g = globalThis as {
    Deno?: { inspect(v: unknown): string };
    Bun?: { inspect(v: unknown): string };
  };
  if (g.Deno) list.push(["Deno.inspect", (v) => g.Deno!.inspect(v)]);
  if (g.Bun) list.push(["Bun.inspect", (v) => g.Bun!.inspect(v)]);
  return list;
}

describe("lifetimes: handles print what they are", () => {
  it("EventChannels, GrantTable, GrantShare, GrantMapping, SharedGrant show their facts", async () => {
    const hv = new SimHypervisor();
    const d1 = hv.createDomain();
    const backend = hv.backend(0);
    const events = await openEventChannels({ backend });
    const table = await openGrantTable({ backend });
    const share = await openGrantShare({ backend: hv.backend(d1) });
    const port = events.bindUnboundPort(d1);
    const shared = share.sharePages(0, 2);
    const mapping = table.mapDomainGrantRefs(d1, shared.refs);
    for (const [name, show] of inspectors()) {
      const at = `(${name})`;
      assert.equal(
        show(events),
        `EventChannels { backend: "sim", fd: ${events.fd}, ports: [${port}], reading: false, ` +
          "closed: false }",
        at,
      );
      assert.equal(
        show(table),
        `GrantTable { backend: "sim", fd: ${table.fd}, mappings: 1, pages: 2, closed: false }`,
        at,
      );
      assert.equal(
        show(share),
        `GrantShare { backend: "sim", fd: ${share.fd}, shares: 1, pages: 2, closed: false }`,
        at,
      );
      assert.match(
        show(mapping),
        new RegExp(
          `^GrantMapping \\{ backend: "sim", fd: ${table.fd}, pages: 2, address: 0x[0-9a-f]+, ` +
            "released: false \\}$",
        ),
        at,
      );
      assert.equal(
        show(shared),
        `SharedGrant { backend: "sim", fd: ${share.fd}, pages: 2, refs: [${
          shared.refs.join(", ")
        }], ` +
          "released: false }",
        at,
      );
    }
    const fds = [events.fd, table.fd, share.fd];
    mapping.unmap();
    events.close();
    table.close();
    share.close();
    for (const [name, show] of inspectors()) {
      const at = `(${name})`;
      assert.equal(
        show(events),
        `EventChannels { backend: "sim", fd: ${fds[0]}, ports: [], reading: false, closed: true }`,
        at,
      );
      assert.match(show(table), /mappings: 0, pages: 0, closed: true \}$/, at);
      assert.match(show(share), /shares: 0, pages: 0, closed: true \}$/, at);
      assert.match(show(mapping), /released: true \}$/, at);
      assert.match(show(shared), /released: true \}$/, at);
    }
  });
});
