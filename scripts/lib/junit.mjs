// deno-lint-ignore-file explicit-module-boundary-types -- plain JS run by node: no type syntax
// scripts/lib/junit.mjs - counts test results in a JUnit XML report (deno or bun).
//
// countJUnit(xml) -> { passed, failed, skipped } counting leaf <testcase> elements:
//   failed  = has a <failure> or <error> child; skipped = has a <skipped> child; else passed.
// Deno also reports every describe() group as a <testcase> named "group" whose steps are named
// "group > step"; such a group is not a leaf and is not counted (its failing steps are).
// A group with no recorded steps (e.g. a skipped describe) counts as one leaf.
// Throws Error when the text has no <testsuites>/<testsuite> root (not a JUnit report).
//
// RunnerResult (used by every test script): { runner, passed, failed, skipped, notes: string[] }

/** Counts leaf test cases in a JUnit report (see the file comment). */
export function countJUnit(xml) {
  const counts = { passed: 0, failed: 0, skipped: 0 };
  for (const c of leafCases(xml)) counts[c.outcome]++;
  return counts;
}

/**
 * Lane tags: a test whose name ends in "[tag]" belongs to a lane. "[sim]" and "[ffi]" come from
 * the contract suites (tests/helpers/backends.ts): simulator and, on real Xen, dom0 loopback;
 * "[domU]" tests run between dom0 and a real guest; "[xenstore:<where>]", "[vchan:<where>]",
 * "[libxl:<where>]" and "[fidelity:<where>]" name the XenStore daemon and transport, the vchan
 * peers, the libxl source and the fidelity lane a test ran in.
 */
const LANE_TAG = /\[(sim|ffi|domU|(?:xenstore|vchan|libxl|fidelity)(?::[^\[\]]+)?)\]$/;

/** The words a lane tag stands for in the summary. */
export function laneLabel(tag) {
  if (tag === "sim") return "simulator";
  if (tag === "ffi") return "dom0 loopback";
  if (tag === "domU") return "dom0 <-> domU";
  const [kind, where] = tag.split(/:(.*)/s);
  const name = { xenstore: "XenStore", vchan: "vchan", libxl: "libxl", fidelity: "fidelity" }[kind];
  return where ? `${name} ${where}` : name;
}

/**
 * Counts the tests of each lane (leaf cases whose name ends in a lane tag, see LANE_TAG):
 * { tag: {passed, failed, skipped}, ... }, only the lanes that appear. Throws like countJUnit.
 */
export function countContract(xml) {
  const out = {};
  for (const c of leafCases(xml)) {
    const lane = LANE_TAG.exec(c.name)?.[1];
    if (!lane) continue;
    out[lane] ??= { passed: 0, failed: 0, skipped: 0 };
    out[lane][c.outcome]++;
  }
  return out;
}

