/**
 * Layout proof: compiles tests/fixtures/abi_layout.c against Xen's public
 * headers (libxen-dev) with gcc, and compares every offset, size and
 * constant with plugins/abi/layout.ts, then reads the bytes the TypeScript
 * ABIs write at the offsets the C compiler reported.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { requireCToolchain } from "./helpers/toolchain.ts";
import {
  createAbi,
  FIFO,
  SHARED_INFO_32,
  SHARED_INFO_64,
  type SharedInfoLayout,
  XEN_PAGE_SIZE,
} from "../plugins/abi/mod.ts";

const FIXTURE = fileURLToPath(new URL("./fixtures/abi_layout.c", import.meta.url));

function requireToolchain(): void {
  requireCToolchain("/usr/include/xen/event_channel.h", "Xen public headers");
}

/** Every entry of NATIVE_LAYOUT in the fixture, as layout.ts says it must be. */
function expectedLayout(si: SharedInfoLayout): Record<string, number> {
  return {
    sizeof_xen_ulong: si.wordBytes,
    sizeof_vcpu_info: si.vcpuInfoSize,
    vcpu_info_evtchn_upcall_pending: si.upcallPending,
    vcpu_info_evtchn_upcall_mask: si.upcallMask,
    vcpu_info_evtchn_pending_sel: si.pendingSel,
    sizeof_evtchn_pending_sel: si.wordBytes,
    legacy_max_vcpus: si.legacyMaxVcpus,
    shared_info_vcpu_info: si.vcpuInfo,
    shared_info_evtchn_pending: si.evtchnPending,
    shared_info_evtchn_mask: si.evtchnMask,
    sizeof_evtchn_pending: si.bitmapBytes,
    sizeof_evtchn_mask: si.bitmapBytes,
    EVTCHN_2L_NR_CHANNELS: si.nrChannels2l,
    NR_EVENT_CHANNELS: si.nrChannels2l,
    sizeof_event_word: FIFO.EVENT_WORD_BYTES,
    sizeof_fifo_control_block: FIFO.CONTROL_BLOCK_SIZE,
    fifo_control_block_ready: FIFO.CONTROL_READY,
    fifo_control_block_head: FIFO.CONTROL_HEAD,
    sizeof_fifo_head_entry: 4,
    fifo_head_entries: FIFO.MAX_QUEUES,
    EVTCHN_FIFO_PENDING: FIFO.PENDING,
    EVTCHN_FIFO_MASKED: FIFO.MASKED,
    EVTCHN_FIFO_LINKED: FIFO.LINKED,
    EVTCHN_FIFO_BUSY: FIFO.BUSY,
    EVTCHN_FIFO_LINK_BITS: FIFO.LINK_BITS,
    EVTCHN_FIFO_LINK_MASK: FIFO.LINK_MASK,
    EVTCHN_FIFO_NR_CHANNELS: FIFO.NR_CHANNELS,
    EVTCHN_FIFO_MAX_QUEUES: FIFO.MAX_QUEUES,
    EVTCHN_FIFO_PRIORITY_MAX: FIFO.PRIORITY_MAX,
    EVTCHN_FIFO_PRIORITY_DEFAULT: FIFO.PRIORITY_DEFAULT,
    EVTCHN_FIFO_PRIORITY_MIN: FIFO.PRIORITY_MIN,
  };
}

let cached: Map<string, number> | undefined;

