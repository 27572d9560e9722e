/**
 * The operations of the differential fidelity engine and their seeded
 * generator.
 *
 * An operation names what to call on the public API (mod.ts) with operands
 * that are resolved at run time against what the sequence has produced so
 * far: `{ slot: i }` picks the i-th (modulo the count) port, grant ref,
 * share, mapping or handle the run has seen, a literal picks a fixed number.
 * So the same operation list is a valid program on every backend, and any
 * subsequence of it is too, which is what lets a divergence be shrunk by
 * deleting operations (shrink.ts).
 *
 * Lanes plug in by the weights they give the operation kinds (lanes.ts
 * LaneSpec): the dom0 loopback lane uses the event channel and grant kinds;
 * the dom0 kill lane adds the peer kinds (a second dom0 process, killed
 * mid-sequence); the domU lane uses the peer kinds for the guest agent and
 * the GUEST domid operand. A kind a lane gives no weight never draws a
 * random number, so adding kinds leaves every other lane's sequences as
 * they were. XenStore operations are in xs_ops.ts.
 *
 * @module
 */

/** An operand: a slot into what the run produced so far, or a literal value. */
export type Operand = { readonly slot: number } | { readonly lit: number };

/** One event channel operation. `h` is a slot into the event channel handles. */
export type EventOp =
  | { readonly kind: "evtOpen" }
  | { readonly kind: "evtClose"; readonly h: number }
  | { readonly kind: "bindUnbound"; readonly h: number; readonly domid: number }
  | {
    readonly kind: "bindInterdomain";
    readonly h: number;
    readonly domid: number;
    readonly port: Operand;
  }
  | { readonly kind: "bindVirq"; readonly h: number; readonly virq: number }
  | { readonly kind: "notify"; readonly h: number; readonly port: Operand }
  | { readonly kind: "unmask"; readonly h: number; readonly port: Operand }
  | { readonly kind: "unbind"; readonly h: number; readonly port: Operand }
  | { readonly kind: "restrict"; readonly h: number; readonly domid: number };

/** Unmap notification operands of the *_notify variants (either, both or neither). */
export interface NotifyOperands {
  readonly offset?: number;
  readonly port?: Operand;
}

/** One side of a grant copy: a granted ref or a local buffer. */
export type CopySide =
  | { readonly ref: Operand; readonly domid: number; readonly offset: number }
  | { readonly local: number };

/** One grant operation. `s`/`t` are slots into share/table handles, `r` into shares/mappings. */
export type GrantOp =
  | { readonly kind: "shrOpen" }
  | { readonly kind: "shrClose"; readonly s: number }
  | {
    readonly kind: "share";
    readonly s: number;
    readonly domid: number;
    readonly count: number;
    readonly writable: boolean;
  }
  | {
    readonly kind: "shareNotify";
    readonly s: number;
    readonly domid: number;
    readonly writable: boolean;
    readonly notify: NotifyOperands;
  }
  | { readonly kind: "unshare"; readonly r: number }
  | { readonly kind: "tblOpen" }
  | { readonly kind: "tblClose"; readonly t: number }
  | {
    readonly kind: "map";
    readonly t: number;
    readonly domid: number;
    readonly ref: Operand;
    readonly writable: boolean;
  }
  | {
    readonly kind: "mapRefs";
    readonly t: number;
    readonly grants: readonly { readonly domid: number; readonly ref: Operand }[];
    readonly writable: boolean;
  }
  | {
    readonly kind: "mapDomain";
    readonly t: number;
    readonly domid: number;
    readonly refs: readonly Operand[];
    readonly writable: boolean;
  }
  | {
    readonly kind: "mapNotify";
    readonly t: number;
    readonly domid: number;
    readonly ref: Operand;
    readonly writable: boolean;
    readonly notify: NotifyOperands;
  }
  | { readonly kind: "unmap"; readonly r: number }
  | { readonly kind: "setMaxGrants"; readonly t: number; readonly count: number }
  | { readonly kind: "copy"; readonly t: number; readonly segments: readonly CopySegmentOp[] }
  | {
    readonly kind: "poke";
    readonly side: "share" | "map";
    readonly r: number;
    readonly page: number;
    readonly offset: number;
    readonly value: number;
  }
  | {
    readonly kind: "peek";
    readonly side: "share" | "map";
    readonly r: number;
    readonly page: number;
    readonly offset: number;
  };

