/**
 * The simulated xenstored, spoken to in raw wire messages: every request
 * type, permissions, quotas, transactions, watches and the domain
 * lifecycle, against the rules of C xenstored 4.17.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { XsType } from "../core/xenstore/wire.ts";
import { encodeMessage } from "../core/xenstore/wire.ts";
import { XenUsageError } from "../core/errors.ts";
import { SimHypervisor, SimXenStore, XENSTORED_DEFAULT_QUOTAS } from "../sim/mod.ts";
import { RawXs, settle } from "./helpers/xs_raw.ts";

const T = XsType;

function setup(options: ConstructorParameters<typeof SimHypervisor>[0] = {}) {
  const hv = new SimHypervisor(options);
  const d = hv.createDomain();
  const dom0 = new RawXs(hv.backend(0).openXenStoreTransport());
  const guest = new RawXs(hv.backend(d).openXenStoreTransport());
  return { hv, d, dom0, guest };
}

describe("sim xenstore: basic requests", () => {
  it("READ returns raw bytes without a NUL; WRITE creates the parents", async () => {
    const { hv, dom0 } = setup();
    await dom0.write("/a/b/c", new Uint8Array([104, 0, 105]));
    const m = await dom0.request(T.READ, ["/a/b/c"]);
    assert.deepEqual([...m.payload], [104, 0, 105]);
    assert.equal(await dom0.read("/a/b"), "");
    assert.deepEqual(hv.xenstore.inspect("/a")?.children, ["b"]);
    assert.deepEqual(hv.xenstore.inspect("/a/b")?.permissions, ["n0"]);
    assert.equal(await dom0.err(T.WRITE, ["/no-nul"], { trailingNul: false }), "EINVAL");
  });

  it("MKDIR of an existing node is OK and keeps its value", async () => {
    const { dom0 } = setup();
    await dom0.write("/m", "v");
    assert.equal(await dom0.ok(T.MKDIR, ["/m"]), "OK\0");
    assert.equal(await dom0.read("/m"), "v");
    await dom0.ok(T.MKDIR, ["/m/x/y"]);
    assert.equal(await dom0.ok(T.DIRECTORY, ["/m/x"]), "y\0");
  });

  it("RM: the subtree goes; a missing node is OK if its parent exists, else ENOENT; / is refused", async () => {
    const { hv, dom0 } = setup();
    await dom0.write("/r/a/b", "1");
    await dom0.ok(T.RM, ["/r/a"]);
    assert.equal(hv.xenstore.inspect("/r/a/b"), undefined);
    assert.deepEqual(hv.xenstore.inspect("/r")?.children, []);
    assert.equal(await dom0.ok(T.RM, ["/r/missing"]), "OK\0");
    assert.equal(await dom0.err(T.RM, ["/r/missing/deeper"]), "ENOENT");
    assert.equal(await dom0.err(T.RM, ["/"]), "EINVAL");
  });

  it("DIRECTORY lists children in creation order; over 4096 bytes it is E2BIG", async () => {
    const { dom0 } = setup();
    await dom0.write("/d/z", "");
    await dom0.write("/d/a", "");
    assert.equal(await dom0.ok(T.DIRECTORY, ["/d"]), "z\0a\0");
    assert.equal(await dom0.ok(T.DIRECTORY, ["/d/z"]), "");
    const long = "x".repeat(200);
    for (let i = 0; i < 21; i++) await dom0.ok(T.MKDIR, [`/big/${long}${i}`]);
    assert.equal(await dom0.err(T.DIRECTORY, ["/big"]), "E2BIG");
  });

  it("DIRECTORY_PART: gencnt, chunks that end with an extra NUL, past-the-end reply", async () => {
    const { hv, dom0 } = setup();
    const long = "y".repeat(300);
    const names: string[] = [];
    for (let i = 0; i < 20; i++) {
      names.push(`${long}${i}`);
      await dom0.ok(T.MKDIR, [`/p/${long}${i}`]);
    }
    const gen = String(hv.xenstore.inspect("/p")?.generation);
    const got: string[] = [];
    let offset = 0;
    for (;;) {
      const reply = await dom0.ok(T.DIRECTORY_PART, ["/p", String(offset)]);
      assert.ok(reply.length <= 4096);
      const [g, ...rest] = reply.split("\0");
      assert.equal(g, gen);
      const body = reply.slice(g.length + 1);
      if (body.endsWith("\0\0") || body === "\0") {
        got.push(...body.slice(0, -2).split("\0").filter((s) => s !== ""));
        break;
      }
      const chunk = rest.slice(0, -1);
      got.push(...chunk);
      offset += body.length;
    }
    assert.deepEqual(got, names);
    assert.equal(await dom0.ok(T.DIRECTORY_PART, ["/p", "999999"]), `${gen}\0\0`);
    assert.equal(await dom0.err(T.DIRECTORY_PART, ["/p"]), "EINVAL");
    // The generation changes with the child list.
    await dom0.ok(T.MKDIR, ["/p/new"]);
    assert.notEqual(String(hv.xenstore.inspect("/p")?.generation), gen);
  });

  it("GET_DOMAIN_PATH, IS_DOMAIN_INTRODUCED, unknown types, bad paths, CONTROL", async () => {
    const { d, dom0, guest } = setup();
    assert.equal(await guest.ok(T.GET_DOMAIN_PATH, ["7"]), "/local/domain/7\0");
    assert.equal(await dom0.ok(T.IS_DOMAIN_INTRODUCED, [String(d)]), "T\0");
    assert.equal(await dom0.ok(T.IS_DOMAIN_INTRODUCED, ["4242"]), "F\0");
    assert.equal(await guest.err(T.IS_DOMAIN_INTRODUCED, ["0"]), "EACCES");
    for (const t of [T.CONTROL, T.INTRODUCE, T.RELEASE, T.RESUME, T.SET_TARGET]) {
      assert.equal(await guest.err(t, ["1"]), "EACCES");
    }
    assert.equal(await dom0.err(99, []), "ENOSYS");
    assert.equal(await dom0.err(20, []), "ENOSYS");
    assert.equal(await dom0.err(T.WATCH_EVENT, []), "ENOSYS");
    for (const bad of ["/a//b", "/a/", "/a b", "/a\u00e9", ""]) {
      assert.equal(await dom0.err(T.READ, [bad]), "EINVAL", bad);
    }
    assert.equal(await dom0.ok(T.CONTROL, ["check"]), "OK\0");
    assert.equal(await dom0.err(T.CONTROL, ["live-update"]), "EINVAL");
  });

  it("relative paths resolve against /local/domain/<domid>", async () => {
    const { hv, d, dom0, guest } = setup();
    await guest.write("data/rel", "g");
    assert.equal(await dom0.read(`/local/domain/${d}/data/rel`), "g");
    await dom0.write("mine", "0");
    assert.equal(await dom0.read("/local/domain/0/mine"), "0");
    assert.deepEqual(hv.xenstore.inspect(`/local/domain/${d}/data/rel`)?.permissions, [`n${d}`]);
  });

  it("replies are asynchronous, never inside send()", async () => {
    const { dom0 } = setup();
    const before = dom0.log.length;
    const reply = dom0.request(T.READ, ["/tool"]);
    assert.equal(dom0.log.length, before);
    await reply;
    assert.equal(dom0.log.length, before + 1);
  });

  it("a payload over 4096 bytes kills the connection", async () => {
    const { hv, dom0 } = setup();
    const header = encodeMessage({ type: T.READ, reqId: 1, txId: 0, payload: new Uint8Array(0) });
    new DataView(header.buffer).setUint32(12, 4097, true);
    dom0.transport.send(header);
    await settle();
    assert.ok(dom0.ended instanceof Error);
    assert.throws(() => dom0.transport.send(header));
    assert.equal(hv.xenstore.stats().connections, 1); // the guest's
  });
});

describe("sim xenstore: permissions", () => {
  it("/local/domain/<id> is n0 r<id>: the guest reads it, cannot write it, writes data/", async () => {
    const { hv, d, guest } = setup();
    assert.deepEqual(hv.xenstore.inspect(`/local/domain/${d}`)?.permissions, ["n0", `r${d}`]);
    assert.equal(await guest.ok(T.DIRECTORY, [`/local/domain/${d}/device`]), "");
    assert.equal(await guest.err(T.WRITE, [`/local/domain/${d}/x`, "v"]), "EACCES");
    await guest.write(`/local/domain/${d}/data/x`, "v");
    assert.equal(await guest.err(T.READ, ["/tool"]), "EACCES");
    assert.equal(await guest.err(T.READ, ["/local/domain/0/name"]), "EACCES");
  });

  it("ENOENT only when the nearest existing ancestor is readable; otherwise EACCES", async () => {
    const { d, guest } = setup();
    assert.equal(await guest.err(T.READ, [`/local/domain/${d}/nope`]), "ENOENT");
    assert.equal(await guest.err(T.READ, ["/tool/nope/deeper"]), "EACCES");
  });

  it("entry 0 is the owner and the default; entries 1..n per domain; owner-only SET_PERMS", async () => {
    const { hv, d, dom0, guest } = setup();
    const d2 = hv.createDomain();
    const other = new RawXs(hv.backend(d2).openXenStoreTransport());
    await dom0.write("/shared", "s");
    await dom0.ok(T.SET_PERMS, ["/shared", "r0", `w${d}`]);
    assert.equal(await other.read("/shared"), "s"); // default from entry 0
    assert.equal(await guest.err(T.READ, ["/shared"]), "EACCES"); // write only
    await guest.write("/shared", "by guest");
    assert.equal(await other.err(T.WRITE, ["/shared", "x"], { trailingNul: false }), "EACCES");
    assert.equal(await guest.err(T.SET_PERMS, ["/shared", `b${d}`]), "EACCES"); // not the owner
    assert.equal(await dom0.ok(T.GET_PERMS, ["/shared"]), `r0\0w${d}\0`);
    // The owner may change the list but not give the node away.
    await dom0.ok(T.SET_PERMS, ["/shared", `n${d}`]);
    await guest.ok(T.SET_PERMS, ["/shared", `n${d}`, `r${d2}`]);
    assert.equal(await guest.err(T.SET_PERMS, ["/shared", "n0"]), "EPERM");
    assert.equal(await other.read("/shared"), "by guest");
    // Bad lists.
    assert.equal(await dom0.err(T.SET_PERMS, ["/shared"]), "EINVAL");
    assert.equal(await dom0.err(T.SET_PERMS, ["/shared", "x0"]), "EINVAL");
    assert.equal(await dom0.err(T.SET_PERMS, ["/shared", "r"]), "EINVAL");
    assert.equal(await dom0.err(T.SET_PERMS, ["/shared", "n4321"]), "ENOENT"); // no such owner
  });

  it("a guest owns what it creates; the children inherit the parent's list", async () => {
    const { hv, d, guest } = setup();
    await guest.write(`/local/domain/${d}/data/a/b`, "");
    assert.deepEqual(hv.xenstore.inspect(`/local/domain/${d}/data/a/b`)?.permissions, [`n${d}`]);
    assert.equal(hv.xenstore.entries(d) >= 2, true);
  });

  it("entries naming a destroyed domain stop applying", async () => {
    const { hv, dom0 } = setup();
    const d2 = hv.createDomain();
    await dom0.write("/g", "x");
    await dom0.ok(T.SET_PERMS, ["/g", "n0", `r${d2}`]);
    hv.destroy(d2);
    const d3 = hv.createDomain({});
    assert.notEqual(d3, d2);
    assert.deepEqual(hv.xenstore.inspect("/g")?.permissions, ["n0", `r${d2}`]);
    await settle();
  });
});

describe("sim xenstore: quotas of unprivileged domains", () => {
  it("defaults are C xenstored 4.17's", () => {
    assert.deepEqual(
      { ...XENSTORED_DEFAULT_QUOTAS },
      {
        entriesPerDomain: 1000,
        watchesPerDomain: 128,
        nodeSize: 2048,
        transactionsPerConnection: 10,
        permsPerNode: 5,
        nodesPerTransaction: 1024,
        pathLength: 2048,
      },
    );
    assert.throws(() => new SimXenStore({ quotas: { entriesPerDomain: 0 } }), XenUsageError);
  });

  it("entries: ENOSPC once the domain owns the quota; dom0 is exempt", async () => {
    const { hv, d, dom0, guest } = setup({ xenstoreQuotas: { entriesPerDomain: 10 } });
    const owned = hv.xenstore.entries(d);
    let n = 0;
    while (hv.xenstore.entries(d) < 10) await guest.write(`data/e${n++}`, "");
    assert.equal(owned < 10, true);
    assert.equal(await guest.err(T.WRITE, ["data/over", ""], { trailingNul: false }), "ENOSPC");
    // Writing an existing node is fine.
    await guest.write("data/e0", "again");
    for (let i = 0; i < 12; i++) await dom0.write(`/dom0/${i}`, "");
  });

  it("watches: E2BIG past the quota (C allows quota + 1)", async () => {
    const { guest, dom0 } = setup({ xenstoreQuotas: { watchesPerDomain: 3 } });
    for (let i = 0; i < 4; i++) await guest.ok(T.WATCH, [`data/w${i}`, "t"]);
    assert.equal(await guest.err(T.WATCH, ["data/w9", "t"]), "E2BIG");
    for (let i = 0; i < 6; i++) await dom0.ok(T.WATCH, [`/w${i}`, "t"]);
  });

  it("node size: ENOSPC at 2048 bytes of record", async () => {
    const { guest, dom0 } = setup();
    // 24-byte header + 8 per permission + data + children.
    await guest.write("data/big", "v".repeat(2048 - 24 - 8 - 1));
    assert.equal(
      await guest.err(T.WRITE, ["data/big", "v".repeat(2048 - 24 - 8)], { trailingNul: false }),
      "ENOSPC",
    );
    await dom0.write("/big", "v".repeat(4000));
  });

  it("transactions: ENOSPC past the quota (C allows quota + 1)", async () => {
    const { guest, dom0 } = setup({ xenstoreQuotas: { transactionsPerConnection: 2 } });
    for (let i = 0; i < 3; i++) await guest.start();
    assert.equal(await guest.err(T.TRANSACTION_START, [""]), "ENOSPC");
    for (let i = 0; i < 5; i++) await dom0.start();
  });

  it("perms per node: ENOSPC over 5 entries", async () => {
    const { d, guest } = setup();
    await guest.write("data/p", "");
    const five = [`n${d}`, "r0", "r0", "r0", "r0"];
    await guest.ok(T.SET_PERMS, ["data/p", ...five]);
    assert.equal(await guest.err(T.SET_PERMS, ["data/p", ...five, "r0"]), "ENOSPC");
  });

  it("path length: EINVAL over 2048 characters after /local/domain/<id>/", async () => {
    const { d, guest, dom0 } = setup();
    const ok = "a".repeat(2048 - "data/".length);
    await dom0.write(`/local/domain/${d}/data/${ok}`, ""); // exactly 2048: valid
    // The guest creating another such node hits the node size quota first ("data" lists both).
    const other = `${"b".repeat(2042)}`;
    assert.equal(await guest.err(T.WRITE, [`data/${other}`, ""], { trailingNul: false }), "ENOSPC");
    assert.equal(await guest.err(T.WRITE, [`data/${ok}b`, ""], { trailingNul: false }), "EINVAL");
    assert.equal(await dom0.err(T.READ, [`/${"a".repeat(2048)}`]), "EINVAL");
    assert.equal(await dom0.err(T.READ, [`/local/domain/${d}/data/${ok}b`]), "EINVAL");
  });
});

describe("sim xenstore: transactions", () => {
  it("ids per connection from 1; own writes visible; others see nothing until commit", async () => {
    const { dom0, guest } = setup();
    const t1 = await dom0.start();
    const t2 = await dom0.start();
    assert.deepEqual([t1, t2], [1, 2]);
    assert.equal(await guest.start(), 1);
    await dom0.write("/tx/a", "1", t1);
    assert.equal(await dom0.read("/tx/a", t1), "1");
    assert.equal(await dom0.err(T.READ, ["/tx/a"]), "ENOENT");
    assert.equal(await dom0.err(T.READ, ["/tx/a"], { tx: t2 }), "ENOENT");
    await dom0.ok(T.TRANSACTION_END, ["T"], { tx: t1 });
    assert.equal(await dom0.read("/tx/a"), "1");
    assert.equal(await dom0.err(T.TRANSACTION_END, ["T"], { tx: t1 }), "ENOENT");
  });

  it("a conflicting change makes the commit EAGAIN; END F aborts", async () => {
    const { hv, dom0 } = setup();
    const other = new RawXs(hv.backend(0).openXenStoreTransport());
    await dom0.write("/c/x", "0");
    const t = await dom0.start();
    assert.equal(await dom0.read("/c/x", t), "0");
    await dom0.write("/c/y", "1", t);
    await other.write("/c/x", "changed");
    assert.equal(await dom0.err(T.TRANSACTION_END, ["T"], { tx: t }), "EAGAIN");
    assert.equal(hv.xenstore.inspect("/c/y"), undefined);
    // A node the transaction read as missing, created meanwhile, conflicts too.
    const t2 = await dom0.start();
    assert.equal(await dom0.err(T.READ, ["/c/late"], { tx: t2 }), "ENOENT");
    await other.write("/c/late", "");
    assert.equal(await dom0.err(T.TRANSACTION_END, ["T"], { tx: t2 }), "EAGAIN");
    // Changes elsewhere do not.
    const t3 = await dom0.start();
    await dom0.write("/c/z", "3", t3);
    await other.write("/elsewhere", "");
    await dom0.ok(T.TRANSACTION_END, ["T"], { tx: t3 });
    assert.equal(await dom0.read("/c/z"), "3");
    const t4 = await dom0.start();
    await dom0.write("/c/z", "4", t4);
    await dom0.ok(T.TRANSACTION_END, ["F"], { tx: t4 });
    assert.equal(await dom0.read("/c/z"), "3");
  });

  it("EBUSY inside a transaction, ENOENT for an unknown one, EINVAL for a bad END", async () => {
    const { dom0 } = setup();
    const t = await dom0.start();
    assert.equal(await dom0.err(T.TRANSACTION_START, [""], { tx: t }), "EBUSY");
    assert.equal(await dom0.err(T.READ, ["/tool"], { tx: 77 }), "ENOENT");
    assert.equal(await dom0.err(T.TRANSACTION_END, ["X"], { tx: t }), "EINVAL");
    assert.equal(await dom0.err(T.TRANSACTION_END, ["T"]), "ENOENT");
    // WATCH ignores tx_id.
    await dom0.ok(T.WATCH, ["/w", "t"], { tx: 77 });
  });

  it("watch events fire at commit, not before, and not on abort", async () => {
    const { hv, dom0 } = setup();
    const watcher = new RawXs(hv.backend(0).openXenStoreTransport());
    await watcher.ok(T.WATCH, ["/ev", "tok"]);
    await settle();
    watcher.take();
    const t = await dom0.start();
    await dom0.write("/ev/a", "1", t);
    await dom0.write("/ev/a", "2", t);
    await settle();
    assert.deepEqual(watcher.take(), []);
    await dom0.ok(T.TRANSACTION_END, ["T"], { tx: t });
    await settle();
    assert.deepEqual(watcher.take(), [{ path: "/ev/a", token: "tok" }]);
    const t2 = await dom0.start();
    await dom0.write("/ev/b", "1", t2);
    await dom0.ok(T.TRANSACTION_END, ["F"], { tx: t2 });
    await settle();
    assert.deepEqual(watcher.take(), []);
  });

  it("RESET_WATCHES drops the caller's watches and transactions", async () => {
    const { hv, dom0 } = setup();
    await dom0.ok(T.WATCH, ["/r", "t"]);
    const t = await dom0.start();
    await dom0.ok(T.RESET_WATCHES, [""]);
    assert.equal(await dom0.err(T.READ, ["/tool"], { tx: t }), "ENOENT");
    assert.equal(await dom0.err(T.UNWATCH, ["/r", "t"]), "ENOENT");
    assert.equal(hv.xenstore.stats().transactions, 0);
  });
});

describe("sim xenstore: watches", () => {
  it("OK first, then the initial event; duplicates EEXIST; UNWATCH of an unknown watch ENOENT", async () => {
    const { dom0 } = setup();
    await dom0.ok(T.WATCH, ["/nothing/here", "t1"]);
    await settle();
    const types = dom0.log.slice(-2).map((m) => m.type);
    assert.deepEqual(types, [T.WATCH, T.WATCH_EVENT]);
    assert.deepEqual(dom0.take(), [{ path: "/nothing/here", token: "t1" }]);
    assert.equal(await dom0.err(T.WATCH, ["/nothing/here", "t1"]), "EEXIST");
    await dom0.ok(T.WATCH, ["/nothing/here", "t2"]);
    await dom0.ok(T.UNWATCH, ["/nothing/here", "t1"]);
    assert.equal(await dom0.err(T.UNWATCH, ["/nothing/here", "t1"]), "ENOENT");
    assert.equal(await dom0.err(T.WATCH, ["/bad//path", "t"]), "EINVAL");
    assert.equal(await dom0.err(T.WATCH, ["/only-path"]), "EINVAL");
  });

  it("fires for the node and every descendant, not for ancestors or siblings", async () => {
    const { dom0 } = setup();
    await dom0.ok(T.WATCH, ["/w/a", "t"]);
    await settle();
    dom0.take();
    await dom0.write("/w/a", "");
    await dom0.write("/w/a/b/c", "");
    await dom0.write("/w/ab", "");
    await dom0.write("/w", "");
    await settle();
    assert.deepEqual(dom0.take().map((e) => e.path), ["/w/a", "/w/a/b/c"]);
  });

  it("rm of a subtree: the root for ancestors' watches, each removed node for its exact watch", async () => {
    const { dom0 } = setup();
    await dom0.write("/s/a/b/c", "");
    for (const p of ["/s", "/s/a", "/s/a/b", "/s/a/b/c"]) await dom0.ok(T.WATCH, [p, p]);
    await settle();
    dom0.take();
    await dom0.ok(T.RM, ["/s/a"]);
    await settle();
    const got = dom0.take().map((e) => `${e.token}:${e.path}`);
    assert.deepEqual(got, ["/s/a/b/c:/s/a/b/c", "/s/a/b:/s/a/b", "/s:/s/a", "/s/a:/s/a"]);
  });

  it("relative watches get relative paths", async () => {
    const { d, guest, dom0 } = setup();
    await guest.ok(T.WATCH, ["data", "rel"]);
    await settle();
    assert.deepEqual(guest.take(), [{ path: "data", token: "rel" }]);
    await dom0.write(`/local/domain/${d}/data/k`, "");
    await settle();
    assert.deepEqual(guest.take(), [{ path: "data/k", token: "rel" }]);
  });

  it("no event for a node the watcher may not read (nor its parent)", async () => {
    const { guest, dom0 } = setup();
    await guest.ok(T.WATCH, ["/secret", "t"]);
    await settle();
    assert.deepEqual(guest.take(), [{ path: "/secret", token: "t" }]); // the initial one always
    await dom0.write("/secret/x", "hidden");
    await settle();
    assert.deepEqual(guest.take(), []);
    await dom0.ok(T.SET_PERMS, ["/secret/x", "r0"]);
    await settle();
    assert.deepEqual(guest.take(), [{ path: "/secret/x", token: "t" }]);
  });

  it("identical events waiting in the output queue are sent once", async () => {
    const { dom0 } = setup();
    await dom0.ok(T.WATCH, ["/", "same"]);
    await dom0.ok(T.WATCH, ["/q", "same"]);
    await settle();
    dom0.take();
    await dom0.write("/q/x", "");
    await settle();
    assert.deepEqual(dom0.take(), [{ path: "/q/x", token: "same" }]);
  });
});

describe("sim xenstore: domains", () => {
  it("@introduceDomain on createDomain, @releaseDomain on shutdown and destroy", async () => {
    const { hv, dom0 } = setup();
    await dom0.ok(T.WATCH, ["@introduceDomain", "i"]);
    await dom0.ok(T.WATCH, ["@releaseDomain", "r"]);
    await settle();
    dom0.take();
    const d = hv.createDomain();
    await settle();
    assert.deepEqual(dom0.take(), [{ path: "@introduceDomain", token: "i" }]);
    hv.shutdown(d, "reboot");
    hv.shutdown(d, "reboot");
    await settle();
    assert.deepEqual(dom0.take(), [{ path: "@releaseDomain", token: "r" }]);
    hv.destroy(d);
    await settle();
    assert.deepEqual(dom0.take(), [{ path: "@releaseDomain", token: "r" }]);
    assert.equal(hv.xenstore.inspect(`/local/domain/${d}`), undefined);
    assert.equal(await dom0.ok(T.IS_DOMAIN_INTRODUCED, [String(d)]), "F\0");
  });

  it("guests see the special events only when SET_PERMS on the special node allows", async () => {
    const { hv, d, dom0, guest } = setup();
    await guest.ok(T.WATCH, ["@releaseDomain", "r"]);
    await settle();
    guest.take(); // the initial event is always sent
    const d2 = hv.createDomain();
    hv.shutdown(d2);
    await settle();
    assert.deepEqual(guest.take(), []);
    assert.equal(await guest.err(T.SET_PERMS, ["@releaseDomain", `r${d}`]), "EACCES");
    await dom0.ok(T.SET_PERMS, ["@releaseDomain", "n0", `r${d}`]);
    hv.destroy(d2);
    await settle();
    assert.deepEqual(guest.take(), [{ path: "@releaseDomain", token: "r" }]);
    assert.equal(await dom0.err(T.SET_PERMS, ["@other", "n0"]), "EINVAL");
  });

  it("destroy and crash() end the connections; the watches and transactions go", async () => {
    const { hv, d, guest } = setup();
    await guest.ok(T.WATCH, ["data", "t"]);
    await guest.start();
    const dom0proc = hv.backend(0);
    const second = new RawXs(dom0proc.openXenStoreTransport());
    await second.ok(T.WATCH, ["/x", "t"]);
    hv.destroy(d);
    await settle();
    assert.ok(guest.ended instanceof Error);
    dom0proc.crash();
    await settle();
    assert.ok(second.ended instanceof Error);
    assert.throws(() => dom0proc.openXenStoreTransport());
    const s = hv.xenstore.stats();
    assert.deepEqual([s.watches, s.transactions], [0, 0]);
  });

  it("connect() checks the domid; close() forgets the connection", async () => {
    const hv = new SimHypervisor();
    assert.throws(() => hv.xenstore.connect(-1), XenUsageError);
    assert.throws(() => hv.xenstore.connect(9), XenUsageError);
    const c = new RawXs(hv.xenstore.connect(0));
    await c.ok(T.WATCH, ["/a", "t"]);
    c.transport.close();
    c.transport.close();
    assert.deepEqual(hv.xenstore.stats().connections, 0);
    assert.equal(c.ended, null);
  });
});

describe("sim xenstore: inspection for leak checks, domain names", () => {
  it("connectionInfo lists live connections with their watches and transactions", async () => {
    const { hv, d, dom0, guest } = setup();
    await guest.ok(T.WATCH, ["data", "g"]);
    await dom0.ok(T.WATCH, ["@releaseDomain", "r"]);
    await dom0.ok(T.WATCH, ["/tool", "t"]);
    await dom0.start();
    const info = hv.xenstore.connectionInfo();
    assert.deepEqual(
      info.map((c) => [c.domid, c.watches, c.transactions]),
      [[0, ["@releaseDomain", "/tool"], 1], [d, [`/local/domain/${d}/data`], 0]],
    );
    assert.deepEqual(info.map((c) => c.serial), [1, 2]);
    assert.match(info[1].description, new RegExp(`domain ${d}`));
    guest.transport.close();
    assert.deepEqual(hv.xenstore.connectionInfo().map((c) => c.domid), [0]);
  });

  it("endConnections ends every live connection; the store keeps its nodes", async () => {
    const { hv, dom0, guest } = setup();
    await dom0.write("/kept", "1");
    await dom0.ok(T.WATCH, ["/kept", "k"]);
    assert.equal(hv.xenstore.endConnections("the daemon went away"), 2);
    await settle();
    assert.match(String(dom0.ended), /the daemon went away/);
    assert.ok(guest.ended instanceof Error);
    assert.deepEqual(hv.xenstore.stats().connections, 0);
    assert.deepEqual(hv.xenstore.connectionInfo(), []);
    assert.equal(hv.xenstore.endConnections("again"), 0);
    assert.equal(new TextDecoder().decode(hv.xenstore.inspect("/kept")?.value), "1");
  });

  it("a guest created with a name gets the name node libxl writes; bad names are refused", async () => {
    const hv = new SimHypervisor();
    const named = hv.createDomain({ name: "front" });
    const plain = hv.createDomain();
    const node = hv.xenstore.inspect(`/local/domain/${named}/name`);
    assert.equal(new TextDecoder().decode(node?.value), "front");
    assert.deepEqual(node?.permissions, ["n0", `r${named}`]);
    assert.equal(hv.xenstore.inspect(`/local/domain/${plain}/name`), undefined);
    const guest = new RawXs(hv.backend(named).openXenStoreTransport());
    assert.equal(await guest.read("name"), "front");
    assert.throws(() => hv.createDomain({ name: "" }), XenUsageError);
    assert.throws(() => hv.createDomain({ name: 7 as unknown as string }), XenUsageError);
    assert.deepEqual(hv.domids(), [0, named, plain], "a refused name creates no domain");
    guest.transport.close();
  });
});
