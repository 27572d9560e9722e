/**
 * Real libxl (libxenlight 4.17) in a real dom0, driven only through
 * xenchan's osevent hooks (plugins/osevent/libxl_source.ts over ffi/mod.ts
 * LibxlContext), under Deno and Bun: context allocation and release with
 * the hooks, the domain list, a hook refusing a registration, and with real
 * guests (tests/helpers/guest.ts): DOMAIN_SHUTDOWN/DOMAIN_DEATH for
 * poweroff, reboot, crash and destroy, pause/unpause/shutdown as
 * operations, and twenty create/destroy cycles with exact event counts and
 * nothing leaked (libxl's registrations back to zero, no descriptor left
 * open in /proc/self/fd). The event loop is sampled all along: a timer
 * keeps ticking while libxl works.
 *
 * Guests are the harness's busybox PV guests (xl create -F with
 * on_poweroff/on_reboot/on_crash = destroy, so each shutdown is followed by
 * the death the xl monitor causes). A guest told to power off, reboot or
 * crash waits for a XenStore key written by this test after the watch is
 * enabled, so every sequence is exact.
 */
import assert from "node:assert/strict";
import { readdirSync, writeFileSync } from "node:fs";
import { before, describe, it } from "node:test";
import {
  attachRuntimeLoop,
  EventContext,
  eventMask,
  EventType,
  LibxlError,
  openLibxlSource,
  type XenEvent,
} from "../../plugins/osevent/mod.ts";
import type { LibxlContext } from "../../ffi/mod.ts";
import type { LibxlDomainSource } from "../../plugins/osevent/mod.ts";
import { runCommand, type RunningGuest, startGuest, whyNoGuests } from "../helpers/guest.ts";
import { whyNoXen } from "../helpers/xen.ts";

const noXen = await whyNoXen();
const skipXen = noXen ?? false;
const skipGuests = noXen ?? whyNoGuests() ?? false;
const SLOW = { timeout: 400_000 };
const DOMAIN = eventMask(EventType.DOMAIN_SHUTDOWN, EventType.DOMAIN_DEATH);
const RUNTIME = "Deno" in globalThis ? "deno" : "bun";

type Source = LibxlDomainSource<LibxlContext>;

function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

function show(ev: XenEvent): string {
  if (ev.type === EventType.DOMAIN_SHUTDOWN) return `shutdown ${ev.shutdownReasonName}`;
  if (ev.type === EventType.DOMAIN_DEATH) return "death";
  return `type ${ev.type}`;
}

/** Samples the event loop: the longest gap between 20 ms ticks. */
function loopSampler(): { stop(): number } {
  let last = Date.now();
  let worst = 0;
  const id = setInterval(() => {
    const now = Date.now();
    worst = Math.max(worst, now - last);
    last = now;
  }, 20);
  return {
    stop() {
      clearInterval(id);
      return Math.max(worst, Date.now() - last);
    },
  };
}

/** A source and a context with the built-in loop; everything closed after `run`. */
async function withLibxl(
  run: (ctx: EventContext, source: Source) => Promise<void>,
): Promise<void> {
  const source = await openLibxlSource<LibxlContext>();
  const ctx = new EventContext({ domains: source });
  try {
    await attachRuntimeLoop(ctx);
    await run(ctx, source);
  } finally {
    ctx.close();
    await source.close();
  }
}

async function next(ctx: EventContext, domid: number, n: number): Promise<string[]> {
  const signal = AbortSignal.timeout(60_000);
  const got: string[] = [];
  for (let i = 0; i < n; i++) got.push(show(await ctx.eventWait(DOMAIN, { domid }, { signal })));
  return got;
}

/** The command a guest runs: wait for xenchan/go in its XenStore home, then `action`. */
function onGo(action: string): string {
  return `until xenstore-read xenchan/go >/dev/null 2>&1; do sleep 0.2; done; ${action}; sleep 60`;
}