/** One segment of a copy operation; `len` bytes. */
export interface CopySegmentOp {
  readonly source: CopySide;
  readonly dest: CopySide;
  readonly len: number;
}

/**
 * One operation of the second dom0 process (the peer: a child process in
 * dom0 on real Xen, a second simulated dom0 process on the simulator),
 * which the "dom0 kill" lane kills mid-sequence. Port and ref operands
 * resolve against the same lists as the first process's (both processes
 * are in dom0: one port space, one grant table); `m` is a slot into the
 * peer's mappings.
 */
export type PeerOp =
  | { readonly kind: "peerSpawn" }
  | { readonly kind: "peerKill" }
  | { readonly kind: "peerBindUnbound"; readonly domid: number }
  | { readonly kind: "peerBindInterdomain"; readonly port: Operand }
  | { readonly kind: "peerNotify"; readonly port: Operand }
  | { readonly kind: "peerUnbind"; readonly port: Operand }
  | { readonly kind: "peerDrain" }
  | {
    readonly kind: "peerMap";
    readonly ref: Operand;
    readonly writable: boolean;
    readonly notify?: NotifyOperands;
  }
  | {
    readonly kind: "peerPoke";
    readonly m: number;
    readonly offset: number;
    readonly value: number;
  }
  | { readonly kind: "peerPeek"; readonly m: number; readonly offset: number }
  | { readonly kind: "peerRelease"; readonly m: number }
  /** The peer shares one page with dom0 (domU lane: dom0 maps it with domid GUEST). */
  | { readonly kind: "peerShare"; readonly writable: boolean; readonly notify?: NotifyOperands }
  /** The peer closes every handle (its kernel cleans up as on close()). */
  | { readonly kind: "peerClose" };

/** Every operation kind of the event channel and grant lanes. */
export type Op = EventOp | GrantOp | PeerOp;

/** The kind names of Op. */
export type OpKind = Op["kind"];

/**
 * A small deterministic PRNG (mulberry32): the same seed gives the same
 * sequence on every runtime. Never throws.
 */
export class SeededRandom {
  #state: number;

  /** Seeds the generator; any 32-bit integer. */
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in lo..hi inclusive. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** One element of a non-empty list. */
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }

  /** A key of `weights`, with probability proportional to its weight. */
  weighted<K extends string>(weights: Readonly<Record<K, number>>): K {
    const keys = Object.keys(weights) as K[];
    let total = 0;
    for (const k of keys) total += weights[k];
    let x = this.next() * total;
    for (const k of keys) {
      x -= weights[k];
      if (x < 0) return k;
    }
    return keys[keys.length - 1];
  }
}

/**
 * Literal port numbers the generator mixes in: the kernel's own low ports,
 * the edges of the first FIFO event array page (1024 event words), of the
 * 2-level limit (4096) and of the FIFO limit (2^17), and the uint32 maximum.
 */
export const LITERAL_PORTS: readonly number[] = [
  0,
  1,
  2,
  3,
  7,
  1023,
  1024,
  4095,
  4096,
  131071,
  131072,
  0xffffffff,
];

/**
 * Literal grant refs: only values no sharer can ever be handed, so a literal
 * never names a ref one backend granted and the other did not (the ref
 * numbers a sharer gets depend on the kernel-wide free list, see run.ts):
 * 0 and 7, the first and last of Linux's reserved refs
 * (GNTTAB_NR_RESERVED_ENTRIES = 8, never on the free list), and 99999, beyond
 * the largest grant table Xen 4.17 gives a domain by default
 * (gnttab_max_frames 64 x 512 v1 entries = 32768).
 */
export const LITERAL_REFS: readonly number[] = [0, 7, 99999];

