/**
 * Exceptions of application code that EventContext.close() (or a fatal
 * disaster) calls — the fdDeregister hook, the domain source's
 * unsubscribe — never escape close() and never end the process: each goes
 * to the context's onError sink (default: console.error), and the teardown
 * still completes.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { EventContext, type OsEventHooks, POLLIN } from "../plugins/osevent/mod.ts";
import type { DomainEventSource } from "../plugins/osevent/mod.ts";

/** Hooks whose fdDeregister throws; fdRegister hands out numbered tokens. */
function throwingHooks(): OsEventHooks<number> & { deregistered: number } {
  let next = 0;
  const hooks = {
    deregistered: 0,
    fdRegister: () => ++next,
    fdModify: () => undefined,
    fdDeregister: (fd: number) => {
      hooks.deregistered++;
      throw new Error(`fdDeregister of fd ${fd} failed`);
    },
    timeoutRegister: () => ++next,
    timeoutModify: () => undefined,
  };
  return hooks;
}

/** A domain source whose unsubscribe throws. */
function throwingSource(): DomainEventSource {
  return {
    subscribe: () => () => {
      throw new Error("unsubscribe failed");
    },
    domainState: () => undefined,
  };
}

describe("EventContext: user code failing during close", () => {
  it("close() does not throw; every exception reaches onError; nothing is left", async () => {
    const seen: unknown[] = [];
    const ctx = new EventContext({ domains: throwingSource(), onError: (e) => seen.push(e) });
    const hooks = throwingHooks();
    ctx.registerHooks(hooks);
    ctx.addFdWatch(7, POLLIN, () => {});
    ctx.addFdWatch(8, POLLIN, () => {});
    ctx.addTimeout(Date.now() + 60_000, () => {});
    const waiting = ctx.eventWait(0xffffffff);
    ctx.close();
    await assert.rejects(waiting, { name: "ClosedHandleError" });
    assert.deepEqual(
      seen.map((e) => (e as Error).message).sort(),
      ["fdDeregister of fd 7 failed", "fdDeregister of fd 8 failed", "unsubscribe failed"],
    );
    assert.equal(hooks.deregistered, 2, "teardown went on past the first failure");
    const stats = ctx.stats();
    assert.deepEqual([stats.fdWatches, stats.timeouts, stats.waiters], [0, 0, 0]);
    ctx.close(); // idempotent, reports nothing new
    assert.equal(seen.length, 3);
  });

  it("a disaster with no handler tears down the same way", () => {
    const seen: unknown[] = [];
    const ctx = new EventContext({ onError: (e) => seen.push(e) });
    ctx.registerHooks(throwingHooks());
    ctx.addFdWatch(9, POLLIN, () => {});
    ctx.reportDisaster(0, "poll keeps failing", 5);
    assert.equal(ctx.failure?.code, "EIO");
    assert.equal(seen.length, 1);
    assert.match((seen[0] as Error).message, /fd 9/);
    ctx.close();
  });

  it("a sink that throws is ignored; the default sink logs instead of ending the process", () => {
    const ctx = new EventContext({
      onError: () => {
        throw new Error("the sink itself failed");
      },
    });
    ctx.registerHooks(throwingHooks());
    ctx.addFdWatch(10, POLLIN, () => {});
    assert.doesNotThrow(() => ctx.close());

    const logged: unknown[][] = [];
    const original = console.error;
    console.error = (...args: unknown[]) => void logged.push(args);
    try {
      const plain = new EventContext();
      plain.registerHooks(throwingHooks());
      plain.addFdWatch(11, POLLIN, () => {});
      assert.doesNotThrow(() => plain.close());
    } finally {
      console.error = original;
    }
    assert.equal(logged.length, 1);
    assert.match(String(logged[0][0]), /^xenchan: /);
    assert.match((logged[0][1] as Error).message, /fd 11/);
  });

  it("onError must be a function", () => {
    assert.throws(() => new EventContext({ onError: "log" } as never), {
      name: "XenUsageError",
      message: /^options\.onError must be a function, got "log"$/,
    });
  });
});
