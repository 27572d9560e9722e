// deno-lint-ignore-file explicit-module-boundary-types -- plain JS run by node: no type syntax
// scripts/bench_xen.mjs - event channel round-trip benchmark in a real Xen dom0 (`npm run bench:xen`).
//
// What it does: boots Xen + dom0 once (scripts/xen/dom0.mjs) and runs, in this order,
//   C:    evtchn_pingpong <N>                              (bench/c/evtchn_pingpong.c)
//   Deno: deno run -A --no-check bench/evtchn_roundtrip.ts
//   Bun:  bun run bench/evtchn_roundtrip.ts
// (the two TypeScript runs are skipped when bench/evtchn_roundtrip.ts does not exist). Each
// prints JSON lines {"name","roundtrips","ns_per_roundtrip","notify_ns"}: C one, each runtime one
// for the awaited pending() and one for the blocking pendingSync(), and the floor under them,
// bench/evtchn_roundtrip_raw.ts (the bound C functions called directly). Then it prints a
// table of per-round-trip ratios against C from the same boot, and whether each runtime meets
// the goal (ratio <= 1.3). Absolute times under TCG are noisy; only the ratios mean anything.
// Then the XenStore benches on real oxenstored (started with xenchan-xenstored):
//   C:    xenstore_bench <M>                 (bench/c/xenstore_bench.c over libxenstore)
//   Deno, Bun: bench/xenstore.ts <M>         (the public client over the xenstored socket)
//   C again (xenstore-c-end), and a table of ratios against both C runs of the boot (the range is
//   the spread): throughput with 1 and 64 requests in flight (goal >= 1.0x C with 64 in flight),
//   the latency of one request (goal <= 1.3x C) and the watch event latency.
// Environment: XENCHAN_BENCH_XENSTORE_OPS (M, default 2000), XENCHAN_BENCH_ROUNDTRIPS (N for C, also exported to the TS bench; default 10000),
// XENCHAN_BENCH_STRICT=1 (exit 1 when a runtime misses the goal), knobs of scripts/xen/config.mjs.
// Output: the table; raw outputs in <cache>/runs/bench_xen/out/.
// Exit:   0 when every bench that ran produced its JSON; 1 when one failed (or, with STRICT, missed
//         the goal); 2 on a harness failure.

import path from "node:path";
import { fileURLToPath } from "node:url";
import fs from "node:fs";
import { HarnessError, REPO } from "./xen/config.mjs";
import { runInDom0 } from "./xen/dom0.mjs";

const GOAL = 1.3;
const TS_BENCH = "bench/evtchn_roundtrip.ts";
const RAW_BENCH = "bench/evtchn_roundtrip_raw.ts";

/** Runs the benches; resolves to { rows, ok } (see the file comment). */
export async function benchXen() {
  const n = process.env.XENCHAN_BENCH_ROUNDTRIPS ?? "10000";
  const withTs = fs.existsSync(path.join(REPO, TS_BENCH));
  if (!withTs) console.log(`bench_xen: ${TS_BENCH} does not exist yet; only the C baseline runs`);
  const run = await runInDom0({
    name: "bench_xen",
    script: dom0Script(withTs),
    toolstack: true,
    env: {
      XENCHAN_BENCH_ROUNDTRIPS: n,
      XENCHAN_BENCH_XENSTORE_OPS: process.env.XENCHAN_BENCH_XENSTORE_OPS ?? "2000",
    },
  });
  const names = withTs ? ["c", "deno", "bun", "deno-raw", "bun-raw", "c-end"] : ["c", "c-end"];
  const rows = names.flatMap((name) => readBench(run.files, name));
  const xs = XENSTORE_RUNS.map((name) => readXenStoreBench(run.files, name));
  console.log(`\ndom0 timings (s): ${JSON.stringify(run.timings)}; raw output in ${run.outDir}`);
  return { rows, xs, ok: rows.every((r) => r.result !== null) && xs.every((x) => x.rows.length) };
}