/** The ref a ref slot resolves to before the sequence was handed any (never granted). */
export const NO_REF = 99999;

/** VIRQs the generator binds: every defined one, NR_VIRQS and one far beyond. */
export const VIRQS: readonly number[] = [
  0,
  1,
  2,
  3,
  4,
  5,
  6,
  7,
  8,
  9,
  10,
  11,
  12,
  13,
  14,
  15,
  16,
  17,
  18,
  19,
  20,
  21,
  22,
  23,
  24,
  255,
];

/** Generator weights per operation kind (0 or absent: never generated). */
export type OpWeights = Partial<Record<OpKind, number>>;

/** The dom0 loopback lane's mix: event channels slightly ahead of grants. */
export const DOM0_LOOPBACK_WEIGHTS: OpWeights = {
  evtOpen: 2,
  evtClose: 1,
  bindUnbound: 12,
  bindInterdomain: 12,
  bindVirq: 4,
  notify: 12,
  unmask: 8,
  unbind: 8,
  restrict: 1,
  shrOpen: 1.5,
  shrClose: 0.7,
  share: 7,
  shareNotify: 3,
  unshare: 5,
  tblOpen: 1.5,
  tblClose: 0.7,
  map: 5,
  mapRefs: 2,
  mapDomain: 2,
  mapNotify: 3,
  unmap: 5,
  setMaxGrants: 1,
  copy: 3,
  poke: 3,
  peek: 4,
};

/**
 * The dom0 kill lane's mix: the loopback operations, fewer, and the peer's,
 * which binds to and maps what the first process made, and is killed
 * (SIGKILL) while it holds them.
 */
export const DOM0_KILL_WEIGHTS: OpWeights = {
  evtOpen: 1,
  bindUnbound: 8,
  bindInterdomain: 6,
  notify: 8,
  unmask: 4,
  unbind: 3,
  shrOpen: 0.5,
  share: 5,
  shareNotify: 3,
  unshare: 2,
  tblOpen: 0.5,
  mapNotify: 2,
  unmap: 2,
  poke: 3,
  peek: 6,
  peerSpawn: 3,
  peerKill: 1.2,
  peerBindUnbound: 5,
  peerBindInterdomain: 8,
  peerNotify: 6,
  peerUnbind: 2,
  peerDrain: 5,
  peerMap: 7,
  peerPoke: 4,
  peerPeek: 3,
  peerRelease: 2,
};

/** Domids used as the peer: mostly dom0 (loopback), sometimes absent or reserved ones. */
const PEER_DOMIDS: readonly number[] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 7, 0x7ff0];

/**
 * The domid operand that names the guest of the domU lane (resolved at run
 * time to the guest's domid, which differs between boots and from the
 * simulator's; the trace writes it `G`).
 */
export const GUEST = -1;

/**
 * The domU lane's peer domids: mostly the guest, sometimes dom0 itself and
 * a domid no harness guest ever gets (guests are numbered from 1 upwards,
 * so small literals could name the guest).
 */
export const DOMU_PEER_DOMIDS: readonly number[] = [GUEST, GUEST, GUEST, GUEST, GUEST, 0, 0x7fe0];

/**
 * The domU lane's mix: dom0's operations towards the guest, the guest
 * agent's (binds to dom0's ports, maps of dom0's grants, shares of its own
 * pages that dom0 maps), rare kills (an agent restart costs seconds in a
 * guest under TCG), and fewer peer operations than dom0's (each is a
 * XenStore round trip to the guest).
 */
export const DOMU_WEIGHTS: OpWeights = {
  evtOpen: 1,
  bindUnbound: 8,
  bindInterdomain: 8,
  notify: 8,
  unmask: 4,
  unbind: 3,
  shrOpen: 0.5,
  share: 5,
  shareNotify: 2,
  unshare: 2,
  tblOpen: 0.5,
  map: 4,
  mapNotify: 3,
  unmap: 3,
  poke: 3,
  peek: 6,
  peerSpawn: 0.5,
  peerKill: 0.08,
  peerClose: 0.3,
  peerBindUnbound: 2.5,
  peerBindInterdomain: 5,
  peerNotify: 3,
  peerUnbind: 1,
  peerDrain: 2.5,
  peerMap: 4,
  peerShare: 3,
  peerPoke: 2,
  peerPeek: 2,
  peerRelease: 1,
};

