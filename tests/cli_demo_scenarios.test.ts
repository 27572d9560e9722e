/**
 * The demo's scenario table (cli/demo.ts): which scenario runs for which
 * backend and options, and that a scenario put before a catch-all claims
 * only the options it applies to.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEMO_SCENARIOS, type DemoOptions, type DemoScenario, demoScenario } from "../cli/demo.ts";
import { LOOPBACK_SCENARIO } from "../cli/demo_loopback.ts";
import { SIM_SCENARIO } from "../cli/demo_sim.ts";

const options: DemoOptions = { backend: "auto", requests: 10, timeoutMs: 10_000, json: false };

describe("demo scenarios", () => {
  it("the simulator scenario for sim, dom0 loopback for ffi", () => {
    assert.equal(demoScenario("sim", options), SIM_SCENARIO);
    assert.equal(demoScenario("ffi", options), LOOPBACK_SCENARIO);
    assert.equal(SIM_SCENARIO.kind, "sim");
    assert.equal(LOOPBACK_SCENARIO.kind, "ffi");
  });

  it("every backend kind has a scenario that applies to any options", () => {
    for (const kind of ["sim", "ffi"] as const) {
      const ofKind = DEMO_SCENARIOS.filter((s) => s.kind === kind);
      assert.ok(ofKind.length >= 1, `no ${kind} scenario`);
      assert.equal(ofKind[ofKind.length - 1].applies({ ...options, requests: 1 }), true);
    }
  });

  it("a scenario before the catch-all runs only for the options it applies to", () => {
    const guest: DemoScenario = {
      name: "guest",
      kind: "ffi",
      applies: (o) => o.requests === 7,
      run: () => Promise.reject(new Error("not run in this test")),
    };
    const table = [SIM_SCENARIO, guest, LOOPBACK_SCENARIO];
    assert.equal(demoScenario("ffi", { ...options, requests: 7 }, table), guest);
    assert.equal(demoScenario("ffi", options, table), LOOPBACK_SCENARIO);
    assert.equal(demoScenario("sim", { ...options, requests: 7 }, table), SIM_SCENARIO);
    assert.equal(demoScenario("ffi", options, [SIM_SCENARIO]), undefined);
  });

  it("the simulator scenario runs on its own and passes every check", async () => {
    const r = await SIM_SCENARIO.run({ ...options, backend: "sim" }, "test");
    assert.equal(r.backend, "sim");
    assert.equal(r.reason, "test");
    assert.equal(r.exchange.front.responses, 10);
    assert.deepEqual(r.checks.filter((c) => !c.ok), []);
    assert.equal(r.checks.length, 7);
    assert.equal(r.ok, true);
  });
});
