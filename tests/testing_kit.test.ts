/**
 * The testing kit (testing/mod.ts, published as xenchan/testing): a clean
 * test passes; a test that leaves a handle open, a port bound, a grant
 * mapped or shared, or a XenStore connection, watch or transaction open
 * fails with a LeakError naming it; faults and the virtual clock are at
 * hand; two fixtures share nothing. The last part runs a leaky and a clean
 * test file under this runtime's own test runner (deno test / bun test) and
 * checks that the runner reports exactly the leaky test as failed.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, describe, it } from "node:test";
import {
  ClosedHandleError,
  openEventChannels,
  openGrantTable,
  openXenStore,
  XenCallError,
  XenError,
  XenUsageError,
} from "../mod.ts";
import { LeakError, type SimLeak, withXenSim, XenSim } from "../testing/mod.ts";
import { RawXs } from "./helpers/xs_raw.ts";

/** Runs `fn` in a fixture that must fail with LeakError; returns its leaks. */
async function leaksOf(fn: (sim: XenSim) => void | Promise<void>): Promise<readonly SimLeak[]> {
  let caught: unknown;
  try {
    await withXenSim(fn);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof LeakError, `expected a LeakError, got ${String(caught)}`);
  assert.ok(caught instanceof XenError, "LeakError is a XenError");
  assert.equal(caught.name, "LeakError");
  for (const leak of caught.leaks) assert.ok(caught.message.includes(leak.message));
  return caught.leaks;
}

describe("testing kit: a clean test passes", () => {
  it("event channels, grants and XenStore used and released: no leak, the result comes back", async () => {
    const result = await withXenSim(async (sim) => {
      const guest = sim.createGuest({ name: "front" });
      using back = sim.dom0.openEventChannels();
      await using front = await openEventChannels({ backend: guest.backend });
      const port = back.bindUnboundPort(guest.domid);
      const peer = front.bindInterdomain(0, port);
      front.unmask(await front.pending()); // the bind-time event
      back.notify(port);
      assert.equal(await front.pending(), peer);

      using shr = guest.openGrantShare();
      using gnt = sim.dom0.openGrantTable();
      const share = shr.sharePages(0, 1);
      share.bytes[7] = 42;
      using mapping = gnt.mapGrantRef(guest.domid, share.refs[0]);
      assert.equal(mapping.bytes[7], 42);

      await using store = guest.openXenStore();
      await using admin = await openXenStore({ backend: sim.dom0.backend });
      await store.write("data/x", "1");
      for await (const event of admin.watch(`${guest.path}/data`)) {
        if (event.path === `${guest.path}/data`) await store.write("data/y", "2");
        else break;
      }
      await admin.transaction(async (tx) => await tx.write("/t", "v"));
      // Still inside the body: leaks() lists what the `using` declarations will release.
      assert.deepEqual(sim.leaks().map((l) => `${l.domain} ${l.kind}`).sort(), [
        "Domain-0 EventChannels",
        "Domain-0 GrantTable",
        "Domain-0 XenStore",
        "front EventChannels",
        "front GrantShare",
        "front XenStore",
      ]);
      return "done";
    });
    assert.equal(result, "done");
  });

  it("`await using` a XenSim works the same as withXenSim", async () => {
    let seen: XenSim | undefined;
    {
      await using sim = new XenSim();
      seen = sim;
      using evt = sim.dom0.openEventChannels();
      evt.bindUnboundPort(0);
    }
    assert.equal(seen.closed, true);
  });

  it("what a destroyed guest held is not a leak", async () => {
    await withXenSim((sim) => {
      const guest = sim.createGuest();
      const evt = guest.openEventChannels();
      evt.bindUnboundPort(0);
      guest.openGrantShare().sharePages(0, 1);
      guest.openXenStore();
      guest.destroy();
      assert.equal(evt.closed, true);
    });
  });
});

