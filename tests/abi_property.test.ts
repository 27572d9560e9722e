/**
 * Property tests (fast-check) for the three ABIs against a plain reference
 * model (a set of pending ports and a set of masked ports). Over random
 * sequences of set / clear / mask / unmask / rebind / priority / scan:
 *  - no masked port and no non-pending port is ever delivered;
 *  - each pending is delivered at most once (delivery clears it);
 *  - no pending unmasked port is lost: scanning exactly the vCPUs whose
 *    evtchn_upcall_pending is set delivers every deliverable port;
 *  - 2L, 3L and FIFO deliver the same set as the model at every drain.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { type AbiKind, createAbi, type EventAbi, type WordBits } from "../plugins/abi/mod.ts";

const VCPUS = 3;

type PortOp = { op: "set" | "clear" | "mask" | "unmask"; p: number };
type Cmd =
  | PortOp
  | { op: "bind"; p: number; v: number }
  | { op: "prio"; p: number; q: number }
  | { op: "scan"; v: number; budget: number; reraise: boolean; inner: PortOp | null }
  | { op: "drain" };

function cmdArb(nPorts: number, partial: boolean): fc.Arbitrary<Cmd> {
  // Most commands hit the first four pool entries (spread over different
  // words) so that set / unmask / mask / scan sequences on one port are common.
  const p = fc.oneof(
    { arbitrary: fc.nat({ max: 3 }), weight: 3 },
    { arbitrary: fc.nat({ max: nPorts - 1 }), weight: 1 },
  );
  const v = fc.oneof({ arbitrary: fc.constant(0), weight: 2 }, {
    arbitrary: fc.nat({ max: VCPUS - 1 }),
    weight: 1,
  });
  const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });
  return fc.oneof(
    w(5, fc.record({ op: fc.constant("set" as const), p })),
    w(4, fc.record({ op: fc.constant("unmask" as const), p })),
    w(2, fc.record({ op: fc.constant("mask" as const), p })),
    w(1, fc.record({ op: fc.constant("clear" as const), p })),
    w(1, fc.record({ op: fc.constant("bind" as const), p, v })),
    w(1, fc.record({ op: fc.constant("prio" as const), p, q: fc.nat({ max: 15 }) })),
    w(1, fc.constant({ op: "drain" as const })),
    w(
      partial ? 3 : 0,
      fc.record({
        op: fc.constant("scan" as const),
        v,
        budget: fc.oneof(
          fc.constant(0),
          fc.integer({ min: 1, max: 5 }),
          fc.integer({ min: 1, max: 5 }),
        ),
        reraise: fc.boolean(),
        // each handler call also masks, unmasks, clears or raises a port
        inner: fc.option(
          fc.record({
            op: fc.constantFrom(
              "set" as const,
              "clear" as const,
              "mask" as const,
              "unmask" as const,
            ),
            p,
          }),
        ),
      }),
    ),
  ) as fc.Arbitrary<Cmd>;
}

/** The reference model: which ports are pending and which are masked. */
class Model {
  readonly pending = new Set<number>();
  readonly masked: Set<number>;
  constructor(pool: readonly number[], initiallyMasked: boolean) {
    this.masked = new Set(initiallyMasked ? pool : []);
  }
  deliverable(): number[] {
    return [...this.pending].filter((p) => !this.masked.has(p)).sort((a, b) => a - b);
  }
}

/**
 * Runs `cmds` on `abi` against the model. Returns the sorted set delivered at
 * each drain (including a final one). Throws (assert) on any violation.
 */
