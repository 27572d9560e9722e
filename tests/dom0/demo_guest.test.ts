/**
 * The demo's real-guest scenario (cli/demo_guest.ts) in the dom0 booted
 * with guests by scripts/test_xen.mjs: the back end here, the front end in
 * a real PV guest under this test's runtime; the report must show every
 * request answered, the unmap notification from the guest's kernel after
 * the front end's SIGKILL, and a real DOMAIN_DEATH after the guest's
 * destruction, with every part reported real. Skipped elsewhere.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { GUEST_SCENARIO } from "../../cli/demo_guest.ts";
import type { DemoOptions } from "../../cli/demo_scenario.ts";
import { whyNoGuests } from "../helpers/guest.ts";

const skip = whyNoGuests() ?? false;

describe("demo with a real guest", { skip }, () => {
  it("the guest scenario's report: exchange, unmap notification, real DOMAIN_DEATH", {
    timeout: 600_000,
  }, async () => {
    const options: DemoOptions = {
      backend: "ffi",
      requests: 200,
      timeoutMs: 60_000,
      json: true,
      guest: true,
    };
    const report = await GUEST_SCENARIO.run(options, "test");
    console.log(JSON.stringify({ checks: report.checks, ms: report.ms, death: report.death }));
    for (const c of report.checks) assert.ok(c.ok, `${c.name}: ${c.detail}`);
    assert.equal(report.ok, true);
    assert.notEqual(report.setup.frontDomid, 0, "the front end is in another domain");
    assert.equal(report.exchange.front.responses, 200);
    assert.equal(report.crash.liveBefore, 1);
    assert.equal(report.crash.liveAfter, 0);
    assert.equal(report.crash.eventPort, report.setup.backPort);
    assert.equal(report.death.status, "received");
    assert.deepEqual(report.skipped, []);
    for (const [part, how] of report.parts) assert.match(how, /^REAL/, part);
  });
});
