/**
 * The XenStore contract: written once, run on every lane
 * (tests/helpers/xenstore_lanes.ts): the simulated xenstored, and on real
 * Xen the daemon's unix socket and /dev/xen/xenbus. Test names end in the
 * lane tag ("[xenstore:sim]", "[xenstore:sim socket]", "[xenstore:oxenstored
 * socket]", "[xenstore:cxenstored xenbus]", ...: scripts/lib/junit.mjs
 * LANE_TAG) so the summary counts each daemon and transport.
 *
 * Where the daemons (or the kernel's xenbus driver) differ from each other,
 * the expected behaviour of each stands in DAEMON_DIFFERENCES below and the
 * test asserts the one of the daemon it runs against: a surprise fails with
 * what was observed, so the table stays a record of real behaviour. The
 * simulator follows C xenstored 4.17.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type XenStore, XenStoreError, type XenStoreWatchEvent, XenUsageError } from "../../mod.ts";
import {
  type LaneSession,
  laneTag,
  type XenStoreLane,
  xenstoreLanes,
} from "../helpers/xenstore_lanes.ts";
import { within } from "../helpers/xenstore_fake.ts";

/** What an operation gave: "OK", a value, or the XenStoreError code. */
type Outcome = string;

/**
 * Per-daemon expectations, keyed by lane then daemon ("socket/oxenstored").
 * Sources: reference A (xenstored_core.c, oxenstored connection.ml/op.ml,
 * the kernel's xenbus_dev_frontend.c).
 */
const DAEMON_DIFFERENCES: Readonly<
  Record<string, { readonly about: string; readonly expect: Readonly<Record<string, Outcome>> }>
> = {
  largeDirectory: {
    about: "directory() of a node whose child names take more than 4096 bytes",
    expect: {
      // C xenstored answers DIRECTORY with E2BIG, then serves DIRECTORY_PART.
      "sim/sim": "complete",
      "sim-socket/sim": "complete",
      "socket/cxenstored": "complete",
      "xenbus/cxenstored": "complete",
      // oxenstored sends the oversized reply whole over its socket...
      "socket/oxenstored": "complete",
      // ...but E2BIG on a ring, and has no DIRECTORY_PART (ENOSYS -> E2BIG, as libxenstore).
      "xenbus/oxenstored": "E2BIG",
    },
  },
  duplicateWatch: {
    about: "a second WATCH of the same (path, token) on one connection",
    expect: {
      "sim/sim": "EEXIST",
      "sim-socket/sim": "EEXIST",
      "socket/cxenstored": "EEXIST",
      "socket/oxenstored": "EEXIST",
      // The kernel registers each WATCH under its own token: no duplicate for the daemon.
      "xenbus/cxenstored": "OK",
      "xenbus/oxenstored": "OK",
    },
  },
  unwatchUnknown: {
    about: "UNWATCH of a watch that is not registered",
    expect: {
      "sim/sim": "ENOENT",
      "sim-socket/sim": "ENOENT",
      "socket/cxenstored": "ENOENT",
      "socket/oxenstored": "ENOENT",
      // The kernel answers OK itself (xenbus_write_watch).
      "xenbus/cxenstored": "OK",
      "xenbus/oxenstored": "OK",
    },
  },
  unknownOwner: {
    about: "SET_PERMS naming a domain that does not exist as the owner (entry 0)",
    expect: {
      // C 4.17 marks entries of unknown domains XS_PERM_IGNORE and refuses an ignored owner.
      "sim/sim": "ENOENT",
      "sim-socket/sim": "ENOENT",
      "socket/cxenstored": "ENOENT",
      "xenbus/cxenstored": "ENOENT",
      // oxenstored does not look the domains up.
      "socket/oxenstored": "OK",
      "xenbus/oxenstored": "OK",
    },
  },
  guestWatchQuota: {
    about: "an unprivileged domain registering more watches than its quota " +
      "(C: 128, E2BIG; oxenstored: 100, EQUOTA); dom0 is exempt, so only the simulator reaches it",
    expect: { "sim/sim": "E2BIG", "sim-socket/sim": "E2BIG" },
  },
};

