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
// Then the vchan benches in dom0 loopback (server and client both in dom0, one vCPU each, the
// rendezvous through oxenstored): per implementation, a sink server and a source client with
// 4 KiB and with 64 KiB writes (rings of 64 KiB both ways: VCHAN_READ_MIN/WRITE_MIN=65536; the
// sink's MB/s from its first byte to its last), and one-byte ping-pong (default rings, the
// client's us per round trip), in this order:
//   C:    bench/c/vchan_peer.c (libxenvchan) server and client
//   Deno, Bun: bench/vchan_peer.ts server and client
//   mixed (Deno with C: TS sink <- C source, C sink <- TS source; they show which side costs)
//   C again (vchan-c-end)
// and a table of ratios against both C runs (the range is the spread): goal >= 0.9x C
// throughput, <= 1.5x C latency.
// Environment: XENCHAN_BENCH_VCHAN_BYTES (per throughput run, default 33554432),
// XENCHAN_BENCH_VCHAN_ROUNDS (ping-pong round trips, default 5000),
// XENCHAN_BENCH_ONLY (comma-separated subset of evtchn,xenstore,vchan: run only those parts),
// XENCHAN_BENCH_XENSTORE_OPS (M, default 2000), XENCHAN_BENCH_ROUNDTRIPS (N for C, also exported to the TS bench; default 10000),
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
/** The parts that run (XENCHAN_BENCH_ONLY, default all). */
const PARTS = new Set(
  (process.env.XENCHAN_BENCH_ONLY ?? "evtchn,xenstore,vchan").split(",").map((p) => p.trim()),
);
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
      XENCHAN_BENCH_VCHAN_BYTES: process.env.XENCHAN_BENCH_VCHAN_BYTES ?? String(32 << 20),
      XENCHAN_BENCH_VCHAN_ROUNDS: process.env.XENCHAN_BENCH_VCHAN_ROUNDS ?? "5000",
    },
  });
  const names = !PARTS.has("evtchn")
    ? []
    : withTs
    ? ["c", "deno", "bun", "deno-raw", "bun-raw", "c-end"]
    : ["c", "c-end"];
  const rows = names.flatMap((name) => readBench(run.files, name));
  const xs = PARTS.has("xenstore")
    ? XENSTORE_RUNS.map((name) => readXenStoreBench(run.files, name))
    : [];
  console.log(`\ndom0 timings (s): ${JSON.stringify(run.timings)}; raw output in ${run.outDir}`);
  const vchan = PARTS.has("vchan")
    ? VCHAN_IMPLS.map(([impl]) => readVchanBench(run.files, impl))
    : [];
  return {
    rows,
    xs,
    vchan,
    ok: rows.every((r) => r.result !== null) && xs.every((x) => x.rows.length) &&
      vchan.every((v) => v.cases.every((c) => c.value !== null)),
  };
}

/**
 * The vchan implementations, in boot order: [label, server command, client command] (sh text;
 * the server gets the rendezvous path and mode appended the same way as the client).
 */
const VCHAN_IMPLS = [
  ["c", "vchan_peer", "vchan_peer"],
  [
    "deno",
    "deno run -A --no-check bench/vchan_peer.ts",
    "deno run -A --no-check bench/vchan_peer.ts",
  ],
  ["bun", "bun run bench/vchan_peer.ts", "bun run bench/vchan_peer.ts"],
  ["deno-sink+c-source", "deno run -A --no-check bench/vchan_peer.ts", "vchan_peer"],
  ["c-sink+deno-source", "vchan_peer", "deno run -A --no-check bench/vchan_peer.ts"],
  ["c-end", "vchan_peer", "vchan_peer"],
];

/** The vchan cases: [key, server mode args, client mode args, ring env]. */
const VCHAN_CASES = [
  ["write=4096", "sink", "source", "4096"],
  ["write=65536", "sink", "source", "65536"],
  ["pingpong", "pingpong", "pingpong", null],
];

