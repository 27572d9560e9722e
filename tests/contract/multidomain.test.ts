/**
 * Multi-domain contract tests: dom0 (this process) and a peer process in
 * another domain, written once and run on two targets:
 *   [sim]  a simulated dom0 and a second simulated domain (SimHypervisor
 *          createDomain; the peer runs in-process over hv.backend(d1));
 *   [domU] real dom0 and a real PV guest (tests/helpers/guest.ts), with
 *          TypeScript at both ends: tests/fixtures/domu_agent.ts runs in the
 *          guest under this test's runtime and executes the commands this
 *          test sends through XenStore (tests/helpers/peer_rpc.ts).
 * The peer is a Peer (tests/helpers/peer.ts) on both targets. One guest
 * serves every test of a run; the domain-destruction test boots its own
 * (after the shared one is gone: one guest at a time, the vCPU rule).
 * Where the simulator and real Xen differed, the simulator was fixed; the
 * expectations below are what real Xen 4.17 with a Linux 6.1 guest does.
 */
import assert from "node:assert/strict";
import process from "node:process";
import { after, describe, it } from "node:test";
import {
  type EventChannels,
  openEventChannels,
  openGrantShare,
  openGrantTable,
  type OpenOptions,
  openXenStore,
  PAGE_SIZE,
  XenCallError,
  type XenStore,
} from "../../mod.ts";
import { SimHypervisor } from "../../sim/mod.ts";
import { type RunningGuest, startGuest, whyNoGuests } from "../helpers/guest.ts";
import { type Peer, PeerError, PeerExecutor, peerMethods } from "../helpers/peer.ts";
import { connectRpcPeer } from "../helpers/peer_rpc.ts";

/** A domid no test machine uses (a grant "for someone else"). */
const OTHER_DOMAIN = 0x7fe0;

/** One test's world: dom0's options, the peer, and how to destroy the peer's domain. */
interface Session {
  readonly local: OpenOptions;
  readonly peer: Peer;
  /** How long "nothing more arrives" is watched for. */
  readonly quietMs: number;
  destroyPeerDomain(): Promise<void>;
  /** Releases what the test left (the peer's handles; a fresh guest). */
  end(): Promise<void>;
}

interface Target {
  readonly name: "sim" | "domU";
  readonly skip: string | false;
  /** A session with the shared peer (domU: the one guest of the run). */
  shared(): Promise<Session>;
  /** A session with a peer of its own, whose domain the test may destroy. */
  fresh(): Promise<Session>;
  /** Destroys whatever the target started. */
  finish(): Promise<void>;
}

/** A peer in a simulated domain: the executor in-process; kill = the process crashes. */
function simPeer(hv: SimHypervisor, domid: number): Peer {
  let backend = hv.backend(domid);
  let executor = new PeerExecutor({ backend });
  return peerMethods(domid, (cmd) => executor.execute(cmd), () => {
    backend.crash();
    backend = hv.backend(domid);
    executor = new PeerExecutor({ backend });
    return Promise.resolve();
  });
}

function simTarget(): Target {
  const session = (): Promise<Session> => {
    const hv = new SimHypervisor();
    const d1 = hv.createDomain();
    const peer = simPeer(hv, d1);
    return Promise.resolve({
      local: { backend: hv.backend(0) },
      peer,
      quietMs: 50,
      destroyPeerDomain: () => Promise.resolve(hv.destroy(d1)),
      end: async () => {
        if (hv.domainInfo(d1)) await peer.close();
      },
    });
  };
  return { name: "sim", skip: false, shared: session, fresh: session, finish: async () => {} };
}

const RUNTIME = "Deno" in globalThis ? "deno" : "bun";

function agentCommand(): string {
  const run = RUNTIME === "deno" ? "deno run -A" : "bun run";
  // The agent restarts after a kill (exit 137); any other end ends the guest's command.
  return `while :; do ${run} tests/fixtures/domu_agent.ts; s=$?; echo "agent exit $s"; ` +
    `[ $s -eq 137 ] || exit $s; done`;
}

