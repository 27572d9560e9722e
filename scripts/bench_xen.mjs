// deno-lint-ignore-file explicit-module-boundary-types -- plain JS run by node: no type syntax
// scripts/bench_xen.mjs - event channel round-trip benchmark in a real Xen dom0 (`npm run bench:xen`).
//
// What it does: boots Xen + dom0 once (scripts/xen/dom0.mjs) and runs the event channel benches
// XENCHAN_BENCH_REPEATS times (default 3), each repetition in this order:
//   C loopback:       evtchn_pingpong <N>                       (bench/c/evtchn_pingpong.c)
//   C cross-process:  evtchn_pingpong echo <N>  +  evtchn_pingpong client <port> <N>
//   Deno, Bun loopback: bench/evtchn_roundtrip.ts (awaited pending() and blocking pendingSync())
//   cross-process, a C peer in one process and xenchan in the other, both directions:
//     C echo + <runtime> client (awaited, sync)       bench/evtchn_roundtrip.ts --client
//     <runtime> echo (awaited) + C client             bench/evtchn_roundtrip.ts --echo
// then, once: the raw floor (bench/evtchn_roundtrip_raw.ts), the awaited client with the inline
// wait off (XENCHAN_INLINE_WAIT_US=0: every wake-up through the background poll, the cost of that
// hand-off alone), and C loopback and C cross-process again ("-end": C before and after in the same
// boot), and what each piece of a wake-up costs alone, from C and from each runtime
// (bench/wait_costs.ts, bench/c/wait_costs.c: poll, ppoll, sched_yield, a clock read, an eventfd
// write + read, a turn of the event loop, a promise hop). Every run prints JSON lines with
// ns_per_roundtrip and cpu_ns_per_roundtrip (CPU time per round trip, getrusage / process.cpuUsage;
// a cross-process round trip counts the CPU of both processes: the client's per round trip plus the
// echo's per reply).
// Then a table: per case the median over the repetitions of the ratio against the C run of the
// same kind (loopback or cross) in the same repetition, with its spread (min-max), the median
// round trip, and the CPU ratio; the goals: awaited <= 1.3x C, pendingSync <= 1.1x, CPU <= 1.5x.
// Absolute times under TCG are noisy (and the host is shared): only ratios within a boot mean
// anything.
// The inline wait of ffi/poller.ts is capped at XENCHAN_INLINE_WAIT_US (default here 100000 us,
// because a round trip under TCG takes milliseconds; the library's own default is 2000 us).
// Then the XenStore benches on real oxenstored (started with
// xenchan-xenstored):
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
// Environment: XENCHAN_BENCH_ROUNDTRIPS (N, default 2000), XENCHAN_BENCH_REPEATS (default 3),
// XENCHAN_BENCH_ONLY (comma-separated subset of evtchn,xenstore,vchan: run only those parts;
// default all), XENCHAN_BENCH_XENSTORE_OPS (M, default 2000), XENCHAN_BENCH_VCHAN_BYTES (per
// throughput run, default 33554432), XENCHAN_BENCH_VCHAN_ROUNDS (ping-pong round trips, default
// 5000), XENCHAN_INLINE_WAIT_US (see above), XENCHAN_BENCH_STRICT=1 (exit 1 when a goal is
// missed), knobs of scripts/xen/config.mjs.
// Output: the tables; raw outputs in <cache>/runs/bench_xen/out/.
// Exit:   0 when every bench that ran produced its JSON; 1 when one failed (or, with STRICT, missed
//         a goal); 2 on a harness failure.

import path from "node:path";
import { fileURLToPath } from "node:url";
import fs from "node:fs";
import { HarnessError, REPO } from "./xen/config.mjs";
import { runInDom0 } from "./xen/dom0.mjs";

const GOAL = { awaited: 1.3, sync: 1.1, cpu: 1.5 };
/** The parts that run (XENCHAN_BENCH_ONLY, default all). */
const PARTS = new Set(
  (process.env.XENCHAN_BENCH_ONLY ?? "evtchn,xenstore,vchan").split(",").map((p) => p.trim()),
);
const TS_BENCH = "bench/evtchn_roundtrip.ts";
const RAW_BENCH = "bench/evtchn_roundtrip_raw.ts";
const RUNTIMES = [
  ["deno", "deno run -A --no-check"],
  ["bun", "bun run"],
];

