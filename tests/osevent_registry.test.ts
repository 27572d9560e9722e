/**
 * The OS-event registry and both application styles, step by step:
 * poll-loop (beforepoll / afterpoll with the caller's now, buffer too small,
 * both fds forms), hooks (tokens, events 0, fire-now modify, occurredTimeout
 * implying deregistration, the reentrancy rule, registerHooks once), and the
 * two styles mixed. Pure TypeScript; no fds are polled here.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { XenUsageError } from "../core/errors.ts";
import {
  EventContext,
  eventMask,
  EventType,
  type OsEventHooks,
  type OsEventRef,
  OsEventRegError,
  type PendingPortSource,
  POLLERR,
  POLLIN,
  POLLOUT,
  type PollSlot,
} from "../plugins/osevent/mod.ts";
import { OsEventRegistry } from "../plugins/osevent/registry.ts";

/** A manual clock. */
function manualClock(start = 1000) {
  let t = start;
  return { now: () => t, set: (v: number) => t = v };
}

/** An in-memory "handle" with a fake fd: ports queued by post() are returned by tryPending. */
class FakeHandle implements PendingPortSource {
  closed = false;
  queue: number[] = [];
  unmasked: number[] = [];
  constructor(readonly fd: number) {}
  post(...ports: number[]) {
    this.queue.push(...ports);
  }
  tryPending(): number | null {
    return this.queue.shift() ?? null;
  }
  unmask(port: number): void {
    this.unmasked.push(port);
  }
}

type Call = [string, ...unknown[]];

/** Recording hooks whose tokens are strings "tok-N". */
function recordingHooks() {
  const calls: Call[] = [];
  const fds = new Map<string, { fd: number; events: number; ref: OsEventRef }>();
  const timeouts = new Map<string, { deadline: number; ref: OsEventRef }>();
  let n = 0;
  const hooks: OsEventHooks<string> = {
    fdRegister(fd, events, ref) {
      const token = `tok-${++n}`;
      calls.push(["fdRegister", fd, events, token]);
      fds.set(token, { fd, events, ref });
      return token;
    },
    fdModify(fd, token, events) {
      calls.push(["fdModify", fd, token, events]);
      const next = `tok-${++n}`;
      fds.set(next, { ...fds.get(token)!, events });
      fds.delete(token);
      return next; // a new token: must be the one passed back later
    },
    fdDeregister(fd, token) {
      calls.push(["fdDeregister", fd, token]);
      fds.delete(token);
    },
    timeoutRegister(deadline, ref) {
      const token = `tok-${++n}`;
      calls.push(["timeoutRegister", deadline, token]);
      timeouts.set(token, { deadline, ref });
      return token;
    },
    timeoutModify(token, deadline) {
      calls.push(["timeoutModify", token, deadline]);
      timeouts.get(token)!.deadline = deadline;
      return undefined;
    },
  };
  return { hooks, calls, fds, timeouts };
}

