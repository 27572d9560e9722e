/**
 * Smoke test of the real-Xen harness (scripts/test_xen.mjs). It runs inside the Linux PV dom0
 * that the harness boots under QEMU, where /init sets XENCHAN_DOM0=1; anywhere else the suite is
 * skipped with that reason. It checks that the kernel modules were loaded (the three Xen device
 * nodes exist as character devices) and that the kernel runs as a PV guest of Xen 4.x, so a
 * broken boot or a missing module fails here before any FFI test runs.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync } from "node:fs";
import process from "node:process";

const inDom0 = process.env.XENCHAN_DOM0 === "1";
const skip = inDom0 ? false : "runs only inside the Xen dom0 booted by scripts/test_xen.mjs";

function readSys(file: string): string {
  return readFileSync(file, "utf8").trim();
}

describe("dom0 smoke", { skip }, () => {
  it("has /dev/xen/evtchn, /dev/xen/gntdev and /dev/xen/gntalloc as character devices", () => {
    for (const dev of ["/dev/xen/evtchn", "/dev/xen/gntdev", "/dev/xen/gntalloc"]) {
      assert.ok(existsSync(dev), `${dev} is missing (module not loaded?)`);
      assert.ok(statSync(dev).isCharacterDevice(), `${dev} is not a character device`);
    }
  });

  it("runs as a PV guest of Xen 4.x", () => {
    assert.equal(readSys("/sys/hypervisor/type"), "xen");
    assert.equal(readSys("/sys/hypervisor/guest_type"), "PV");
    assert.equal(readSys("/sys/hypervisor/version/major"), "4");
  });
});
