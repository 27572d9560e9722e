/**
 * The doorbell memory-region model: QEMU ioeventfd semantics (a matching
 * write signals the notifier and the I/O callback is NOT called; any other
 * write reaches the callback exactly as if no doorbell existed), the
 * kernel's collision rule for registrations, and bad input. Pure JavaScript
 * (SimNotifier): no permissions needed.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  type AccessSize,
  type DoorbellNotifier,
  type DoorbellSize,
  IoeventfdError,
  MemoryRegion,
  SimNotifier,
} from "../plugins/doorbell/mod.ts";
import { ClosedHandleError, XenUsageError } from "../core/errors.ts";

interface Access {
  readonly addr: number;
  readonly data: bigint;
  readonly size: AccessSize;
}

/** A region of `size` bytes whose write callback records every call. */
function recordingRegion(size = 64): { region: MemoryRegion; writes: Access[] } {
  const writes: Access[] = [];
  const region = new MemoryRegion("test", size, {
    write: (addr, data, size) => writes.push({ addr, data, size }),
  });
  return { region, writes };
}

describe("doorbell region: dispatch", () => {
  it("a matching write signals the notifier and does NOT call the write callback", () => {
    const { region, writes } = recordingRegion();
    const n = new SimNotifier();
    region.addEventfd(12, 4, true, 0x10002n, n);
    assert.equal(region.write(12, 0x10002n, 4), "notified");
    assert.equal(n.count, 1n);
    assert.deepEqual(writes, []);
    assert.equal(region.write(12, 0x10002n, 4), "notified");
    assert.equal(n.read(), 2n, "each hit adds one");
    assert.deepEqual(writes, []);
  });

  it("with matchData, a write of another value goes to the callback exactly as written", () => {
    const { region, writes } = recordingRegion();
    const n = new SimNotifier();
    region.addEventfd(12, 4, true, 0x10002n, n);
    assert.equal(region.write(12, 0x10003n, 4), "callback");
    assert.deepEqual(writes, [{ addr: 12, data: 0x10003n, size: 4 }]);
    assert.equal(n.count, 0n);
  });

  it("the same value with the wrong access size does not match and goes to the callback", () => {
    const { region, writes } = recordingRegion();
    const n = new SimNotifier();
    region.addEventfd(12, 4, true, 2n, n);
    assert.equal(region.write(12, 2n, 2), "callback");
    assert.equal(region.write(12, 2n, 8), "callback");
    assert.equal(region.write(12, 2n, 1), "callback");
    assert.deepEqual(writes.map((w) => w.size), [2, 8, 1]);
    assert.equal(n.count, 0n);
  });

  it("a write next to a doorbell (other address, overlapping bytes) goes to the callback", () => {
    const { region, writes } = recordingRegion();
    const n = new SimNotifier();
    region.addEventfd(12, 4, false, 0n, n);
    assert.equal(region.write(13, 0n, 1), "callback");
    assert.equal(
      region.write(8, 0n, 8),
      "callback",
      "an 8-byte write covering the doorbell bytes is not a hit",
    );
    assert.equal(region.write(16, 0n, 4), "callback");
    assert.equal(writes.length, 3);
    assert.equal(n.count, 0n);
  });

  it("without matchData, any value of the registered size matches; other sizes do not", () => {
    const { region, writes } = recordingRegion();
    const n = new SimNotifier();
    region.addEventfd(0, 2, false, 0n, n);
    for (const value of [0n, 1n, 0xffffn, 0x1234n]) {
      assert.equal(region.write(0, value, 2), "notified");
    }
    assert.equal(n.read(), 4n);
    assert.equal(region.write(0, 5n, 4), "callback");
    assert.deepEqual(writes, [{ addr: 0, data: 5n, size: 4 }]);
  });

  it("without matchData the data argument is ignored (and delEventfd ignores it too)", () => {
    const { region } = recordingRegion();
    const n = new SimNotifier();
    region.addEventfd(0, 4, false, 99n, n);
    assert.equal(region.ioeventfds()[0].data, 0n);
    assert.equal(region.write(0, 7n, 4), "notified");
    region.delEventfd(0, 4, false, 0n, n);
    assert.equal(region.registrations, 0);
  });

  it("size 0 is the any-length wildcard: every access size at that address matches", () => {
    const { region, writes } = recordingRegion();
    const n = new SimNotifier();
    region.addEventfd(8, 0, false, 0n, n);
    for (const size of [1, 2, 4, 8] as const) assert.equal(region.write(8, 1n, size), "notified");
    assert.equal(n.read(), 4n);
    assert.equal(region.write(9, 1n, 1), "callback");
    assert.equal(writes.length, 1);
  });

  it("several values at one address each reach their own notifier; a 64-bit value matches", () => {
    const { region, writes } = recordingRegion();
    const ns = [new SimNotifier(), new SimNotifier(), new SimNotifier()];
    region.addEventfd(0, 8, true, 0n, ns[0]);
    region.addEventfd(0, 8, true, 0xfffffffffffffffen, ns[1]);
    region.addEventfd(0, 4, true, 0n, ns[2]); // same data, other size: no collision
    assert.equal(region.write(0, 0xfffffffffffffffen, 8), "notified");
    assert.equal(region.write(0, 0n, 4), "notified");
    assert.equal(region.write(0, 0n, 8), "notified");
    assert.deepEqual(ns.map((n) => n.count), [1n, 1n, 1n]);
    assert.equal(region.write(0, 0xffffffffffffffffn, 8), "callback");
    assert.equal(writes.length, 1);
  });

  it("reads never hit a doorbell; they go to the read callback, masked to the access size", () => {
    const reads: number[] = [];
    const region = new MemoryRegion("r", 16, {
      write: () => assert.fail("no write expected"),
      read: (addr) => {
        reads.push(addr);
        return 0x1122334455667788n;
      },
    });
    const n = new SimNotifier();
    region.addEventfd(0, 0, false, 0n, n);
    assert.deepEqual(region.read(0, 2), { result: "ok", value: 0x7788n });
    assert.deepEqual(region.read(8, 8), { result: "ok", value: 0x1122334455667788n });
    assert.deepEqual(reads, [0, 8]);
    assert.equal(n.count, 0n);
    const quiet = new MemoryRegion("no-read", 4, { write() {} });
    assert.deepEqual(quiet.read(0, 4), { result: "ok", value: 0n });
  });

  it("out-of-region accesses are decode errors: nothing is called", () => {
    const { region, writes } = recordingRegion(16);
    const n = new SimNotifier();
    region.addEventfd(12, 4, false, 0n, n);
    assert.equal(region.write(16, 0n, 1), "decode-error");
    assert.equal(region.write(14, 0n, 4), "decode-error", "an access straddling the end");
    assert.equal(region.write(2 ** 40, 0n, 8), "decode-error");
    assert.deepEqual(region.read(13, 4), { result: "decode-error", value: 0n });
    assert.deepEqual(writes, []);
    assert.equal(n.count, 0n);
    assert.equal(region.write(12, 0n, 4), "notified", "the last in-region bytes still work");
  });

  it("match() reports what a write would do without doing it", () => {
    const { region, writes } = recordingRegion();
    const n = new SimNotifier();
    region.addEventfd(4, 4, true, 7n, n);
    assert.equal(region.match(4, 7n, 4)?.notifier, n);
    assert.equal(region.match(4, 8n, 4), null);
    assert.equal(region.match(400, 7n, 4), null);
    assert.equal(n.count, 0n);
    assert.deepEqual(writes, []);
  });

  it("errors from the notifier or the callback propagate; a failed hit never falls back to the callback", () => {
    const { region, writes } = recordingRegion();
    const n = new SimNotifier();
    region.addEventfd(0, 4, true, 1n, n);
    n.close();
    assert.throws(() => region.write(0, 1n, 4), ClosedHandleError);
    assert.deepEqual(writes, []);
    const failing = new MemoryRegion("f", 8, {
      write: () => {
        throw new RangeError("device says no");
      },
    });
    assert.throws(() => failing.write(0, 1n, 4), RangeError);
  });

  it("callbacks may re-register and write again; changes apply to later writes", () => {
    const n = new SimNotifier();
    const seen: bigint[] = [];
    const region: MemoryRegion = new MemoryRegion("reentrant", 16, {
      write: (addr, data, size) => {
        seen.push(data);
        if (data === 1n) {
          region.addEventfd(addr, size, true, data, n); // arm the doorbell for next time
          assert.equal(
            region.write(addr, data, size),
            "notified",
            "a nested write sees the new registration",
          );
        }
      },
    });
    assert.equal(region.write(0, 1n, 4), "callback");
    assert.equal(region.write(0, 1n, 4), "notified");
    assert.deepEqual(seen, [1n]);
    assert.equal(n.count, 2n);
  });
});

