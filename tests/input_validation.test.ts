/**
 * Wrong-shaped arguments get a XenUsageError that names the argument and
 * shows the value given, at the call that received them (not later, inside
 * a dispatch). One test per case the API fuzz found failing with a plain
 * TypeError, plus the message format (strings keep their quotes).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  openEventChannels,
  openGrantShare,
  openGrantTable,
  selectBackend,
  XenUsageError,
} from "../mod.ts";
import { describe as describeValue } from "../core/validate.ts";
import { SimHypervisor } from "../sim/mod.ts";
import {
  attachRuntimeLoop,
  attachSimClockLoop,
  EventContext,
  eventMask,
  EventType,
  simDomainSource,
} from "../plugins/osevent/mod.ts";
import { EventFdNotifier, IvshmemDoorbell, SimNotifier } from "../plugins/doorbell/mod.ts";
import { EventFd, EventFdPortSource } from "../plugins/osevent/mod.ts";
import { createAbi, negotiateAbi } from "../plugins/abi/mod.ts";

/** Asserts that `fn` throws (or rejects with) a XenUsageError whose message matches. */
async function refused(fn: () => unknown, message: RegExp): Promise<void> {
  await assert.rejects(async () => await fn(), (error: unknown) => {
    assert.ok(error instanceof XenUsageError, `not a XenUsageError: ${String(error)}`);
    assert.match(error.message, message);
    return true;
  });
}

function world() {
  const hv = new SimHypervisor();
  const d1 = hv.createDomain();
  const ctx = new EventContext({ clock: hv.clock, domains: simDomainSource(hv) });
  return { hv, d1, ctx, backend: hv.backend(0) };
}

describe("input: the message shows what was given", () => {
  it("strings keep their quotes, bigints their n, objects their kind", async () => {
    const { backend } = world();
    using h = await openEventChannels({ backend });
    await refused(() => h.notify("5" as never), /^port must be an integer .*, got "5"$/);
    await refused(() => h.notify(5n as never), /port must be an integer .*, got 5n$/);
    await refused(() => h.bindUnboundPort(null as never), /domid must be .*, got null$/);
    await refused(() => h.unbind(Symbol("s") as never), /got Symbol\(s\)$/);
    assert.equal(describeValue([1, 2]), "an array of length 2");
    assert.equal(describeValue(new Uint8Array(8)), "a Uint8Array of 8 bytes");
    assert.equal(describeValue(new Map()), "a Map");
    assert.equal(describeValue({}), "an object");
    assert.equal(describeValue(() => 1), "a function");
    assert.equal(describeValue(-0), "-0");
  });
});

describe("input: mod.ts", () => {
  it("null or primitive options are refused by every open function", async () => {
    for (const open of [openEventChannels, openGrantTable, openGrantShare]) {
      await refused(() => open(null as never), /^options must be an options object .*, got null$/);
      await refused(() => open(5 as never), /got 5$/);
    }
  });

  it('an unknown backend ({}, null, "xyz") is a XenUsageError, not a TypeError', async () => {
    await refused(() => selectBackend({} as never), /backend object must have kind/);
    await refused(() => selectBackend(null as never), /backend must be .*, got null$/);
    await refused(() => selectBackend("xyz" as never), /backend must be .*, got "xyz"$/);
    await refused(
      () => openEventChannels({ backend: { kind: "sim" } as never }),
      /openEventChannels\(\) method/,
    );
  });

  it("maps refuse a non-array of refs and wrong element types, naming the element", async () => {
    const { backend, d1 } = world();
    using gnt = await openGrantTable({ backend });
    await refused(() => gnt.mapDomainGrantRefs(d1, 8 as never), /^refs must be an array, got 8$/);
    await refused(() => gnt.mapDomainGrantRefs(d1, [8, "9"] as never), /^refs\[1\] .*got "9"$/);
    await refused(() => gnt.mapGrantRefs(null as never), /^grants must be an array/);
    await refused(() => gnt.mapGrantRefs([null] as never), /^grants\[0\] must be an object/);
    await refused(
      () => gnt.mapGrantRefs([{ domid: d1, ref: 8n }] as never),
      /^grants\[0\]\.ref .*got 8n$/,
    );
    await refused(() => gnt.mapGrantRef(d1, 8, null as never), /^options must be/);
    await refused(
      () => gnt.mapGrantRef(d1, 8, { writable: "yes" } as never),
      /^options\.writable must be true or false, got "yes"$/,
    );
    await refused(() => gnt.grantCopy([{ source: null }] as never), /segments\[0\]\.source/);
    assert.deepEqual(gnt.holdings(), { ranges: 0, pages: 0 }, "nothing was mapped");
  });

  it("pending() refuses null options and a signal that is not an AbortSignal", async () => {
    const { backend } = world();
    using h = await openEventChannels({ backend });
    await refused(() => h.pending(null as never), /^options must be/);
    await refused(
      () => h.pending({ signal: 5 } as never),
      /^options\.signal must be an AbortSignal/,
    );
    assert.equal(h.holdings().reading, false);
  });
});

