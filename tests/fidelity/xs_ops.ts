/**
 * The XenStore operations of the differential fidelity engine and their
 * seeded generator (the "dom0 xenstore" lane; the event channel and grant
 * operations are in ops.ts).
 *
 * Like ops.ts, an operation names its operands by slot: `c` picks one of
 * the connections the sequence opened so far, `t` one of its transactions,
 * `p` one of the scratch paths (XS_PATHS, below the sequence's scratch
 * node), so every subsequence of a sequence is a valid program and a
 * divergence can be shrunk by deleting operations (compare.ts shrink).
 *
 * Operations: every request a dom0 client makes through the public API
 * (read, write, mkdir, rm, directory, get and set permissions), directly or
 * inside a transaction (`t` present: the operation runs on the
 * transaction's connection), transaction start and end (commit or abort;
 * conflicts come from other connections writing what a transaction
 * touched, so EAGAIN at commit is generated, not forced), watch and unwatch
 * with explicit tokens (duplicates give EEXIST, unknown ones ENOENT), and
 * IS_DOMAIN_INTRODUCED.
 *
 * @module
 */
import { SeededRandom } from "./ops.ts";

/** One XenStore operation. `t`, when present, runs it inside that transaction. */
export type XsOp =
  | { readonly kind: "xsOpen" }
  | { readonly kind: "xsClose"; readonly c: number }
  | { readonly kind: "xsRead"; readonly c: number; readonly p: number; readonly t?: number }
  | {
    readonly kind: "xsWrite";
    readonly c: number;
    readonly p: number;
    readonly v: number;
    readonly t?: number;
  }
  | { readonly kind: "xsMkdir"; readonly c: number; readonly p: number; readonly t?: number }
  | { readonly kind: "xsRm"; readonly c: number; readonly p: number; readonly t?: number }
  | { readonly kind: "xsDir"; readonly c: number; readonly p: number; readonly t?: number }
  | { readonly kind: "xsGetPerms"; readonly c: number; readonly p: number; readonly t?: number }
  | {
    readonly kind: "xsSetPerms";
    readonly c: number;
    readonly p: number;
    /** [domid, access letter] entries; entry 0 is the owner and default. */
    readonly perms: readonly (readonly [number, "n" | "r" | "w" | "b"])[];
    readonly t?: number;
  }
  | { readonly kind: "txStart"; readonly c: number }
  | { readonly kind: "txEnd"; readonly t: number; readonly commit: boolean }
  | { readonly kind: "watch"; readonly c: number; readonly p: number; readonly token: string }
  | { readonly kind: "unwatch"; readonly c: number; readonly p: number; readonly token: string }
  | { readonly kind: "introduced"; readonly c: number; readonly domid: number };

/** The kind names of XsOp. */
export type XsOpKind = XsOp["kind"];

/** Generator weights per XenStore operation kind. */
export type XsWeights = Partial<Record<XsOpKind, number>>;

/**
 * Scratch paths, relative to the sequence's scratch node (run: xs_run.ts
 * scratchPath): the node itself, children, grandchildren and a
 * great-grandchild, so rm of a subtree, parents created by write and
 * watches on ancestors and descendants all occur. Watches may also name
 * the special paths (WATCH_SPECIAL).
 */
export const XS_PATHS: readonly string[] = ["", "/a", "/b", "/a/x", "/a/y", "/b/x", "/a/x/z", "/c"];

/** Special watch paths (only their registration event fires in a guest-less dom0). */
export const WATCH_SPECIAL: readonly string[] = ["@releaseDomain", "@introduceDomain"];

/** Values written: empty, short, with a space, and a 300-byte one. */
export const XS_VALUES: readonly string[] = ["", "v1", "v2", "hello world", "x".repeat(300)];

/** Watch tokens: few, so duplicate (path, token) registrations happen. */
export const XS_TOKENS: readonly string[] = ["A", "B", "C"];