function domUTarget(): Target {
  const skip = process.env.XENCHAN_DOM0 === "1" ? whyNoGuests() ?? false : "needs the dom0 harness";
  let xs: XenStore | undefined;
  let shared: { guest: RunningGuest; peer: Peer } | undefined;
  const guests = new Set<RunningGuest>();
  let bootError: Error | undefined;
  const store = async () => xs ??= await openXenStore({ backend: "ffi" });
  const boot = async () => {
    const guest = await startGuest(agentCommand(), { runtime: RUNTIME, timeoutS: 240 });
    guests.add(guest);
    try {
      const peer = await connectRpcPeer(await store(), guest.domid);
      return { guest, peer };
    } catch (error) {
      throw new Error(
        `agent in d${guest.domid}: ${(error as Error).message}\n` +
          `guest output:\n${await guest.output()}`,
      );
    }
  };
  const dropShared = async () => {
    if (!shared) return;
    guests.delete(shared.guest);
    await shared.guest.destroy();
    shared = undefined;
  };
  return {
    name: "domU",
    skip,
    async shared() {
      // A guest that failed to come up fails the other tests at once, with the same reason.
      if (bootError) throw bootError;
      try {
        shared ??= await boot();
      } catch (error) {
        bootError = error as Error;
        throw error;
      }
      const peer = shared.peer;
      return {
        local: { backend: "ffi" },
        peer,
        quietMs: 1500,
        destroyPeerDomain: () => Promise.reject(new Error("the shared guest is not destroyed")),
        end: () => peer.close(),
      };
    },
    async fresh() {
      await dropShared(); // one guest at a time
      const { guest, peer } = await boot();
      return {
        local: { backend: "ffi" },
        peer,
        quietMs: 1500,
        destroyPeerDomain: async () => {
          guests.delete(guest);
          await guest.destroy();
        },
        end: async () => {
          guests.delete(guest);
          await guest.destroy();
        },
      };
    },
    async finish() {
      for (const g of guests) await g.destroy();
      guests.clear();
      shared = undefined;
      xs?.close();
      xs = undefined;
    },
  };
}

/** The next pending port within `ms`, or null (the wait is bounded). */
async function pendingWithin(events: EventChannels, ms: number): Promise<number | null> {
  try {
    return await events.pending({ signal: AbortSignal.timeout(ms) });
  } catch (error) {
    if ((error as Error).name === "TimeoutError" || (error as Error).name === "AbortError") {
      return null;
    }
    throw error;
  }
}

/** The errno name of a rejected promise's XenCallError or PeerError. */
async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (error) {
    if (error instanceof XenCallError || error instanceof PeerError) return String(error.code);
    throw error;
  }
  return "no error";
}

function codeOfSync(f: () => unknown): string {
  try {
    f();
  } catch (error) {
    if (error instanceof XenCallError) return error.code;
    throw error;
  }
  return "no error";
}

const pattern = (seed: number, n = 16) =>
  Array.from({ length: n }, (_, i) => (seed + i * 7) & 0xff);

/** The targets XENCHAN_TEST_BACKENDS asks for (as tests/helpers/backends.ts): sim, and domU with ffi. */
function targets(): Target[] {
  const wanted = new Set(
    (process.env.XENCHAN_TEST_BACKENDS ?? "sim,ffi").split(",").map((s) => s.trim()),
  );
  return [
    ...(wanted.has("sim") ? [simTarget()] : []),
    ...(wanted.has("ffi") ? [domUTarget()] : []),
  ];
}