describe("doorbell region: registrations", () => {
  it("an exact duplicate is refused (reason duplicate), whatever the notifier", () => {
    const { region } = recordingRegion();
    const a = new SimNotifier();
    region.addEventfd(12, 4, true, 5n, a);
    for (const notifier of [a, new SimNotifier()]) {
      const error = captureError(() => region.addEventfd(12, 4, true, 5n, notifier));
      assert.ok(error instanceof IoeventfdError);
      assert.ok(error instanceof XenUsageError);
      assert.equal(error.reason, "duplicate");
      assert.equal(error.existing?.notifier, a);
      assert.match(error.message, /EEXIST/);
    }
    assert.equal(region.registrations, 1);
  });

  it("follows the kernel collision check: wildcard data or length overlaps, distinct data does not", () => {
    const { region } = recordingRegion();
    const n = new SimNotifier();
    region.addEventfd(12, 4, true, 5n, n);
    const cases: [DoorbellSize, boolean, bigint][] = [
      [4, false, 0n], // a no-datamatch registration covers data 5
      [0, false, 0n], // size 0 covers every length
    ];
    for (const [size, matchData, data] of cases) {
      const error = captureError(() =>
        region.addEventfd(12, size, matchData, data, new SimNotifier())
      );
      assert.ok(error instanceof IoeventfdError, `size ${size} matchData ${matchData}`);
      assert.equal(error.reason, "overlap");
    }
    region.addEventfd(12, 4, true, 6n, n); // other data: allowed
    region.addEventfd(12, 2, true, 5n, n); // other size: allowed
    region.addEventfd(13, 1, false, 0n, n); // other address, even inside the same bytes: allowed
    assert.equal(region.registrations, 4);

    const other = recordingRegion().region;
    other.addEventfd(0, 0, false, 0n, n);
    for (const size of [1, 2, 4, 8] as const) {
      assert.equal(conflictReason(() => other.addEventfd(0, size, true, 1n, n)), "overlap");
    }
    const wild = recordingRegion().region;
    wild.addEventfd(0, 4, false, 0n, n);
    assert.equal(conflictReason(() => wild.addEventfd(0, 4, true, 9n, n)), "overlap");
  });

  it("delEventfd removes exactly one registration; later writes go to the callback", () => {
    const { region, writes } = recordingRegion();
    const a = new SimNotifier();
    const b = new SimNotifier();
    region.addEventfd(12, 4, true, 1n, a);
    region.addEventfd(12, 4, true, 2n, b);
    region.delEventfd(12, 4, true, 1n, a);
    assert.equal(region.write(12, 1n, 4), "callback");
    assert.equal(region.write(12, 2n, 4), "notified");
    assert.deepEqual(writes, [{ addr: 12, data: 1n, size: 4 }]);
    assert.equal(a.count, 0n);
    assert.equal(b.count, 1n);
    region.addEventfd(12, 4, true, 1n, b); // the key is free again
    assert.deepEqual(region.ioeventfds().map((r) => r.data), [2n, 1n]);
  });

  it("deleting an unknown registration is refused (reason not-found); nothing changes", () => {
    const { region } = recordingRegion();
    const a = new SimNotifier();
    region.addEventfd(12, 4, true, 1n, a);
    const unknown: [number, DoorbellSize, boolean, bigint, DoorbellNotifier][] = [
      [12, 4, true, 2n, a],
      [12, 2, true, 1n, a],
      [12, 4, false, 0n, a],
      [8, 4, true, 1n, a],
      [12, 4, true, 1n, new SimNotifier()], // same key, other notifier
    ];
    for (const args of unknown) {
      const error = captureError(() => region.delEventfd(...args));
      assert.ok(error instanceof IoeventfdError);
      assert.equal(error.reason, "not-found");
    }
    const other = captureError(() => region.delEventfd(12, 4, true, 1n, new SimNotifier()));
    assert.ok(other instanceof IoeventfdError);
    assert.match(other.message, /different notifier/);
    region.delEventfd(12, 4, true, 1n, a);
    assert.equal(conflictReason(() => region.delEventfd(12, 4, true, 1n, a)), "not-found", "twice");
    assert.equal(region.registrations, 0);
  });

  it("refuses malformed registrations with XenUsageError and changes nothing", () => {
    const { region } = recordingRegion(16);
    const n = new SimNotifier();
    const bad: [string, () => void][] = [
      ["negative address", () => region.addEventfd(-4, 4, true, 0n, n)],
      ["fractional address", () => region.addEventfd(1.5, 4, true, 0n, n)],
      ["negative size", () => region.addEventfd(0, -4 as DoorbellSize, true, 0n, n)],
      ["size 3", () => region.addEventfd(0, 3 as DoorbellSize, true, 0n, n)],
      ["size 16", () => region.addEventfd(0, 16 as DoorbellSize, true, 0n, n)],
      ["outside the region", () => region.addEventfd(16, 1, true, 0n, n)],
      ["straddling the end", () => region.addEventfd(14, 4, true, 0n, n)],
      ["size 0 outside", () => region.addEventfd(16, 0, false, 0n, n)],
      ["size 0 with matchData", () => region.addEventfd(0, 0, true, 0n, n)],
      ["data wider than size", () => region.addEventfd(0, 2, true, 0x10000n, n)],
      ["negative data", () => region.addEventfd(0, 4, true, -1n, n)],
      ["data above 2^64-1", () => region.addEventfd(0, 8, true, 1n << 64n, n)],
      ["non-boolean matchData", () => region.addEventfd(0, 4, 1 as unknown as boolean, 0n, n)],
      ["no notifier", () => region.addEventfd(0, 4, true, 0n, {} as DoorbellNotifier)],
      [
        "null notifier",
        () => region.addEventfd(0, 4, true, 0n, null as unknown as DoorbellNotifier),
      ],
      ["bad delete", () => region.delEventfd(0, 5 as DoorbellSize, true, 0n, n)],
    ];
    for (const [what, call] of bad) {
      const error = captureError(call);
      assert.ok(error instanceof XenUsageError, `${what}: ${error}`);
      assert.ok(!(error instanceof IoeventfdError), `${what} is malformed, not a conflict`);
    }
    assert.equal(region.registrations, 0);
  });

  it("refuses malformed accesses and regions with XenUsageError before calling anything", () => {
    const { region, writes } = recordingRegion(16);
    const bad: [string, () => unknown][] = [
      ["negative address", () => region.write(-1, 0n, 4)],
      ["NaN address", () => region.write(NaN, 0n, 4)],
      ["size 3", () => region.write(0, 0n, 3 as AccessSize)],
      ["size 0", () => region.write(0, 0n, 0 as AccessSize)],
      ["negative size", () => region.write(0, 0n, -4 as AccessSize)],
      ["value wider than access", () => region.write(0, 0x100n, 1)],
      ["negative value", () => region.write(0, -1n, 4)],
      ["fractional value", () => region.write(0, 1.5, 4)],
      ["string value", () => region.write(0, "1" as unknown as bigint, 4)],
      ["read size 5", () => region.read(0, 5 as AccessSize)],
      ["read negative address", () => region.read(-8, 4)],
      ["region size 0", () => new MemoryRegion("z", 0, { write() {} })],
      ["region size -1", () => new MemoryRegion("z", -1, { write() {} })],
      ["region without write", () => new MemoryRegion("z", 4, {} as never)],
    ];
    for (const [what, call] of bad) assert.throws(call, XenUsageError, what);
    assert.deepEqual(writes, []);
    const weird = new MemoryRegion("w", 4, { write() {}, read: () => -1n });
    assert.throws(
      () => weird.read(0, 4),
      XenUsageError,
      "a read callback returning a negative value",
    );
  });
});

