/**
 * Contract tests for event channels: written once, run on every backend
 * (tests/helpers/backends.ts). Everything here works with dom0 loopback, so
 * it runs on real Xen too.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  ClosedHandleError,
  type EventChannels,
  openEventChannels,
  type OpenOptions,
  XenUsageError,
} from "../../mod.ts";
import { contractTargets } from "../helpers/backends.ts";
import { deadline, sleep } from "../helpers/xen.ts";

/**
 * VIRQ_TBUF: a global VIRQ nobody binds in the test dom0 (only xentrace would). Not
 * VIRQ_TBUF: the xenstored that the harness dom0 runs holds that one.
 */
const VIRQ_TBUF = 4;
/** A domid that no test machine uses. */
const NO_SUCH_DOMAIN = 0x7fe0;

interface Pair {
  readonly a: EventChannels;
  readonly b: EventChannels;
  readonly portA: number;
  readonly portB: number;
  close(): void;
}

/** Two handles joined by a dom0 loopback channel, with the bind-time event drained. */
async function loopback(options: OpenOptions): Promise<Pair> {
  const a = await openEventChannels(options);
  const b = await openEventChannels(options);
  const portA = a.bindUnboundPort(0);
  const portB = b.bindInterdomain(0, portA);
  // Xen sets the binder's port pending once at bind (evtchn_bind_interdomain).
  assert.equal(await b.pending({ signal: deadline() }), portB);
  b.unmask(portB);
  return { a, b, portA, portB, close: () => (a.close(), b.close()) };
}

async function assertQuiet(handle: EventChannels): Promise<void> {
  await sleep(50);
  assert.equal(handle.tryPending(), null);
}

