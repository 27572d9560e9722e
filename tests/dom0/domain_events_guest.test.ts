/**
 * Real domain lifecycle events from real guests (runs in dom0, as root):
 * DOMAIN_SHUTDOWN with its reason and DOMAIN_DEATH through the osevent API,
 * from xenDomainSource over the XenStore client's @releaseDomain watch and
 * libxenctrl's domain list.
 *
 * The guest harness is tests/helpers/guest_lifecycle.ts (the real guest
 * launcher) in the dom0 booted with guests by scripts/test_xen.mjs; another
 * can be named by XENCHAN_GUEST_HARNESS, a module whose default export is
 * `() => Promise<GuestHarness>` (see below). Skips elsewhere.
 *
 * The harness contract, so that every sequence is exact: guests are created
 * with on_poweroff, on_reboot and on_crash = "preserve" (the toolstack never
 * destroys or restarts them behind the test's back); the test destroys each
 * guest itself. Each case destroys what it created, even when it fails.
 */
import assert from "node:assert/strict";
import process from "node:process";
import { describe, it } from "node:test";
import * as xenchan from "../../mod.ts";
import { whyNoGuests } from "../helpers/guest.ts";
import {
  attachRuntimeLoop,
  EventContext,
  eventMask,
  EventType,
  type ReleaseDomainWatcher,
  xenDomainSource,
  type XenEvent,
} from "../../plugins/osevent/mod.ts";

/** What the lead's guest launcher provides (one PV guest at a time: see the vCPU rule). */
export interface GuestHarness {
  /** `xl create` of a small PV guest; resolves with its domid once it runs. */
  create(name: string): Promise<number>;
  /** The guest powers itself off (SCHEDOP_shutdown poweroff, e.g. `poweroff` inside it). */
  poweroff(domid: number): Promise<void>;
  /** The guest reboots itself (shutdown reason reboot; preserved, not restarted). */
  reboot(domid: number): Promise<void>;
  /** The guest kernel crashes (e.g. echo c > /proc/sysrq-trigger inside it). */
  crash(domid: number): Promise<void>;
  /** `xl destroy`; resolves once the domain is gone. Idempotent. */
  destroy(domid: number): Promise<void>;
}

const HARNESS = process.env.XENCHAN_GUEST_HARNESS ??
  (whyNoGuests() === null
    ? new URL("../helpers/guest_lifecycle.ts", import.meta.url).href
    : undefined);
const openXenStore = (xenchan as Record<string, unknown>).openXenStore as
  | ((options?: { backend?: "ffi" }) => Promise<ReleaseDomainWatcher & { close(): void }>)
  | undefined;
const skip = !HARNESS
  ? `no guest harness: ${whyNoGuests() ?? "set XENCHAN_GUEST_HARNESS"}`
  : !openXenStore
  ? "this build has no XenStore client (mod.ts openXenStore)"
  : false;

const SLOW = { timeout: 600_000 };
const DOMAIN = eventMask(EventType.DOMAIN_SHUTDOWN) | eventMask(EventType.DOMAIN_DEATH);

function show(ev: XenEvent): string {
  if (ev.type === EventType.DOMAIN_SHUTDOWN) return `shutdown ${ev.shutdownReasonName}`;
  if (ev.type === EventType.DOMAIN_DEATH) return "death";
  return `type ${ev.type}`;
}

/** One context over the real source; `run` gets it and the harness, then all is closed. */
async function withRealEvents(
  run: (ctx: EventContext, guests: GuestHarness, created: number[]) => Promise<void>,
): Promise<void> {
  const guests = await ((await import(HARNESS!)).default as () => Promise<GuestHarness>)();
  const control = await xenchan.openDomainControl();
  const xs = await openXenStore!({ backend: "ffi" });
  const created: number[] = [];
  const ctx = new EventContext({ domains: xenDomainSource({ xenstore: xs, domains: control }) });
  try {
    await attachRuntimeLoop(ctx);
    await run(ctx, guests, created);
  } finally {
    ctx.close();
    for (const domid of created) await guests.destroy(domid);
    xs.close();
    control.close();
  }
}

/** The next `n` domain events of `domid`, as "shutdown <reason>" / "death" (30 s at most). */
async function next(ctx: EventContext, domid: number, n: number): Promise<string[]> {
  const signal = AbortSignal.timeout(30_000);
  const got: string[] = [];
  for (let i = 0; i < n; i++) got.push(show(await ctx.eventWait(DOMAIN, { domid }, { signal })));
  return got;
}

/** Starts a guest, enables its events, lets `act` end it; returns every event it gave. */
async function lifecycle(
  ctx: EventContext,
  guests: GuestHarness,
  created: number[],
  name: string,
  act: (domid: number) => Promise<void>,
  expected: readonly string[],
): Promise<void> {
  const domid = await guests.create(name);
  created.push(domid);
  ctx.enableDomainDeath(domid, name);
  await act(domid);
  assert.deepEqual(await next(ctx, domid, expected.length), expected, `${name} (d${domid})`);
}

describe("real guests: DOMAIN_SHUTDOWN and DOMAIN_DEATH in dom0", { skip }, () => {
  it(
    "poweroff: SHUTDOWN poweroff, then DEATH on destroy",
    SLOW,
    () =>
      withRealEvents((ctx, guests, created) =>
        lifecycle(ctx, guests, created, "ev-poweroff", async (d) => {
          await guests.poweroff(d);
          await next(ctx, d, 1).then((e) => assert.deepEqual(e, ["shutdown poweroff"]));
          await guests.destroy(d);
        }, ["death"])
      ),
  );

  it(
    "reboot: SHUTDOWN reboot, then DEATH on destroy",
    SLOW,
    () =>
      withRealEvents((ctx, guests, created) =>
        lifecycle(ctx, guests, created, "ev-reboot", async (d) => {
          await guests.reboot(d);
          await next(ctx, d, 1).then((e) => assert.deepEqual(e, ["shutdown reboot"]));
          await guests.destroy(d);
        }, ["death"])
      ),
  );

  it(
    "crash: SHUTDOWN crash, then DEATH on destroy",
    SLOW,
    () =>
      withRealEvents((ctx, guests, created) =>
        lifecycle(ctx, guests, created, "ev-crash", async (d) => {
          await guests.crash(d);
          await next(ctx, d, 1).then((e) => assert.deepEqual(e, ["shutdown crash"]));
          await guests.destroy(d);
        }, ["death"])
      ),
  );

  it(
    "destroy before shutdown: DEATH only",
    SLOW,
    () =>
      withRealEvents((ctx, guests, created) =>
        lifecycle(ctx, guests, created, "ev-destroy", (d) => guests.destroy(d), ["death"])
      ),
  );

  it(
    "ten guests one after another: SHUTDOWN poweroff then DEATH for each, nothing else",
    SLOW,
    () =>
      withRealEvents(async (ctx, guests, created) => {
        for (let i = 0; i < 10; i++) {
          await lifecycle(ctx, guests, created, `ev-ten-${i}`, async (d) => {
            await guests.poweroff(d);
            await next(ctx, d, 1).then((e) => assert.deepEqual(e, ["shutdown poweroff"]));
            await guests.destroy(d);
          }, ["death"]);
        }
        await new Promise((resolve) => setTimeout(resolve, 500));
        assert.equal(ctx.eventCheck(DOMAIN), null, "no event beyond the twenty expected");
      }),
  );
});
