// deno-lint-ignore-file explicit-module-boundary-types -- plain JS run by node: no type syntax
// scripts/xen/boot.mjs - boots Xen + the Linux PV dom0 once under QEMU and waits for the end.
//
// What it does: starts qemu-system-x86_64 with the gunzipped Xen ELF as -kernel (multiboot) and
// two multiboot modules (the dom0 kernel with its command line, and the initrd), serial console
// to a log file. It watches the log: notes when the START and EXIT markers of this run's nonce
// appear, echoes dom0's own console lines live (not Xen's, not the file transfer), and kills
// QEMU at the hard timeout, or 30 s after the EXIT marker if QEMU does not power off by itself.
//
// Input:  bootXen({ prov, initrd, logPath, nonce, settings }) with settings from vmSettings().
// Output: resolves to { text, bootS, runS, totalS, timedOut, qemuStatus, qemuStderr } where
//         bootS = seconds to the START marker, runS = START to EXIT, text = the whole serial log.
// Errors: HarnessError when QEMU cannot start or a path cannot be passed to QEMU. A boot that
//         never reaches START is not an error here: the caller reads `text` and decides.

import fs from "node:fs";
import { spawn } from "node:child_process";
import { HarnessError, note } from "./config.mjs";
import { TAG } from "./console.mjs";

const AFTER_EXIT_GRACE_MS = 30_000;
const POLL_MS = 250;

/** Returns the QEMU argv for one boot (see the file comment). */
export function qemuArgs({ prov, initrd, logPath, settings }) {
  for (const p of [prov.xen, prov.vmlinuz, initrd, logPath]) {
    if (/[\s]/.test(p)) throw new HarnessError(`path with whitespace cannot go to QEMU: ${p}`);
  }
  const dom0Cmdline = "console=hvc0 earlyprintk=xen rdinit=/init loglevel=4";
  const modules = [`${prov.vmlinuz} ${dom0Cmdline}`, initrd].map((m) => m.replaceAll(",", ",,"));
  const mem = settings.dom0MemMb;
  const vcpus = settings.dom0MaxVcpus ? ` dom0_max_vcpus=${settings.dom0MaxVcpus}` : "";
  const xenCmdline = `console=com1 com1=115200,8n1 dom0_mem=${mem}M,max:${mem}M${vcpus} ` +
    `loglvl=all guest_loglvl=all`;
  const accel = settings.accel === "kvm" ? ["-accel", "kvm"] : ["-accel", "tcg,thread=multi"];
  return [
    "-machine",
    "pc",
    ...accel,
    "-smp",
    String(settings.smp),
    "-m",
    String(settings.memMb),
    "-cpu",
    settings.cpu,
    "-kernel",
    prov.xen,
    "-append",
    `${xenCmdline} ${settings.xenArgs}`.trim(),
    "-initrd",
    modules.join(","),
    "-serial",
    `file:${logPath}`,
    "-display",
    "none",
    "-monitor",
    "none",
    "-no-reboot",
  ];
}

/** Boots once and waits for QEMU to end (see the file comment). */
export function bootXen({ prov, initrd, logPath, nonce, settings }) {
  const args = qemuArgs({ prov, initrd, logPath, settings });
  fs.writeFileSync(logPath, "");
  const t0 = Date.now();
  const state = { offset: 0, partial: "", started: null, exited: null, timedOut: false };
  let qemuStderr = "";
  return new Promise((resolve, reject) => {
    const qemu = spawn("qemu-system-x86_64", args, { stdio: ["ignore", "ignore", "pipe"] });
    qemu.stderr.on("data", (d) => (qemuStderr += d));
    qemu.on("error", (e) => {
      clearInterval(timer);
      reject(new HarnessError(`cannot start qemu-system-x86_64: ${e.message}`));
    });
    const hardKill = setTimeout(() => {
      state.timedOut = true;
      note(`hard timeout (${settings.timeoutS} s): killing QEMU`);
      qemu.kill("SIGKILL");
    }, settings.timeoutS * 1000);
    let graceKill = null;
    const timer = setInterval(() => {
      scanLog(logPath, state, nonce, settings.echo, t0);
      if (state.exited !== null && graceKill === null) {
        graceKill = setTimeout(() => qemu.kill("SIGKILL"), AFTER_EXIT_GRACE_MS);
      }
    }, POLL_MS);
    qemu.on("exit", (code, signal) => {
      clearInterval(timer);
      clearTimeout(hardKill);
      if (graceKill) clearTimeout(graceKill);
      scanLog(logPath, state, nonce, settings.echo, t0);
      const secs = (t) => (t === null ? null : (t - t0) / 1000);
      resolve({
        text: fs.readFileSync(logPath, "latin1"),
        bootS: secs(state.started),
        runS: state.started && state.exited ? (state.exited - state.started) / 1000 : null,
        totalS: (Date.now() - t0) / 1000,
        timedOut: state.timedOut,
        qemuStatus: signal ?? code,
        qemuStderr,
      });
    });
  });
}

/** Reads the new part of the log; records marker times; echoes dom0 lines. */
function scanLog(logPath, state, nonce, echo, t0) {
  let chunk;
  try {
    const fd = fs.openSync(logPath, "r");
    const size = fs.fstatSync(fd).size;
    chunk = Buffer.alloc(Math.max(0, size - state.offset));
    fs.readSync(fd, chunk, 0, chunk.length, state.offset);
    fs.closeSync(fd);
    state.offset = size;
  } catch {
    return;
  }
  const lines = (state.partial + chunk.toString("latin1")).split("\n");
  state.partial = lines.pop();
  for (const raw of lines) {
    const line = raw.replace(/\r/g, "");
    if (line.includes(`${TAG}START:${nonce}@@`) && state.started === null) {
      state.started = Date.now();
      note(`dom0 /init up after ${((state.started - t0) / 1000).toFixed(1)} s`);
    } else if (line.includes(`${TAG}EXIT:${nonce}:`) && state.exited === null) {
      state.exited = Date.now();
    } else if (echo && state.started !== null && state.exited === null && !line.includes(TAG)) {
      if (!line.startsWith("(XEN)")) process.stderr.write(`dom0| ${line}\n`);
    }
  }
}