describe("poll-loop style", () => {
  it("beforepoll fills slots, merges events per fd, skips events 0, and afterpoll dispatches with the caller's now", () => {
    const clock = manualClock(1000);
    const reg = new OsEventRegistry(clock);
    const seen: string[] = [];
    reg.registerFd(5, POLLIN, (fd, rev) => seen.push(`a:${fd}:${rev}`));
    reg.registerFd(5, POLLOUT, (fd, rev) => seen.push(`b:${fd}:${rev}`));
    reg.registerFd(9, 0, () => seen.push("silent"));
    reg.registerTimeout(1250, () => seen.push("t1250"));
    reg.registerTimeout(1100, () => seen.push("t1100"));

    const fds: PollSlot[] = [{ fd: -1, events: 0, revents: 0 }, { fd: -1, events: 0, revents: 0 }];
    const r = reg.beforepoll(fds, -1, clock.now());
    assert.deepEqual(r, { needed: 1, full: false, timeout: 100 });
    assert.deepEqual(fds[0], { fd: 5, events: POLLIN | POLLOUT, revents: 0 });

    // the caller's own timeout wins when it is shorter
    assert.equal(reg.beforepoll(fds, 30, clock.now()).timeout, 30);

    // poll said: fd 5 writable; afterpoll with "now" before any deadline
    fds[0].revents = POLLOUT;
    reg.afterpoll(fds, 1050);
    assert.deepEqual(seen, ["b:5:4"]);

    // afterpoll at now = 1100 fires exactly the first timeout, with no fd ready
    reg.beforepoll(fds, -1, 1050);
    reg.afterpoll(fds, 1100);
    assert.deepEqual(seen, ["b:5:4", "t1100"]);
    // POLLERR goes to every registration on the fd; a late now fires the rest
    assert.equal(reg.beforepoll(fds, -1, 1100).timeout, 150);
    fds[0].revents = POLLERR;
    reg.afterpoll(fds, 5000);
    assert.deepEqual(seen, ["b:5:4", "t1100", `a:5:${POLLERR}`, `b:5:${POLLERR}`, "t1250"]);
    assert.equal(reg.beforepoll(fds, -1, 5000).timeout, -1);
  });

  it("reports the needed slot count when the array is too small, then works with a bigger one", () => {
    const reg = new OsEventRegistry(manualClock());
    for (const fd of [3, 4, 5]) reg.registerFd(fd, POLLIN, () => {});
    const small: PollSlot[] = [{ fd: 0, events: 0, revents: 0 }];
    const r1 = reg.beforepoll(small, -1, 0);
    assert.equal(r1.full, true);
    assert.equal(r1.needed, 3);
    const big: PollSlot[] = new Array(r1.needed);
    const r2 = reg.beforepoll(big, -1, 0);
    assert.equal(r2.full, false);
    assert.deepEqual(big.map((s) => s.fd).sort(), [3, 4, 5]);
    // the struct pollfd form: 8 bytes per slot
    assert.equal(reg.beforepoll(new Uint8Array(16), -1, 0).full, true);
    const raw = new Uint8Array(24);
    assert.equal(reg.beforepoll(raw, -1, 0).needed, 3);
    const view = new DataView(raw.buffer);
    assert.deepEqual([0, 1, 2].map((i) => view.getInt32(i * 8, true)).sort(), [3, 4, 5]);
    assert.equal(view.getInt16(4, true), POLLIN);
  });

  it("afterpoll with a struct pollfd array ignores slots whose fd changed since beforepoll", () => {
    const reg = new OsEventRegistry(manualClock());
    const seen: number[] = [];
    reg.registerFd(7, POLLIN, (fd) => seen.push(fd));
    reg.registerFd(8, POLLIN, (fd) => seen.push(fd));
    const raw = new Uint8Array(16);
    reg.beforepoll(raw, -1, 0);
    const view = new DataView(raw.buffer);
    view.setInt16(6, POLLIN, true);
    view.setInt16(14, POLLIN, true);
    view.setInt32(8, 99, true); // the application scribbled over slot 1
    reg.afterpoll(raw, 0);
    assert.deepEqual(seen, [view.getInt32(0, true)]);
  });

  it("a deregistered fd is not dispatched even if poll reported it", () => {
    const reg = new OsEventRegistry(manualClock());
    const seen: number[] = [];
    const w = reg.registerFd(7, POLLIN, (fd) => seen.push(fd));
    const fds: PollSlot[] = [{ fd: 0, events: 0, revents: 0 }];
    reg.beforepoll(fds, -1, 0);
    w.deregister();
    fds[0].revents = POLLIN;
    reg.afterpoll(fds, 0);
    assert.deepEqual(seen, []);
    assert.equal(reg.stats().fds, 0);
  });

  it("refuses a bad timeout with XenUsageError", () => {
    const reg = new OsEventRegistry(manualClock());
    assert.throws(() => reg.beforepoll([], -2, 0), XenUsageError);
    assert.throws(() => reg.beforepoll([], 1.5, 0), XenUsageError);
  });
});

