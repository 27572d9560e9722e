/**
 * Real Xen dom0 only: many real event channel handles (libxenevtchn fds)
 * watched by one EventContext and served by the built-in loop's single
 * poller, with never more than one poll(2) in flight. Skipped off Xen.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadXenLibraries, type XenLibraries } from "../../ffi/load.ts";
import { sharedPoller } from "../../ffi/poller.ts";
import { type EventChannels, openEventChannels } from "../../mod.ts";
import {
  attachRuntimeLoop,
  EventContext,
  eventMask,
  EventType,
  type EvtchnPortEvent,
} from "../../plugins/osevent/mod.ts";
import { deadline, whyNoXen } from "../helpers/xen.ts";

const skip = (await whyNoXen()) ?? false;
const PORT = eventMask(EventType.EVTCHN_PORT);
/** Handles to open (pairs: a sender and a watched receiver each). */
const WANTED_PAIRS = 500;

async function until(test: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!test()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Pair {
  readonly sender: EventChannels;
  readonly receiver: EventChannels;
  readonly senderPort: number;
  readonly receiverPort: number;
}

/** Opens up to `n` loopback pairs in dom0; stops early (keeping what it has) when fds run out. */
async function openPairs(n: number): Promise<Pair[]> {
  const pairs: Pair[] = [];
  for (let i = 0; i < n; i++) {
    let sender: EventChannels | undefined;
    try {
      sender = await openEventChannels({ backend: "ffi" });
      const receiver = await openEventChannels({ backend: "ffi" });
      const senderPort = sender.bindUnboundPort(0);
      const receiverPort = receiver.bindInterdomain(0, senderPort);
      pairs.push({ sender, receiver, senderPort, receiverPort });
    } catch (error) {
      sender?.close();
      if (pairs.length >= 50) break; // e.g. EMFILE: enough to make the point
      throw error;
    }
  }
  return pairs;
}

describe("osevent in a real dom0", () => {
  it(
    "many real event channel handles are served by one poller",
    { skip, timeout: 300_000 },
    async () => {
      const libs: XenLibraries = await loadXenLibraries();
      const poller = sharedPoller(libs);
      const runtime = libs.runtime as { pollAsync: XenLibraries["runtime"]["pollAsync"] };
      const original = runtime.pollAsync;
      let inFlight = 0;
      let maxInFlight = 0;
      runtime.pollAsync = async (fds, count, timeout) => {
        maxInFlight = Math.max(maxInFlight, ++inFlight);
        try {
          return await original(fds, count, timeout);
        } finally {
          inFlight--;
        }
      };
      const pairs = await openPairs(WANTED_PAIRS);
      const ctx = new EventContext();
      try {
        await attachRuntimeLoop(ctx);
        // every handle is watched: receivers as "r<i>", senders as "s<i>"
        pairs.forEach((p, i) => {
          ctx.watchEventChannels(p.receiver, { forUser: `r${i}`, domid: 0 });
          ctx.watchEventChannels(p.sender, { forUser: `s${i}`, domid: 0 });
        });
        const handles = pairs.length * 2;
        const portOf = (user: string): number => {
          const p = pairs[Number(user.slice(1))];
          return user[0] === "r" ? p.receiverPort : p.senderPort;
        };
        // Xen marks a freshly bound interdomain port pending once: one event per receiver first
        const initial = new Set<string>();
        while (initial.size < pairs.length) {
          const ev = await ctx.eventWait(PORT, undefined, {
            signal: deadline(30_000),
          }) as EvtchnPortEvent;
          const user = ev.forUser as string;
          assert.equal(user[0], "r", `unexpected initial event for ${user}`);
          assert.equal(ev.port, portOf(user));
          assert.ok(!initial.has(user), `${user} reported twice`);
          initial.add(user);
          ev.handle.unmask(ev.port);
        }
        await until(() => poller.waiting === handles, `${handles} waits in the one poller`);
        // notify a spread of handles both ways; each gets exactly one event with its user value
        const toReceivers = pairs.map((_, i) => i).filter((i) => i % 7 === 3);
        const toSenders = pairs.map((_, i) => i).filter((i) => i % 11 === 5);
        for (const i of toReceivers) pairs[i].sender.notify(pairs[i].senderPort);
        for (const i of toSenders) pairs[i].receiver.notify(pairs[i].receiverPort);
        const expected = [...toReceivers.map((i) => `r${i}`), ...toSenders.map((i) => `s${i}`)]
          .sort();
        const got: string[] = [];
        for (let k = 0; k < expected.length; k++) {
          const ev = await ctx.eventWait(PORT, undefined, {
            signal: deadline(),
          }) as EvtchnPortEvent;
          const user = ev.forUser as string;
          got.push(user);
          assert.equal(ev.port, portOf(user));
          ev.handle.unmask(ev.port);
        }
        assert.deepEqual(got.sort(), expected);
        assert.equal(ctx.eventCheck(PORT), null, "no duplicates");
        assert.equal(maxInFlight, 1, "never more than one poll in flight");
        console.log(
          `osevent dom0: ${handles} watched handles, one poller, max polls in flight ${maxInFlight}`,
        );
        ctx.close();
        await until(() => poller.waiting === 0, "close to cancel every wait");
      } finally {
        runtime.pollAsync = original;
        ctx.close();
        for (const p of pairs) {
          p.sender.close();
          p.receiver.close();
        }
      }
    },
  );

  it(
    "closing a watched handle ends its watch quietly; the others keep working",
    { skip, timeout: 60_000 },
    async () => {
      const pairs = await openPairs(3);
      const ctx = new EventContext();
      try {
        await attachRuntimeLoop(ctx);
        const watches = pairs.map((p, i) =>
          ctx.watchEventChannels(p.receiver, { forUser: i, autoUnmask: true })
        );
        for (let k = 0; k < pairs.length; k++) {
          await ctx.eventWait(PORT, undefined, {
            signal: deadline(),
          });
        }
        pairs[1].receiver.close();
        pairs[2].sender.notify(pairs[2].senderPort);
        const ev = await ctx.eventWait(PORT, undefined, { signal: deadline() });
        assert.equal(ev.forUser, 2);
        assert.equal(ctx.failure, null);
        assert.equal(watches[0].active, true);
      } finally {
        ctx.close();
        for (const p of pairs) {
          p.sender.close();
          p.receiver.close();
        }
      }
    },
  );
});