function runAgainstModel(
  abi: EventAbi,
  pool: readonly number[],
  cmds: readonly Cmd[],
  initiallyMasked: boolean,
): number[][] {
  const model = new Model(pool, initiallyMasked);
  const drains: number[][] = [];
  const bitmap = abi.kind !== "fifo";
  // A second delivery of one pending finds it no longer pending in the model.
  const deliverCheck = (v: number) => (port: number) => {
    assert.ok(model.pending.has(port), `${abi.kind}: delivered non-pending port ${port}`);
    assert.ok(!model.masked.has(port), `${abi.kind}: delivered masked port ${port}`);
    if (bitmap) {
      assert.equal(abi.vcpuOf(port), v, `${abi.kind}: port ${port} delivered on wrong vCPU`);
    }
    assert.equal(abi.isPending(port), false, "PENDING must be cleared before deliver");
    model.pending.delete(port);
  };
  const drain = () => {
    const expected = model.deliverable();
    const got: number[] = [];
    for (let v = 0; v < VCPUS; v++) {
      if (!abi.upcallPending(v)) continue; // only vCPUs that were told to look
      const check = deliverCheck(v);
      abi.scan(v, (port) => {
        assert.ok(!got.includes(port), `${abi.kind}: port ${port} delivered twice in one drain`);
        check(port);
        got.push(port);
      });
    }
    got.sort((a, b) => a - b);
    assert.deepEqual(got, expected, `${abi.kind}: drain delivered ${got}, model says ${expected}`);
    for (let v = 0; v < VCPUS; v++) assert.equal(abi.upcallPending(v), false);
    drains.push(got);
  };
  const apply = (c: PortOp) => {
    const port = pool[c.p];
    switch (c.op) {
      case "set":
        abi.setPending(port);
        model.pending.add(port);
        break;
      case "clear":
        abi.clearPending(port);
        model.pending.delete(port);
        break;
      case "mask":
        abi.mask(port);
        model.masked.add(port);
        break;
      case "unmask": {
        const made = model.masked.has(port) && model.pending.has(port);
        assert.equal(
          abi.unmask(port).deliverable,
          made,
          `${abi.kind}: unmask(${port}).deliverable`,
        );
        model.masked.delete(port);
        break;
      }
    }
  };
  for (const c of cmds) {
    switch (c.op) {
      case "set":
      case "clear":
      case "mask":
      case "unmask":
        apply(c);
        break;
      case "bind":
        abi.bindToVcpu(pool[c.p], c.v);
        break;
      case "prio":
        if (abi.kind === "fifo") abi.setPriority(pool[c.p], c.q);
        else assert.throws(() => abi.setPriority(pool[c.p], c.q), /ENOSYS/);
        break;
      case "scan": {
        const check = deliverCheck(c.v);
        let n = 0;
        const done = abi.scan(c.v, (port) => {
          check(port);
          n++;
          if (c.inner) apply(c.inner);
          if (c.reraise) { // a busy port: notified again while being handled
            abi.setPending(port);
            model.pending.add(port);
          }
        }, c.budget);
        assert.equal(done, n);
        assert.ok(n <= c.budget);
        break;
      }
      case "drain":
        drain();
        break;
    }
    if ("p" in c) {
      const port = pool[c.p];
      assert.equal(abi.isPending(port), model.pending.has(port), `${abi.kind}: isPending(${port})`);
      assert.equal(abi.isMasked(port), model.masked.has(port), `${abi.kind}: isMasked(${port})`);
    }
  }
  drain();
  return drains;
}

// The first four (most used) ports: three share a word, one is far away.
const POOL_64 = [2, 33, 40, 4095, 1, 3, 31, 32, 63, 64, 65, 127, 128, 1000, 2047, 2048];
const POOL_32 = [2, 17, 20, 1023, 1, 3, 31, 32, 33, 63, 64, 65, 127, 128, 500, 1000];
const KINDS: readonly AbiKind[] = ["2l", "3l", "fifo"];

function agreement(wordBits: WordBits, pool: readonly number[]): void {
  fc.assert(
    fc.property(
      fc.array(cmdArb(pool.length, false), { maxLength: 40, size: "max" }),
      fc.boolean(),
      (cmds, masked) => {
        const results = KINDS.map((k) =>
          runAgainstModel(
            createAbi(k, { wordBits, vcpus: VCPUS, initiallyMasked: masked }),
            pool,
            cmds,
            masked,
          )
        );
        assert.deepEqual(results[1], results[0], "3L and 2L disagree");
        assert.deepEqual(results[2], results[0], "FIFO and 2L disagree");
      },
    ),
    { numRuns: 150 },
  );
}

function partialScans(kind: AbiKind, wordBits: WordBits, pool: readonly number[]): void {
  fc.assert(
    fc.property(
      fc.array(cmdArb(pool.length, true), { maxLength: 60, size: "max" }),
      fc.boolean(),
      (cmds, masked) => {
        runAgainstModel(
          createAbi(kind, { wordBits, vcpus: VCPUS, initiallyMasked: masked }),
          pool,
          cmds,
          masked,
        );
      },
    ),
    { numRuns: 120 },
  );
}

describe("ABI properties against a reference model", () => {
  it("2L, 3L and FIFO agree with the model at every drain (64-bit words)", () =>
    agreement(64, POOL_64));
  it("2L, 3L and FIFO agree with the model at every drain (32-bit words)", () =>
    agreement(32, POOL_32));

  for (const kind of KINDS) {
    it(`${kind}: budgets, re-raised ports and rebinding never deliver masked, duplicate or lost events`, () => {
      partialScans(kind, 64, POOL_64);
      partialScans(kind, 32, POOL_32);
    });
  }

  it("3L at the edges of its 262,144 / 32,768 port space", () => {
    partialScans("3l", 64, [4095, 4097, 131071, 262143, 1, 63, 64, 4096, 65536, 200000]);
    partialScans("3l", 32, [31, 1025, 16384, 32767, 1, 32, 1023, 1024]);
  });

  it("FIFO at the edges of its 131,072 port space", () => {
    partialScans("fifo", 64, [1023, 1025, 65536, 131071, 1, 1024, 65535, 131070]);
  });
});
