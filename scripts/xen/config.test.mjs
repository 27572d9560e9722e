// Self-tests of the VM settings and the QEMU/Xen command line (run by scripts/test_host.mjs).
import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { vmSettings } from "./config.mjs";
import { qemuArgs } from "./boot.mjs";

const KNOBS = ["XENCHAN_QEMU_MEM_MB", "XENCHAN_DOM0_MEM_MB", "XENCHAN_DOM0_VCPUS"];
const saved = Object.fromEntries(KNOBS.map((k) => [k, process.env[k]]));
afterEach(() => {
  for (const k of KNOBS) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
});
for (const k of KNOBS) delete process.env[k];

const prov = { xen: "/c/xen.elf", vmlinuz: "/c/vmlinuz" };
function xenCmdline(settings) {
  const args = qemuArgs({ prov, initrd: "/c/initrd.img", logPath: "/c/serial.log", settings });
  return args[args.indexOf("-append") + 1];
}

describe("vmSettings and the Xen command line", () => {
  it("a boot without guests keeps dom0 on every vCPU and the old memory layout", () => {
    const s = vmSettings();
    assert.equal(s.memMb, 3072);
    assert.equal(s.dom0MemMb, 2816);
    assert.equal(s.dom0MaxVcpus, null);
    assert.doesNotMatch(xenCmdline(s), /dom0_max_vcpus/);
    assert.match(xenCmdline(s), /dom0_mem=2816M,max:2816M/);
  });

  it("a boot with guests gives dom0 one vCPU and leaves memory for guests", () => {
    const s = vmSettings({ guests: true });
    assert.equal(s.memMb, 4096);
    assert.equal(s.dom0MemMb, 2048);
    assert.equal(s.dom0MaxVcpus, 1);
    assert.match(xenCmdline(s), /dom0_mem=2048M,max:2048M dom0_max_vcpus=1 /);
  });

  it("reads the knobs and rejects a dom0 that does not fit", () => {
    process.env.XENCHAN_QEMU_MEM_MB = "3584";
    process.env.XENCHAN_DOM0_MEM_MB = "1792";
    process.env.XENCHAN_DOM0_VCPUS = "2";
    const s = vmSettings({ guests: true });
    assert.deepEqual([s.memMb, s.dom0MemMb, s.dom0MaxVcpus], [3584, 1792, 2]);
    process.env.XENCHAN_DOM0_MEM_MB = "3500";
    assert.throws(() => vmSettings({ guests: true }), /does not fit/);
  });
});
