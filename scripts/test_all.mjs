// scripts/test_all.mjs - the whole test run (`npm test`): host suites, then the dom0 suite.
//
// What it does: runs scripts/test_host.mjs (Deno, Bun and the harness self-tests on the host),
// then scripts/test_xen.mjs (Deno and Bun inside a real Xen dom0 under QEMU), prints the
// per-runner counts, and as its LAST line exactly "N passed, N failed" (", N skipped" appended
// when any test was skipped), summed over every runner on the host and in dom0.
// Inputs: none (environment knobs: see scripts/xen/config.mjs and scripts/test_xen.mjs).
// Exit:   0 when nothing failed; 1 on any failed test, crashed runner or harness failure.

import { testHost } from "./test_host.mjs";
import { testXen } from "./test_xen.mjs";
import { printLanes, printResults, summaryLine } from "./lib/junit.mjs";

const host = await testHost();
let xen;
try {
  xen = await testXen();
} catch (e) {
  console.error("test_all: the dom0 suite crashed:", e);
  xen = [{ runner: "dom0 suite", passed: 0, failed: 1, skipped: 0, notes: [String(e)] }];
}
const all = [...host, ...xen];
printResults("all results", all);
printLanes(all);
console.log(summaryLine(all));
process.exitCode = all.some((r) => r.failed > 0) ? 1 : 0;
