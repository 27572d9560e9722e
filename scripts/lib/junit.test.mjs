// Self-tests of scripts/lib/junit.mjs (run by scripts/test_host.mjs under `node --test`).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  countContract,
  countJUnit,
  countLogErrors,
  laneLabel,
  runnerResult,
  runtimeLanes,
  summaryLine,
} from "./junit.mjs";

// Shapes copied from real reports of deno 2.9.6 and bun 1.4.5 for the same file: a describe with
// one passing, one failing and two skipped tests, plus a skipped describe.
const DENO = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="deno test" tests="6" failures="2" errors="0" time="0.019">
  <testsuite name="./a.test.ts" tests="2" disabled="1" errors="0" failures="1">
    <testcase name="grp a &gt; b" classname="./a.test.ts" time="0.012" line="3" col="1">
      <failure message="1 test step failed">1 test step failed.</failure>
    </testcase>
    <testcase name="skipped group" classname="./a.test.ts" time="0.000" line="9" col="1">
      <skipped/>
    </testcase>
  </testsuite>
  <testsuite name="ext:deno_node/testing.ts" tests="4" disabled="2" errors="0" failures="1">
    <testcase name="grp a &gt; b &gt; passes &lt;x&gt;" classname="x" time="0.001" line="1" col="2">
    </testcase>
    <testcase name="grp a &gt; b &gt; fails" classname="x" time="0.003" line="1" col="2">
      <failure message="AssertionError">a &gt; b</failure>
    </testcase>
    <testcase name="grp a &gt; b &gt; skipped" classname="x" time="0.000" line="1" col="2">
      <skipped/>
    </testcase>
    <testcase name="grp a &gt; b &gt; skip opt" classname="x" time="0.000" line="1" col="2">
      <skipped/>
    </testcase>
  </testsuite>
</testsuites>`;

const BUN = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="bun test" tests="4" assertions="0" failures="1" skipped="2" time="0.04">
  <testsuite name="a.test.ts" file="a.test.ts" tests="4" failures="1" skipped="2">
    <testsuite name="grp a &gt; b" file="a.test.ts" line="3" tests="4" failures="1" skipped="2">
      <testcase name="passes &lt;x&gt;" classname="grp a &gt; b" time="0.002" line="4" />
      <testcase name="fails" classname="grp a &gt; b" time="0.002" line="5">
        <failure type="AssertionError" message="1 !== 2">AssertionError</failure>
      </testcase>
      <testcase name="skipped" classname="grp a &gt; b" time="0" line="6"><skipped /></testcase>
      <testcase name="skip opt" classname="grp a &gt; b" time="0" line="7"><skipped /></testcase>
    </testsuite>
  </testsuite>
</testsuites>`;

describe("countJUnit", () => {
  it("counts deno leaves and leaves out describe groups that have steps", () => {
    assert.deepEqual(countJUnit(DENO), { passed: 1, failed: 1, skipped: 3 });
  });
  it("counts bun test cases inside nested suites", () => {
    assert.deepEqual(countJUnit(BUN), { passed: 1, failed: 1, skipped: 2 });
  });
  it("counts <error> as a failure", () => {
    const xml = `<testsuites><testsuite><testcase name="t"><error message="x"/></testcase>` +
      `</testsuite></testsuites>`;
    assert.deepEqual(countJUnit(xml), { passed: 0, failed: 1, skipped: 0 });
  });
  it("counts contract tests per backend from the [sim]/[ffi] name suffix", () => {
    const xml = `<testsuites><testsuite>` +
      `<testcase name="notify [sim]"/><testcase name="map [sim]"><failure/></testcase>` +
      `<testcase name="notify [ffi]"><skipped/></testcase><testcase name="other"/>` +
      `</testsuite></testsuites>`;
    assert.deepEqual(countContract(xml), {
      sim: { passed: 1, failed: 1, skipped: 0 },
      ffi: { passed: 0, failed: 0, skipped: 1 },
    });
    assert.deepEqual(countContract(BUN), {});
  });
  it("counts every lane tag and names it", () => {
    const xml = `<testsuites><testsuite>` +
      `<testcase name="bind [domU]"/><testcase name="read [xenstore:oxenstored socket]"/>` +
      `<testcase name="not a lane [other]"/><testcase name="stream [vchan:ts-c]"><failure/></testcase>` +
      `</testsuite></testsuites>`;
    assert.deepEqual(countContract(xml), {
      domU: { passed: 1, failed: 0, skipped: 0 },
      "xenstore:oxenstored socket": { passed: 1, failed: 0, skipped: 0 },
      "vchan:ts-c": { passed: 0, failed: 1, skipped: 0 },
    });
    assert.equal(laneLabel("ffi"), "dom0 loopback");
    assert.equal(laneLabel("domU"), "dom0 <-> domU");
    assert.equal(laneLabel("xenstore:cxenstored xenbus"), "XenStore cxenstored xenbus");
  });
  it("rejects text that is not a JUnit report", () => {
    assert.throws(() => countJUnit("error: Module not found"), /not a JUnit/);
  });
});