function expected(row: keyof typeof DAEMON_DIFFERENCES, lane: XenStoreLane): Outcome {
  const key = `${lane.name}/${lane.daemon}`;
  const value = DAEMON_DIFFERENCES[row].expect[key];
  assert.ok(
    value !== undefined,
    `DAEMON_DIFFERENCES.${row} has no entry for ${key}` +
      (lane.daemon === "unknown" ? " (set XENCHAN_XENSTORED=oxenstored or cxenstored)" : ""),
  );
  return value;
}

async function outcome(promise: Promise<unknown>): Promise<Outcome> {
  try {
    await within(promise);
    return "OK";
  } catch (error) {
    if (error instanceof XenStoreError) return error.code;
    throw error;
  }
}

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<XenStoreError> {
  const error = await within(promise.then(() => assert.fail(`expected ${code}`), (e) => e));
  assert.ok(error instanceof XenStoreError, `expected XenStoreError ${code}, got ${String(error)}`);
  assert.equal(error.code, code, error.message);
  return error;
}

/** Reads events from `events` until one has path `path` (or the deadline passes). */
async function eventFor(
  events: AsyncIterator<XenStoreWatchEvent>,
  path: string,
  ms = 5000,
): Promise<XenStoreWatchEvent[]> {
  const seen: XenStoreWatchEvent[] = [];
  const until = Date.now() + ms;
  for (;;) {
    const left = until - Date.now();
    const r = await within(events.next(), Math.max(1, left), `an event for ${path}`).catch((e) => {
      throw new Error(`${(e as Error).message}; saw ${JSON.stringify(seen.map((s) => s.path))}`);
    });
    assert.equal(r.done, false, `the watch ended before an event for ${path}`);
    seen.push(r.value);
    if (r.value.path === path) return seen;
  }
}

const encoder = new TextEncoder();
/** A domid that no test machine uses. */
const NO_SUCH_DOMAIN = 0x7fe0;

