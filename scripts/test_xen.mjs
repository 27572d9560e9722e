// deno-lint-ignore-file explicit-module-boundary-types -- plain JS run by node: no type syntax
// scripts/test_xen.mjs - runs the dom0 suite inside a real Xen dom0 (`npm run test:xen`).
//
// What it does: provisions, boots Xen + a Linux PV dom0 under QEMU once (scripts/xen/dom0.mjs,
// with guests: the toolstack, the guest images, dom0_max_vcpus=1), starts the XenStore daemon
// in dom0 (xenchan-xenstored start $XENCHAN_XENSTORED, default oxenstored; tests may switch to
// the other one and back, see tests/helpers/guest.ts), and inside dom0 runs the dom0 suite = the
// test files under tests/dom0/ (need real Xen) and tests/contract/ (with
// XENCHAN_TEST_BACKENDS=ffi, so only the real backend variant runs) under
//   Deno: deno test -A --no-check --junit-path=/out/deno.xml <files>
//   Bun:  bun test --timeout 120000 --reporter=junit --reporter-outfile=/out/bun.xml <files>
//         (bun's default 5 s per test is too short for a 1-vCPU dom0 under TCG on a busy host)
// Each runner's console output comes back as a result file and is printed here; the counts
// come from the JUnit reports. A missing directory is skipped. A runner that leaves no report,
// exits non-zero with no failing test, or executes zero tests counts as a failure, and so does
// a harness failure (boot or transfer), so a broken harness never looks green.
// A daemon that fails to start is reported (xenstored.log) and the suite still runs: the
// guest tests then fail with the helper's reason.
// Environment: XENCHAN_RUNNER_TIMEOUT_S (per runner in dom0, default 1500; the VM's hard
// limit is then twice that plus 1200 s unless XENCHAN_XEN_TIMEOUT_S is set), XENCHAN_XENSTORED
// (oxenstored or cxenstored: the daemon the suite starts with), XENCHAN_DOM0_TESTS
// (space-separated repo-relative files replacing the default list, for debugging),
// XENCHAN_FIDELITY_* (passed into dom0 for tests/dom0/fidelity_dom0.test.ts) and the
// knobs in scripts/xen/config.mjs. Results: <cache>/runs/test_xen/out/.
// Exports: testXen() -> Promise<RunnerResult[]>.
// Exit:   0 when nothing failed, 1 otherwise.

import path from "node:path";
import { fileURLToPath } from "node:url";
import { HarnessError } from "./xen/config.mjs";
import { runInDom0 } from "./xen/dom0.mjs";
import { shellQuote } from "./xen/initrd.mjs";
import { listTests } from "./lib/files.mjs";
import { printResults, runnerResult, summaryLine } from "./lib/junit.mjs";

const RUNNERS = ["deno", "bun"];
/** Limit of one runner in dom0 (XENCHAN_RUNNER_TIMEOUT_S, default 1500). */
const RUNNER_TIMEOUT_S = Number.parseInt(process.env.XENCHAN_RUNNER_TIMEOUT_S ?? "1500", 10);

/** The daemon the suite starts with, and the other one its XenStore files run on again. */
const FIRST_DAEMON = process.env.XENCHAN_XENSTORED ?? "oxenstored";
const SECOND_DAEMON = FIRST_DAEMON === "oxenstored" ? "cxenstored" : "oxenstored";

/** Files whose results depend on the XenStore daemon: they run once per daemon. */
const DAEMON_FILES = /xenstore/;

/** The runs of one boot: [file-name prefix, runner label]. */
function runs(files) {
  const out = RUNNERS.map((r) => [r, `${r} (dom0)`]);
  if (files.some((f) => DAEMON_FILES.test(f))) {
    out.push(...RUNNERS.map((r) => [`${r}-${SECOND_DAEMON}`, `${r} (dom0, ${SECOND_DAEMON})`]));
  }
  return out;
}

