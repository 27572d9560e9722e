/**
 * The glue between libxl's osevent hooks and xenchan's loop
 * (plugins/osevent/libxl_source.ts), against a fake libxl: a JavaScript
 * object that plays libxl's part the way libxl 4.17 does it (it registers
 * its XenStore watch fd from inside evenable_domain_death, registers and
 * modifies timeouts from inside occurredFd, deregisters the fd when the last
 * watch goes, delivers events after the call that produced them) and that
 * records every occurredFd / occurredTimeout made while one of its hooks is
 * still running, which real libxl would answer with abort(). Also: the
 * callback primitive of both runtimes on a real C function (qsort), and the
 * loading errors of libxenlight.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  BuiltinLoop,
  DisasterError,
  EventContext,
  eventMask,
  EventType,
  LibxlError,
  type LibxlLike,
  type LibxlRegistration,
  openLibxlSource,
  POLLIN,
  REAL_TIMERS,
} from "../plugins/osevent/mod.ts";
import type { LibxlDeathWatch, LibxlDomainInfo, LibxlEvent, LibxlOptions } from "../ffi/mod.ts";
import { ERROR_OSEVENT_REG_FAIL, LIBXL_EVENT_TYPE, openLibxl } from "../ffi/mod.ts";
import { loadLibc } from "../ffi/load.ts";
import { LIBXL } from "../ffi/symbols.ts";
import { firstLine, startFixture } from "./helpers/child.ts";

const DOMAIN = eventMask(EventType.DOMAIN_SHUTDOWN, EventType.DOMAIN_DEATH);
const XS_FD = 42;

/** A controllable FdWaiter: waits resolve when the test says the fd is ready. */
class FakeWaiter {
  readonly waits = new Set<{ fd: number; resolve: (r: number) => void }>();
  wait(fd: number, _events: number, signal?: AbortSignal): Promise<number> {
    return new Promise((resolve) => {
      const w = { fd, resolve };
      this.waits.add(w);
      signal?.addEventListener("abort", () => {
        this.waits.delete(w);
        resolve(0);
      }, { once: true });
    });
  }
  ready(fd: number): void {
    for (const w of [...this.waits]) {
      if (w.fd !== fd) continue;
      this.waits.delete(w);
      w.resolve(POLLIN);
    }
  }
}

interface FakeDomain {
  shutdownReason?: number;
  dying?: boolean;
}

/** libxl, played in JavaScript; see the module comment. */
class FakeLibxl implements LibxlLike {
  readonly options: LibxlOptions;
  readonly domains = new Map<number, FakeDomain>([[0, {}]]);
  readonly watches = new Set<LibxlDeathWatch & { enabled: boolean; reported: boolean }>();
  /** occurred* calls made while a hook of this libxl ran (real libxl aborts). */
  violations = 0;
  occurredFds = 0;
  occurredTimeouts = 0;
  inHook = 0;
  closed = false;
  #reg = 0;
  #xsReg: number | null = null;
  #timeouts = new Map<bigint, number>();
  #nextLib = 100n;
  #changed = false;
  #freed = Promise.withResolvers<void>();
  /** Make every occurredFd also re-arm a short timeout and modify the fd (stress). */
  churn = false;

  constructor(options: LibxlOptions) {
    this.options = options;
  }

