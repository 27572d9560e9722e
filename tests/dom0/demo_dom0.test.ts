/**
 * Real Xen dom0 only: `xenchan demo` on the real backend (dom0 loopback),
 * run as a user runs it, plus `xenchan probe` there. The front end is a
 * child process killed with SIGKILL, so the cleared live byte and the event
 * come from the real dom0 kernel and Xen. Skipped off Xen; run in dom0 by
 * `npm run test:xen`.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { DemoReport } from "../../cli/demo.ts";
import type { ProbeReport } from "../../cli/probe.ts";
import { LIVE_OFFSET } from "../../cli/ring.ts";
import { runCli } from "../helpers/child.ts";
import { whyNoXen } from "../helpers/xen.ts";

const skip = (await whyNoXen()) ?? false;

describe("xenchan demo in a real dom0", () => {
  it("--backend ffi: exchange, then the REAL unmap notification of a killed front end", {
    skip,
    timeout: 180_000,
  }, async () => {
    const r = await runCli(["demo", "--backend", "ffi", "--requests", "300"]);
    console.log(r.stdout);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^backend: ffi \(REAL Xen\)/m);
    assert.match(r.stdout, /requests 300 sent, 300 answered, 300 responses checked, 0 wrong/);
    assert.match(
      r.stdout,
      /SIGKILL to pid \d+; the real dom0 kernel \(gntdev\) tore its mapping down/,
    );
    assert.match(r.stdout, new RegExp(`live byte ${LIVE_OFFSET}: 1 before the crash, 0 after`));
    assert.match(r.stdout, /unmap-notify event on back-end port \d+, [\d.]+ ms after the crash/);
    assert.match(r.stdout, /front end\s+REAL separate process \(pid \d+\)/);
    assert.match(r.stdout, /DOMAIN_DEATH\s+SKIPPED/);
    assert.match(r.stdout, /^result: PASS \(7 of 7 checks passed, 1 skipped\)/m);
  });

  it("auto picks the real backend in dom0; the JSON report has the real crash figures", {
    skip,
    timeout: 180_000,
  }, async () => {
    const r = await runCli(["demo", "--json"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const report = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as DemoReport;
    assert.equal(report.backend, "ffi");
    assert.equal(report.ok, true);
    assert.equal(report.exchange.front.responses, 1000);
    assert.deepEqual(report.exchange.front.errors, []);
    assert.equal(report.crash.liveBefore, 1);
    assert.equal(report.crash.liveAfter, 0);
    assert.equal(report.crash.eventPort, report.setup.backPort);
    assert.equal(report.death.status, "skipped");
    assert.equal(report.setup.frontDomid, 0);
  });

  it("probe (with -A on Deno) reports the real backend, its devices and versions", {
    skip,
    timeout: 120_000,
  }, async () => {
    const r = await runCli(["probe", "--json"], "-A");
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const report = JSON.parse(r.stdout) as ProbeReport;
    console.log(JSON.stringify(report, null, 2));
    assert.equal(report.selected.kind, "ffi");
    assert.equal(report.ffi.usable, true);
    assert.deepEqual(report.ffi.devices.map((d) => d.status), ["ok", "ok", "ok"]);
    for (const lib of report.ffi.libraries) assert.match(lib.version ?? "", /^\d+(\.\d+)*$/);
    assert.match(report.abi.kind, /^(fifo|2l|unknown)$/);
  });
});