for (const target of targets()) {
  const T = target.name;
  const test = (name: string, fresh: boolean, fn: (s: Session) => Promise<void>) =>
    it(`${name} [${T}]`, { skip: target.skip, timeout: 600_000 }, async () => {
      const s = await (fresh ? target.fresh() : target.shared());
      try {
        await fn(s);
      } finally {
        await s.end();
      }
    });

  describe(`multi-domain contract [${T}]`, () => {
    after(() => target.finish());

    test(
      "the peer binds unbound for dom0, dom0 binds to it: notify both ways",
      false,
      async (s) => {
        const { peer } = s;
        using events = await openEventChannels(s.local);
        const remote = await peer.bindUnbound(0);
        const local = events.bindInterdomain(peer.domid, remote);
        // Xen marks the binder's port pending once at bind.
        assert.equal(await pendingWithin(events, 10_000), local);
        events.unmask(local);
        events.notify(local);
        assert.equal(await peer.pending(10_000), remote);
        await peer.unmask(remote);
        await peer.notify(remote);
        assert.equal(await pendingWithin(events, 10_000), local);
        events.unmask(local);
        assert.equal(await pendingWithin(events, s.quietMs), null, "one notify, one event");
      },
    );

    test(
      "dom0 binds unbound for the peer, the peer binds to it: notify both ways",
      false,
      async (s) => {
        const { peer } = s;
        using events = await openEventChannels(s.local);
        const local = events.bindUnboundPort(peer.domid);
        const remote = await peer.bindInterdomain(0, local);
        assert.equal(await peer.pending(10_000), remote, "the binder's bind-time event");
        await peer.unmask(remote);
        await peer.notify(remote);
        assert.equal(await pendingWithin(events, 10_000), local);
        events.unmask(local);
        events.notify(local);
        assert.equal(await peer.pending(10_000), remote);
        await peer.unmask(remote);
        assert.equal(await peer.pending(s.quietMs), null);
      },
    );

    test(
      "a port bound unbound for another domain cannot be bound by the peer",
      false,
      async (s) => {
        using events = await openEventChannels(s.local);
        const local = events.bindUnboundPort(OTHER_DOMAIN);
        assert.equal(await codeOf(s.peer.bindInterdomain(0, local)), "EINVAL");
      },
    );

    test("masking: notifies while masked arrive once after unmask, both ways", false, async (s) => {
      const { peer } = s;
      using events = await openEventChannels(s.local);
      const local = events.bindUnboundPort(peer.domid);
      const remote = await peer.bindInterdomain(0, local);
      assert.equal(await peer.pending(10_000), remote);
      // The peer's port stays masked (not unmasked after the read): three notifies.
      for (let i = 0; i < 3; i++) events.notify(local);
      assert.equal(await peer.pending(s.quietMs), null, "masked: nothing delivered");
      await peer.unmask(remote);
      assert.equal(await peer.pending(10_000), remote, "delivered once after unmask");
      await peer.unmask(remote);
      assert.equal(await peer.pending(s.quietMs), null, "and only once");
      // The other way round: dom0 masked after its first event.
      await peer.notify(remote);
      assert.equal(await pendingWithin(events, 10_000), local);
      for (let i = 0; i < 3; i++) await peer.notify(remote);
      assert.equal(await pendingWithin(events, s.quietMs), null);
      events.unmask(local);
      assert.equal(await pendingWithin(events, 10_000), local);
      events.unmask(local);
      assert.equal(await pendingWithin(events, s.quietMs), null);
    });

    test("the peer shares pages with dom0, dom0 maps them: bytes both ways", false, async (s) => {
      using gnt = await openGrantTable(s.local);
      const { id, refs } = await s.peer.share(0, 2, true);
      assert.equal(refs.length, 2);
      await s.peer.write(id, PAGE_SIZE + 10, pattern(3));
      const mapping = gnt.mapDomainGrantRefs(s.peer.domid, refs);
      assert.deepEqual([...mapping.pages[1].subarray(10, 26)], pattern(3));
      mapping.pages[0].set(pattern(9), 100);
      assert.deepEqual(await s.peer.read(id, 100, 16), pattern(9));
      mapping.unmap();
      await s.peer.release(id);
    });

    test(
      "dom0 shares pages with the peer, the peer maps them: bytes both ways",
      false,
      async (s) => {
        using shr = await openGrantShare(s.local);
        const share = shr.sharePages(s.peer.domid, 2, { writable: true });
        share.pages[1].set(pattern(5), 0);
        const id = await s.peer.map(0, share.refs, true);
        assert.deepEqual(await s.peer.read(id, PAGE_SIZE, 16), pattern(5));
        await s.peer.write(id, 42, pattern(11));
        assert.deepEqual([...share.pages[0].subarray(42, 58)], pattern(11));
        await s.peer.release(id);
        share.unshare();
      },
    );

    test("a grant for another domain is refused (EINVAL) both ways", false, async (s) => {
      using gnt = await openGrantTable(s.local);
      using shr = await openGrantShare(s.local);
      const theirs = await s.peer.share(OTHER_DOMAIN, 1, true);
      assert.equal(codeOfSync(() => gnt.mapGrantRef(s.peer.domid, theirs.refs[0])), "EINVAL");
      const ours = shr.sharePages(OTHER_DOMAIN, 1, { writable: true });
      assert.equal(await codeOf(s.peer.map(0, ours.refs, true)), "EINVAL");
      // A grant for the peer is not for dom0 either.
      const forPeer = shr.sharePages(s.peer.domid, 1, { writable: true });
      assert.equal(codeOfSync(() => gnt.mapGrantRef(0, forPeer.refs[0])), "EINVAL");
      assert.deepEqual(gnt.holdings(), { ranges: 0, pages: 0 });
    });

    test(
      "read-only grants: mapping them writable is EINVAL, read-only sees the bytes",
      false,
      async (s) => {
        using gnt = await openGrantTable(s.local);
        using shr = await openGrantShare(s.local);
        const theirs = await s.peer.share(0, 1, false);
        await s.peer.write(theirs.id, 0, pattern(1)); // the sharer's own pages stay writable
        assert.equal(
          codeOfSync(() => gnt.mapGrantRef(s.peer.domid, theirs.refs[0], { writable: true })),
          "EINVAL",
        );
        const ro = gnt.mapGrantRef(s.peer.domid, theirs.refs[0], { writable: false });
        assert.deepEqual([...ro.bytes.subarray(0, 16)], pattern(1));
        await s.peer.write(theirs.id, 0, pattern(2));
        assert.deepEqual(
          [...ro.bytes.subarray(0, 16)],
          pattern(2),
          "the mapping sees the sharer's writes",
        );
        ro.unmap();
        const ours = shr.sharePages(s.peer.domid, 1, { writable: false });
        ours.bytes.set(pattern(4));
        assert.equal(await codeOf(s.peer.map(0, ours.refs, true)), "EINVAL");
        const id = await s.peer.map(0, ours.refs, false);
        assert.deepEqual(await s.peer.read(id, 0, 16), pattern(4));
        await s.peer.release(id);
        await s.peer.release(theirs.id);
      },
    );

    test(
      "unmap notify when the peer's process is killed: its mapping of dom0's page",
      false,
      async (s) => {
        const { peer } = s;
        using events = await openEventChannels(s.local);
        using shr = await openGrantShare(s.local);
        const local = events.bindUnboundPort(peer.domid);
        const remote = await peer.bindInterdomain(0, local);
        const share = shr.sharePages(peer.domid, 1, { writable: true });
        share.bytes[64] = 0x5a;
        await peer.map(0, share.refs, true, { offset: 64, port: remote });
        await peer.kill();
        assert.equal(await pendingWithin(events, 10_000), local, "the unmap notification's event");
        assert.equal(share.bytes[64], 0, "the byte is cleared");
        events.unmask(local);
        // The killed process's port closed: dom0's end is unbound, notify is accepted.
        events.notify(local);
        share.unshare();
      },
    );

    test(
      "unmap notify when the peer's process is killed: its share mapped by dom0",
      false,
      async (s) => {
        const { peer } = s;
        using events = await openEventChannels(s.local);
        using gnt = await openGrantTable(s.local);
        const local = events.bindUnboundPort(peer.domid);
        const remote = await peer.bindInterdomain(0, local);
        const theirs = await peer.share(0, 1, true, { offset: 8, port: remote });
        await peer.write(theirs.id, 0, pattern(6));
        const mapping = gnt.mapGrantRef(peer.domid, theirs.refs[0]);
        assert.equal(mapping.bytes[8], pattern(6)[8]);
        await peer.kill();
        assert.equal(
          await pendingWithin(events, 10_000),
          local,
          "the unshare notification's event",
        );
        assert.equal(mapping.bytes[8], 0, "the byte is cleared in the page dom0 still maps");
        assert.equal(mapping.bytes[9], pattern(6)[9], "the rest of the page is still readable");
        mapping.unmap();
      },
    );

    test("the peer's domain is destroyed: what dom0 sees", true, async (s) => {
      const { peer } = s;
      const d = peer.domid;
      using events = await openEventChannels(s.local);
      using gnt = await openGrantTable(s.local);
      using shr = await openGrantShare(s.local);
      const local = events.bindUnboundPort(d);
      const remote = await peer.bindInterdomain(0, local);
      const share = shr.sharePages(d, 1, { writable: true });
      share.bytes[64] = 0x5a;
      await peer.map(0, share.refs, true, { offset: 64, port: remote });
      const theirs = await peer.share(0, 1, true);
      await peer.write(theirs.id, 0, pattern(8));
      const mapping = gnt.mapGrantRef(d, theirs.refs[0]);
      const spare = await peer.share(0, 1, true); // shared, never mapped before the end

      await s.destroyPeerDomain();

      // No kernel runs the guest's cleanup: no unmap notification, no event.
      assert.equal(
        await pendingWithin(events, s.quietMs),
        null,
        "no event from a destroyed domain",
      );
      assert.equal(share.bytes[64], 0x5a, "the byte is not cleared");
      // Its page that dom0 maps stays readable and writable until dom0 unmaps.
      assert.deepEqual([...mapping.bytes.subarray(0, 16)], pattern(8));
      mapping.bytes[0] = 1;
      assert.equal(mapping.bytes[0], 1);
      // dom0's end of the channel: notify is accepted (dropped), unbind works.
      events.notify(local);
      // While dom0 maps one of its pages Xen keeps the dead domain (dying, a zombie):
      // binding to it is EINVAL (found, its ports closed), not ESRCH.
      assert.equal(
        codeOfSync(() => events.bindInterdomain(d, remote)),
        "EINVAL",
        "binding to the dying domain",
      );
      assert.equal(codeOfSync(() => gnt.mapGrantRef(d, spare.refs[0])), "EINVAL");
      events.unbind(local);
      mapping.unmap(); // the last page of the dead domain: it goes away
      assert.equal(
        codeOfSync(() => events.bindInterdomain(d, remote)),
        "ESRCH",
        "binding to the domain once gone",
      );
      share.unshare();
    });
  });
}
