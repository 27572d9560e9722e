/**
 * Simulator throughput: event notifications delivered per second and grant
 * map/unmap cycles per second, with 1, 100 and 10,000 ports (or pages) in
 * play. A plain timed loop (no dependencies). Output (bench/rows.ts): JSON
 * rows on stdout (suite sim_throughput, case "<scenario>, n = <n>", unit
 * events/s, cycles/s or pages/s, no baseline; the n = 10,000 rows are the
 * summary), the table on stderr. --quick: best of 3 runs of 80 ms each.
 *
 *   node_modules/.bin/deno run -A bench/sim_throughput.ts
 *   node_modules/.bin/bun run bench/sim_throughput.ts
 *
 * Each figure is the best of 3 timed runs of at least `MIN_MS` ms each.
 *
 * @module
 */
import type { EventChannelDriver, GrantTableDriver } from "../core/driver.ts";
import { POLLIN } from "../core/driver.ts";
import process from "node:process";
import { SimHypervisor } from "../sim/mod.ts";
import { emitRow, say } from "./rows.ts";

const MIN_MS = process.argv.includes("--quick") ? 80 : 250;
const SIZES = [1, 100, 10_000];

interface Row {
  readonly scenario: string;
  readonly n: number;
  readonly unit: string;
  readonly perSecond: number[];
}

/** Runs `round` (which returns how many units it did) repeatedly; units/s of 3 runs, best first. */
function measure(round: () => number): number[] {
  const all: number[] = [];
  for (let run = 0; run < 3; run++) {
    let units = 0;
    const t0 = performance.now();
    let elapsed = 0;
    while (elapsed < MIN_MS) {
      units += round();
      elapsed = performance.now() - t0;
    }
    all.push((units * 1000) / elapsed);
  }
  return all.sort((x, y) => y - x);
}

/** dom0 handle `a` and d1 handle `b` connected by n interdomain pairs. */
function pairs(n: number): { a: EventChannelDriver; b: EventChannelDriver; pa: number[] } {
  const hv = new SimHypervisor();
  const d1 = hv.createDomain({ maxEventChannels: n + 10 });
  const a = hv.backend(0).openEventChannels();
  const b = hv.backend(d1).openEventChannels();
  const pa: number[] = [];
  for (let i = 0; i < n; i++) {
    const p = a.bindUnboundPort(d1);
    b.bindInterdomain(0, p);
    pa.push(p);
  }
  drain(b);
  return { a, b, pa };
}

/** Reads and unmasks every queued port; returns how many. */
function drain(b: EventChannelDriver): number {
  let n = 0;
  while (b.pollNow() === POLLIN) {
    b.unmask(b.pending());
    n++;
  }
  return n;
}

function notifyRows(n: number): Row {
  const { a, b, pa } = pairs(n);
  const perSecond = measure(() => {
    for (let i = 0; i < pa.length; i++) a.notify(pa[i]);
    return drain(b);
  });
  return { scenario: "notify -> pending -> unmask", n, unit: "events", perSecond };
}

/** d1 shares n pages with dom0; returns dom0's grant handle and the refs. */
function shared(n: number): { gnt: GrantTableDriver; d1: number; refs: readonly number[] } {
  const hv = new SimHypervisor();
  const frames = Math.ceil((n + 8) / 512);
  const d1 = hv.createDomain({ maxGrantFrames: frames, gntallocLimit: n });
  const refs = hv.backend(d1).openGrantShare().sharePages(0, n, true).refs;
  return { gnt: hv.backend(0).openGrantTable(), d1, refs };
}

function mapOneRows(n: number): Row {
  const { gnt, d1, refs } = shared(n);
  const doms = [d1];
  let i = 0;
  const perSecond = measure(() => {
    for (let k = 0; k < 64; k++) {
      const m = gnt.map(doms, [refs[i]], true);
      m.pages[0][0] = k;
      gnt.unmap(m);
      i = (i + 1) % refs.length;
    }
    return 64;
  });
  return { scenario: "map 1 ref + unmap (round-robin)", n, unit: "cycles", perSecond };
}

function mapAllRows(n: number): Row {
  const { gnt, d1, refs } = shared(n);
  const doms = refs.map(() => d1);
  const perSecond = measure(() => {
    const m = gnt.map(doms, refs, true);
    m.bytes[0] = 1;
    gnt.unmap(m);
    return n;
  });
  return { scenario: "map n refs in one call + unmap", n, unit: "pages", perSecond };
}

function format(rows: readonly Row[]): string {
  const head = ["scenario", "n", "unit", "per second"];
  const body = rows.map((
    r,
  ) => [r.scenario, String(r.n), r.unit, Math.round(r.perSecond[0]).toLocaleString("en-US")]);
  const widths = head.map((h, c) => Math.max(h.length, ...body.map((b) => b[c].length)));
  const line = (cells: string[]) =>
    cells.map((x, c) => (c === 0 ? x.padEnd(widths[c]) : x.padStart(widths[c]))).join("  ");
  return [line(head), widths.map((w) => "-".repeat(w)).join("  "), ...body.map(line)].join("\n");
}

const rows: Row[] = [];
for (const n of SIZES) rows.push(notifyRows(n));
for (const n of SIZES) rows.push(mapOneRows(n));
for (const n of SIZES) rows.push(mapAllRows(n));
const runtime = "Deno" in globalThis ? "deno" : "Bun" in globalThis ? "bun" : "other";
say(`xenchan simulator throughput (${runtime}, best of 3 x ${MIN_MS} ms)\n`, format(rows));
for (const r of rows) {
  emitRow({
    suite: "sim_throughput",
    case: `${r.scenario}, n = ${r.n.toLocaleString("en-US")}`,
    unit: `${r.unit}/s`,
    better: "higher",
    value: Math.round(r.perSecond[0]),
    stat: "best",
    values: r.perSecond.map(Math.round),
    summary: r.n === SIZES.at(-1),
    n: r.n,
  });
}
