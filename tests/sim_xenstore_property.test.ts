/**
 * Property test: the simulated xenstored against a plain model (a Map of
 * path -> value and ordered children) over random sequences of WRITE,
 * READ, MKDIR, RM, DIRECTORY and transactions (committed, aborted, and
 * conflicting with a second connection), with a third connection's watches
 * checked event by event. Seeded; a few seconds.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { XsType } from "../core/xenstore/wire.ts";
import { SimHypervisor } from "../sim/mod.ts";
import { RawXs, settle } from "./helpers/xs_raw.ts";

const T = XsType;

interface Entry {
  value: string;
  children: string[];
}

/** The model: absolute path -> value and child names in creation order. */
class Model {
  constructor(readonly nodes: Map<string, Entry> = new Map()) {}

  clone(): Model {
    return new Model(
      new Map([...this.nodes].map(([k, v]) => [k, { value: v.value, children: [...v.children] }])),
    );
  }

  static parent(p: string): string {
    return p.slice(0, p.lastIndexOf("/")) || "/";
  }

  /** Creates `p` and its missing ancestors; returns whether `p` was new. */
  #ensure(p: string): boolean {
    if (this.nodes.has(p)) return false;
    const parent = Model.parent(p);
    this.#ensure(parent);
    this.nodes.get(parent)?.children.push(p.slice(p.lastIndexOf("/") + 1));
    this.nodes.set(p, { value: "", children: [] });
    return true;
  }

  /** Returns the fired (path, exact) list. */
  write(p: string, value: string): [string, boolean][] {
    this.#ensure(p);
    (this.nodes.get(p) as Entry).value = value;
    return [[p, false]];
  }

  mkdir(p: string): [string, boolean][] {
    return this.#ensure(p) ? [[p, false]] : [];
  }

  /** undefined = ENOENT. */
  rm(p: string): [string, boolean][] | undefined {
    if (!this.nodes.has(p)) return this.nodes.has(Model.parent(p)) ? [] : undefined;
    const fired: [string, boolean][] = [];
    const walk = (q: string) => {
      for (const c of (this.nodes.get(q) as Entry).children) walk(`${q}/${c}`);
      this.nodes.delete(q);
      fired.push([q, q !== p]);
    };
    walk(p);
    const parent = this.nodes.get(Model.parent(p)) as Entry;
    parent.children = parent.children.filter((c) => c !== p.slice(p.lastIndexOf("/") + 1));
    return fired;
  }
}

const WATCHES: readonly string[] = ["/p", "/p/a", "/p/a/b", "/p/b/c", "/q"];

function isChild(child: string, parent: string): boolean {
  return child === parent || child.startsWith(`${parent}/`);
}

/** The events the watcher must see for the fired list, in order. */
function expectedEvents(fired: readonly [string, boolean][]): string[] {
  const out: string[] = [];
  for (const [path, exact] of fired) {
    WATCHES.forEach((w, i) => {
      if (exact ? path === w : isChild(path, w)) out.push(`${path} w${i}`);
    });
  }
  return out;
}

type Simple =
  | { readonly k: "write"; readonly path: string; readonly value: string }
  | { readonly k: "read" | "mkdir" | "rm" | "dir"; readonly path: string };

type Op =
  | Simple
  | {
    readonly k: "tx";
    readonly first: string;
    readonly ops: readonly Simple[];
    readonly interfere: "none" | "conflict" | "elsewhere";
    readonly commit: boolean;
    readonly other: string;
  };

const path = fc
  .array(fc.constantFrom("a", "b", "c"), { minLength: 1, maxLength: 3 })
  .map((parts) => `/p/${parts.join("/")}`);
const value = fc.string({ unit: fc.constantFrom("x", "y", "z", "0"), maxLength: 4 });
const simple: fc.Arbitrary<Simple> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant("write" as const), path, value }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("read" as const), path }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("mkdir" as const), path }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("rm" as const), path }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("dir" as const), path }) },
);
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: simple },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant("tx" as const),
      first: path,
      ops: fc.array(simple, { maxLength: 6 }),
      interfere: fc.constantFrom("none" as const, "conflict" as const, "elsewhere" as const),
      commit: fc.boolean(),
      other: fc.constantFrom("a", "b", "c"),
    }),
  },
);