describe("testing kit: a test that leaves something open fails, naming it", () => {
  it("a port left bound: EventChannels, the domain, the fd and the port", async () => {
    let port = -1;
    const leaks = await leaksOf((sim) => {
      const guest = sim.createGuest({ name: "front" });
      port = guest.openEventChannels().bindUnboundPort(0);
    });
    assert.equal(leaks.length, 1);
    assert.equal(leaks[0].kind, "EventChannels");
    assert.equal(leaks[0].domid, 1);
    assert.equal(leaks[0].domain, "front");
    assert.deepEqual(leaks[0].ports, [port]);
    assert.match(leaks[0].message, new RegExp(`^d1 "front": EventChannels fd \\d+ still open`));
    assert.match(leaks[0].message, new RegExp(`1 port still bound: \\[${port}\\]`));
  });

  it("an event channel handle left open with no port bound", async () => {
    const leaks = await leaksOf((sim) => void sim.dom0.openEventChannels());
    assert.deepEqual(leaks.map((l) => [l.kind, l.domain, l.ports]), [
      ["EventChannels", "Domain-0", []],
    ]);
    assert.match(leaks[0].message, /no port bound/);
  });

  it("a grant left mapped: GrantTable with its mappings and pages", async () => {
    const leaks = await leaksOf((sim) => {
      const guest = sim.createGuest({ name: "front" });
      using shr = guest.openGrantShare();
      const share = shr.sharePages(0, 2);
      const gnt = sim.dom0.openGrantTable();
      gnt.mapDomainGrantRefs(guest.domid, share.refs);
      share.unshare(); // the guest lets go; dom0 still maps
    });
    const table = leaks.find((l) => l.kind === "GrantTable");
    assert.ok(table, `leaks: ${leaks.map((l) => l.message).join("; ")}`);
    assert.equal(table.domid, 0);
    assert.equal(table.ranges, 1);
    assert.equal(table.pages, 2);
    assert.match(table.message, /GrantTable fd \d+ still open, 1 mapping of 2 pages still mapped/);
    // The guest closed its handle, but Xen keeps its two grant entries while dom0 maps them.
    const grants = leaks.find((l) => l.kind === "XenGrants");
    assert.ok(grants);
    assert.equal(grants.domain, "front");
    assert.equal(grants.count, 2);
    assert.match(grants.message, /2 grant entries still in use in Xen/);
  });

  it("a page left shared: GrantShare with its shares and pages", async () => {
    const leaks = await leaksOf((sim) => {
      const guest = sim.createGuest({ name: "front" });
      guest.openGrantShare().sharePages(0, 3);
    });
    assert.deepEqual(leaks.map((l) => [l.kind, l.domain, l.ranges, l.pages]), [
      ["GrantShare", "front", 1, 3],
    ]);
    assert.match(leaks[0].message, /1 share of 3 pages still shared/);
  });

  it("a XenStore connection left open, with its watch", async () => {
    const leaks = await leaksOf(async (sim) => {
      const guest = sim.createGuest({ name: "back-end-test" });
      const store = guest.openXenStore();
      const events = store.watch("device")[Symbol.asyncIterator]();
      await events.next(); // registered, initial event seen, never left
    });
    assert.equal(leaks.length, 1);
    assert.equal(leaks[0].kind, "XenStore");
    assert.equal(leaks[0].domain, "back-end-test");
    assert.deepEqual(leaks[0].watches, ["/local/domain/1/device"]);
    assert.match(leaks[0].message, /XenStore connection \d+ \(.*domain 1.*\) still open/);
    assert.match(leaks[0].message, /watches \[\/local\/domain\/1\/device\]/);
  });

  it("a XenStore transaction left open on a raw connection", async () => {
    const leaks = await leaksOf(async (sim) => {
      const raw = new RawXs(sim.dom0.backend.openXenStoreTransport());
      await raw.start();
    });
    assert.deepEqual(leaks.map((l) => [l.kind, l.domid, l.transactions]), [["XenStore", 0, 1]]);
    assert.match(leaks[0].message, /1 transaction open/);
  });

  it("Xen ports with no handle holding them (state changed below the handles)", async () => {
    const leaks = await leaksOf((sim) => {
      const guest = sim.createGuest();
      sim.hv.domain(guest.domid)?.evtchn.allocUnbound(0, guest.domid);
    });
    assert.deepEqual(leaks.map((l) => [l.kind, l.domain, l.count]), [["XenPorts", "guest-1", 1]]);
  });

  it("several leaks are listed one per line; the fixture released them all", async () => {
    let sim: XenSim | undefined;
    let evtClosed = false;
    const leaks = await leaksOf((s) => {
      sim = s;
      const guest = s.createGuest();
      const evt = guest.openEventChannels();
      evt.bindUnboundPort(0);
      s.dom0.openGrantShare().sharePages(guest.domid, 1);
      s.dom0.openXenStore();
      queueMicrotask(() => (evtClosed = evt.closed));
    });
    assert.deepEqual(leaks.map((l) => l.kind).sort(), ["EventChannels", "GrantShare", "XenStore"]);
    assert.ok(sim);
    assert.equal(evtClosed, false, "nothing is released while the body runs");
    assert.deepEqual(sim.leaks(), [], "close() released what was left");
    assert.equal(sim.hv.xenstore.stats().connections, 0);
  });

  it("assertNoLeaks checks mid-test without releasing anything", async () => {
    await withXenSim((sim) => {
      const evt = sim.dom0.openEventChannels();
      assert.throws(() => sim.assertNoLeaks(), LeakError);
      evt.close();
      sim.assertNoLeaks();
    });
  });

  it("when the body fails, its error propagates, not the leaks it left", async () => {
    const failure = new Error("the body failed");
    await assert.rejects(
      withXenSim((sim) => {
        sim.dom0.openEventChannels();
        throw failure;
      }),
      (error) => error === failure,
    );
  });
});