/** Builds and runs the fixture once per file; returns "native.x" / "x86_32.x" -> value. */
function cLayout(): Map<string, number> {
  if (cached) return cached;
  requireToolchain();
  const dir = mkdtempSync(join(tmpdir(), "xenchan-abi-layout-"));
  try {
    const exe = join(dir, "abi_layout");
    execFileSync("gcc", ["-std=c11", "-Wall", "-Werror", "-o", exe, FIXTURE], { stdio: "pipe" });
    const out = execFileSync(exe, { encoding: "utf8" });
    cached = new Map();
    for (const line of out.trim().split("\n")) {
      const [name, value] = line.split(" ");
      cached.set(name, Number(value));
    }
    return cached;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function staticCheck32(overrides: Record<string, number> = {}): { ok: boolean; stderr: string } {
  requireToolchain();
  const exp = { ...expectedLayout(SHARED_INFO_32), ...overrides };
  const defs = Object.entries(exp).map(([k, v]) => `-DEXP_${k}=${v}`);
  try {
    execFileSync(
      "gcc",
      [
        "-m32",
        "-ffreestanding",
        "-fsyntax-only",
        "-std=c11",
        "-DABI_LAYOUT_STATIC_CHECK",
        ...defs,
        FIXTURE,
      ],
      { stdio: "pipe" },
    );
    return { ok: true, stderr: "" };
  } catch (e) {
    return { ok: false, stderr: String((e as { stderr?: unknown }).stderr ?? e) };
  }
}

describe("ABI layout against Xen's public headers (gcc + libxen-dev)", () => {
  it("x86_64 (64-bit xen_ulong_t): every 2L and FIFO constant matches", () => {
    const c = cLayout();
    const exp = expectedLayout(SHARED_INFO_64);
    for (const [k, v] of Object.entries(exp)) {
      assert.equal(c.get(`native.${k}`), v, `native.${k}`);
    }
    assert.equal(
      Object.keys(exp).length,
      [...c.keys()].filter((k) => k.startsWith("native.")).length - 1,
    );
    const size = c.get("native.sizeof_shared_info")!;
    assert.ok(
      size <= XEN_PAGE_SIZE && size >= SHARED_INFO_64.evtchnMask + SHARED_INFO_64.bitmapBytes,
    );
  });

  it("x86_32 via <xen/foreign/x86_32.h>: vcpu_info, shared_info and 2L size match", () => {
    const c = cLayout();
    const exp = expectedLayout(SHARED_INFO_32);
    let n = 0;
    for (const key of c.keys()) {
      if (!key.startsWith("x86_32.") || key === "x86_32.sizeof_shared_info") continue;
      const k = key.slice("x86_32.".length);
      assert.equal(c.get(key), exp[k], key);
      n++;
    }
    assert.equal(n, 13);
    assert.ok(
      c.get("x86_32.sizeof_shared_info")! >= SHARED_INFO_32.evtchnMask + SHARED_INFO_32.bitmapBytes,
    );
  });

  it("x86_32 via gcc -m32 on the real headers: _Static_assert of every constant holds", () => {
    const good = staticCheck32();
    assert.ok(good.ok, `gcc -m32 -ffreestanding -fsyntax-only failed:\n${good.stderr}`);
    // Negative control: one wrong number must make the same compile fail.
    const bad = staticCheck32({ shared_info_evtchn_mask: SHARED_INFO_32.evtchnMask + 4 });
    assert.equal(bad.ok, false);
    assert.match(bad.stderr, /layout mismatch: shared_info_evtchn_mask/);
  });

  it("2L writes pending, mask and selector bits at the header offsets (64-bit)", () => {
    const c = cLayout();
    const abi = createAbi("2l", { vcpus: 2 });
    const dv = new DataView(abi.buffer);
    const port = 64 * 37 + 45;
    const vcpuInfo1 = c.get("native.shared_info_vcpu_info")! + c.get("native.sizeof_vcpu_info")!;
    abi.unmask(port);
    const pendOff = c.get("native.shared_info_evtchn_pending")! + 8 * 37;
    const maskOff = c.get("native.shared_info_evtchn_mask")! + 8 * 37;
    assert.equal(dv.getBigUint64(maskOff, true), ~(1n << 45n) & 0xffffffffffffffffn);
    abi.bindToVcpu(port, 1);
    assert.equal(abi.setPending(port), 1);
    assert.equal(dv.getBigUint64(pendOff, true), 1n << 45n);
    const selOff = vcpuInfo1 + c.get("native.vcpu_info_evtchn_pending_sel")!;
    assert.equal(dv.getBigUint64(selOff, true), 1n << 37n);
    assert.equal(dv.getUint8(vcpuInfo1 + c.get("native.vcpu_info_evtchn_upcall_pending")!), 1);
    abi.setUpcallMask(1, true);
    assert.equal(dv.getUint8(vcpuInfo1 + c.get("native.vcpu_info_evtchn_upcall_mask")!), 1);
  });

  it("2L with 32-bit words uses the x86_32 offsets", () => {
    const c = cLayout();
    const abi = createAbi("2l", { wordBits: 32 });
    const dv = new DataView(abi.buffer);
    abi.unmask(1000);
    abi.setPending(1000); // word 31, bit 8
    assert.equal(dv.getUint32(c.get("x86_32.shared_info_evtchn_pending")! + 4 * 31, true), 1 << 8);
    assert.equal(dv.getUint32(c.get("x86_32.vcpu_info_evtchn_pending_sel")!, true) >>> 0, 2 ** 31);
    assert.equal(abi.portLimit, c.get("x86_32.EVTCHN_2L_NR_CHANNELS"));
  });

  it("FIFO writes event words and the control block at the header offsets", () => {
    const c = cLayout();
    const abi = createAbi("fifo", { vcpus: 2 });
    const dv = new DataView(abi.buffer);
    const port = 4321;
    abi.unmask(port);
    abi.setPriority(port, 3);
    abi.bindToVcpu(port, 1);
    assert.equal(abi.setPending(port), 1);
    const word = dv.getUint32(
      abi.layout.eventArray + c.get("native.sizeof_event_word")! * port,
      true,
    );
    const bit = (name: string) => 2 ** c.get(`native.EVTCHN_FIFO_${name}`)!;
    assert.equal(word, bit("PENDING") + bit("LINKED"));
    const cb = abi.layout.controlBlock[1];
    assert.equal(cb % XEN_PAGE_SIZE, 0);
    assert.equal(dv.getUint32(cb + c.get("native.fifo_control_block_ready")!, true), 1 << 3);
    const head = cb + c.get("native.fifo_control_block_head")! +
      c.get("native.sizeof_fifo_head_entry")! * 3;
    assert.equal(dv.getUint32(head, true), port);
    // A second event links behind the first through the LINK field.
    abi.unmask(77);
    abi.setPriority(77, 3);
    abi.bindToVcpu(77, 1);
    abi.setPending(77);
    const linked = dv.getUint32(abi.layout.eventArray + 4 * port, true);
    assert.equal(linked & c.get("native.EVTCHN_FIFO_LINK_MASK")!, 77);
    assert.equal(abi.portLimit, c.get("native.EVTCHN_FIFO_NR_CHANNELS"));
  });
});