for (const target of await contractTargets()) {
  const test = (name: string, fn: (options: OpenOptions) => Promise<void>) =>
    it(`${name} [${target.name}]`, { skip: target.skip }, () => fn(target.options()));

  describe(`event channels contract [${target.name}]`, () => {
    test("notify both ways over a loopback channel, pending and unmask", async (options) => {
      const p = await loopback(options);
      try {
        p.a.notify(p.portA);
        assert.equal(await p.b.pending({ signal: deadline() }), p.portB);
        p.b.unmask(p.portB);
        p.b.notify(p.portB);
        assert.equal(await p.a.pending({ signal: deadline() }), p.portA);
        p.a.unmask(p.portA);
        await assertQuiet(p.a);
        await assertQuiet(p.b);
      } finally {
        p.close();
      }
    });

    test("notifies while masked arrive exactly once after unmask", async (options) => {
      const p = await loopback(options);
      try {
        p.a.notify(p.portA);
        assert.equal(await p.b.pending({ signal: deadline() }), p.portB);
        p.a.notify(p.portA);
        p.a.notify(p.portA);
        await assertQuiet(p.b);
        p.b.unmask(p.portB);
        assert.equal(await p.b.pending({ signal: deadline() }), p.portB);
        p.b.unmask(p.portB);
        await assertQuiet(p.b);
      } finally {
        p.close();
      }
    });

    test("many ports on one handle each deliver once", async (options) => {
      using a = await openEventChannels(options);
      using b = await openEventChannels(options);
      const pairs = [0, 1, 2].map(() => {
        const local = a.bindUnboundPort(0);
        return [local, b.bindInterdomain(0, local)] as const;
      });
      const bound = new Set(pairs.map(([, remote]) => remote));
      const drained = new Set<number>();
      while (drained.size < bound.size) drained.add(await b.pending({ signal: deadline() }));
      assert.deepEqual(drained, bound);
      for (const port of drained) b.unmask(port);
      for (const [local] of pairs) a.notify(local);
      const got: number[] = [];
      for (let i = 0; i < pairs.length; i++) got.push(await b.pending({ signal: deadline() }));
      assert.deepEqual(new Set(got), bound);
      assert.equal(got.length, bound.size);
      await assertQuiet(b);
      assert.deepEqual(a.holdings().ports, pairs.map(([local]) => local).sort((x, y) => x - y));
    });

    test("unbind releases the port; notify and unbind on it then fail with ENOTCONN", async (options) => {
      const p = await loopback(options);
      try {
        p.b.unbind(p.portB);
        assert.deepEqual(p.b.holdings().ports, []);
        assert.throws(() => p.b.notify(p.portB), { name: "XenCallError", code: "ENOTCONN" });
        assert.throws(() => p.b.unbind(p.portB), { name: "XenCallError", code: "ENOTCONN" });
        p.a.notify(p.portA); // the peer end is now unbound: sending is dropped silently
      } finally {
        p.close();
      }
    });

    test("closing one end leaves the other end usable and silent", async (options) => {
      const p = await loopback(options);
      try {
        p.a.close();
        p.b.notify(p.portB);
        await assertQuiet(p.b);
      } finally {
        p.close();
      }
    });

    test("bindVirq binds a global VIRQ once, unbind frees it", async (options) => {
      using h = await openEventChannels(options);
      const port = h.bindVirq(VIRQ_TBUF);
      assert.ok(port > 0);
      assert.throws(() => h.bindVirq(VIRQ_TBUF), { name: "XenCallError", code: "EEXIST" });
      h.unbind(port);
      const again = h.bindVirq(VIRQ_TBUF);
      h.unbind(again);
      assert.throws(() => h.bindVirq(100_000), { name: "XenCallError", code: "EINVAL" });
    });

    test("restrict allows only interdomain binds to that domain, for good", async (options) => {
      const p = await loopback(options);
      try {
        assert.throws(() => p.a.restrict(0), { name: "XenCallError", code: "EINVAL" });
        p.a.restrict(1);
        assert.throws(() => p.a.bindUnboundPort(0), { name: "XenCallError", code: "EACCES" });
        assert.throws(() => p.a.bindVirq(VIRQ_TBUF), { name: "XenCallError", code: "EACCES" });
        const offered = p.b.bindUnboundPort(0);
        assert.throws(() => p.a.bindInterdomain(0, offered), {
          name: "XenCallError",
          code: "EACCES",
        });
        assert.throws(() => p.a.restrict(2), { name: "XenCallError", code: "EACCES" });
        p.a.notify(p.portA); // ports bound before restrict stay usable
        assert.equal(await p.b.pending({ signal: deadline() }), p.portB);
      } finally {
        p.close();
      }
    });

    test("binding errors carry the errno Xen gives", async (options) => {
      const p = await loopback(options);
      try {
        assert.throws(() => p.a.bindInterdomain(0, p.portB), {
          name: "XenCallError",
          code: "EINVAL",
        });
        assert.throws(() => p.a.bindInterdomain(NO_SUCH_DOMAIN, 1), {
          name: "XenCallError",
          code: "ESRCH",
        });
        const offered = p.a.bindUnboundPort(NO_SUCH_DOMAIN); // Xen does not check the remote domain here
        assert.throws(() => p.b.bindInterdomain(0, offered), {
          name: "XenCallError",
          code: "EINVAL",
        });
        assert.throws(() => p.b.notify(offered), { name: "XenCallError", code: "ENOTCONN" });
        assert.throws(() => p.b.unbind(0xfffff0), { name: "XenCallError", code: "EINVAL" });
        p.b.unmask(offered); // unmask of a port this handle does not hold is ignored
      } finally {
        p.close();
      }
    });

    test("bad arguments are refused before reaching Xen", async (options) => {
      using h = await openEventChannels(options);
      for (const bad of [-1, 1.5, Number.NaN, 2 ** 32]) {
        assert.throws(() => h.notify(bad), XenUsageError);
        assert.throws(() => h.unmask(bad), XenUsageError);
      }
      assert.throws(() => h.bindUnboundPort(0x10000), XenUsageError);
      assert.throws(() => h.bindInterdomain(-1, 1), XenUsageError);
      assert.deepEqual(h.holdings().ports, []);
    });

    test("a closed handle refuses every call and close is idempotent", async (options) => {
      const h = await openEventChannels(options);
      const port = h.bindUnboundPort(0);
      h.close();
      h.close();
      assert.equal(h.closed, true);
      assert.deepEqual(h.holdings().ports, []);
      for (
        const call of [
          () => h.notify(port),
          () => h.unbind(port),
          () => h.unmask(port),
          () => h.tryPending(),
        ]
      ) {
        assert.throws(call, ClosedHandleError);
      }
      assert.throws(() => h.bindUnboundPort(0), ClosedHandleError);
      await assert.rejects(h.pending(), ClosedHandleError);
    });

    test("pending: abort, one reader per handle, close while waiting", async (options) => {
      const p = await loopback(options);
      try {
        const controller = new AbortController();
        const waiting = p.b.pending({ signal: controller.signal });
        await assert.rejects(p.b.pending(), XenUsageError);
        assert.equal(p.b.holdings().reading, true);
        controller.abort();
        await assert.rejects(waiting, { name: "AbortError" });
        assert.equal(p.b.holdings().reading, false);
        p.a.notify(p.portA); // still usable after an aborted wait
        assert.equal(await p.b.pending({ signal: deadline() }), p.portB);
        p.b.unmask(p.portB);
        const orphan = p.b.pending();
        p.b.close();
        await assert.rejects(orphan, ClosedHandleError);
      } finally {
        p.close();
      }
    });

    test("pendingSync returns a ready port, or null once the timeout passes", async (options) => {
      const p = await loopback(options);
      try {
        assert.equal(p.b.pendingSync(0), null);
        assert.equal(p.b.pendingSync(20), null);
        p.a.notify(p.portA);
        await sleep(20); // the simulator delivers at once; real Xen within microseconds
        assert.equal(p.b.pendingSync(5_000), p.portB);
        p.b.unmask(p.portB);
        assert.throws(() => p.b.pendingSync(-2), XenUsageError);
        if (target.name === "sim") {
          // Nothing can arrive while the simulator's only thread would block.
          assert.throws(() => p.b.pendingSync(-1), XenUsageError);
        }
        const waiting = p.b.pending({ signal: AbortSignal.timeout(50) });
        assert.throws(() => p.b.pendingSync(0), XenUsageError);
        await assert.rejects(waiting, { name: "TimeoutError" });
      } finally {
        p.close();
      }
    });

    test("ports() yields each event and ends quietly on abort", async (options) => {
      const p = await loopback(options);
      try {
        const controller = new AbortController();
        const seen: number[] = [];
        const reader = (async () => {
          for await (const port of p.b.ports({ signal: controller.signal })) {
            seen.push(port);
            p.b.unmask(port);
            if (seen.length === 3) controller.abort();
          }
        })();
        for (let i = 0; i < 3; i++) {
          p.a.notify(p.portA);
          while (seen.length <= i) await sleep(5);
        }
        await reader;
        assert.deepEqual(seen, [p.portB, p.portB, p.portB]);
      } finally {
        p.close();
      }
    });
  });
}