/** The leaf <testcase>s of a report, each { name, outcome: "passed" | "failed" | "skipped" }. */
function leafCases(xml) {
  if (!/<testsuites?\b/.test(xml)) throw new Error("not a JUnit XML report");
  const cases = [];
  const open = /<testcase\b((?:\s+[\w:.-]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>/g;
  let m;
  while ((m = open.exec(xml)) !== null) {
    let body = "";
    if (m[2] !== "/") {
      const close = xml.indexOf("</testcase>", open.lastIndex);
      body = close < 0 ? xml.slice(open.lastIndex) : xml.slice(open.lastIndex, close);
    }
    const name = decode(/\bname\s*=\s*"([^"]*)"/.exec(m[1])?.[1] ?? "");
    cases.push({ name, body });
  }
  const names = cases.map((c) => c.name);
  return cases
    .filter((c) => !names.some((n) => n.startsWith(`${c.name} > `))) // not a deno describe group
    .map((c) => ({
      name: c.name,
      outcome: /<(failure|error)\b/.test(c.body)
        ? "failed"
        : /<skipped\b/.test(c.body)
        ? "skipped"
        : "passed",
    }));
}

function decode(s) {
  return s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'").replace(/&#(\d+);/g, (_, d) => String.fromCharCode(Number(d)))
    .replace(/&amp;/g, "&");
}

/**
 * Counts the errors a runner printed outside any test, which its JUnit report leaves out:
 * deno's "Uncaught error from <file> FAILED" and bun's "# Unhandled error between tests"
 * (a test file that fails to load, an error thrown at top level or between tests).
 */
export function countLogErrors(log) {
  const deno = log.match(/^Uncaught error from \S+ FAILED\s*$/gm)?.length ?? 0;
  const bun = log.match(/^# Unhandled error between tests\s*$/gm)?.length ?? 0;
  return deno + bun;
}

/**
 * Turns one runner's outcome into a RunnerResult. `xml` is the report text or null when the
 * runner wrote none; `status` is its exit status; `log` its console output (optional). A missing
 * report adds one failure; each error outside tests found in `log` (countLogErrors) adds one;
 * a non-zero exit with still no failure recorded adds one, so a crash never looks green. With
 * requireTests, zero executed tests (passed + failed) also adds one failure.
 */
export function runnerResult(runner, { xml, status, log = "", requireTests = false }) {
  const r = { runner, passed: 0, failed: 0, skipped: 0, notes: [] };
  if (xml === null) {
    r.failed = 1;
    r.notes.push(`no JUnit report (runner crashed or never ran; exit ${status})`);
    return r;
  }
  try {
    Object.assign(r, countJUnit(xml));
    r.contract = countContract(xml);
  } catch (e) {
    r.failed = 1;
    r.notes.push(`unreadable JUnit report: ${e.message}`);
    return r;
  }
  const outside = countLogErrors(log);
  if (outside > 0) {
    r.failed += outside;
    r.notes.push(
      `${outside} error(s) outside any test (e.g. a file failed to load): see the output`,
    );
  }
  if (status !== 0 && r.failed === 0) {
    r.failed += 1;
    r.notes.push(`runner exited ${status} but its report shows no failing test`);
  }
  if (requireTests && r.passed + r.failed === 0) {
    r.failed += 1;
    r.notes.push("zero tests executed (harness failure)");
  }
  return r;
}

/** Returns the closing line "N passed, N failed[, N skipped]" for RunnerResults. */
export function summaryLine(results) {
  const sum = (k) => results.reduce((a, r) => a + r[k], 0);
  const skipped = sum("skipped");
  return `${sum("passed")} passed, ${sum("failed")} failed` +
    (skipped ? `, ${skipped} skipped` : "");
}

/**
 * Sums RunnerResults per runtime lane: the first word of the runner name ("deno (dom0)" and
 * "deno" are lane deno, "bun (dom0)" lane bun). Returns [{ lane, passed, failed, skipped,
 * runners }] in first-seen order; runners = how many results went into the lane. The totals
 * are the same sums summaryLine() makes, split by lane.
 */
export function runtimeLanes(results) {
  const lanes = new Map();
  for (const r of results) {
    const lane = r.runner.trim().split(/\s+/)[0] ?? r.runner;
    const sum = lanes.get(lane) ?? { lane, passed: 0, failed: 0, skipped: 0, runners: 0 };
    sum.passed += r.passed;
    sum.failed += r.failed;
    sum.skipped += r.skipped;
    sum.runners += 1;
    lanes.set(lane, sum);
  }
  return [...lanes.values()];
}

/**
 * Prints one line per RunnerResult plus its lanes and notes, then, when some runtime ran in more than one
 * place (host and dom0), one line per runtime lane (runtimeLanes()).
 */
export function printResults(title, results) {
  console.log(`\n== ${title} ==`);
  for (const r of results) {
    const skip = r.skipped ? `, ${r.skipped} skipped` : "";
    console.log(`${r.runner.padEnd(14)} ${r.passed} passed, ${r.failed} failed${skip}`);
    for (const [tag, c] of Object.entries(r.contract ?? {})) {
      console.log(`${"".padEnd(14)} lane ${laneLabel(tag)}: ${countsText(c)}`);
    }
    for (const n of r.notes) console.log(`${"".padEnd(14)} note: ${n}`);
  }
  const lanes = runtimeLanes(results);
  if (lanes.some((l) => l.runners > 1)) {
    console.log("per runtime:");
    for (const l of lanes) {
      const skip = l.skipped ? `, ${l.skipped} skipped` : "";
      console.log(`  ${l.lane.padEnd(12)} ${l.passed} passed, ${l.failed} failed${skip}`);
    }
  }
}

/**
 * Prints what ran in each lane for each runtime (the first word of a runner's name: deno, bun,
 * node), summed over every runner of that runtime (host and real Xen), lanes in a fixed order.
 */
export function printLanes(results) {
  const byLane = new Map();
  for (const r of results) {
    const runtime = r.runner.split(" ")[0];
    for (const [tag, c] of Object.entries(r.contract ?? {})) {
      const key = `${laneLabel(tag)}|${runtime}`;
      const sum = byLane.get(key) ?? { passed: 0, failed: 0, skipped: 0 };
      for (const k of ["passed", "failed", "skipped"]) sum[k] += c[k];
      byLane.set(key, sum);
    }
  }
  console.log("\n== lanes (per runtime) ==");
  if (byLane.size === 0) console.log("(no lane-tagged tests ran)");
  for (const key of [...byLane.keys()].sort()) {
    const [lane, runtime] = key.split("|");
    console.log(`${lane.padEnd(34)} ${runtime.padEnd(5)} ${countsText(byLane.get(key))}`);
  }
}

function countsText(c) {
  return `${c.passed} passed, ${c.failed} failed` + (c.skipped ? `, ${c.skipped} skipped` : "");
}