  #hook<T>(fn: () => T): T {
    this.inHook++;
    try {
      return fn();
    } finally {
      this.inHook--;
    }
  }

  /** Calls a register hook as libxl does: a throw becomes ERROR_OSEVENT_REG_FAIL. */
  #register(fn: () => void): number {
    try {
      this.#hook(fn);
      return 0;
    } catch {
      return ERROR_OSEVENT_REG_FAIL;
    }
  }

  #registerTimeout(deadline: number): number {
    const reg = ++this.#reg;
    const lib = this.#nextLib++;
    const rc = this.#register(() => this.options.hooks.timeoutRegister(reg, deadline, lib));
    if (rc === 0) this.#timeouts.set(lib, reg);
    return rc;
  }

  enableDomainDeath(domid: number, forUser = 0n): LibxlDeathWatch {
    if (this.#xsReg === null) {
      const reg = ++this.#reg;
      const rc = this.#register(() => this.options.hooks.fdRegister(reg, XS_FD, POLLIN, 7n));
      if (rc !== 0) throw new LibxlError("libxl_evenable_domain_death", rc);
      this.#xsReg = reg;
    }
    const watch = { domid, forUser, enabled: true, reported: false };
    this.watches.add(watch);
    return watch;
  }

  disableDomainDeath(watch: LibxlDeathWatch): void {
    const w = watch as LibxlDeathWatch & { enabled: boolean };
    w.enabled = false;
    this.watches.delete(watch as never);
    if (this.watches.size === 0 && this.#xsReg !== null) {
      const reg = this.#xsReg;
      this.#xsReg = null;
      this.#hook(() => this.options.hooks.fdDeregister(reg, XS_FD));
    }
  }

  domainInfo(
    domid: number,
  ): Pick<LibxlDomainInfo, "dying" | "shutdown" | "shutdownReason"> | undefined {
    const d = this.domains.get(domid);
    if (!d) return undefined;
    return {
      dying: d.dying ?? false,
      shutdown: d.shutdownReason !== undefined,
      shutdownReason: d.shutdownReason,
    };
  }

  /** The outside world changes a domain; libxl learns it from the XenStore fd. */
  change(domid: number, next: FakeDomain | undefined, waiter: FakeWaiter): void {
    if (next) this.domains.set(domid, next);
    else this.domains.delete(domid);
    this.#changed = true;
    waiter.ready(XS_FD);
  }

  occurredFd(forLibxl: bigint, fd: number): void {
    if (this.inHook > 0) this.violations++;
    if (this.closed) return;
    assert.equal(forLibxl, 7n);
    assert.equal(fd, XS_FD);
    this.occurredFds++;
    if (this.churn) {
      this.#registerTimeout(Date.now() + 1);
      if (this.#xsReg !== null) {
        const reg = this.#xsReg;
        this.#hook(() => this.options.hooks.fdModify(reg, XS_FD, POLLIN));
      }
    }
    if (!this.#changed) return;
    this.#changed = false;
    // Like libxl's domain_death_xswatch_callback: one pass over the watched domains.
    for (const w of [...this.watches]) {
      const d = this.domains.get(w.domid);
      const events: LibxlEvent[] = [];
      const base = { domid: w.domid, domuuid: "", forUser: w.forUser };
      if (!d || d.dying) {
        events.push({ ...base, type: LIBXL_EVENT_TYPE.DOMAIN_DEATH });
        this.watches.delete(w);
      } else if (d.shutdownReason !== undefined && !w.reported) {
        w.reported = true;
        events.push({
          ...base,
          type: LIBXL_EVENT_TYPE.DOMAIN_SHUTDOWN,
          shutdownReason: d.shutdownReason,
        });
      }
      for (const e of events) queueMicrotask(() => this.options.onEvent?.(e));
    }
  }

  occurredTimeout(forLibxl: bigint): void {
    if (this.inHook > 0) this.violations++;
    if (this.closed) return;
    assert.ok(
      this.#timeouts.delete(forLibxl),
      `occurredTimeout for an unknown timeout ${forLibxl}`,
    );
    this.occurredTimeouts++;
  }

  /** A libxl-internal deadline far away, then "right away" (libxl_event.c time_deregister). */
  timeoutThenCancel(): void {
    const reg = ++this.#reg;
    const lib = this.#nextLib++;
    this.#register(() => this.options.hooks.timeoutRegister(reg, Date.now() + 3_600_000, lib));
    this.#timeouts.set(lib, reg);
    this.#hook(() => this.options.hooks.timeoutModify(reg));
  }

  disaster(message: string, errno: number): void {
    queueMicrotask(() => this.options.onDisaster?.(0, message, errno));
  }

  get registeredTimeouts(): number {
    return this.#timeouts.size;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.#xsReg !== null) {
      const reg = this.#xsReg;
      this.#xsReg = null;
      this.#hook(() => this.options.hooks.fdDeregister(reg, XS_FD));
    }
    this.#freed.resolve();
  }

  whenClosed(): Promise<void> {
    return this.#freed.promise;
  }
}

async function setup(admit?: (r: LibxlRegistration) => void) {
  const waiter = new FakeWaiter();
  let fake: FakeLibxl | undefined;
  const errors: unknown[] = [];
  const source = await openLibxlSource<FakeLibxl>({
    open: (options) => (fake = new FakeLibxl(options)),
    fdWaiter: waiter,
    admit,
    onError: (e) => errors.push(e),
  });
  const ctx = new EventContext({ domains: source });
  new BuiltinLoop(ctx, { name: "test", timers: REAL_TIMERS });
  return { waiter, fake: fake!, source, ctx, errors };
}