/** The dom0 xenstore lane's mix. */
export const DOM0_XENSTORE_WEIGHTS: XsWeights = {
  xsOpen: 2,
  xsClose: 1,
  xsRead: 10,
  xsWrite: 14,
  xsMkdir: 5,
  xsRm: 6,
  xsDir: 7,
  xsGetPerms: 4,
  xsSetPerms: 3,
  txStart: 5,
  txEnd: 5,
  watch: 6,
  unwatch: 3,
  introduced: 1,
};

/** Probability that a node operation runs inside a transaction. */
const IN_TX = 0.35;

const slot = (rnd: SeededRandom): number => rnd.int(0, 63);

/** A path slot: mostly the scratch paths, for watches sometimes a special path. */
function pathSlot(rnd: SeededRandom, special = false): number {
  if (special && rnd.chance(0.08)) return XS_PATHS.length + rnd.int(0, WATCH_SPECIAL.length - 1);
  return rnd.int(0, XS_PATHS.length - 1);
}

function maybeTx(rnd: SeededRandom): { t?: number } {
  return rnd.chance(IN_TX) ? { t: slot(rnd) } : {};
}

const ACCESS: readonly ("n" | "r" | "w" | "b")[] = ["n", "r", "w", "b"];

function drawXsOp(rnd: SeededRandom, kind: XsOpKind): XsOp {
  switch (kind) {
    case "xsOpen":
      return { kind };
    case "xsClose":
      return { kind, c: slot(rnd) };
    case "xsRead":
    case "xsMkdir":
    case "xsRm":
    case "xsDir":
    case "xsGetPerms":
      return { kind, c: slot(rnd), p: pathSlot(rnd), ...maybeTx(rnd) };
    case "xsWrite":
      return {
        kind,
        c: slot(rnd),
        p: pathSlot(rnd),
        v: rnd.int(0, XS_VALUES.length - 1),
        ...maybeTx(rnd),
      };
    case "xsSetPerms": {
      const n = rnd.int(1, 3);
      const perms = Array.from(
        { length: n },
        (_, i) =>
          [i === 0 ? rnd.pick([0, 0, 1, 7]) : rnd.pick([0, 1, 2, 7]), rnd.pick(ACCESS)] as const,
      );
      return { kind, c: slot(rnd), p: pathSlot(rnd), perms, ...maybeTx(rnd) };
    }
    case "txStart":
      return { kind, c: slot(rnd) };
    case "txEnd":
      return { kind, t: slot(rnd), commit: rnd.chance(0.75) };
    case "watch":
    case "unwatch":
      return { kind, c: slot(rnd), p: pathSlot(rnd, true), token: rnd.pick(XS_TOKENS) };
    case "introduced":
      return { kind, c: slot(rnd), domid: rnd.pick([0, 1, 7]) };
  }
}

/** Generation parameters of one XenStore sequence. */
export interface XsGenerateOptions {
  readonly seed: number;
  /** Number of operations (the opening ones included); at least 3. */
  readonly length: number;
  readonly weights: XsWeights;
}

/**
 * Generates one XenStore sequence: it opens two connections and makes the
 * scratch node (so later slots resolve and rm never reaches above it), then
 * draws `length - 3` operations by weight. Pure: the same options give the
 * same list. Throws RangeError for a length below 3.
 */
export function generateXsSequence(options: XsGenerateOptions): XsOp[] {
  const { seed, length, weights } = options;
  if (!(Number.isInteger(length) && length >= 3)) {
    throw new RangeError(`length must be an integer >= 3, got ${length}`);
  }
  const rnd = new SeededRandom(seed);
  const ops: XsOp[] = [{ kind: "xsOpen" }, { kind: "xsOpen" }, { kind: "xsMkdir", c: 0, p: 0 }];
  const table = Object.fromEntries(
    Object.entries(weights).filter(([, w]) => (w ?? 0) > 0),
  ) as Record<XsOpKind, number>;
  while (ops.length < length) ops.push(drawXsOp(rnd, rnd.weighted(table)));
  return ops;
}