describe("testing kit: faults, clock, domains", () => {
  it("an injected allocation fault reaches the guest's open, then clears", async () => {
    await withXenSim((sim) => {
      const guest = sim.createGuest();
      sim.faults.failNextAllocation({ domid: guest.domid, call: "xenevtchn_open" });
      assert.throws(
        () => guest.openEventChannels(),
        (e) => e instanceof XenCallError && e.code === "ENOMEM",
      );
      using evt = guest.openEventChannels();
      assert.equal(sim.faults.armedAllocationFaults, 0);
      assert.equal(evt.closed, false);
    });
  });

  it("the virtual clock moves only when advanced; a paged-out grant pages back in on time", async () => {
    await withXenSim((sim) => {
      const fired: number[] = [];
      sim.clock.setTimer(() => fired.push(sim.clock.now()), 50);
      sim.advance(49);
      assert.deepEqual(fired, []);
      sim.advance(1);
      assert.deepEqual(fired, [50]);

      const guest = sim.createGuest();
      using shr = guest.openGrantShare();
      using gnt = sim.dom0.openGrantTable();
      const share = shr.sharePages(0, 1);
      sim.hv.pageOut(guest.domid, share.refs[0], { pageInAfterMs: 100 });
      const before = sim.clock.now();
      using mapping = gnt.mapGrantRef(guest.domid, share.refs[0]); // the kernel retries
      assert.equal(mapping.bytes.length, 4096);
      assert.ok(sim.clock.now() >= before + 100, `virtual time ${sim.clock.now()}`);
    });
  });

  it("a crashed front-end process: its kernel cleans up, the unmap notification arrives", async () => {
    await withXenSim(async (sim) => {
      const guest = sim.createGuest({ name: "front" });
      using back = sim.dom0.openEventChannels();
      using shr = sim.dom0.openGrantShare();
      const port = back.bindUnboundPort(guest.domid);
      const ring = shr.sharePages(guest.domid, 1);
      ring.bytes[0] = 1;
      const front = guest.process();
      const fevt = await openEventChannels({ backend: front });
      const fport = fevt.bindInterdomain(0, port);
      const gnt = guest.openGrantTable(); // in guest.backend, another process: survives
      const table = await openGrantTable({ backend: front });
      table.mapGrantRefNotify(0, ring.refs[0], { notifyOffset: 0, notifyPort: fport });
      front.crash();
      assert.equal(await back.pending(), port);
      assert.equal(ring.bytes[0], 0);
      assert.equal(fevt.closed, true);
      assert.equal(gnt.closed, false, "the domain's other process keeps its handles");
      gnt.close();
    });
  });

  it("guests are named (also in XenStore), found by name or domid, and take an ABI", async () => {
    await withXenSim(async (sim) => {
      const front = sim.createGuest({ name: "front", abi: "2l" });
      const other = sim.createGuest();
      assert.equal(other.name, "guest-2");
      assert.equal(sim.domain("front"), front);
      assert.equal(sim.domain(front.domid), front);
      assert.equal(sim.domain(0), sim.dom0);
      assert.equal(front.info()?.abi, "2l");
      assert.equal(other.info()?.abi, "fifo");
      const name = sim.xenstore.inspect(`${front.path}/name`);
      assert.equal(new TextDecoder().decode(name?.value), "front");
      await using store = front.openXenStore();
      assert.equal(await store.read("name"), "front");
      assert.throws(() => sim.createGuest({ name: "front" }), XenUsageError);
      assert.throws(() => sim.createGuest({ name: "" }), XenUsageError);
      assert.throws(() => sim.createGuest(null as unknown as undefined), XenUsageError);
      assert.throws(() => sim.createGuest({ maxEventChannels: 0 }), XenUsageError);
      assert.deepEqual(sim.hv.domids(), [0, front.domid, other.domid], "refused: nothing created");
      assert.throws(() => sim.domain("nobody"), XenUsageError);
      other.destroy();
      assert.deepEqual(sim.domains().map((d) => d.name), ["Domain-0", "front"]);
      assert.throws(() => sim.domain("guest-2"), XenUsageError);
    });
  });

  it("after close, the fixture refuses to be used and closing again resolves", async () => {
    const sim = new XenSim();
    const guest = sim.createGuest();
    await sim.close();
    await sim.close();
    assert.throws(() => sim.createGuest(), ClosedHandleError);
    assert.throws(() => guest.openEventChannels(), ClosedHandleError);
    assert.throws(() => sim.dom0.process(), ClosedHandleError);
  });
});