function nextEvent(ctx: EventContext, domid: number) {
  return ctx.eventWait(DOMAIN, { domid }, { signal: AbortSignal.timeout(5_000) });
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

describe("libxl source over a fake libxl", () => {
  it("SHUTDOWN with its reason, then DEATH; the watch and libxl's fd end with the death", async () => {
    const { waiter, fake, source, ctx, errors } = await setup();
    try {
      fake.domains.set(5, {});
      ctx.enableDomainDeath(5, "guest-5");
      assert.equal(source.host.stats().fds, 1, "libxl's XenStore fd registered through the hook");
      assert.equal(source.host.stats().waits, 1);
      fake.change(5, { shutdownReason: 3 }, waiter);
      const shut = await nextEvent(ctx, 5);
      assert.equal(shut.type, EventType.DOMAIN_SHUTDOWN);
      assert.ok(shut.type === EventType.DOMAIN_SHUTDOWN && shut.shutdownReasonName === "crash");
      assert.equal(shut.forUser, "guest-5");
      fake.change(5, undefined, waiter);
      const dead = await nextEvent(ctx, 5);
      assert.equal(dead.type, EventType.DOMAIN_DEATH);
      await tick();
      assert.equal(source.stats().watched, 0);
      assert.equal(source.host.stats().fds, 0, "fd deregistered once no watch is left");
      assert.deepEqual(source.stats(), {
        watched: 0,
        shutdownEvents: 1,
        deathEvents: 1,
        otherEvents: 0,
        disasters: 0,
        subscribers: 1,
      });
      assert.equal(fake.violations, 0);
      assert.ok(fake.occurredFds >= 2);
      assert.deepEqual(errors, []);
    } finally {
      ctx.close();
      await source.close();
    }
  });

  it("a domain already shut down or already gone is reported at enable time, once", async () => {
    const { waiter, fake, source, ctx } = await setup();
    try {
      fake.domains.set(6, { shutdownReason: 0 });
      ctx.enableDomainDeath(6);
      const first = await nextEvent(ctx, 6);
      assert.ok(
        first.type === EventType.DOMAIN_SHUTDOWN && first.shutdownReasonName === "poweroff",
      );
      fake.change(6, { shutdownReason: 0 }, waiter); // libxl reports it too: filtered
      await tick();
      assert.equal(ctx.eventCheck(DOMAIN, { domid: 6 }), null);
      ctx.enableDomainDeath(9); // never existed
      assert.equal((await nextEvent(ctx, 9)).type, EventType.DOMAIN_DEATH);
      assert.equal(fake.violations, 0);
    } finally {
      ctx.close();
      await source.close();
    }
  });

  it("a refused fd registration comes back as LibxlError ERROR_OSEVENT_REG_FAIL; nothing is enabled", async () => {
    const { source, ctx, fake } = await setup((r) => {
      if (r.kind === "fd") throw new Error("no more fds");
    });
    try {
      assert.throws(
        () => ctx.enableDomainDeath(0),
        (e: unknown) =>
          e instanceof LibxlError && e.code === "ERROR_OSEVENT_REG_FAIL" && e.rc === -12,
      );
      assert.equal(source.host.stats().refused, 1);
      assert.equal(source.host.stats().fds, 0);
      assert.equal(ctx.stats().enabled, 0);
      assert.equal(fake.watches.size, 0);
    } finally {
      ctx.close();
      await source.close();
    }
  });

  it("a timeout modified to fire now is reported promptly, exactly once, outside the hook", async () => {
    const { fake, source, ctx } = await setup();
    try {
      fake.timeoutThenCancel();
      assert.equal(source.host.stats().timeouts, 1);
      const started = Date.now();
      while (fake.registeredTimeouts > 0 && Date.now() - started < 2_000) await tick();
      assert.equal(fake.registeredTimeouts, 0);
      assert.ok(Date.now() - started < 1_000, "not at the old deadline");
      await tick();
      assert.equal(fake.occurredTimeouts, 1);
      assert.equal(source.host.stats().timeouts, 0);
      assert.equal(fake.violations, 0);
    } finally {
      ctx.close();
      await source.close();
    }
  });

  it("a libxl disaster becomes the context's DisasterError", async () => {
    const { fake, source, ctx } = await setup();
    try {
      fake.domains.set(3, {});
      ctx.enableDomainDeath(3);
      const waiting = nextEvent(ctx, 3);
      fake.disaster("cannot read the domain list", 5);
      await assert.rejects(
        waiting,
        (e: unknown) =>
          e instanceof DisasterError && /cannot read the domain list/.test(e.message) &&
          e.code === "EIO",
      );
      assert.equal(source.stats().disasters, 1);
    } finally {
      ctx.close();
      await source.close();
    }
  });

  it("closing the context disables every libxl watch; closing the source frees libxl and drops every wait", async () => {
    const { fake, source, ctx } = await setup();
    fake.domains.set(4, {});
    ctx.enableDomainDeath(4);
    ctx.enableDomainDeath(4, "twice");
    assert.equal(source.stats().watched, 1, "one libxl watch per domid");
    ctx.close();
    assert.equal(source.stats().watched, 0);
    assert.equal(fake.watches.size, 0);
    await source.close();
    assert.equal(fake.closed, true);
    assert.deepEqual(
      { fds: source.host.stats().fds, timeouts: source.host.stats().timeouts },
      { fds: 0, timeouts: 0 },
    );
  });

  it("property: whatever libxl does from inside occurredFd, no occurrence is reported inside a hook", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            domid: fc.integer({ min: 1, max: 4 }),
            op: fc.constantFrom("shutdown", "die", "cancel", "poke"),
          }),
          { minLength: 1, maxLength: 12 },
        ),
        async (steps) => {
          const { waiter, fake, source, ctx } = await setup();
          fake.churn = true;
          try {
            for (let d = 1; d <= 4; d++) {
              fake.domains.set(d, {});
              ctx.enableDomainDeath(d);
            }
            for (const s of steps) {
              if (s.op === "shutdown") fake.change(s.domid, { shutdownReason: 1 }, waiter);
              else if (s.op === "die") fake.change(s.domid, undefined, waiter);
              else if (s.op === "cancel") fake.timeoutThenCancel();
              else waiter.ready(XS_FD);
              await tick();
            }
            await tick();
            assert.equal(fake.violations, 0);
          } finally {
            ctx.close();
            await source.close();
          }
        },
      ),
      { numRuns: 15 },
    );
  });
});