describe("input: plugins/osevent", () => {
  it("a primitive selector is refused by eventCheck, eventWait and events", async () => {
    const { ctx } = world();
    const mask = eventMask(EventType.DOMAIN_DEATH);
    for (const selector of [5, "d1", true, 5n]) {
      await refused(() => ctx.eventCheck(mask, selector as never), /^selector must be/);
      await refused(() => ctx.eventWait(mask, selector as never), /^selector must be/);
      await refused(() => ctx.events(mask, selector as never).next(), /^selector must be/);
    }
    assert.equal(ctx.stats().waiters, 0);
    ctx.close();
  });

  it("registerCallbacks(undefined) and non-function callbacks are refused", async () => {
    const { ctx } = world();
    await refused(() => ctx.registerCallbacks(undefined as never), /^callbacks must be an object/);
    await refused(
      () => ctx.registerCallbacks({ eventOccurs: 5 } as never),
      /eventOccurs must be a function/,
    );
    ctx.close();
  });

  it("addTimeout and addFdWatch refuse a non-function callback at registration", async () => {
    const { ctx, hv } = world();
    await refused(() => ctx.addTimeout(0, "later" as never), /^callback must be a function/);
    await refused(() => ctx.addFdWatch(3, 1, {} as never), /^callback must be a function/);
    assert.equal(ctx.stats().timeouts, 0);
    assert.equal(ctx.stats().fdWatches, 0);
    // Nothing was queued that could fail later inside afterpoll.
    ctx.afterpoll([], hv.now() + 10);
    ctx.close();
  });

  it("a bigint `now` is refused by beforepoll and afterpoll", async () => {
    const { ctx } = world();
    await refused(
      () => ctx.beforepoll([], -1, 5n as never),
      /^now must be a finite number, got 5n$/,
    );
    await refused(() => ctx.afterpoll([], 5n as never), /^now must be a finite number, got 5n$/);
    ctx.close();
  });

  it("constructors and loops refuse null options and non-contexts", async () => {
    const { hv, ctx } = world();
    await refused(() => new EventContext(null as never), /^options must be/);
    await refused(() => new EventContext({ clock: {} } as never), /options\.clock must have/);
    await refused(() => new EventContext({ domains: {} } as never), /options\.domains must have/);
    await refused(() => attachSimClockLoop(null as never), /^ctx must be an object/);
    await refused(() => attachSimClockLoop(ctx, null as never), /^options must be/);
    await refused(() => attachRuntimeLoop({} as never), /^ctx must be an EventContext/);
    await refused(() => simDomainSource({} as never), /^hv\.onDomainEvent must be a function/);
    await refused(() => ctx.watchEventChannels(null as never), /^handle must be an object/);
    await refused(() => ctx.reportDisaster(0, "x", 5n as never), /^errno must be an integer/);
    await refused(() => eventMask("1" as never), /^types\[0\] must be an integer .*"1"$/);
    await refused(() => hv.onDomainEvent(5 as never), /^listener must be a function/);
    assert.equal(ctx.failure, null, "a refused reportDisaster does not fail the context");
    ctx.close();
  });
});

describe("input: the simulator, doorbell and ABI entry points", () => {
  it("null options and wrong types are XenUsageError", async () => {
    const { hv } = world();
    await refused(() => new SimHypervisor(null as never), /^options must be/);
    await refused(() => hv.createDomain(null as never), /^options must be/);
    await refused(() => hv.stats("0" as never), /^domid must be .*"0"$/);
    await refused(() => hv.shutdown(0, 3 as never), /^reason must be a string, got 3$/);
    await refused(() => hv.clock.setTimer(5 as never, 1), /^fn must be a function/);
    await refused(() => hv.faults.failNextAllocation(null as never), /^fault must be/);
    await refused(() => new SimNotifier(null as never), /^options must be/);
    await refused(() => new SimNotifier({ initial: 1 } as never), /options\.initial .*got 1$/);
    await refused(() => new IvshmemDoorbell(null as never), /^options must be/);
    await refused(() => createAbi("fifo", null as never), /^opts must be/);
    await refused(() => createAbi("xyz" as never), /unknown event ABI "xyz"/);
    await refused(
      () => negotiateAbi("fifo", "fifo" as never),
      /^hypervisorSupports must be an array/,
    );
    const abi = createAbi("2l", { maxPorts: 64 });
    await refused(() => abi.setPending("3" as never), /^port must be an integer .*"3"$/);
    await refused(() => abi.scan(0, null as never), /^deliver must be a function/);
  });

  it("the eventfd entry points check their arguments before loading anything", async () => {
    await refused(() => EventFd.create(null as never), /^options must be/);
    await refused(() => EventFd.create({ semaphore: 1 } as never), /options\.semaphore .*got 1$/);
    await refused(() => EventFdNotifier.create(null as never), /^options must be/);
    await refused(() => EventFdPortSource.open("1" as never), /^port must be .*"1"$/);
    await refused(() => new EventFdPortSource({} as never, 1), /^efd must be an EventFd/);
  });
});