/** The sh lines of the vchan benches (after oxenstored started). */
function vchanScript() {
  const lines = [];
  let port = 100;
  for (const [impl, server, client] of VCHAN_IMPLS) {
    // The mixed runs measure throughput only.
    const cases = impl.includes("+") ? VCHAN_CASES.slice(0, 2) : VCHAN_CASES;
    for (const [key, smode, cmode, write] of cases) {
      const path = `/local/domain/0/data/vchan/0/${port++}`;
      const rings = write ? "VCHAN_READ_MIN=65536 VCHAN_WRITE_MIN=65536 " : "";
      const count = write
        ? `"$XENCHAN_BENCH_VCHAN_BYTES" ${write}`
        : `"$XENCHAN_BENCH_VCHAN_ROUNDS"`;
      const serverCount = write ? "" : ` "$XENCHAN_BENCH_VCHAN_ROUNDS"`;
      lines.push(
        `vbench vchan-${impl}-${key} ${path} ` +
          `'${rings}${server} server ${smode} 0 ${path}${serverCount}' ` +
          `'${client} client ${cmode} 0 ${path} ${count}'`,
      );
    }
  }
  return lines.join("\n");
}

/** One implementation's vchan results: { impl, cases: [{ key, value, unit, why }] }. */
function readVchanBench(files, impl) {
  const text = (f) => files.get(f)?.toString("utf8") ?? "";
  const cases = (impl.includes("+") ? VCHAN_CASES.slice(0, 2) : VCHAN_CASES).map(([key]) => {
    const name = `vchan-${impl}-${key}`;
    const pingpong = key === "pingpong";
    const rows = text(`${name}.${pingpong ? "client" : "server"}.out`).split("\n").map(tryJson)
      .filter((j) => j && j.bench === "vchan" && j.mode === (pingpong ? "pingpong" : "sink"));
    const value = rows.length ? (pingpong ? rows[0].microsPerRound : rows[0].mbPerSecond) : null;
    const why = value !== null
      ? ""
      : ["server", "client"].map((side) =>
        `${side}: exit ${text(`${name}.${side}.status`).trim() || "none"} ` +
        text(`${name}.${side}.err`).trim().split("\n").slice(-3).join(" | ")
      ).join("; ");
    const row = rows[0];
    return {
      key,
      value,
      unit: pingpong ? "us/round" : "MB/s",
      why,
      waits: typeof row?.waits === "number" ? `sink waited ${row.waits} of ${row.reads} reads` : "",
    };
  });
  return { impl, cases };
}

/**
 * Prints the vchan table: per TS run and case the ratio against each C run of the boot, as
 * "lo-hi" (throughput: TS MB/s over C MB/s; ping-pong: TS us over C us), with the goals.
 * Returns true when every goal is met.
 */