/** Runs the benches; resolves to { runs, xs, ok, reps } (see the file comment). */
export async function benchXen() {
  const n = process.env.XENCHAN_BENCH_ROUNDTRIPS ?? "2000";
  const reps = Number(process.env.XENCHAN_BENCH_REPEATS ?? "3");
  if (!Number.isInteger(reps) || reps < 1) {
    throw new HarnessError(`XENCHAN_BENCH_REPEATS must be a positive integer, got ${reps}`);
  }
  const withTs = fs.existsSync(path.join(REPO, TS_BENCH));
  if (!withTs) console.log(`bench_xen: ${TS_BENCH} does not exist yet; only the C baseline runs`);
  const run = await runInDom0({
    name: "bench_xen",
    script: dom0Script(withTs, reps, PARTS),
    toolstack: true,
    env: {
      XENCHAN_BENCH_ROUNDTRIPS: n,
      XENCHAN_BENCH_REPEATS: String(reps),
      XENCHAN_BENCH_XENSTORE_OPS: process.env.XENCHAN_BENCH_XENSTORE_OPS ?? "2000",
      XENCHAN_INLINE_WAIT_US: process.env.XENCHAN_INLINE_WAIT_US ?? "100000",
      XENCHAN_BENCH_VCHAN_BYTES: process.env.XENCHAN_BENCH_VCHAN_BYTES ?? String(32 << 20),
      XENCHAN_BENCH_VCHAN_ROUNDS: process.env.XENCHAN_BENCH_VCHAN_ROUNDS ?? "5000",
    },
  });
  const runs = runNames(run.files).map((name) => readRun(run.files, name));
  const xs = PARTS.has("xenstore")
    ? XENSTORE_RUNS.map((name) => readXenStoreBench(run.files, name))
    : [];
  const vchan = PARTS.has("vchan")
    ? VCHAN_RUN.map(([impl]) => readVchanBench(run.files, impl))
    : [];
  console.log(`\ndom0 timings (s): ${JSON.stringify(run.timings)}; raw output in ${run.outDir}`);
  const ok = (!PARTS.has("evtchn") || (runs.length > 0 && runs.every((r) => r.result !== null))) &&
    xs.every((x) => x.rows.length) &&
    vchan.every((v) => v.cases.every((c) => c.value !== null));
  return { runs, xs, vchan, ok, reps, files: run.files };
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

/** The wake-up pieces benches (bench/wait_costs.ts and its C twin): [name, command]. */
const WAIT_COSTS = [
  ["wait-costs-c", "wait_costs"],
  ["wait-costs-deno", "deno run -A --no-check bench/wait_costs.ts"],
  ["wait-costs-bun", "bun run bench/wait_costs.ts"],
];

/**
 * Prints what each piece of a wake-up costs in this dom0, per call, C next to Deno and Bun
 * (the rows of bench/wait_costs.ts and bench/c/wait_costs.c): the parts an awaited wait is made
 * of, measured alone.
 */
function printWaitCosts(files) {
  const rows = new Map();
  for (const [name] of WAIT_COSTS) {
    for (const line of (files.get(`${name}.out`)?.toString("utf8") ?? "").split("\n")) {
      const j = tryJson(line);
      if (j?.bench !== "wait_costs") continue;
      const piece = j.piece === "clock_gettime" ? "performance.now" : j.piece;
      if (!rows.has(piece)) rows.set(piece, {});
      rows.get(piece)[j.backend] = j.ns_per_call;
    }
  }
  if (rows.size === 0) return;
  console.log("\nwhat each piece of a wake-up costs in this dom0, us per call (C: clock_gettime)");
  const us = (ns) => ns === undefined ? "      -" : (ns / 1000).toFixed(1).padStart(7);
  console.log(`${"piece".padEnd(32)}       C     Deno      Bun`);
  for (const [piece, by] of rows) {
    console.log(`${piece.padEnd(32)} ${us(by.c)}  ${us(by.deno)}  ${us(by.bun)}`);
  }
}

/** The implementations XENCHAN_BENCH_VCHAN_IMPLS names (default all), in boot order. */
const VCHAN_RUN = (() => {
  const wanted = process.env.XENCHAN_BENCH_VCHAN_IMPLS?.split(",").map((s) => s.trim());
  return wanted ? VCHAN_IMPLS.filter(([impl]) => wanted.includes(impl)) : VCHAN_IMPLS;
})();

/**
 * A TypeScript peer's command with the runtime's V8 CPU profiler on when
 * XENCHAN_BENCH_VCHAN_PROFILE=1 (a .cpuprofile and a markdown summary, both named `name`, in
 * $XENCHAN_OUT); C commands unchanged.
 */
function profiled(command, name) {
  if (process.env.XENCHAN_BENCH_VCHAN_PROFILE !== "1") return command;
  const flags =
    `--cpu-prof --cpu-prof-md --cpu-prof-dir "$XENCHAN_OUT" --cpu-prof-name ${name}.cpuprofile`;
  if (command.startsWith("deno run ")) return command.replace("deno run ", `deno run ${flags} `);
  if (command.startsWith("bun run ")) return command.replace("bun run ", `bun run ${flags} `);
  return command;
}

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
  for (const [impl, server, client] of VCHAN_RUN) {
    // The mixed runs measure throughput only.
    const cases = impl.includes("+") ? VCHAN_CASES.slice(0, 2) : VCHAN_CASES;
    for (const [key, smode, cmode, write] of cases) {
      const path = `/local/domain/0/data/vchan/0/${port++}`;
      const rings = write ? "VCHAN_READ_MIN=65536 VCHAN_WRITE_MIN=65536 " : "";
      const count = write
        ? `"$XENCHAN_BENCH_VCHAN_BYTES" ${write}`
        : `"$XENCHAN_BENCH_VCHAN_ROUNDS"`;
      const serverCount = write ? "" : ` "$XENCHAN_BENCH_VCHAN_ROUNDS"`;
      const name = `vchan-${impl}-${key}`;
      lines.push(
        `vbench ${name} ${path} ` +
          `'${rings}${
            profiled(server, `${name}.server`)
          } server ${smode} 0 ${path}${serverCount}' ` +
          `'${profiled(client, `${name}.client`)} client ${cmode} 0 ${path} ${count}'`,
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

/** The names "<case>.<rep>" of the event channel runs whose status file is in `files`. */
export function runNames(files) {
  const names = [...files.keys()].map((f) => f.match(/^((?:lo|x)-.+)\.status$/)?.[1]);
  return [...new Set(names)].filter((n) => n && !n.endsWith(".echo")).sort();
}

/** The dom0 shell script (exported for the harness's own checks). */
export function dom0Script(withTs, reps, parts) {
  const tsRuns = (r) =>
    RUNTIMES.map(([rt, cmd]) =>
      [
        `bench lo-${rt}.${r} ${cmd} ${TS_BENCH} "$N"`,
        `pair x-${rt}-client-awaited.${r} 'evtchn_pingpong echo $N' '${cmd} ${TS_BENCH} --client $PORT $N awaited'`,
        `pair x-${rt}-client-sync.${r} 'evtchn_pingpong echo $N' '${cmd} ${TS_BENCH} --client $PORT $N sync'`,
        `pair x-${rt}-echo-awaited.${r} '${cmd} ${TS_BENCH} --echo $N awaited' 'evtchn_pingpong client $PORT $N'`,
      ].join("\n")
    ).join("\n");
  const once = RUNTIMES.map(([rt, cmd]) =>
    [
      `bench lo-${rt}-raw.1 ${cmd} ${RAW_BENCH} "$N"`,
      `pair x-${rt}-client-parked.1 'evtchn_pingpong echo $N' 'env XENCHAN_INLINE_WAIT_US=0 ${cmd} ${TS_BENCH} --client $PORT $N awaited'`,
    ].join("\n")
  ).join("\n");
  const body = Array.from({ length: reps }, (_, i) =>
    [
      `bench lo-c.${i + 1} evtchn_pingpong "$N"`,
      `pair x-c.${i + 1} 'evtchn_pingpong echo $N' 'evtchn_pingpong client $PORT $N'`,
      withTs ? tsRuns(i + 1) : "",
    ].join("\n")).join("\n");
  const evtchn = [
    body,
    withTs ? once : "",
    withTs ? WAIT_COSTS.map(([name, command]) => `bench ${name} ${command} 3000`).join("\n") : "",
    `bench lo-c-end.1 evtchn_pingpong "$N"`,
    `pair x-c-end.1 'evtchn_pingpong echo $N' 'evtchn_pingpong client $PORT $N'`,
  ].join("\n");
  return `#!/bin/sh
# Generated by scripts/bench_xen.mjs.
N=$XENCHAN_BENCH_ROUNDTRIPS
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
# pair NAME ECHO CLIENT: starts ECHO, waits for its {"port":P} on stderr, runs CLIENT with PORT=P.
pair() {
  name=$1
  echo "xenchan: bench $name"
  eval "timeout -s KILL 600 $2" >"$XENCHAN_OUT/$name.echo.out" 2>"$XENCHAN_OUT/$name.echo.err" &
  epid=$!
  PORT=""; i=0
  while [ -z "$PORT" ] && [ "$i" -lt 1200 ]; do
    PORT=$(sed -n 's/.*"port":\\([0-9][0-9]*\\).*/\\1/p' "$XENCHAN_OUT/$name.echo.err" | head -n 1)
    if [ -z "$PORT" ]; then sleep 0.1; i=$((i + 1)); fi
  done
  if [ -z "$PORT" ]; then
    kill -9 "$epid" 2>/dev/null; wait "$epid"; echo 98 >"$XENCHAN_OUT/$name.status"; return
  fi
  eval "timeout -s KILL 600 $3" >"$XENCHAN_OUT/$name.out" 2>"$XENCHAN_OUT/$name.err"
  echo "$?" >"$XENCHAN_OUT/$name.status"
  wait "$epid"
  echo "$?" >"$XENCHAN_OUT/$name.echo.status"
}
${parts.has("evtchn") ? evtchn : ""}
if xenchan-xenstored start oxenstored >"$XENCHAN_OUT/xenstored.log" 2>&1; then
  :
${parts.has("xenstore") ? xenstoreScript() : ""}
${parts.has("vchan") ? vchanScript() : ""}
fi
`;
}

function xenstoreScript() {
  return `  bench xenstore-c xenstore_bench "$XENCHAN_BENCH_XENSTORE_OPS"
  bench xenstore-deno deno run -A --no-check bench/xenstore.ts "$XENCHAN_BENCH_XENSTORE_OPS"
  bench xenstore-bun bun run bench/xenstore.ts "$XENCHAN_BENCH_XENSTORE_OPS"
  bench xenstore-c-end xenstore_bench "$XENCHAN_BENCH_XENSTORE_OPS"`;
}

/**
 * Reads one run "<case>.<rep>": { name, kase, rep, result, why }. A loopback run's result is its
 * JSON rows keyed by name (C: "c"; a runtime: "<rt>" awaited and "<rt>-blocking"); a
 * cross-process run's is { ns, cpu } with the CPU of both processes per round trip. result is
 * null (and why says why) when a side failed.
 */
export function readRun(files, name) {
  const text = (f) => files.get(f)?.toString("utf8") ?? "";
  const [, kase, rep] = name.match(/^(.+)\.(\d+)$/) ?? [null, name, "1"];
  const status = text(`${name}.status`).trim();
  const rows = text(`${name}.out`).split("\n").map(tryJson).filter((j) => j && j.name);
  const fail = (why) => {
    const err = text(`${name}.err`).trim().split("\n").slice(-8).join("\n");
    const echoErr = text(`${name}.echo.err`).trim().split("\n").slice(-4).join("\n");
    return {
      name,
      kase,
      rep: Number(rep),
      result: null,
      why: [why, err, echoErr].join("\n").trim(),
    };
  };
  if (status !== "0" || rows.length === 0) {
    return fail(status === "" ? "did not run" : `exit ${status}${rows.length ? "" : ", no JSON"}`);
  }
  if (kase.startsWith("lo-")) {
    return {
      name,
      kase,
      rep: Number(rep),
      result: Object.fromEntries(rows.map((r) => [r.name, r])),
    };
  }
  const echo = text(`${name}.echo.out`).split("\n").map(tryJson).find((j) => j && j.name);
  const client = rows.find((r) => typeof r.ns_per_roundtrip === "number");
  if (!echo || !client) return fail(`echo ${echo ? "ok" : "gave no JSON"}`);
  const echoCpu = echo.cpu_ns_per_reply ?? NaN;
  return {
    name,
    kase,
    rep: Number(rep),
    result: { ns: client.ns_per_roundtrip, cpu: client.cpu_ns_per_roundtrip + echoCpu },
  };
}

function tryJson(line) {
  try {
    return JSON.parse(line);
  } catch {
    return null;
  }
}

/** The median of numbers (mean of the middle two for an even count); NaN when empty. */
function median(values) {
  if (!values.length) return NaN;
  const v = [...values].sort((x, y) => x - y), m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/**
 * The event channel cases, each as { label, goal, pick(runs, rep) -> {ns, cpu} | null, base }:
 * base is the C case of the same kind measured in the same repetition.
 */
function evtchnCases() {
  const lo = (kase, row) => (runs, rep) => {
    const r = runs.find((x) => x.kase === kase && x.rep === rep)?.result?.[row];
    return r ? { ns: r.ns_per_roundtrip, cpu: r.cpu_ns_per_roundtrip } : null;
  };
  const x = (kase) => (runs, rep) => runs.find((r) => r.kase === kase && r.rep === rep)?.result;
  const cases = [
    { label: "C loopback, end of boot", goal: null, pick: lo("lo-c-end", "c"), base: "lo" },
    { label: "C cross-process, end of boot", goal: null, pick: x("x-c-end"), base: "x" },
  ];
  for (const [rt] of RUNTIMES) {
    cases.push(
      {
        label: `${rt} loopback, awaited pending()`,
        goal: "awaited",
        pick: lo(`lo-${rt}`, rt),
        base: "lo",
      },
      {
        label: `${rt} loopback, pendingSync()`,
        goal: "sync",
        pick: lo(`lo-${rt}`, `${rt}-blocking`),
        base: "lo",
      },
      {
        label: `${rt} loopback, raw FFI floor`,
        goal: null,
        pick: lo(`lo-${rt}-raw`, `${rt}-raw`),
        base: "lo",
      },
      {
        label: `C echo <- ${rt} client, awaited`,
        goal: "awaited",
        pick: x(`x-${rt}-client-awaited`),
        base: "x",
      },
      {
        label: `C echo <- ${rt} client, sync`,
        goal: "sync",
        pick: x(`x-${rt}-client-sync`),
        base: "x",
      },
      {
        label: `${rt} echo (awaited) <- C client`,
        goal: "awaited",
        pick: x(`x-${rt}-echo-awaited`),
        base: "x",
      },
      {
        label: `C echo <- ${rt} client, awaited, inline off`,
        goal: null,
        pick: x(`x-${rt}-client-parked`),
        base: "x",
      },
    );
  }
  return cases;
}

/** Prints the event channel table; returns true when every measured goal is met. */
export function printTable(runs, reps) {
  for (const r of runs) if (!r.result) console.log(`${r.name.padEnd(30)} FAILED: ${r.why}`);
  const baseOf = {
    lo: lo1("lo-c"),
    x: (rs, rep) => rs.find((r) => r.kase === "x-c" && r.rep === rep)?.result,
  };
  console.log(
    `\nevent channel round trips, ${reps} repetition(s) in one boot; ratios against the C run of the` +
      "\nsame kind in the same repetition: median (min-max over repetitions); CPU counts both processes",
  );
  console.log(
    `${"case".padEnd(44)} ${"us/rt".padStart(9)}  ${"vs C".padEnd(17)} ${
      "CPU vs C".padEnd(17)
    } goal`,
  );
  for (const kind of ["lo", "x"]) {
    const cs = [];
    for (let rep = 1; rep <= reps; rep++) {
      const c = baseOf[kind](runs, rep);
      if (c) cs.push(c);
    }
    console.log(
      `${(kind === "lo" ? "C loopback (baseline)" : "C cross-process (baseline)").padEnd(44)} ` +
        `${(median(cs.map((c) => c.ns)) / 1000).toFixed(1).padStart(9)}  CPU ${
          (median(cs.map((c) => c.cpu)) / 1000).toFixed(1)
        } us/rt`,
    );
  }
  let allMeet = true;
  for (const c of evtchnCases()) {
    const ratios = [], cpus = [], nss = [];
    for (let rep = 1; rep <= reps; rep++) {
      const mine = c.pick(runs, rep);
      // The end-of-boot and once-only runs compare with the last repetition's C.
      const base = baseOf[c.base](runs, rep) ?? baseOf[c.base](runs, reps);
      if (!mine || !base) continue;
      ratios.push(mine.ns / base.ns);
      cpus.push(mine.cpu / base.cpu);
      nss.push(mine.ns);
    }
    if (!ratios.length) continue;
    const fmt = (v) =>
      `${median(v).toFixed(2)} (${Math.min(...v).toFixed(2)}-${Math.max(...v).toFixed(2)})`;
    let verdict = "";
    if (c.goal) {
      const ok = median(ratios) <= GOAL[c.goal] && median(cpus) <= GOAL.cpu;
      verdict = `${ok ? "meets" : "MISSES"} <= ${GOAL[c.goal]}x, CPU <= ${GOAL.cpu}x`;
      if (!ok) allMeet = false;
    }
    console.log(
      `${c.label.padEnd(44)} ${(median(nss) / 1000).toFixed(1).padStart(9)}  ${
        fmt(ratios).padEnd(17)
      } ` +
        `${fmt(cpus).padEnd(17)} ${verdict}`,
    );
  }
  return allMeet;
}

/** The pick of a loopback C run (row "c") of repetition rep. */
function lo1(kase) {
  return (runs, rep) => {
    const r = runs.find((x) => x.kase === kase && x.rep === rep)?.result?.c;
    return r ? { ns: r.ns_per_roundtrip, cpu: r.cpu_ns_per_roundtrip } : null;
  };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const { runs, xs, vchan, ok, reps, files } = await benchXen();
    const evtchnMeets = PARTS.has("evtchn") ? printTable(runs, reps) : true;
    if (PARTS.has("evtchn")) printWaitCosts(files);
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