describe("hooks style", () => {
  it("announces registrations, keeps and passes back the application's tokens, allows events 0", () => {
    const reg = new OsEventRegistry(manualClock(0));
    const early = reg.registerFd(3, POLLIN, () => {});
    const { hooks, calls } = recordingHooks();
    reg.registerHooks(hooks);
    assert.deepEqual(calls, [["fdRegister", 3, POLLIN, "tok-1"]]);
    const w = reg.registerFd(4, 0, () => {});
    assert.deepEqual(calls.at(-1), ["fdRegister", 4, 0, "tok-2"]);
    w.modify(POLLIN);
    assert.deepEqual(calls.at(-1), ["fdModify", 4, "tok-2", POLLIN]);
    w.modify(0);
    assert.deepEqual(
      calls.at(-1),
      ["fdModify", 4, "tok-3", 0],
      "the token returned by modify is passed next time",
    );
    w.deregister();
    assert.deepEqual(calls.at(-1), ["fdDeregister", 4, "tok-4"]);
    early.deregister();
    assert.deepEqual(calls.at(-1), ["fdDeregister", 3, "tok-1"]);
  });

  it("occurredFd dispatches to the registration; events 0 generates nothing; stale reports are ignored", () => {
    const reg = new OsEventRegistry(manualClock(0));
    const { hooks, fds } = recordingHooks();
    reg.registerHooks(hooks);
    const seen: number[] = [];
    const w = reg.registerFd(6, 0, (_fd, rev) => seen.push(rev));
    const [token, entry] = [...fds][0];
    reg.occurredFd(entry.ref, 6, 0, POLLIN);
    assert.deepEqual(seen, [], "events 0: no event");
    w.modify(POLLIN);
    const ref = fds.get([...fds.keys()][0])!.ref;
    assert.notEqual(token, [...fds.keys()][0]);
    reg.occurredFd(ref, 6, 0, POLLIN | POLLOUT);
    assert.deepEqual(seen, [POLLIN], "only the bits it asked for");
    assert.throws(() => reg.occurredFd(ref, 7, 0, POLLIN), XenUsageError, "fd mismatch");
    w.deregister();
    reg.occurredFd(ref, 6, 0, POLLIN);
    assert.deepEqual(seen, [POLLIN], "after deregistration a late report is ignored");
  });

  it("timeouts: modify is only ever 'fire now' (0), there is no deregister, occurredTimeout implies deregistration", () => {
    const reg = new OsEventRegistry(manualClock(0));
    const { hooks, calls, timeouts } = recordingHooks();
    reg.registerHooks(hooks);
    const fired: string[] = [];
    const t1 = reg.registerTimeout(500, () => fired.push("t1"));
    const t2 = reg.registerTimeout(900, () => fired.push("t2"));
    assert.deepEqual(calls, [["timeoutRegister", 500, "tok-1"], ["timeoutRegister", 900, "tok-2"]]);
    // the application's timer for t1 fires
    reg.occurredTimeout(timeouts.get("tok-1")!.ref);
    assert.deepEqual(fired, ["t1"]);
    assert.equal(t1.armed, false);
    assert.throws(() => reg.occurredTimeout(timeouts.get("tok-1")!.ref), /already occurred/);
    // xenchan cancels t2: it asks for "fire now" instead of deregistering
    t2.deregister();
    assert.deepEqual(calls.at(-1), ["timeoutModify", "tok-2", 0]);
    assert.equal(reg.stats().awaitingOccurred, 1);
    reg.occurredTimeout(timeouts.get("tok-2")!.ref);
    assert.deepEqual(fired, ["t1"], "a cancelled timeout's occurrence is ignored");
    assert.equal(reg.stats().awaitingOccurred, 0);
    assert.ok(!calls.some(([name]) => name === "timeoutDeregister"));
  });

  it("refuses occurredFd / occurredTimeout / afterpoll from inside a register hook (the reentrancy rule)", () => {
    const reg = new OsEventRegistry(manualClock(0));
    const refusals: unknown[] = [];
    let lastFdRef: OsEventRef | undefined;
    let lastTimeoutRef: OsEventRef | undefined;
    const hooks: OsEventHooks<number> = {
      fdRegister(fd, events, ref) {
        if (lastFdRef) {
          try {
            reg.occurredFd(lastFdRef, 1, events, POLLIN);
          } catch (e) {
            refusals.push(e);
          }
        }
        lastFdRef = ref;
        return fd;
      },
      fdModify: () => undefined,
      fdDeregister: () => {},
      timeoutRegister(_deadline, ref) {
        try {
          if (lastTimeoutRef) reg.occurredTimeout(lastTimeoutRef);
          reg.afterpoll([], 0);
        } catch (e) {
          refusals.push(e);
        }
        lastTimeoutRef = ref;
        return 1;
      },
      timeoutModify: () => undefined,
    };
    reg.registerHooks(hooks);
    const fired: number[] = [];
    reg.registerFd(1, POLLIN, (fd) => fired.push(fd));
    reg.registerFd(2, POLLIN, (fd) => fired.push(fd));
    reg.registerTimeout(0, () => fired.push(-1));
    reg.registerTimeout(0, () => fired.push(-2));
    assert.equal(refusals.length, 3);
    for (const e of refusals) {
      assert.ok(e instanceof XenUsageError);
      assert.match((e as Error).message, /from inside a register\/modify\/deregister hook/);
    }
    assert.deepEqual(fired, [], "nothing was dispatched reentrantly");
    // outside the hook the same calls work
    reg.occurredFd(lastFdRef!, 2, POLLIN, POLLIN);
    reg.occurredTimeout(lastTimeoutRef!);
    assert.deepEqual(fired, [2, -2]);
  });

  it("registerHooks only once; a failing register hook rolls back and reports OsEventRegError", () => {
    const reg = new OsEventRegistry(manualClock(0));
    reg.registerFd(1, POLLIN, () => {});
    reg.registerFd(2, POLLIN, () => {});
    reg.registerTimeout(50, () => {});
    const { hooks, calls } = recordingHooks();
    const failing: OsEventHooks<string> = {
      ...hooks,
      timeoutRegister() {
        throw new Error("no timers today");
      },
    };
    const error = (() => {
      try {
        reg.registerHooks(failing);
      } catch (e) {
        return e;
      }
    })();
    assert.ok(error instanceof OsEventRegError);
    assert.equal(error.operation, "timeoutRegister");
    assert.match(String((error.cause as Error).message), /no timers today/);
    assert.deepEqual(calls.map((c) => c[0]), [
      "fdRegister",
      "fdRegister",
      "fdDeregister",
      "fdDeregister",
    ]);
    assert.equal(reg.stats().hooked, false);
    // it failed, so registering (good) hooks is still possible, once
    reg.registerHooks(hooks);
    assert.throws(() => reg.registerHooks(hooks), /only once/);
    assert.throws(() => reg.registerHooks({} as OsEventHooks), XenUsageError);
  });

  it("a register hook that throws leaves nothing registered and the caller gets OsEventRegError", () => {
    const reg = new OsEventRegistry(manualClock(0));
    const { hooks } = recordingHooks();
    reg.registerHooks({
      ...hooks,
      fdRegister() {
        throw 17; // like libxl's "any positive int"
      },
    });
    assert.throws(
      () => reg.registerFd(3, POLLIN, () => {}),
      (e) => e instanceof OsEventRegError && e.cause === 17,
    );
    assert.equal(reg.stats().fdWatches, 0);
    assert.equal(reg.beforepoll([], -1, 0).needed, 0);
  });

  it("a modify hook that throws keeps the old events", () => {
    const reg = new OsEventRegistry(manualClock(0));
    const { hooks } = recordingHooks();
    reg.registerHooks({
      ...hooks,
      fdModify() {
        throw new Error("nope");
      },
    });
    const w = reg.registerFd(3, POLLIN, () => {});
    assert.throws(() => w.modify(POLLOUT), OsEventRegError);
    assert.equal(w.events, POLLIN);
  });
});