async function go(domid: number): Promise<void> {
  const r = await runCommand(["xenstore-write", `/local/domain/${domid}/xenchan/go`, "1"]);
  assert.equal(r.code, 0, `xenstore-write failed: ${r.stderr}`);
}

async function guest(command: string, name: string): Promise<RunningGuest> {
  return await startGuest(command, { runtime: "none", name, timeoutS: 120 });
}

/**
 * A domain built and left paused (`xl create -p -e`: no boot, no xl monitor),
 * from the harness's guest kernel and busybox image: cheap to make twenty
 * of. Resolves with its domid.
 */
async function pausedDomain(name: string): Promise<number> {
  const cfg = `/tmp/${name}.cfg`;
  writeFileSync(
    cfg,
    [
      `name = "${name}"`,
      `type = "pv"`,
      `kernel = "/xenchan-xen/guest/vmlinux"`,
      `ramdisk = "/xenchan-xen/guest/none.img"`,
      `memory = 128`,
      `vcpus = 1`,
      "",
    ].join("\n"),
  );
  const r = await runCommand(["xl", "create", "-p", "-e", cfg]);
  assert.equal(r.code, 0, `xl create -p ${name} failed: ${r.stderr}`);
  const id = await runCommand(["xl", "domid", name]);
  assert.equal(id.code, 0, `xl domid ${name}: ${id.stderr}`);
  return Number(id.stdout.trim());
}

describe(`libxl in dom0 (${RUNTIME})`, { skip: skipXen }, () => {
  it("allocates a context with the hooks and frees it, leaving nothing registered or open [libxl:dom0]", async () => {
    const warm = await openLibxlSource<LibxlContext>();
    await warm.close();
    const before = openFds();
    const source = await openLibxlSource<LibxlContext>();
    assert.match(source.libxl.libraryPath, /libxenlight\.so\.4\.17/);
    assert.deepEqual(source.libxl.stats().operations, 0);
    await source.close();
    assert.equal(source.libxl.closed, true);
    assert.equal(source.host.stats().fds, 0);
    assert.equal(source.host.stats().timeouts, 0);
    assert.equal(openFds(), before, "descriptors after ctx alloc/free");
  });

  it("lists the domains: dom0 is there, named Domain-0, running [libxl:dom0]", async () => {
    const source = await openLibxlSource<LibxlContext>();
    try {
      const list = source.libxl.listDomains();
      const dom0 = list.find((d) => d.domid === 0);
      assert.ok(dom0, `no dom0 in ${JSON.stringify(list.map((d) => d.domid))}`);
      assert.equal(dom0.dying, false);
      assert.ok(dom0.currentMemkb > 0n);
      assert.equal(source.libxl.domainName(0), "Domain-0");
      assert.equal(source.libxl.domainInfo(0)?.domid, 0);
      assert.equal(source.libxl.domainInfo(0x7fef), undefined);
      console.log(`libxl_list_domain: ${list.length} domain(s)`);
    } finally {
      await source.close();
    }
  });

  it("a hook refusing libxl's fd registration comes back as LibxlError ERROR_OSEVENT_REG_FAIL [libxl:dom0]", async () => {
    let refused = 0;
    const source = await openLibxlSource<LibxlContext>({
      admit: (r) => {
        if (r.kind === "fd") {
          refused++;
          throw new Error("refused by the test");
        }
      },
    });
    const ctx = new EventContext({ domains: source });
    try {
      await attachRuntimeLoop(ctx);
      assert.throws(() => ctx.enableDomainDeath(0, "dom0"), (e: unknown) => {
        assert.ok(e instanceof LibxlError, `expected LibxlError, got ${e}`);
        assert.equal(e.code, "ERROR_OSEVENT_REG_FAIL");
        assert.equal(e.rc, -12);
        assert.equal(e.call, "libxl_evenable_domain_death");
        assert.equal(e.hook, "fdRegister");
        assert.match(String((e.cause as Error).message), /refused by the test/);
        return true;
      });
      assert.ok(refused >= 1);
      assert.equal(source.host.stats().fds, 0, "nothing registered after the refusal");
      assert.equal(source.libxl.stats().fds, 0);
      assert.equal(ctx.stats().enabled, 0);
    } finally {
      ctx.close();
      await source.close();
    }
  });

  it("enabling dom0 registers libxl's XenStore fd through the hook; disabling deregisters it [libxl:dom0]", () =>
    withLibxl(async (ctx, source) => {
      const gen = ctx.enableDomainDeath(0, "dom0");
      assert.ok(source.libxl.stats().fds >= 1, "libxl registered its XenStore watch fd");
      assert.equal(source.host.stats().fds, source.libxl.stats().fds);
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(ctx.eventCheck(DOMAIN), null, "dom0 is running: no event");
      gen.disable();
      assert.equal(source.libxl.stats().fds, 0);
      assert.equal(source.host.stats().fds, 0);
      assert.equal(source.stats().watched, 0);
    }));
});