/** The peer domids of the sequence being generated (generateSequence sets it). */
let peerPool: readonly number[] = PEER_DOMIDS;

/** Generation parameters of one sequence. */
export interface GenerateOptions {
  readonly seed: number;
  /** Number of operations (the opening ones included). */
  readonly length: number;
  readonly weights: OpWeights;
  /** The peer domids dom0's operations draw from (default: the loopback lane's). */
  readonly peerDomids?: readonly number[];
}

/**
 * Generates one operation sequence from a seed: it starts by opening two
 * event channel handles, one share handle and one table handle (so later
 * slots resolve), and, in a lane with peer operations, starts the peer;
 * then draws operations by weight up to `length`. Pure: the
 * same options give the same list. Throws RangeError for a length below 4.
 */
export function generateSequence(options: GenerateOptions): Op[] {
  const { seed, length, weights } = options;
  if (!(Number.isInteger(length) && length >= 4)) {
    throw new RangeError(`length must be an integer >= 4, got ${length}`);
  }
  const rnd = new SeededRandom(seed);
  const ops: Op[] = [{ kind: "evtOpen" }, { kind: "evtOpen" }, { kind: "shrOpen" }, {
    kind: "tblOpen",
  }];
  // A lane with a peer starts it fifth (its generator then draws length - 5).
  if ((weights.peerSpawn ?? 0) > 0) ops.push({ kind: "peerSpawn" });
  const table = Object.fromEntries(
    Object.entries(weights).filter(([, w]) => (w ?? 0) > 0),
  ) as Record<OpKind, number>;
  peerPool = options.peerDomids ?? PEER_DOMIDS;
  try {
    while (ops.length < length) ops.push(drawOp(rnd, rnd.weighted(table)));
  } finally {
    peerPool = PEER_DOMIDS;
  }
  return ops;
}

const slot = (rnd: SeededRandom): number => rnd.int(0, 63);

function portOperand(rnd: SeededRandom): Operand {
  return rnd.chance(0.85) ? { slot: slot(rnd) } : { lit: rnd.pick(LITERAL_PORTS) };
}

function refOperand(rnd: SeededRandom): Operand {
  return rnd.chance(0.9) ? { slot: slot(rnd) } : { lit: rnd.pick(LITERAL_REFS) };
}

function peer(rnd: SeededRandom): number {
  return rnd.pick(peerPool);
}

function notifyOperands(rnd: SeededRandom): NotifyOperands {
  const which = rnd.int(0, 3);
  const offset = which & 1 ? rnd.pick([0, 1, 100, 4095]) : undefined;
  const port = which & 2 ? portOperand(rnd) : undefined;
  return { offset, port };
}

function copySide(rnd: SeededRandom, len: number): CopySide {
  if (rnd.chance(0.5)) return { local: len };
  const offset = rnd.chance(0.85) ? rnd.pick([0, 16, 2048]) : rnd.pick([4090, 4096]);
  return { ref: refOperand(rnd), domid: rnd.chance(0.9) ? 0 : rnd.pick([1, 7]), offset };
}