/** The XenStore bench runs, in boot order. */
const XENSTORE_RUNS = ["xenstore-c", "xenstore-deno", "xenstore-bun", "xenstore-c-end"];

/** One XenStore bench run: { name, rows: [JSON rows], why }. */
function readXenStoreBench(files, name) {
  const text = (f) => files.get(f)?.toString("utf8") ?? "";
  const rows = text(`${name}.out`).split("\n").map(tryJson).filter((j) => j && j.op);
  const status = text(`${name}.status`).trim();
  const err = text(`${name}.err`).trim().split("\n").slice(-5).join("\n");
  return { name, rows, why: rows.length ? "" : `exit ${status || "none"}${err ? `\n${err}` : ""}` };
}

/** The key of a XenStore row: "read x1", "write x64", "watch". */
function xsKey(row) {
  return row.op === "watch" ? "watch" : `${row.op} x${row.inflight}`;
}

/**
 * Prints the XenStore table: per row and runtime the ratio against each C run of the boot,
 * as "lo-hi" (throughput: TS ops/s over C ops/s, higher is better; watch: TS p50 latency over
 * C p50, lower is better), and the goals of the issue for 64 in flight (>= 1.0x) and the latency
 * of one request (us per op <= 1.3x C). Returns true when every goal is met.
 */
function printXenStoreTable(xs) {
  const cRuns = xs.filter((x) => x.name.startsWith("xenstore-c") && x.rows.length);
  console.log("\nXenStore (oxenstored, socket)  vs C libxenstore (range over the two C runs)");
  for (const x of xs) if (!x.rows.length) console.log(`${x.name.padEnd(16)} FAILED: ${x.why}`);
  if (!cRuns.length) return false;
  let meets = true;
  for (const ts of xs.filter((x) => !x.name.startsWith("xenstore-c") && x.rows.length)) {
    for (const row of ts.rows) {
      const key = xsKey(row);
      const ratios = cRuns.map((c) => c.rows.find((r) => xsKey(r) === key)).filter(Boolean).map(
        (c) => key === "watch" ? row.us_p50 / c.us_p50 : row.ops_per_s / c.ops_per_s,
      );
      if (!ratios.length) continue;
      const lo = Math.min(...ratios), hi = Math.max(...ratios);
      let goal = "";
      if (key.endsWith("x64")) goal = lo >= 1 ? "meets >= 1.0x" : "MISSES >= 1.0x";
      if (key.endsWith("x1")) {
        goal = 1 / lo <= 1.3 ? "meets latency <= 1.3x" : "MISSES latency <= 1.3x";
      }
      if (goal.startsWith("MISSES")) meets = false;
      const what = key === "watch"
        ? `p50 ${row.us_p50.toFixed(0)} us`
        : `${row.ops_per_s.toFixed(0)} ops/s`;
      console.log(
        `${ts.name.replace("xenstore-", "").padEnd(6)} ${key.padEnd(10)} ${what.padStart(14)}   ` +
          `${lo.toFixed(2)}-${hi.toFixed(2)}x C   ${goal}`,
      );
    }
  }
  return meets;
}

function dom0Script(withTs) {
  return `#!/bin/sh
# Generated by scripts/bench_xen.mjs.
bench() {
  name=$1; shift
  echo "xenchan: bench $name"
  timeout -s KILL 600 "$@" >"$XENCHAN_OUT/$name.out" 2>"$XENCHAN_OUT/$name.err"
  echo "$?" >"$XENCHAN_OUT/$name.status"
}
bench c evtchn_pingpong "$XENCHAN_BENCH_ROUNDTRIPS"
${withTs ? `bench deno deno run -A --no-check ${TS_BENCH}\nbench bun bun run ${TS_BENCH}` : ""}
${
    withTs
      ? `bench deno-raw deno run -A --no-check ${RAW_BENCH}\nbench bun-raw bun run ${RAW_BENCH}`
      : ""
  }
bench c-end evtchn_pingpong "$XENCHAN_BENCH_ROUNDTRIPS"
if xenchan-xenstored start oxenstored >"$XENCHAN_OUT/xenstored.log" 2>&1; then
  bench xenstore-c xenstore_bench "$XENCHAN_BENCH_XENSTORE_OPS"
  bench xenstore-deno deno run -A --no-check bench/xenstore.ts "$XENCHAN_BENCH_XENSTORE_OPS"
  bench xenstore-bun bun run bench/xenstore.ts "$XENCHAN_BENCH_XENSTORE_OPS"
  bench xenstore-c-end xenstore_bench "$XENCHAN_BENCH_XENSTORE_OPS"
fi
`;
}