/** Runs one simple op on the store and the model; returns the fired list. */
async function step(
  c: RawXs,
  model: Model,
  o: Simple,
  tx?: number,
): Promise<[string, boolean][]> {
  const opt = { tx };
  switch (o.k) {
    case "write":
      await c.ok(T.WRITE, [o.path, o.value], { tx, trailingNul: false });
      return model.write(o.path, o.value);
    case "read": {
      const e = model.nodes.get(o.path);
      if (e) assert.equal(await c.ok(T.READ, [o.path], opt), e.value);
      else assert.equal(await c.err(T.READ, [o.path], opt), "ENOENT");
      return [];
    }
    case "mkdir":
      await c.ok(T.MKDIR, [o.path], opt);
      return model.mkdir(o.path);
    case "rm": {
      const fired = model.rm(o.path);
      if (fired) await c.ok(T.RM, [o.path], opt);
      else assert.equal(await c.err(T.RM, [o.path], opt), "ENOENT");
      return fired ?? [];
    }
    case "dir": {
      const e = model.nodes.get(o.path);
      if (e) {
        assert.equal(
          await c.ok(T.DIRECTORY, [o.path], opt),
          e.children.map((n) => `${n}\0`).join(""),
        );
      } else assert.equal(await c.err(T.DIRECTORY, [o.path], opt), "ENOENT");
      return [];
    }
  }
}

async function run(ops: readonly Op[]): Promise<void> {
  const hv = new SimHypervisor();
  const a = new RawXs(hv.xenstore.connect(0));
  const b = new RawXs(hv.xenstore.connect(0));
  const w = new RawXs(hv.xenstore.connect(0));
  let model = new Model();
  model.nodes.set("/", { value: "", children: [] });
  for (const p of ["/p", "/q"]) {
    await a.ok(T.MKDIR, [p]);
    model.mkdir(p);
  }
  for (const [i, p] of WATCHES.entries()) await w.ok(T.WATCH, [p, `w${i}`]);
  await settle();
  w.take();
  const events = () => w.take().map((e) => `${e.path} ${e.token}`);

  for (const o of ops) {
    if (o.k !== "tx") {
      const fired = await step(a, model, o);
      await settle();
      assert.deepEqual(events(), expectedEvents(fired), JSON.stringify(o));
      continue;
    }
    const tx = await a.start();
    const view = model.clone();
    const existedAtStart = new Set(view.nodes.keys());
    const queued = new Map<string, boolean>(); // path -> exact
    const firstRead: Simple = { k: "read", path: o.first };
    for (const inner of [firstRead, ...o.ops]) {
      for (const [p, exact] of await step(a, view, inner, tx)) {
        queued.set(p, queued.has(p) ? (queued.get(p) as boolean) && exact : exact);
      }
    }
    await settle();
    assert.deepEqual(events(), [], "no events before the commit");
    let interference: [string, boolean][] = [];
    if (o.interfere === "conflict") {
      await b.ok(T.WRITE, [o.first, "B"], { trailingNul: false });
      interference = model.write(o.first, "B");
    } else if (o.interfere === "elsewhere") {
      await b.ok(T.WRITE, [`/q/${o.other}`, "B"], { trailingNul: false });
      interference = model.write(`/q/${o.other}`, "B");
    }
    await settle();
    assert.deepEqual(events(), expectedEvents(interference));
    if (!o.commit) {
      await a.ok(T.TRANSACTION_END, ["F"], { tx });
    } else if (o.interfere === "conflict") {
      assert.equal(await a.err(T.TRANSACTION_END, ["T"], { tx }), "EAGAIN");
    } else {
      await a.ok(T.TRANSACTION_END, ["T"], { tx });
      if (o.interfere === "elsewhere") view.write(`/q/${o.other}`, "B");
      // A node created and removed inside the transaction fires nothing at commit.
      const fired = [...queued].filter(([p]) => existedAtStart.has(p) || view.nodes.has(p));
      model = view;
      await settle();
      assert.deepEqual(events().sort(), expectedEvents(fired).sort(), JSON.stringify(o));
      continue;
    }
    await settle();
    assert.deepEqual(events(), []);
  }

  // The whole store below / matches the model (values and child order).
  for (const [p, e] of model.nodes) {
    const node = hv.xenstore.inspect(p);
    assert.ok(node, `${p} missing`);
    assert.equal(new TextDecoder().decode(node.value), p === "/" ? "" : e.value, p);
    const children = p === "/"
      ? node.children.filter((c) => c !== "tool" && c !== "local")
      : node.children;
    assert.deepEqual(children, e.children, p);
  }
  const ours = hv.xenstore.paths().filter((p) =>
    p === "/p" || p.startsWith("/p/") || p.startsWith("/q")
  );
  assert.deepEqual(ours.sort(), [...model.nodes.keys()].filter((p) => p !== "/").sort());
  assert.equal(hv.xenstore.stats().transactions, 0);
}

describe("sim xenstore: store vs model (fast-check)", () => {
  it("random operations, transactions and watches agree with the model", {
    timeout: 120_000,
  }, async () => {
    await fc.assert(fc.asyncProperty(fc.array(op, { maxLength: 30 }), run), {
      seed: 0x5eed_0011,
      numRuns: 120,
    });
  });
});