for (const lane of await xenstoreLanes()) {
  const tag = `[${laneTag(lane)}]`;
  const test = (name: string, fn: (s: LaneSession) => Promise<void>, skip?: string | false) =>
    it(`${name} ${tag}`, { skip: lane.skip || skip || false, timeout: 30_000 }, async () => {
      await using session = await lane.session();
      await fn(session);
      assert.equal(session.store.pendingRequests, 0, "requests left waiting");
    });
  const guestOnly = (s: LaneSession) => {
    assert.ok(s.guest, "this lane has no guest connections");
    return s.guest();
  };
  const noGuest = lane.daemon === "sim"
    ? false
    : "needs an unprivileged connection; every dom0 connection is privileged";

  describe(`XenStore contract ${tag} (daemon: ${lane.daemon})`, () => {
    // ---- basic operations ----
    test("write then read a string and raw bytes", async ({ store, base }) => {
      await store.write(`${base}/s`, "hello wörld");
      assert.equal(await store.read(`${base}/s`), "hello wörld");
      const bytes = new Uint8Array([0, 1, 0xff, 0, 0x80]);
      await store.write(`${base}/b`, bytes);
      assert.deepEqual(await store.readBytes(`${base}/b`), bytes);
      await store.write(`${base}/empty`, "");
      assert.equal(await store.read(`${base}/empty`), "");
    });

    test("write creates missing parents; mkdir makes an empty node, twice is OK", async (s) => {
      const { store, base } = s;
      await store.write(`${base}/a/b/c`, "1");
      assert.equal(await store.read(`${base}/a/b`), "");
      await store.mkdir(`${base}/m/n`);
      await store.mkdir(`${base}/m/n`);
      assert.equal(await store.read(`${base}/m/n`), "");
      assert.deepEqual((await store.directory(`${base}/m`)).sort(), ["n"]);
    });

    test("directory lists children; an empty node has none", async ({ store, base }) => {
      await Promise.all(["x", "y", "z"].map((n) => store.write(`${base}/d/${n}`, n)));
      assert.deepEqual((await store.directory(`${base}/d`)).sort(), ["x", "y", "z"]);
      assert.deepEqual(await store.directory(`${base}/d/x`), []);
    });

    test("rm removes a subtree; rm of a missing child of an existing node is OK", async (s) => {
      const { store, base } = s;
      await store.write(`${base}/r/a/b`, "1");
      await store.rm(`${base}/r`);
      await rejectsWith(store.read(`${base}/r/a/b`), "ENOENT");
      await rejectsWith(store.read(`${base}/r`), "ENOENT");
      await store.rm(`${base}/never`);
      await rejectsWith(store.rm(`${base}/never/below`), "ENOENT");
    });

    test("ENOENT for read, directory and permissions of a missing node", async (s) => {
      const { store, base } = s;
      const e = await rejectsWith(store.read(`${base}/missing`), "ENOENT");
      assert.equal(e.op, "READ");
      assert.equal(e.path, `${base}/missing`);
      await rejectsWith(store.directory(`${base}/missing`), "ENOENT");
      await rejectsWith(store.getPermissions(`${base}/missing`), "ENOENT");
      assert.equal(await store.read(`${base}`), "", "the connection still works");
    });

    test("relative paths are under /local/domain/0 for dom0", async ({ store, base }) => {
      const rel = `xenchan-rel-${base.replace(/[^A-Za-z0-9]/g, "_")}`;
      try {
        await store.write(`${rel}/v`, "rel");
        assert.equal(await store.read(`/local/domain/0/${rel}/v`), "rel");
        assert.equal(await store.read(`${rel}/v`), "rel");
      } finally {
        await store.rm(`/local/domain/0/${rel}`);
      }
    });

    test("getDomainPath and isDomainIntroduced", async ({ store }) => {
      assert.equal(await store.getDomainPath(0), "/local/domain/0");
      assert.equal(await store.getDomainPath(7), "/local/domain/7");
      assert.equal(await store.isDomainIntroduced(0), true);
      assert.equal(await store.isDomainIntroduced(NO_SUCH_DOMAIN), false);
    });

    test("many requests in flight on one connection", async ({ store, base }) => {
      await Promise.all(
        Array.from({ length: 64 }, (_, i) => store.write(`${base}/many/n${i}`, `v${i}`)),
      );
      const values = await Promise.all(
        Array.from({ length: 64 }, (_, i) => store.read(`${base}/many/n${i}`)),
      );
      assert.deepEqual(values, Array.from({ length: 64 }, (_, i) => `v${i}`));
    });

    // ---- permissions ----
    test("permissions round trip in the typed form", async ({ store, base }) => {
      await store.write(`${base}/p`, "x");
      const perms = [
        { domid: 0, access: "none" },
        { domid: 5, access: "read" },
        { domid: 6, access: "write" },
        { domid: 7, access: "both" },
      ] as const;
      await store.setPermissions(`${base}/p`, perms);
      assert.deepEqual(await store.getPermissions(`${base}/p`), perms);
      // Dom0 is privileged: it still reads a node that gives it nothing.
      await store.setPermissions(`${base}/p`, [{ domid: 0, access: "none" }]);
      assert.equal(await store.read(`${base}/p`), "x");
    });

    test("an owner that is not a running domain", async ({ store, base }) => {
      await store.write(`${base}/o`, "x");
      const got = await outcome(
        store.setPermissions(`${base}/o`, [{ domid: NO_SUCH_DOMAIN, access: "none" }]),
      );
      assert.equal(got, expected("unknownOwner", lane), DAEMON_DIFFERENCES.unknownOwner.about);
      const owner = got === "OK" ? NO_SUCH_DOMAIN : 0;
      assert.equal((await store.getPermissions(`${base}/o`))[0].domid, owner);
    });

    test("EACCES for a guest without permission; allowed once granted", async (s) => {
      const { store, base } = s;
      const guest = await guestOnly(s);
      await store.write(`${base}/secret`, "s");
      await store.setPermissions(`${base}/secret`, [{ domid: 0, access: "none" }]);
      await rejectsWith(guest.store.read(`${base}/secret`), "EACCES");
      await rejectsWith(guest.store.write(`${base}/secret`, "g"), "EACCES");
      await rejectsWith(guest.store.isDomainIntroduced(0), "EACCES");
      await store.setPermissions(`${base}/secret`, [
        { domid: 0, access: "none" },
        { domid: guest.domid, access: "read" },
      ]);
      assert.equal(await guest.store.read(`${base}/secret`), "s");
      await rejectsWith(guest.store.write(`${base}/secret`, "g"), "EACCES");
      const home = await guest.store.getDomainPath(guest.domid);
      assert.deepEqual(await guest.store.getPermissions(home), [
        { domid: 0, access: "none" },
        { domid: guest.domid, access: "read" },
      ]);
      assert.equal(guest.store.pendingRequests, 0);
    }, noGuest);

    test("a guest's connection ends when its domain is destroyed", async (s) => {
      const guest = await guestOnly(s);
      const home = await guest.store.getDomainPath(guest.domid);
      await guest.store.read(home);
      const watch = guest.store.watch(home);
      assert.equal((await within(watch.next())).value?.path, home);
      const pending = watch.next();
      guest.destroy();
      await rejectsWith(pending, "ECONNRESET");
      await rejectsWith(guest.store.read(home), "ECONNRESET");
      assert.equal(guest.store.pendingRequests, 0);
    }, noGuest);

    // ---- refusals before sending ----
    test("invalid paths are refused before sending (XenUsageError), the connection goes on", async ({ store, base }) => {
      for (const path of ["/a b", `${base}//x`, `${base}/`, "", "/" + "x".repeat(3073)]) {
        await assert.rejects(store.read(path), XenUsageError);
        await assert.rejects(store.write(path, "v"), XenUsageError);
      }
      assert.equal(store.pendingRequests, 0);
      assert.equal(await store.read(base), "");
    });

    test("a request over the transport's payload limit is E2BIG, not sent", async (s) => {
      const { store, base } = s;
      const path = `${base}/big`;
      const fits = lane.maxRequestPayload - encoder.encode(path).length - 1;
      await rejectsWith(store.write(path, "v".repeat(fits + 1)), "E2BIG");
      await rejectsWith(store.read(path), "ENOENT"); // nothing was written
      await store.write(path, "v".repeat(Math.min(fits, 2000)));
      assert.equal((await store.read(path)).length, Math.min(fits, 2000));
    });

    // ---- large directories ----
    test("a directory larger than one reply (DIRECTORY_PART or oversized reply)", async (s) => {
      const { store, base } = s;
      const names = Array.from({ length: 300 }, (_, i) => `child-with-a-long-name-${i}`);
      for (let i = 0; i < names.length; i += 50) {
        await Promise.all(names.slice(i, i + 50).map((n) => store.write(`${base}/L/${n}`, "")));
      }
      let got: string;
      try {
        const listed = await within(store.directory(`${base}/L`), 20_000);
        assert.deepEqual(listed.slice().sort(), names.slice().sort());
        got = "complete";
      } catch (error) {
        if (!(error instanceof XenStoreError)) throw error;
        got = error.code;
      }
      assert.equal(
        got,
        expected("largeDirectory", lane),
        `${DAEMON_DIFFERENCES.largeDirectory.about}: observed ${got} on ${lane.daemon}`,
      );
    });

    // ---- watches ----
    test("a watch yields the initial event, then its node and descendants", async (s) => {
      const { store, base } = s;
      await store.write(`${base}/w`, "0");
      const events = store.watch(`${base}/w`);
      try {
        const first = await within(events.next());
        assert.equal(first.value?.path, `${base}/w`);
        await store.write(`${base}/w/child/grandchild`, "1");
        await eventFor(events, `${base}/w/child/grandchild`);
        await store.write(`${base}/w`, "2");
        await eventFor(events, `${base}/w`);
        await store.write(`${base}/elsewhere`, "x");
        await store.rm(`${base}/w/child`);
        const seen = await eventFor(events, `${base}/w/child`);
        assert.ok(!seen.some((e) => e.path === `${base}/elsewhere`), "no event outside the watch");
      } finally {
        await events.return?.();
      }
    });

    test("a relative watch gives relative event paths", async ({ store, base }) => {
      const rel = `xenchan-relw-${base.replace(/[^A-Za-z0-9]/g, "_")}`;
      await store.mkdir(rel);
      const events = store.watch(rel);
      try {
        assert.equal((await within(events.next())).value?.path, rel);
        await store.write(`/local/domain/0/${rel}/x`, "1");
        await eventFor(events, `${rel}/x`);
      } finally {
        await events.return?.();
        await store.rm(`/local/domain/0/${rel}`);
      }
    });

    test("many watches on one connection, each with its own token", async ({ store, base }) => {
      const count = 20;
      const iterators = Array.from({ length: count }, (_, i) => store.watch(`${base}/mw/${i}`));
      try {
        const initial = await Promise.all(iterators.map((it) => within(it.next())));
        const tokens = new Set(initial.map((r) => r.value?.token));
        assert.equal(tokens.size, count);
        assert.equal(store.activeWatches, count);
        await Promise.all(iterators.map((_, i) => store.write(`${base}/mw/${i}/x`, `${i}`)));
        for (let i = 0; i < count; i++) {
          const seen = await eventFor(iterators[i], `${base}/mw/${i}/x`);
          assert.ok(seen.every((e) => e.path.startsWith(`${base}/mw/${i}`)), JSON.stringify(seen));
        }
      } finally {
        await Promise.all(iterators.map((it) => it.return?.()));
      }
      assert.equal(store.activeWatches, 0);
    });

    test("breaking out of the loop unwatches", async ({ store, base }) => {
      const token = "contract-break";
      for await (const event of store.watch(`${base}/wb`, { token })) {
        assert.equal(event.path, `${base}/wb`);
        break;
      }
      assert.equal(store.activeWatches, 0);
      // The daemon no longer has it: unwatching again is the unknown-watch case.
      const got = await outcome(store.unwatch(`${base}/wb`, token));
      assert.equal(got, expected("unwatchUnknown", lane), DAEMON_DIFFERENCES.unwatchUnknown.about);
      // And the same (path, token) can be registered again.
      for await (const _ of store.watch(`${base}/wb`, { token })) break;
    });

    test("aborting the signal ends the iteration and unwatches", async ({ store, base }) => {
      const token = "contract-abort";
      const controller = new AbortController();
      const events = store.watch(`${base}/wa`, { token, signal: controller.signal });
      assert.equal((await within(events.next())).value?.path, `${base}/wa`);
      const waiting = events.next();
      controller.abort();
      assert.deepEqual(await within(waiting), { done: true, value: undefined });
      assert.deepEqual(await within(events.next()), { done: true, value: undefined });
      // The UNWATCH went out before this request (one connection, in order).
      const got = await outcome(store.unwatch(`${base}/wa`, token));
      assert.equal(got, expected("unwatchUnknown", lane), DAEMON_DIFFERENCES.unwatchUnknown.about);
      assert.equal(store.activeWatches, 0);
      // A signal aborted before the first next() never registers.
      const early = store.watch(`${base}/wa`, { signal: AbortSignal.abort() });
      assert.deepEqual(await within(early.next()), { done: true, value: undefined });
    });

    test("a duplicate (path, token) watch", async ({ store, base }) => {
      const token = "contract-dup";
      const a = store.watch(`${base}/wd`, { token });
      const b = store.watch(`${base}/wd`, { token });
      try {
        await within(a.next());
        const got = await outcome(b.next());
        assert.equal(
          got,
          expected("duplicateWatch", lane),
          DAEMON_DIFFERENCES.duplicateWatch.about,
        );
      } finally {
        await a.return?.();
        await b.return?.();
      }
    });

    test("a guest past its watch quota", async (s) => {
      const guest = await guestOnly(s);
      const home = await guest.store.getDomainPath(guest.domid);
      const iterators = [];
      let got = "OK";
      try {
        for (let i = 0; i < 200 && got === "OK"; i++) {
          const it = guest.store.watch(`${home}/q${i}`);
          iterators.push(it);
          got = await outcome(it.next());
        }
        assert.equal(
          got,
          expected("guestWatchQuota", lane),
          DAEMON_DIFFERENCES.guestWatchQuota.about,
        );
      } finally {
        await Promise.all(iterators.map((it) => it.return?.()));
      }
    }, noGuest);

    test("close() ends watch iterators and rejects later requests with ECLOSED", async (s) => {
      const other = await s.open();
      const events = other.watch(`${s.base}`);
      assert.equal((await within(events.next())).done, false);
      const waiting = events.next();
      other.close();
      assert.deepEqual(await within(waiting), { done: true, value: undefined });
      await rejectsWith(other.read(s.base), "ECLOSED");
      assert.equal(other.pendingRequests, 0);
      await s.store.write(`${s.base}/after`, "1"); // the other connection is unaffected
    });

    // ---- transactions ----
    test("a transaction commits all its writes at once", async ({ store, base }) => {
      const result = await store.transaction(async (tx) => {
        await tx.write(`${base}/t/a`, "1");
        await tx.write(`${base}/t/b`, "2");
        assert.equal(await tx.read(`${base}/t/a`), "1");
        assert.deepEqual((await tx.directory(`${base}/t`)).sort(), ["a", "b"]);
        await rejectsWith(store.read(`${base}/t/a`), "ENOENT"); // not visible outside yet
        return "done";
      });
      assert.equal(result, "done");
      assert.equal(await store.read(`${base}/t/a`), "1");
      assert.equal(await store.read(`${base}/t/b`), "2");
    });

    test("a conflicting transaction reruns its whole body", async (s) => {
      const { store, base } = s;
      const other = await s.open();
      await store.write(`${base}/c`, "0");
      let runs = 0;
      await store.transaction(async (tx) => {
        runs++;
        const v = Number(await tx.read(`${base}/c`));
        if (runs === 1) await other.write(`${base}/c`, "10"); // changes what tx read
        await tx.write(`${base}/c`, String(v + 1));
      });
      assert.equal(runs, 2);
      assert.equal(await store.read(`${base}/c`), "11");
    });

    test("a transaction that always conflicts gives up with EAGAIN after maxAttempts", async (s) => {
      const { store, base } = s;
      const other = await s.open();
      await store.write(`${base}/e`, "0");
      let runs = 0;
      await rejectsWith(
        store.transaction(async (tx) => {
          runs++;
          await tx.read(`${base}/e`);
          await other.write(`${base}/e`, String(runs));
          await tx.write(`${base}/e`, "mine");
        }, { maxAttempts: 3 }),
        "EAGAIN",
      );
      assert.equal(runs, 3);
      assert.equal(await store.read(`${base}/e`), "3");
    });

    test("a body that throws aborts the transaction and rethrows", async ({ store, base }) => {
      const boom = new Error("boom");
      await assert.rejects(
        store.transaction(async (tx) => {
          await tx.write(`${base}/ab`, "never");
          await tx.mkdir(`${base}/ab2`);
          throw boom;
        }),
        (e) => e === boom,
      );
      await rejectsWith(store.read(`${base}/ab`), "ENOENT");
      await rejectsWith(store.read(`${base}/ab2`), "ENOENT");
    });

    test("transaction operations: rm, permissions, bytes", async ({ store, base }) => {
      await store.write(`${base}/to/x`, "1");
      await store.transaction(async (tx) => {
        await tx.rm(`${base}/to/x`);
        await tx.write(`${base}/to/y`, new Uint8Array([9, 0, 9]));
        await tx.setPermissions(`${base}/to/y`, [{ domid: 0, access: "read" }]);
        assert.deepEqual(await tx.getPermissions(`${base}/to/y`), [{ domid: 0, access: "read" }]);
        assert.deepEqual(await tx.readBytes(`${base}/to/y`), new Uint8Array([9, 0, 9]));
      });
      await rejectsWith(store.read(`${base}/to/x`), "ENOENT");
      assert.deepEqual(await store.readBytes(`${base}/to/y`), new Uint8Array([9, 0, 9]));
    });

    test("Symbol.asyncDispose closes the handle", async (s) => {
      let kept: XenStore | undefined;
      {
        await using other = await s.open();
        kept = other;
        assert.equal(await other.read(s.base), "");
      }
      assert.equal(kept.closed, true);
      await rejectsWith(kept.read(s.base), "ECLOSED");
    });
  });
}
