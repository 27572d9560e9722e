/**
 * `xenchan demo --source xenstore|libxl`: parsing, and the refusal of
 * libxl (exit 2, a usage error) wherever the scenario that would run is not
 * the real-guest one: without --guest, with --backend sim, and when "auto"
 * picks the simulator off Xen. The libxl run itself is in
 * tests/dom0/demo_guest.test.ts.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { UsageError } from "../cli/args.ts";
import { DEMO_SCENARIOS, DEMO_SPEC, demoOptions, runDemo } from "../cli/demo.ts";
import { GUEST_SCENARIO } from "../cli/demo_guest.ts";
import { bufferOutput } from "../cli/io.ts";
import { main } from "../cli/main.ts";
import { runCli } from "./helpers/child.ts";
import { whyNoXen } from "./helpers/xen.ts";

const noXen = await whyNoXen();

describe("xenchan demo --source", () => {
  it("defaults to xenstore and takes libxl with --guest", () => {
    assert.equal(demoOptions({}).source, "xenstore");
    assert.equal(demoOptions({ guest: true }).source, "xenstore");
    assert.equal(demoOptions({ source: "xenstore" }).source, "xenstore");
    const o = demoOptions({ guest: true, source: "libxl", backend: "ffi" });
    assert.equal(o.source, "libxl");
    assert.equal(o.guest, true);
    assert.equal(o.backend, "ffi");
    assert.equal(demoOptions({ guest: true, source: "libxl" }).backend, "auto");
  });

  it("refuses a value other than xenstore or libxl, naming it", () => {
    for (const bad of ["xl", "LIBXL", ""]) {
      assert.throws(
        () => demoOptions({ guest: true, source: bad }),
        (e: unknown) =>
          e instanceof UsageError &&
          e.message.includes("--source must be xenstore or libxl") &&
          e.message.includes(`'${bad}'`),
      );
    }
  });

  it("refuses libxl without --guest and with --backend sim", () => {
    assert.throws(
      () => demoOptions({ source: "libxl" }),
      /--source libxl is only for the real-guest scenario \(--guest on real Xen\), not without --guest/,
    );
    assert.throws(
      () => demoOptions({ source: "libxl", backend: "ffi" }),
      /not without --guest/,
    );
    assert.throws(
      () => demoOptions({ source: "libxl", guest: true, backend: "sim" }),
      (e: unknown) => e instanceof UsageError && /not with --backend sim/.test(e.message),
    );
  });

  it("only the real-guest scenario takes libxl", () => {
    assert.equal(GUEST_SCENARIO.libxlSource, true);
    for (const s of DEMO_SCENARIOS.filter((s) => s !== GUEST_SCENARIO)) {
      assert.notEqual(s.libxlSource, true, s.name);
    }
  });

  it("main exits 2 for --source libxl on the simulator and prints no report", async () => {
    for (
      const argv of [
        ["demo", "--source", "libxl"],
        ["demo", "--backend", "sim", "--guest", "--source", "libxl"],
        ["demo", "--guest", "--source", "nope"],
      ]
    ) {
      const out = bufferOutput();
      assert.equal(await main(argv, out), 2, argv.join(" "));
      assert.match(out.stderr.join("\n"), /^xenchan demo: --source/);
      assert.equal(out.stdout.length, 0);
    }
  });

  it("off Xen, auto picks the simulator: runDemo refuses libxl with a UsageError", {
    skip: noXen === null ? "this is a Xen dom0 (auto picks ffi)" : false,
  }, async () => {
    const out = bufferOutput();
    await assert.rejects(
      runDemo(
        {
          backend: "auto",
          requests: 5,
          timeoutMs: 5_000,
          json: false,
          guest: true,
          source: "libxl",
        },
        out,
      ),
      (e: unknown) =>
        e instanceof UsageError &&
        /--source libxl needs the real-guest scenario on real Xen; the sim backend/.test(
          e.message,
        ) &&
        /simulator scenario, which has no libxl source/.test(e.message),
    );
    assert.equal(out.stdout.length, 0, "nothing ran");
    const viaMain = bufferOutput();
    assert.equal(await main(["demo", "--guest", "--source", "libxl"], viaMain), 2);
    assert.match(viaMain.stderr.join("\n"), /no libxl source/);
    assert.equal(viaMain.stdout.length, 0);
  });

  it("--help names the option", () => {
    assert.match(DEMO_SPEC.help, /--source S {4}with --guest: where DOMAIN_DEATH comes from/);
  });

  it(
    "as a child process, --source libxl without --guest exits 2 with the message on stderr",
    { timeout: 60_000 },
    async () => {
      const r = await runCli(["demo", "--source", "libxl", "--requests", "5"]);
      assert.equal(r.code, 2, r.stdout + r.stderr);
      assert.match(r.stderr, /--source libxl is only for the real-guest scenario/);
      assert.equal(r.stdout, "");
    },
  );
});
