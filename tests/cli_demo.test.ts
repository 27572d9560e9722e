/**
 * `xenchan demo` on the simulator, end to end: in-process (text and JSON),
 * and as a child process of this runtime exactly as a user types it.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { DemoReport } from "../cli/demo.ts";
import { bufferOutput } from "../cli/io.ts";
import { main } from "../cli/main.ts";
import { LIVE_OFFSET } from "../cli/ring.ts";
import { runCli } from "./helpers/child.ts";
import { whyNoXen } from "./helpers/xen.ts";

const noXen = await whyNoXen();

describe("xenchan demo on the simulator", () => {
  it("exchanges the requests, sees the crash and the domain's death (text)", async () => {
    const out = bufferOutput();
    const code = await main(["demo", "--backend", "sim", "--requests", "20"], out);
    const text = out.text();
    assert.equal(code, 0, text + out.stderr.join("\n"));
    assert.match(text, /^backend: sim \(simulator\)/m);
    assert.match(text, /requests 20 sent, 20 answered, 20 responses checked, 0 wrong/);
    assert.match(text, new RegExp(`live byte ${LIVE_OFFSET}: 1 before the crash, 0 after`));
    assert.match(text, /unmap-notify event on back-end port \d+, [\d.]+ ms after the crash/);
    assert.match(text, /osevent: DOMAIN_DEATH for domain 1/);
    assert.match(text, /^result: PASS \(7 of 7 checks passed\)/m);
    assert.doesNotMatch(text, /FAIL/);
  });

  it("reports every figure in --json, across many ring wrap-arounds", async () => {
    const out = bufferOutput();
    const n = 500; // 15+ trips around the 32-slot ring
    assert.equal(
      await main(["demo", "--backend", "sim", "--requests", String(n), "--json"], out),
      0,
    );
    assert.equal(out.stdout.length, 1);
    const r = JSON.parse(out.stdout[0]) as DemoReport;
    assert.equal(r.backend, "sim");
    assert.equal(r.ok, true);
    assert.ok(r.checks.length >= 7 && r.checks.every((c) => c.ok), JSON.stringify(r.checks));
    assert.equal(r.exchange.front.requests, n);
    assert.equal(r.exchange.front.responses, n);
    assert.equal(r.exchange.back.responses, n);
    assert.deepEqual(r.exchange.front.errors, []);
    assert.ok(r.exchange.front.notifiesSent >= 1 && r.exchange.front.notifiesSent <= n);
    assert.ok(r.exchange.back.eventsReceived <= r.exchange.front.notifiesSent);
    assert.equal(r.crash.liveBefore, 1);
    assert.equal(r.crash.liveAfter, 0);
    assert.equal(r.crash.eventPort, r.setup.backPort);
    assert.equal(r.death.status, "received");
    assert.equal(r.setup.frontDomid, 1);
    assert.match(r.setup.abi, /d0 fifo, d1 fifo/);
    assert.deepEqual(r.skipped, []);
  });

  it(
    "runs as a child process, as a user types it (--requests 50)",
    { timeout: 60_000 },
    async () => {
      const r = await runCli(["demo", "--requests", "50"]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /requests 50 sent, 50 answered, 50 responses checked, 0 wrong/);
      assert.match(r.stdout, /^result: PASS/m);
    },
  );

  it(
    "as a child process, a bad flag exits 2 with the message on stderr",
    { timeout: 60_000 },
    async () => {
      const r = await runCli(["demo", "--requests", "lots"]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /--requests must be an integer/);
      assert.equal(r.stdout, "");
    },
  );

  it("--backend ffi off Xen fails with exit 1 and says why", {
    skip: noXen === null ? "this is a Xen dom0" : false,
  }, async () => {
    const out = bufferOutput();
    assert.equal(await main(["demo", "--backend", "ffi", "--requests", "5"], out), 1);
    const err = out.stderr.join("\n");
    if (/ENOENT/.test(noXen ?? "")) {
      assert.match(err, /ENOENT.*the \/dev\/xen device does not exist/);
    } else assert.match(err, /xenchan demo: (the ffi backend is not available|FAIL)/);
    assert.equal(out.stdout.length, 0, "no report is printed");
  });
});
