/**
 * `xenchan bench`: the row reader (bench/rows.ts's schema) on rows the
 * scripts' own emitter writes and on broken input, the real scripts'
 * stdout (nothing but rows), a quick run of the fast suites that prints the
 * table, and the permission check.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { describe, it } from "node:test";
import {
  benchOptions,
  formatRatio,
  formatSpread,
  formatValue,
  missingPermissions,
  readRows,
  runBench,
  withCBaseline,
} from "../cli/bench.ts";
import { bufferOutput } from "../cli/io.ts";
import { runCli } from "./helpers/child.ts";

const row = (fields: Record<string, unknown>) =>
  JSON.stringify({
    suite: "s",
    case: "c",
    unit: "ns/event",
    better: "lower",
    value: 10,
    stat: "best",
    ...fields,
  });

/** Runs a bench script in a child of this runtime; resolves to its stdout and stderr. */
function runScript(
  file: string,
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const script = new URL(`../bench/${file}`, import.meta.url).pathname;
  const argv = "Deno" in globalThis ? ["run", "-A", script, ...args] : ["run", script, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => (stderr += c));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("xenchan bench rows", () => {
  it("readRows keeps every field of well-formed rows, in order", () => {
    const text = [
      row({
        case: "a",
        values: [10, 11],
        spread: 0.1,
        baseline: { name: "C", value: 5 },
        ratio: 2,
      }),
      "",
      row({ case: "b", summary: true, extra: { n: 3 } }),
    ].join("\n");
    const rows = readRows(text, "s");
    assert.deepEqual(rows.map((r) => r.case), ["a", "b"]);
    assert.equal(rows[0].ratio, 2);
    assert.deepEqual(rows[0].baseline, { name: "C", value: 5 });
    assert.deepEqual(rows[1].extra, { n: 3 });
  });

  it("readRows refuses text, missing fields, a ratio without baseline, another suite", () => {
    const cases: [string, RegExp][] = [
      ["ABI ports pattern\n", /line 1 is not a JSON row/],
      [`${row({})}\n2l 10 sparse 3.1`, /line 2 is not a JSON row/],
      ["[1,2]", /not a JSON object/],
      [row({ unit: undefined }), /"unit" is not a string/],
      [row({ value: "12" }), /"value" is not a finite number/],
      [row({ better: "faster" }), /"better"/],
      [row({ values: [1, "x"] }), /"values"/],
      [row({ baseline: { name: "C", value: 1 } }), /"ratio" is missing/],
      [row({ ratio: 2 }), /"ratio" without "baseline"/],
      [row({ suite: "other" }), /row of suite 'other', not 's'/],
      ["\n\n", /no result rows/],
    ];
    for (const [text, pattern] of cases) assert.throws(() => readRows(text, "s"), pattern, text);
  });

  it("withCBaseline puts the C round trip under the rows that name their key", () => {
    const rows = readRows(
      [
        row({ suite: "evtchn_roundtrip", value: 600, key: "ns_per_roundtrip" }),
        row({ suite: "evtchn_roundtrip", value: 20, key: "notify_ns" }),
        row({ suite: "evtchn_roundtrip", value: 7 }),
      ].join("\n"),
      "evtchn_roundtrip",
    );
    const c = `{"name":"c","roundtrips":1000,"ns_per_roundtrip":500,"notify_ns":10}\n`;
    const got = withCBaseline(rows, c);
    assert.deepEqual(got.map((r) => r.ratio), [1.2, 2, undefined]);
    assert.deepEqual(got[0].baseline, { name: "C", value: 500 });
    assert.throws(() => withCBaseline(rows, "no json"), /no JSON line/);
    assert.throws(() => withCBaseline(rows, `{"notify_ns":1}`), /"ns_per_roundtrip" missing/);
  });

  it("formats ratios, figures and spreads", () => {
    assert.equal(formatRatio(3.7512), "3.75x");
    assert.equal(formatRatio(0.004), "0.0040x");
    assert.equal(formatRatio(undefined), "-");
    assert.equal(formatValue(3088976.4, "events/s"), "3,088,976 events/s");
    assert.equal(formatValue(12.34, "ns/event"), "12.3 ns/event");
    assert.equal(formatValue(1.234, "us"), "1.23 us");
    assert.equal(formatSpread(0.123), "12%");
    assert.equal(formatSpread(undefined), "-");
  });

  it("--only and --skip select suites; --skip of everything is a usage error", () => {
    assert.deepEqual(benchOptions({ only: ["abi_scan,doorbell"], skip: ["doorbell"] }).suites, [
      "abi_scan",
    ]);
    assert.equal(benchOptions({}).suites.length, 7);
    assert.throws(() => benchOptions({ only: ["vchan"], skip: ["vchan"] }), /left no suite/);
  });

  it("the scripts print nothing but rows on stdout and their tables on stderr", {
    timeout: 120_000,
  }, async () => {
    for (
      const [file, args, suite] of [
        ["sim_throughput.ts", ["--quick"], "sim_throughput"],
        ["vchan.ts", ["--quick"], "vchan"],
        ["evtchn_roundtrip.ts", ["200", "sim"], "evtchn_roundtrip"],
      ] as const
    ) {
      const r = await runScript(file, [...args]);
      assert.equal(r.code, 0, `${file}: ${r.stderr}`);
      const rows = readRows(r.stdout, suite);
      assert.ok(rows.some((x) => x.summary === true), `${file} marks summary rows`);
      assert.ok(rows.every((x) => typeof x.runtime === "string"), `${file} names the runtime`);
      assert.notEqual(r.stderr.trim(), "", `${file} keeps its human-readable text on stderr`);
    }
  });
});

describe("xenchan bench --quick", () => {
  it("runs the fast suites and prints one table (the real-Xen suite is skipped off Xen)", {
    timeout: 120_000,
  }, async () => {
    const out = bufferOutput();
    const code = await runBench(
      benchOptions({ quick: true, only: ["abi_scan,doorbell,evtchn_roundtrip"] }),
      out,
    );
    const text = out.text();
    assert.equal(code, 0, text + out.stderr.join("\n"));
    assert.match(text, /^suite\s+measurement\s+xenchan\s+spread\s+baseline\s+ratio$/m);
    const gcc = spawnSync("gcc", ["--version"], { stdio: "ignore" }).status === 0;
    for (const suite of ["abi_scan", "doorbell"]) {
      if (gcc) assert.match(text, new RegExp(`^${suite}\\s+.+\\s+[\\d.]+x$`, "m"), suite);
      else assert.match(text, new RegExp(`^skipped ${suite}: its C baseline needs gcc`, "m"));
    }
    assert.match(text, /^(skipped evtchn_roundtrip: needs a real Xen dom0|evtchn_roundtrip\s)/m);
    assert.ok(out.stderr.some((l) => /^\[1\/3\] abi_scan: running/.test(l)), "progress on stderr");
    if (gcc) {
      assert.ok(
        out.stderr.some((l) => /^\[2\/3\] doorbell: done in [\d.]+s \(\d+ rows\)$/.test(l)),
        out.stderr.join("\n"),
      );
    }
  });

  it("--json prints the rows instead of the table", { timeout: 60_000 }, async () => {
    const out = bufferOutput();
    const code = await runBench(benchOptions({ quick: true, only: ["vchan"], json: true }), out);
    assert.equal(code, 0, out.stderr.join("\n"));
    const rows = readRows(out.text(), "vchan");
    assert.equal(rows.length, 5);
    assert.ok(rows.some((r) => r.case === "pingpong 1 byte" && r.unit === "us/round"));
  });
});

describe("xenchan bench without permissions", () => {
  it("names the Deno permissions it lacks instead of blaming gcc (exit 1)", {
    timeout: 60_000,
  }, async () => {
    if (!("Deno" in globalThis)) {
      assert.deepEqual(missingPermissions(), [], "Bun has no permission model");
      return;
    }
    assert.deepEqual(missingPermissions(), [], "the test run has -P");
    const r = await runCli(["bench", "--only", "abi_scan"], "--allow-read");
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /Deno has not granted --allow-run and --allow-env/);
    assert.match(r.stderr, /deno run -P cli\.ts bench/);
    assert.doesNotMatch(r.stderr + r.stdout, /gcc \(apt-get/);
    const env = await runCli(["bench", "--only", "abi_scan"], "--allow-run");
    assert.equal(env.code, 1, env.stderr);
    assert.match(env.stderr, /Deno has not granted --allow-env[^ ]/);
  });
});