function drawOp(rnd: SeededRandom, kind: OpKind): Op {
  switch (kind) {
    case "peerSpawn":
    case "peerKill":
    case "peerDrain":
    case "peerClose":
      return { kind };
    case "peerBindUnbound": {
      const domid = rnd.chance(0.9) ? 0 : rnd.pick([1, 0x7ff0]);
      return { kind, domid: peerPool === PEER_DOMIDS || domid === 0 ? domid : 0x7ff0 };
    }
    case "peerShare":
      return {
        kind,
        writable: rnd.chance(0.8),
        notify: rnd.chance(0.4) ? notifyOperands(rnd) : undefined,
      };
    case "peerBindInterdomain":
    case "peerNotify":
    case "peerUnbind":
      return { kind, port: portOperand(rnd) };
    case "peerMap":
      return {
        kind,
        ref: refOperand(rnd),
        writable: rnd.chance(0.8),
        notify: rnd.chance(0.7) ? notifyOperands(rnd) : undefined,
      };
    case "peerPoke":
      return {
        kind,
        m: slot(rnd),
        offset: rnd.pick([0, 1, 100, 4088]),
        value: rnd.int(1, 255),
      };
    case "peerPeek":
      return { kind, m: slot(rnd), offset: rnd.pick([0, 1, 100, 4088]) };
    case "peerRelease":
      return { kind, m: slot(rnd) };
    case "evtOpen":
    case "shrOpen":
    case "tblOpen":
      return { kind };
    case "evtClose":
      return { kind, h: slot(rnd) };
    case "bindUnbound":
      return { kind, h: slot(rnd), domid: peer(rnd) };
    case "bindInterdomain":
      return { kind, h: slot(rnd), domid: peer(rnd), port: portOperand(rnd) };
    case "bindVirq":
      return { kind, h: slot(rnd), virq: rnd.pick(VIRQS) };
    case "notify":
    case "unmask":
    case "unbind":
      return { kind, h: slot(rnd), port: portOperand(rnd) };
    case "restrict":
      return { kind, h: slot(rnd), domid: rnd.pick([0, 1, 5, 0x7ff0]) };
    case "shrClose":
      return { kind, s: slot(rnd) };
    case "share":
      return {
        kind,
        s: slot(rnd),
        domid: peer(rnd),
        count: rnd.pick([1, 1, 1, 2, 3, 0]),
        writable: rnd.chance(0.8),
      };
    case "shareNotify":
      return {
        kind,
        s: slot(rnd),
        domid: peer(rnd),
        writable: rnd.chance(0.8),
        notify: notifyOperands(rnd),
      };
    case "unshare":
    case "unmap":
      return { kind, r: slot(rnd) };
    case "tblClose":
      return { kind, t: slot(rnd) };
    case "map":
      return {
        kind,
        t: slot(rnd),
        domid: peer(rnd),
        ref: refOperand(rnd),
        writable: rnd.chance(0.8),
      };
    case "mapRefs": {
      const n = rnd.int(1, 3);
      const grants = Array.from({ length: n }, () => ({ domid: peer(rnd), ref: refOperand(rnd) }));
      return { kind, t: slot(rnd), grants, writable: rnd.chance(0.8) };
    }
    case "mapDomain": {
      const n = rnd.int(1, 3);
      const refs = Array.from({ length: n }, () => refOperand(rnd));
      return { kind, t: slot(rnd), domid: peer(rnd), refs, writable: rnd.chance(0.8) };
    }
    case "mapNotify":
      return {
        kind,
        t: slot(rnd),
        domid: peer(rnd),
        ref: refOperand(rnd),
        writable: rnd.chance(0.7),
        notify: notifyOperands(rnd),
      };
    case "setMaxGrants":
      return { kind, t: slot(rnd), count: rnd.pick([1, 16, 1024]) };
    case "copy": {
      const n = rnd.int(1, 3);
      const segments = Array.from({ length: n }, () => {
        const len = rnd.pick([8, 16, 64]);
        return { source: copySide(rnd, len), dest: copySide(rnd, len), len };
      });
      return { kind, t: slot(rnd), segments };
    }
    case "poke":
      return {
        kind,
        side: rnd.chance(0.5) ? "share" : "map",
        r: slot(rnd),
        page: rnd.int(0, 2),
        offset: rnd.pick([0, 1, 100, 4088]),
        value: rnd.int(1, 255),
      };
    case "peek":
      return {
        kind,
        side: rnd.chance(0.5) ? "share" : "map",
        r: slot(rnd),
        page: rnd.int(0, 2),
        offset: rnd.pick([0, 1, 100, 4088]),
      };
  }
}

/** A short, stable text of an operation (its operands unresolved), for traces and reports. */
export function opText(op: Op): string {
  return JSON.stringify(op);
}
