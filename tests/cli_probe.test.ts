/**
 * `xenchan probe` on this machine: it names the backend "auto" picks and the
 * reason (off Xen: the simulator, because /dev/xen/evtchn is missing), the
 * library files and versions, and the ABI in use.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { versionFromFileName } from "../cli/facts.ts";
import { bufferOutput } from "../cli/io.ts";
import { main } from "../cli/main.ts";
import type { ProbeReport } from "../cli/probe.ts";
import { whyNoXen } from "./helpers/xen.ts";

const noXen = await whyNoXen();

describe("xenchan probe", () => {
  it("--json reports the selected backend with its reason", async () => {
    const out = bufferOutput();
    assert.equal(await main(["probe", "--json"], out), 0);
    assert.equal(out.stdout.length, 1);
    const report = JSON.parse(out.stdout[0]) as ProbeReport;
    if (noXen === null) {
      assert.equal(report.selected.kind, "ffi");
      assert.equal(report.ffi.usable, true);
      assert.ok(report.ffi.devices.every((d) => d.status === "ok"));
    } else {
      assert.equal(report.selected.kind, "sim");
      assert.equal(report.ffi.usable, false);
      assert.match(report.selected.reason, /simulator, because/);
      if (report.ffi.libraryError === undefined) {
        // the libraries load here, so the reason is the device
        assert.match(report.selected.reason, /\/dev\/xen\/evtchn/);
        const evtchn = report.ffi.devices.find((d) => d.device === "/dev/xen/evtchn");
        assert.ok(evtchn && evtchn.status !== "ok", "the evtchn device does not open off Xen");
      } else {
        assert.match(report.selected.reason, /cannot load/);
      }
      assert.equal(report.abi.kind, "fifo");
      assert.match(report.abi.source, /simulator/);
    }
    for (const lib of report.ffi.libraries) {
      assert.match(lib.soname, /^libxen(evtchn|gnttab)\.so/);
      if (lib.file) assert.equal(lib.version, versionFromFileName(lib.file) ?? "unknown");
    }
  });

  it("the text report says which backend, why, and the ABI", async () => {
    const out = bufferOutput();
    assert.equal(await main(["probe"], out), 0);
    const text = out.text();
    assert.match(text, /^backend "auto" selects: (sim \(simulator\)|ffi \(real Xen\))$/m);
    assert.match(text, /^ {2}why: /m);
    assert.match(text, /^event delivery ABI in use: /m);
    if (noXen !== null) {
      assert.match(text, /^backend "auto" selects: sim/m);
      assert.match(text, /real Xen backend \(ffi\): not usable here/);
    }
  });

  it("reads a library's version from its real file name", () => {
    assert.equal(versionFromFileName("/usr/lib/x86_64-linux-gnu/libxenevtchn.so.1.2"), "1.2");
    assert.equal(versionFromFileName("libxengnttab.so.1"), "1");
    assert.equal(versionFromFileName("/opt/libxengnttab.so"), null);
  });
});