function printVchanTable(vchan) {
  console.log(
    "\nvchan, dom0 loopback (server and client in dom0, oxenstored)  vs C libxenvchan " +
      "(range over the two C runs)",
  );
  const cRuns = vchan.filter((v) => v.impl === "c" || v.impl === "c-end");
  let meets = true;
  for (const v of vchan) {
    for (const c of v.cases) {
      if (c.value === null) {
        console.log(`${v.impl.padEnd(20)} ${c.key.padEnd(12)} FAILED: ${c.why}`);
        meets = false;
        continue;
      }
      const base = cRuns.map((r) => r.cases.find((x) => x.key === c.key)?.value)
        .filter((x) => typeof x === "number" && x > 0);
      const ratios = base.map((b) => c.value / b);
      const lo = Math.min(...ratios), hi = Math.max(...ratios);
      const isC = v.impl === "c" || v.impl === "c-end";
      let goal = isC ? "(C baseline)" : "";
      if (!isC && ratios.length) {
        const ok = c.key === "pingpong" ? hi <= 1.5 : lo >= 0.9;
        goal = c.key === "pingpong"
          ? (ok ? "meets <= 1.5x" : "MISSES <= 1.5x")
          : (ok ? "meets >= 0.9x" : "MISSES >= 0.9x");
        if (!ok && !v.impl.includes("+")) meets = false;
      }
      const what = `${c.value.toFixed(c.key === "pingpong" ? 1 : 1)} ${c.unit}`;
      const ratio = ratios.length ? `${lo.toFixed(2)}-${hi.toFixed(2)}x C` : "";
      console.log(
        `${v.impl.padEnd(20)} ${c.key.padEnd(12)} ${what.padStart(15)}   ${
          ratio.padEnd(14)
        } ${goal}`,
      );
    }
  }
  return meets;
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
# vbench NAME PATH SERVER CLIENT: the server in the background, the client once the server
# published PATH/event-channel; each side's output, errors and status in NAME.{server,client}.*
vbench() {
  name=$1 vpath=$2 server=$3 client=$4
  echo "xenchan: bench $name"
  timeout -s KILL 300 sh -c "$server" >"$XENCHAN_OUT/$name.server.out" 2>"$XENCHAN_OUT/$name.server.err" &
  sp=$!
  i=0
  until xenstore-read "$vpath/event-channel" >/dev/null 2>&1 || [ $i -ge 1200 ]; do
    sleep 0.1; i=$((i + 1))
  done
  timeout -s KILL 300 sh -c "$client" >"$XENCHAN_OUT/$name.client.out" 2>"$XENCHAN_OUT/$name.client.err"
  echo "$?" >"$XENCHAN_OUT/$name.client.status"
  wait $sp
  echo "$?" >"$XENCHAN_OUT/$name.server.status"
}
bench() {
  name=$1; shift
  echo "xenchan: bench $name"
  timeout -s KILL 600 "$@" >"$XENCHAN_OUT/$name.out" 2>"$XENCHAN_OUT/$name.err"
  echo "$?" >"$XENCHAN_OUT/$name.status"
}
${PARTS.has("evtchn") ? evtchnScript(withTs) : ""}
if xenchan-xenstored start oxenstored >"$XENCHAN_OUT/xenstored.log" 2>&1; then
  :
${PARTS.has("xenstore") ? xenstoreScript() : ""}
${PARTS.has("vchan") ? vchanScript() : ""}
fi
`;
}

function evtchnScript(withTs) {
  return `bench c evtchn_pingpong "$XENCHAN_BENCH_ROUNDTRIPS"
${withTs ? `bench deno deno run -A --no-check ${TS_BENCH}\nbench bun bun run ${TS_BENCH}` : ""}
${
    withTs
      ? `bench deno-raw deno run -A --no-check ${RAW_BENCH}\nbench bun-raw bun run ${RAW_BENCH}`
      : ""
  }
bench c-end evtchn_pingpong "$XENCHAN_BENCH_ROUNDTRIPS"`;
}

function xenstoreScript() {
  return `  bench xenstore-c xenstore_bench "$XENCHAN_BENCH_XENSTORE_OPS"
  bench xenstore-deno deno run -A --no-check bench/xenstore.ts "$XENCHAN_BENCH_XENSTORE_OPS"
  bench xenstore-bun bun run bench/xenstore.ts "$XENCHAN_BENCH_XENSTORE_OPS"
  bench xenstore-c-end xenstore_bench "$XENCHAN_BENCH_XENSTORE_OPS"`;
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
    const { rows, xs, vchan, ok } = await benchXen();
    const evtchnMeets = PARTS.has("evtchn") ? printTable(rows) : true;
    const xsMeets = PARTS.has("xenstore") ? printXenStoreTable(xs) : true;
    const vchanMeets = PARTS.has("vchan") ? printVchanTable(vchan) : true;
    const meets = vchanMeets && xsMeets && evtchnMeets;
    process.exitCode = !ok ? 1 : (!meets && process.env.XENCHAN_BENCH_STRICT === "1") ? 1 : 0;
  } catch (e) {
    if (!(e instanceof HarnessError)) throw e;
    console.error(`bench_xen: harness failure: ${e.message}`);
    process.exitCode = 2;
  }
}