describe("runnerResult", () => {
  it("counts a missing report as one failure", () => {
    const r = runnerResult("deno", { xml: null, status: 1 });
    assert.equal(r.failed, 1);
    assert.match(r.notes[0], /no JUnit report/);
  });
  it("adds a failure when the runner fails but the report shows none", () => {
    const r = runnerResult("bun", { xml: BUN.replace(/<failure[^]*?<\/failure>/, ""), status: 1 });
    assert.deepEqual([r.passed, r.failed, r.skipped], [2, 1, 2]);
  });
  it("with requireTests, counts zero executed tests as a failure", () => {
    const empty = `<testsuites name="bun test" tests="0"></testsuites>`;
    assert.equal(runnerResult("bun", { xml: empty, status: 0, requireTests: true }).failed, 1);
    assert.equal(runnerResult("bun", { xml: empty, status: 0 }).failed, 0);
  });
});

// Console lines copied from deno 2.9.6 and bun 1.4.5 runs where test files failed to load.
const DENO_LOG = `Uncaught error from ./tests/contract/grants.test.ts FAILED
running 0 tests from ./tests/contract/grants.test.ts
Uncaught error from ./tests/dom0/ffi_dom0.test.ts FAILED
running 1 test from ./tests/dom0/smoke.test.ts
./tests/contract/grants.test.ts (uncaught error)
`;
const BUN_LOG = `tests/dom0/ffi_dom0.test.ts:

# Unhandled error between tests
-------------------------------
SyntaxError: Export named 'x' not found in module '/xenchan/sim/mod.ts'.
`;

describe("countLogErrors", () => {
  it("counts deno's uncaught file errors and bun's errors between tests", () => {
    assert.equal(countLogErrors(DENO_LOG), 2);
    assert.equal(countLogErrors(BUN_LOG), 1);
    assert.equal(countLogErrors("ok | 3 passed | 0 failed\n"), 0);
  });
  it("adds them to the failures of a runner whose report only has passing tests", () => {
    const r = runnerResult("deno", {
      xml: DENO.replace(/<failure[^]*?<\/failure>/g, ""),
      status: 1,
      log: DENO_LOG,
    });
    assert.deepEqual([r.passed, r.failed, r.skipped], [2, 2, 3]);
  });
});

describe("summaryLine", () => {
  it("sums every runner and mentions skipped tests only when there are some", () => {
    const a = { runner: "a", passed: 3, failed: 1, skipped: 0, notes: [] };
    const b = { runner: "b", passed: 2, failed: 0, skipped: 0, notes: [] };
    assert.equal(summaryLine([a, b]), "5 passed, 1 failed");
    assert.equal(summaryLine([a, { ...b, skipped: 4 }]), "5 passed, 1 failed, 4 skipped");
  });
});

describe("runtimeLanes", () => {
  it("sums host and dom0 runners of the same runtime, keeping the totals", () => {
    const r = (runner, passed, failed, skipped = 0) => ({
      runner,
      passed,
      failed,
      skipped,
      notes: [],
    });
    const results = [
      r("deno", 10, 0, 2),
      r("bun", 9, 1),
      r("harness", 5, 0),
      r("deno (dom0)", 7, 1),
      r("bun (dom0)", 8, 0, 1),
    ];
    assert.deepEqual(runtimeLanes(results), [
      { lane: "deno", passed: 17, failed: 1, skipped: 2, runners: 2 },
      { lane: "bun", passed: 17, failed: 1, skipped: 1, runners: 2 },
      { lane: "harness", passed: 5, failed: 0, skipped: 0, runners: 1 },
    ]);
    const lanes = runtimeLanes(results);
    const sum = (k) => lanes.reduce((a, l) => a + l[k], 0);
    assert.equal(`${sum("passed")} passed, ${sum("failed")} failed`, "39 passed, 2 failed");
    assert.equal(summaryLine(results), "39 passed, 2 failed, 3 skipped");
  });
});