describe("testing kit: two fixtures are independent", () => {
  it("the same numbers in each, a leak in one does not touch the other", async () => {
    const a = new XenSim();
    const b = new XenSim();
    const ga = a.createGuest({ name: "front" });
    const gb = b.createGuest({ name: "front" });
    assert.equal(ga.domid, gb.domid);
    const ea = a.dom0.openEventChannels();
    using eb = b.dom0.openEventChannels();
    assert.equal(ea.bindUnboundPort(ga.domid), eb.bindUnboundPort(gb.domid));
    assert.equal(ea.fd, eb.fd);
    a.faults.failNextAllocation();
    assert.equal(b.faults.armedAllocationFaults, 0);
    a.advance(10);
    assert.equal(b.clock.now(), 0);
    assert.deepEqual(b.leaks().map((l) => l.kind), ["EventChannels"]);
    eb.close();
    await b.close();
    await assert.rejects(a.close(), LeakError);
    assert.equal(ea.closed, true);
  });

  it("fixtures do not touch the process-wide default simulator", async () => {
    await using outside = await openEventChannels({ backend: "sim" });
    const before = outside.holdings();
    await withXenSim((sim) => {
      using evt = sim.dom0.openEventChannels();
      evt.bindUnboundPort(0);
    });
    assert.deepEqual(outside.holdings(), before);
  });
});

describe("testing kit under the runtime's own test runner", () => {
  const scratch = mkdtempSync(join(tmpdir(), "xenchan-kit-"));
  after(() => rmSync(scratch, { recursive: true, force: true }));
  const kit = new URL("../testing/mod.ts", import.meta.url).href;

  it("node:test reports the leaky test as failed with the leak, the clean one as passed", {
    timeout: 120_000, // deno test type-checks the file first
  }, () => {
    const file = join(scratch, "kit.test.ts");
    writeFileSync(
      file,
      `import { test } from "node:test";
import { withXenSim } from "${kit}";

test("clean test", () =>
  withXenSim((sim) => {
    using evt = sim.dom0.openEventChannels();
    evt.bindUnboundPort(0);
  }));

test("leaky test", () =>
  withXenSim((sim) => {
    sim.createGuest({ name: "front" }).openGrantShare().sharePages(0, 1);
  }));
`,
    );
    const args = "Deno" in globalThis ? ["test", "--no-config", file] : ["test", file];
    const r = spawnSync(process.execPath, args, {
      cwd: scratch,
      encoding: "utf8",
      timeout: 110_000,
      env: { ...process.env, NO_COLOR: "1" },
    });
    const out = `${r.stdout}\n${r.stderr}`;
    assert.notEqual(r.status, 0, `the leaky test must fail the run:\n${out}`);
    assert.match(out, /LeakError/);
    assert.match(out, /d1 "front": GrantShare fd \d+ still open, 1 share of 1 page still shared/);
    if ("Deno" in globalThis) {
      assert.match(out, /^clean test \.\.\. ok/m, out);
      assert.match(out, /^leaky test \.\.\. FAILED/m, out);
      assert.match(out, /1 passed \| 1 failed/, out);
    } else {
      assert.match(out, /^\(pass\) clean test/m, out);
      assert.match(out, /^\(fail\) leaky test/m, out);
      assert.match(out, /^ 1 pass\n 1 fail$/m, out);
    }
  });
});