/** Destroys domains an earlier, interrupted run of this file left behind (names xl-*). */
async function destroyLeftovers(): Promise<void> {
  const r = await runCommand(["xl", "list"]);
  for (const line of r.stdout.split("\n").slice(1)) {
    const name = line.trim().split(/\s+/)[0];
    if (name?.startsWith("xl-")) await runCommand(["xl", "destroy", name]);
  }
}

describe(`libxl with real guests (${RUNTIME})`, { skip: skipGuests }, () => {
  before(destroyLeftovers);
  const cases = [
    ["poweroff", "poweroff -f", ["shutdown poweroff", "death"]],
    ["reboot", "reboot -f", ["shutdown reboot", "death"]],
    ["crash", "echo c > /proc/sysrq-trigger", ["shutdown crash", "death"]],
  ] as const;
  for (const [label, action, expected] of cases) {
    it(
      `${label}: ${expected.join(", ")} [libxl:guests]`,
      SLOW,
      () =>
        withLibxl(async (ctx, source) => {
          const g = await guest(onGo(action), `xl-${RUNTIME}-${label}`);
          try {
            ctx.enableDomainDeath(g.domid, label);
            const sampler = loopSampler();
            await go(g.domid);
            assert.deepEqual(await next(ctx, g.domid, expected.length), expected);
            const gap = sampler.stop();
            console.log(`${label} d${g.domid}: ${expected.join(", ")}; longest loop gap ${gap} ms`);
            assert.ok(gap < 3000, `the event loop stalled for ${gap} ms`);
            assert.equal(source.stats().watched, 0, "the watch ends with DOMAIN_DEATH");
          } finally {
            await g.destroy();
          }
        }),
    );
  }

  it(
    "destroy through libxl (an async operation): DEATH only [libxl:guests]",
    SLOW,
    () =>
      withLibxl(async (ctx, source) => {
        const g = await guest("sleep 600", `xl-${RUNTIME}-destroy`);
        try {
          ctx.enableDomainDeath(g.domid, "destroy");
          await source.libxl.destroy(g.domid);
          assert.deepEqual(await next(ctx, g.domid, 1), ["death"]);
          assert.equal(source.libxl.domainInfo(g.domid), undefined);
        } finally {
          await g.destroy();
        }
      }),
  );

  it(
    "pause, unpause and shutdown resolve through libxl's operation callbacks [libxl:guests]",
    SLOW,
    () =>
      withLibxl(async (ctx, source) => {
        const g = await guest("sleep 600", `xl-${RUNTIME}-ops`);
        try {
          const libxl = source.libxl;
          ctx.enableDomainDeath(g.domid, "ops");
          await libxl.pause(g.domid);
          assert.equal(libxl.domainInfo(g.domid)?.paused, true);
          await libxl.unpause(g.domid);
          assert.equal(libxl.domainInfo(g.domid)?.paused, false);
          assert.ok(libxl.listDomains().some((d) => d.domid === g.domid));
          await libxl.shutdown(g.domid); // resolves once the request is written
          await libxl.destroy(g.domid);
          const got = await next(ctx, g.domid, 1);
          assert.ok(got[0] === "death" || got[0] === "shutdown poweroff", got.join());
          await assert.rejects(libxl.pause(g.domid), (e: unknown) => {
            assert.ok(e instanceof LibxlError, `expected LibxlError, got ${e}`);
            return true;
          });
          assert.equal(libxl.stats().operations, 0);
        } finally {
          await g.destroy();
        }
      }),
  );

  it(
    "twenty create/destroy cycles (paused domains): exactly one DEATH each, nothing leaked [libxl:guests]",
    SLOW,
    async () => {
      const CYCLES = 20;
      let spanned = 0; // destroys still in flight after a turn of the event loop
      // warm up: the shared poller, Bun's poll Worker, the libraries
      await withLibxl((ctx) => {
        ctx.enableDomainDeath(0).disable();
        return Promise.resolve();
      });
      const before = openFds();
      const source = await openLibxlSource<LibxlContext>();
      const ctx = new EventContext({ domains: source });
      const sampler = loopSampler();
      const started = Date.now();
      try {
        await attachRuntimeLoop(ctx);
        for (let i = 0; i < CYCLES; i++) {
          const name = `xl-${RUNTIME}-c${i}`;
          const domid = await pausedDomain(name);
          try {
            ctx.enableDomainDeath(domid, i);
            const destroying = source.libxl.destroy(domid);
            let settled = false;
            void destroying.then(() => (settled = true), () => (settled = true));
            await new Promise((resolve) => setTimeout(resolve, 0));
            if (!settled) spanned++;
            await destroying;
            assert.deepEqual(await next(ctx, domid, 1), ["death"], `cycle ${i} d${domid}`);
          } finally {
            await runCommand(["xl", "destroy", name]);
          }
        }
        await new Promise((resolve) => setTimeout(resolve, 500));
        assert.equal(ctx.eventCheck(DOMAIN), null, "no event beyond the twenty deaths");
        const s = source.stats();
        assert.equal(s.deathEvents, CYCLES);
        assert.equal(spanned, CYCLES, "every destroy completed asynchronously, over loop turns");
        assert.equal(s.shutdownEvents, 0);
        assert.equal(s.otherEvents, 0);
        assert.equal(s.disasters, 0);
        assert.equal(s.watched, 0);
        const libxlStats = source.libxl.stats();
        assert.equal(libxlStats.fds, 0, "libxl's fd registrations back to zero");
        assert.equal(libxlStats.timeouts, 0, "libxl's timeout registrations back to zero");
        assert.equal(libxlStats.operations, 0);
        assert.equal(libxlStats.sigchldListener, false);
        const host = source.host.stats();
        assert.equal(host.fds, 0);
        assert.equal(host.timeouts, 0);
        assert.equal(host.waits, 0);
        console.log(
          `${CYCLES} cycles in ${Date.now() - started} ms: ${s.deathEvents} deaths; ` +
            `${host.fdReports} occurredFd, ${host.timeoutReports} occurredTimeout`,
        );
      } finally {
        ctx.close();
        await source.close();
      }
      const gap = sampler.stop();
      // libxl runs its hypercalls inline (xc_domain_destroy of 128 MB is slow under TCG):
      // a bounded stall, never a wait for an event (that would last the whole teardown).
      console.log(`twenty cycles: longest loop gap ${gap} ms`);
      assert.ok(gap < 10_000, `the event loop stalled for ${gap} ms`);
      assert.equal(openFds(), before, "descriptors after twenty cycles and close");
    },
  );
});