describe("doorbell region: property", () => {
  it("dispatch equals the reference rule, at most one notifier per write, non-matches reach the callback unchanged", () => {
    const sizes = [0, 1, 2, 4, 8] as const;
    const regArb = fc.record({
      addr: fc.nat({ max: 7 }),
      size: fc.constantFrom(...sizes),
      matchData: fc.boolean(),
      data: fc.bigInt({ min: 0n, max: 3n }),
    });
    const writeArb = fc.record({
      addr: fc.nat({ max: 9 }),
      size: fc.constantFrom(1, 2, 4, 8) as fc.Arbitrary<AccessSize>,
      data: fc.bigInt({ min: 0n, max: 3n }),
    });
    fc.assert(
      fc.property(
        fc.array(regArb, { maxLength: 12 }),
        fc.array(writeArb, { maxLength: 30 }),
        (regs, accesses) => {
          const { region, writes } = recordingRegion(16);
          const accepted: {
            addr: number;
            size: number;
            matchData: boolean;
            data: bigint;
            n: SimNotifier;
          }[] = [];
          for (const r of regs) {
            const n = new SimNotifier();
            const expectCollision = accepted.some((a) =>
              a.addr === r.addr &&
              (a.size === 0 || r.size === 0 ||
                (a.size === r.size && (!a.matchData || !r.matchData || a.data === r.data)))
            );
            const malformed = r.size === 0 && r.matchData;
            const error = captureError(() =>
              region.addEventfd(r.addr, r.size, r.matchData, r.data, n)
            );
            if (malformed) {
              assert.ok(error instanceof XenUsageError);
            } else if (expectCollision) {
              assert.ok(error instanceof IoeventfdError);
            } else {
              assert.equal(error, undefined);
              accepted.push({ ...r, n });
            }
          }
          for (const w of accesses) {
            const before = writes.length;
            const hits = accepted.filter((a) =>
              a.addr === w.addr && (a.size === 0 || a.size === w.size) &&
              (!a.matchData || a.data === w.data)
            );
            assert.ok(hits.length <= 1, "the collision rule leaves at most one match");
            const counts = accepted.map((a) => a.n.count);
            const result = region.write(w.addr, w.data, w.size);
            if (w.addr + w.size > 16) {
              assert.equal(result, "decode-error");
              assert.equal(writes.length, before);
            } else if (hits.length === 1) {
              assert.equal(result, "notified");
              assert.equal(writes.length, before, "callback not called on a hit");
            } else {
              assert.equal(result, "callback");
              assert.deepEqual(writes.slice(before), [{
                addr: w.addr,
                data: w.data,
                size: w.size,
              }]);
            }
            accepted.forEach((a, i) =>
              assert.equal(a.n.count, counts[i] + (hits[0] === a ? 1n : 0n))
            );
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

function captureError(call: () => unknown): unknown {
  try {
    call();
  } catch (error) {
    return error;
  }
  return undefined;
}

/** The IoeventfdError reason `call` throws (fails the test if it throws anything else). */
function conflictReason(call: () => unknown): string {
  const error = captureError(call);
  assert.ok(error instanceof IoeventfdError, `expected IoeventfdError, got ${error}`);
  return error.reason;
}