describe("the callback primitive and libxenlight loading", () => {
  it("FfiRuntime.callback: qsort calls a JavaScript comparator synchronously", async () => {
    const libs = await loadLibc();
    const lib = libs.runtime.open(
      "libc.so.6",
      {
        qsort: { args: ["buffer", "u64", "u64", "pointer"], returns: "void" },
      } as const,
    );
    let calls = 0;
    const cmp = libs.runtime.callback({ args: ["pointer", "pointer"], returns: "i32" }, (a, b) => {
      calls++;
      const x = new Int32Array(libs.runtime.foreignBuffer(a!, 4))[0];
      const y = new Int32Array(libs.runtime.foreignBuffer(b!, 4))[0];
      return x - y;
    });
    try {
      const values = new Int32Array([5, -3, 9, 0, 2]);
      lib.symbols.qsort(values, 5n, 4n, cmp.pointer);
      assert.deepEqual([...values], [-3, 0, 2, 5, 9]);
      assert.ok(calls > 0);
    } finally {
      cmp.close();
      cmp.close();
    }
  });

  it("tries every release's libxenlight soname, 4.17 first", async () => {
    const { LIBRARIES } = await import("../ffi/symbols.ts");
    const names: readonly string[] = LIBRARIES.xenlight.sonames;
    assert.equal(names[0], "libxenlight.so.4.17");
    for (const minor of [16, 18, 19, 20, 21]) {
      assert.ok(names.includes(`libxenlight.so.4.${minor}`));
    }
    assert.equal(LIBRARIES.xenlight.install, "libxenmisc4.17");
    assert.ok(Object.keys(LIBXL).includes("libxl_osevent_register_hooks"));
  });

  it("a missing libxenlight names the path tried, the package and the variable", async () => {
    const child = startFixture("load_missing_library.ts", ["xenlight"], {
      XENCHAN_LIBXENLIGHT: "/nonexistent/libxenlight.so.4.17",
    });
    const result = JSON.parse(await firstLine(child));
    assert.equal(result.name, "LibraryNotFoundError");
    assert.deepEqual(result.tried, ["/nonexistent/libxenlight.so.4.17"]);
    assert.equal(result.install, "libxenmisc4.17");
    assert.equal(result.envVar, "XENCHAN_LIBXENLIGHT");
    assert.match(result.message, /apt-get install libxenmisc4\.17/);
  });

  it("off Xen, the context cannot be allocated: LibxlError libxl_ctx_alloc, nothing left behind", async () => {
    const hooks = {
      fdRegister() {},
      fdModify() {},
      fdDeregister() {},
      timeoutRegister() {},
      timeoutModify() {},
    };
    const outcome = await openLibxl({ hooks }).catch((e: Error) => e);
    if (!(outcome instanceof Error)) {
      outcome.close(); // a Xen dom0: it opens
      return;
    }
    assert.ok(outcome instanceof LibxlError, `expected LibxlError, got ${outcome}`);
    assert.equal(outcome.call, "libxl_ctx_alloc");
    assert.equal(outcome.code, "ERROR_FAIL");
    await assert.rejects(
      openLibxl({ hooks: { ...hooks, fdRegister: undefined } as never }),
      /hooks\.fdRegister/,
    );
  });
});
