/**
 * The demo's real-guest scenario (cli/demo_guest.ts) in the dom0 booted
 * with guests by scripts/test_xen.mjs: the back end here, the front end in
 * a real PV guest under this test's runtime; the report must show every
 * request answered, the unmap notification from the guest's kernel after
 * the front end's SIGKILL, and a real DOMAIN_DEATH after the guest's
 * destruction, with every part reported real; once with the default
 * source (XenStore @releaseDomain + libxenctrl) and once with --source
 * libxl (libxl's death watch), and the report's parts table must name the
 * source that delivered DOMAIN_DEATH. Skipped elsewhere.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { GUEST_SCENARIO } from "../../cli/demo_guest.ts";
import type { DemoReport } from "../../cli/demo_report.ts";
import type { DemoOptions } from "../../cli/demo_scenario.ts";
import { whyNoGuests } from "../helpers/guest.ts";

const skip = whyNoGuests() ?? false;

/** Runs the guest scenario with `source` and checks the whole report. */
async function runGuest(source: "xenstore" | "libxl"): Promise<DemoReport> {
  const options: DemoOptions = {
    backend: "ffi",
    requests: 200,
    timeoutMs: 60_000,
    json: true,
    guest: true,
    source,
  };
  const report = await GUEST_SCENARIO.run(options, "test");
  console.log(
    JSON.stringify({ source, checks: report.checks, ms: report.ms, death: report.death }),
  );
  for (const c of report.checks) assert.ok(c.ok, `${c.name}: ${c.detail}`);
  assert.equal(report.ok, true);
  assert.notEqual(report.setup.frontDomid, 0, "the front end is in another domain");
  assert.equal(report.exchange.front.responses, 200);
  assert.equal(report.crash.liveBefore, 1);
  assert.equal(report.crash.liveAfter, 0);
  assert.equal(report.crash.eventPort, report.setup.backPort);
  assert.equal(report.death.status, "received");
  assert.match(report.death.detail, new RegExp(`domain ${report.setup.frontDomid}\\b`));
  assert.deepEqual(report.skipped, []);
  for (const [part, how] of report.parts) assert.match(how, /^REAL/, part);
  return report;
}

/** The parts table's DOMAIN_DEATH row. */
function deathPart(report: DemoReport): string {
  const row = report.parts.find(([part]) => part === "DOMAIN_DEATH");
  assert.ok(row, "the parts table has a DOMAIN_DEATH row");
  return row[1];
}

describe("demo with a real guest", { skip }, () => {
  it("the guest scenario's report: exchange, unmap notification, real DOMAIN_DEATH", {
    timeout: 600_000,
  }, async () => {
    const report = await runGuest("xenstore");
    assert.match(deathPart(report), /@releaseDomain watch \+ libxenctrl/);
    assert.doesNotMatch(deathPart(report), /libxl/);
  });

  it("--source libxl: the same run, DOMAIN_DEATH from libxl's death watch", {
    timeout: 600_000,
  }, async () => {
    const report = await runGuest("libxl");
    assert.match(deathPart(report), /libxl death watch \(.*libxenlight.*osevent hooks/);
    assert.doesNotMatch(deathPart(report), /@releaseDomain/);
  });
});