/** Reads one bench's outputs: a row per JSON line, or one row with result null (and the reason). */
function readBench(files, name) {
  const text = (f) => files.get(f)?.toString("utf8") ?? "";
  const status = text(`${name}.status`).trim();
  const results = text(`${name}.out`).split("\n").map(tryJson)
    .filter((j) => j && typeof j.ns_per_roundtrip === "number");
  if (status === "0" && results.length > 0) {
    // The C bench runs first and again last (c-end): both are baselines.
    return results.map((result) => ({ name: name === "c-end" ? "c-end" : result.name, result }));
  }
  const why = status === ""
    ? "did not run"
    : `exit ${status}${results.length ? "" : ", no JSON line"}`;
  const err = text(`${name}.err`).trim().split("\n").slice(-10).join("\n");
  return [{ name, result: null, why: err ? `${why}\n${err}` : why }];
}

function tryJson(line) {
  try {
    return JSON.parse(line);
  } catch {
    return null;
  }
}

/** Prints the table; returns true when every runtime meets the goal. */
function printTable(rows) {
  // Baseline: the faster of the two C runs (first and last in the boot), so that a slow moment
  // of the VM during the C run never flatters the runtimes.
  const cRuns = rows.filter((r) => isC(r.name) && r.result).map((r) => r.result);
  const c = cRuns.sort((x, y) => x.ns_per_roundtrip - y.ns_per_roundtrip)[0];
  console.log("\nbench           roundtrips   us/roundtrip   notify us   vs C    goal <= 1.3x");
  let allMeet = true;
  for (const row of rows) {
    if (!row.result) {
      console.log(`${row.name.padEnd(15)} FAILED: ${row.why}`);
      allMeet = false;
      continue;
    }
    const r = row.result;
    const ratio = c ? r.ns_per_roundtrip / c.ns_per_roundtrip : NaN;
    const meets = r === c
      ? "(baseline)"
      : isC(row.name)
      ? "(C again)"
      : ratio <= GOAL
      ? "meets"
      : "MISSES";
    if (!isC(row.name) && !(ratio <= GOAL)) allMeet = false;
    console.log(
      `${row.name.padEnd(15)} ${String(r.roundtrips).padStart(10)}   ` +
        `${us(r.ns_per_roundtrip).padStart(12)}   ${us(r.notify_ns).padStart(9)}   ` +
        `${Number.isNaN(ratio) ? "  n/a" : ratio.toFixed(2).padStart(5)}   ${meets}`,
    );
  }
  return allMeet;
}

function isC(name) {
  return name === "c" || name === "c-end";
}

function us(ns) {
  return typeof ns === "number" ? (ns / 1000).toFixed(1) : "n/a";
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const { rows, xs, ok } = await benchXen();
    const evtchnMeets = printTable(rows);
    const meets = printXenStoreTable(xs) && evtchnMeets;
    process.exitCode = !ok ? 1 : (!meets && process.env.XENCHAN_BENCH_STRICT === "1") ? 1 : 0;
  } catch (e) {
    if (!(e instanceof HarnessError)) throw e;
    console.error(`bench_xen: harness failure: ${e.message}`);
    process.exitCode = 2;
  }
}