describe("mixing the styles", () => {
  it("beforepoll reports hooked registrations too; an occurrence reported both ways fires a timeout once", () => {
    const clock = manualClock(0);
    const reg = new OsEventRegistry(clock);
    const { hooks, calls, timeouts, fds: hookFds } = recordingHooks();
    reg.registerHooks(hooks);
    const seen: string[] = [];
    reg.registerFd(10, POLLIN, (fd) => seen.push(`fd${fd}`));
    reg.registerTimeout(100, () => seen.push("t"));
    const slots: PollSlot[] = [{ fd: 0, events: 0, revents: 0 }];
    assert.deepEqual(reg.beforepoll(slots, -1, 0), { needed: 1, full: false, timeout: 100 });
    // the poll loop sees the timeout first...
    reg.afterpoll(slots, 100);
    assert.deepEqual(seen, ["t"]);
    // ...so xenchan tells the hooks to fire theirs now, and ignores that occurrence
    const [token, t] = [...timeouts][0];
    assert.deepEqual(calls.at(-1), ["timeoutModify", token, 0]);
    reg.occurredTimeout(t.ref);
    assert.deepEqual(seen, ["t"]);
    // an fd event reported by the hooks and by poll: the (level-triggered) callback runs for each report
    const ref = [...hookFds.values()][0].ref;
    reg.occurredFd(ref, 10, POLLIN, POLLIN);
    slots[0].revents = POLLIN;
    reg.afterpoll(slots, 100);
    assert.deepEqual(seen, ["t", "fd10", "fd10"]);
  });

  it("an EventContext can be driven by its hooks and by beforepoll/afterpoll at once", () => {
    const clock = manualClock(0);
    const ctx = new EventContext({ clock });
    const { hooks, fds } = recordingHooks();
    ctx.registerHooks(hooks);
    const a = new FakeHandle(20);
    const b = new FakeHandle(21);
    ctx.watchEventChannels(a, { forUser: "a" });
    ctx.watchEventChannels(b, { forUser: "b" });
    const port = eventMask(EventType.EVTCHN_PORT);
    // handle a reported through the hooks
    a.post(1);
    const refA = [...fds.values()].find((f) => f.fd === 20)!.ref;
    ctx.occurredFd(refA, 20, POLLIN, POLLIN);
    // handle b reported through the poll loop
    b.post(2, 3);
    const slots: PollSlot[] = [];
    const r = ctx.beforepoll(slots);
    assert.equal(r.full, true);
    const grown: PollSlot[] = new Array(r.needed);
    ctx.beforepoll(grown);
    for (const s of grown) s.revents = s.fd === 21 ? POLLIN : 0;
    ctx.afterpoll(grown);
    const got = [
      ctx.eventCheck(port),
      ctx.eventCheck(port),
      ctx.eventCheck(port),
      ctx.eventCheck(port),
    ];
    assert.deepEqual(
      got.map((e) => e && e.type === EventType.EVTCHN_PORT ? [e.forUser, e.port] : null),
      [
        ["a", 1],
        ["b", 2],
        ["b", 3],
        null,
      ],
    );
    ctx.close();
    assert.equal(fds.size, 0, "close deregistered both fds through the hooks");
  });

  it("the context refuses occurred* from inside hooks and a second registerHooks", () => {
    const ctx = new EventContext({ clock: manualClock(0) });
    let refusal: unknown;
    let firstRef: OsEventRef | undefined;
    ctx.registerHooks({
      fdRegister(fd, _events, ref) {
        if (firstRef) {
          try {
            ctx.occurredFd(firstRef, 30, POLLIN, POLLIN);
          } catch (e) {
            refusal = e;
          }
        }
        firstRef ??= ref;
        return fd;
      },
      fdModify: () => undefined,
      fdDeregister: () => {},
      timeoutRegister: () => 0,
      timeoutModify: () => undefined,
    });
    ctx.watchEventChannels(new FakeHandle(30));
    ctx.watchEventChannels(new FakeHandle(31));
    assert.ok(refusal instanceof XenUsageError);
    assert.throws(() => ctx.registerHooks(recordingHooks().hooks), /only once per context/);
    ctx.close();
  });
});