/** Runs the dom0 suite; resolves to one RunnerResult per runner. */
export async function testXen() {
  const files = process.env.XENCHAN_DOM0_TESTS?.split(/\s+/).filter(Boolean) ??
    [...listTests("tests/dom0"), ...listTests("tests/contract")];
  if (files.length === 0) {
    return harnessFailure("no test files under tests/dom0/ or tests/contract/");
  }
  console.log(`\n== dom0 suite: ${files.length} files ==\n${files.join("\n")}`);
  let run;
  try {
    run = await runInDom0({
      name: "test_xen",
      script: dom0Script(files),
      guests: true,
      // Both runners with their guests (the lifecycle test alone boots 14 guests per
      // runtime), then the short XenStore reruns on the second daemon: the VM gets 2 x the
      // runner limit plus 1200 s, unless XENCHAN_XEN_TIMEOUT_S says.
      timeoutS: process.env.XENCHAN_XEN_TIMEOUT_S ? undefined : 2 * RUNNER_TIMEOUT_S + 1200,
      env: {
        XENCHAN_TEST_BACKENDS: "ffi",
        XENCHAN_RUNNER_TIMEOUT_S: String(RUNNER_TIMEOUT_S),
        XENCHAN_XENSTORED: FIRST_DAEMON,
        XENCHAN_XENSTORE_TRANSPORTS: "socket,xenbus",
        ...fidelityKnobs(),
      },
    });
  } catch (e) {
    if (!(e instanceof HarnessError)) throw e;
    console.error(`test_xen: harness failure: ${e.message}`);
    return harnessFailure(e.message.split("\n")[0]);
  }
  const text = (name) => run.files.get(name)?.toString("utf8") ?? null;
  console.log(
    `\n== dom0: XenStore daemon, guest check, memory ==\n${text("xenstored.log") ?? "(no output)"}`,
  );
  const results = [];
  for (const [runner, label] of runs(files)) {
    const log = text(`${runner}.log`) ?? "";
    console.log(`\n== dom0: ${label} test output ==\n${log || "(no output)"}`);
    const status = Number.parseInt(text(`${runner}.status`) ?? "", 10);
    results.push(runnerResult(label, {
      xml: text(`${runner}.xml`),
      log,
      status: Number.isNaN(status) ? -1 : status,
      requireTests: true,
    }));
  }
  console.log(`\ndom0 timings (s): ${JSON.stringify(run.timings)}; results in ${run.outDir}`);
  return results;
}

/** The sh script run in dom0: each runner with its own timeout, output and status files. */
function dom0Script(files) {
  const deno = files.map(shellQuote).join(" ");
  const bun = files.map((f) => shellQuote(`./${f}`)).join(" ");
  const daemonFiles = files.filter((f) => DAEMON_FILES.test(f));
  const second = daemonFiles.length === 0 ? "" : `
# The XenStore files again on the other daemon (no guest is alive between the runs).
{ xenchan-xenstored stop && xenchan-xenstored start ${SECOND_DAEMON}; } >>"$XENCHAN_OUT/xenstored.log" 2>&1 ||
  echo "xenchan: switching to ${SECOND_DAEMON} failed" | tee -a "$XENCHAN_OUT/xenstored.log"
export XENCHAN_XENSTORED=${SECOND_DAEMON}
run deno-${SECOND_DAEMON} deno test -A --no-check --junit-path="$XENCHAN_OUT/deno-${SECOND_DAEMON}.xml" ${
    daemonFiles.map(shellQuote).join(" ")
  }
run bun-${SECOND_DAEMON} bun test --timeout 120000 --reporter=junit --reporter-outfile="$XENCHAN_OUT/bun-${SECOND_DAEMON}.xml" ${
    daemonFiles.map((f) => shellQuote(`./${f}`)).join(" ")
  }`;
  return `#!/bin/sh
# Generated by scripts/test_xen.mjs.
run() {
  name=$1; shift
  echo "xenchan: $name test starting"
  timeout -s KILL "$XENCHAN_RUNNER_TIMEOUT_S" "$@" >"$XENCHAN_OUT/$name.log" 2>&1
  s=$?
  echo "$s" >"$XENCHAN_OUT/$name.status"
  echo "xenchan: $name test exit $s"
}
xenchan-xenstored start "$XENCHAN_XENSTORED" >"$XENCHAN_OUT/xenstored.log" 2>&1 ||
  echo "xenchan: xenchan-xenstored start $XENCHAN_XENSTORED failed" | tee -a "$XENCHAN_OUT/xenstored.log"
xenchan-guest check >>"$XENCHAN_OUT/xenstored.log" 2>&1
{ echo "dom0 memory before the tests (MB):"; free -m; } >>"$XENCHAN_OUT/xenstored.log" 2>&1
run deno deno test -A --no-check --junit-path="$XENCHAN_OUT/deno.xml" ${deno}
run bun bun test --timeout 120000 --reporter=junit --reporter-outfile="$XENCHAN_OUT/bun.xml" ${bun}
${second}
# the daemons' and guests' logs, for a failure's post-mortem
mkdir -p "$XENCHAN_OUT/xen-logs"
cp -r /var/log/xen/. "$XENCHAN_OUT/xen-logs/" 2>/dev/null
`;
}

/** The XENCHAN_FIDELITY_* knobs of tests/dom0/fidelity_dom0.test.ts, passed into dom0 as set. */
function fidelityKnobs() {
  return Object.fromEntries(
    Object.entries(process.env).filter(([k, v]) => k.startsWith("XENCHAN_FIDELITY_") && v),
  );
}

function harnessFailure(why) {
  return RUNNERS.map((runner) => ({
    runner: `${runner} (dom0)`,
    passed: 0,
    failed: 1,
    skipped: 0,
    notes: [`harness failure: ${why}`],
  }));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const results = await testXen();
  printResults("dom0 results", results);
  console.log(summaryLine(results));
  process.exitCode = results.some((r) => r.failed > 0) ? 1 : 0;
}
