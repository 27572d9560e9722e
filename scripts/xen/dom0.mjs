// deno-lint-ignore-file explicit-module-boundary-types -- plain JS run by node: no type syntax
// scripts/xen/dom0.mjs - the generic entry: run one shell script inside a real Xen dom0.
//
// What it does: provision -> build the C benches -> base/runtimes/run archives -> one boot of
// Xen + dom0 under QEMU -> parse the serial log -> write the result files to a host directory.
// Later suites (tests, benches, the demo; guest domains later) all go through runInDom0().
//
// runInDom0({ name, script, env, runtimes, project, timeoutS }):
//   name      label for the run; results go to <cache>/runs/<name>/ (default "run")
//   script    sh script text; runs in dom0 as root with cwd /xenchan (the project copy), under
//             `timeout`; it writes result files into $XENCHAN_OUT (/out); its console output
//             is echoed live and also returned as the result file run.log
//   env       extra environment variables for the script
//   runtimes  include deno and bun in the initrd (default true; false boots faster)
//   project   copy the project source into /xenchan (default true)
//   guests    boot for guest domains (default false): adds the toolstack (tools.cpio) and the
//             guest kernel and images (guests.cpio), passes dom0_max_vcpus=1 and the guest
//             memory layout of vmSettings({ guests: true }); in dom0 XENCHAN_GUESTS=1 and the
//             helpers xenchan-xenstored and xenchan-guest are on PATH (scripts/xen/sh/)
//   toolstack the toolstack alone (tools.cpio: xenstored, xl, the helpers), without guest images
//             and with dom0's usual vCPUs and memory (default: the value of guests)
// Resolves to { status, files: Map<name, Buffer>, outDir, logPath, timings } where status is
// the script's exit status (137 when the in-dom0 timeout killed it) and timings holds seconds
// { provision, initrd, boot, run, total }.
// Throws HarnessError (with the serial log tail) when dom0 never starts the script, never
// reports an exit status, or a result file arrives damaged.
//
// CLI: node scripts/xen/dom0.mjs [--no-runtimes] [--guests] [--name N] <script.sh | -c 'commands'>
//   prints the result file names and the directory, exits with the script's status
//   (2 on a harness failure).

import fs from "node:fs";
import path from "node:path";
import crypto from "node:crypto";
import { fileURLToPath } from "node:url";
import { CACHE, HarnessError, note, vmSettings } from "./config.mjs";
import { provision } from "./provision.mjs";
import { buildCBenches } from "./c_build.mjs";
import {
  buildBase,
  buildGuests,
  buildRun,
  buildRuntimes,
  buildTools,
  concatFiles,
  resolveRuntimes,
} from "./initrd.mjs";
import { bootXen } from "./boot.mjs";
import { parseConsole } from "./console.mjs";

const LOG_TAIL_LINES = 60;
/** Seconds kept back from the hard timeout for booting and passing files out. */
const BOOT_BUDGET_S = 180;

/** Runs `script` in dom0 (see the file comment). */
export async function runInDom0({
  name = "run",
  script,
  env = {},
  runtimes = true,
  project = true,
  guests = false,
  toolstack = guests,
  timeoutS,
} = {}) {
  if (typeof script !== "string") throw new HarnessError("runInDom0: script must be a string");
  const settings = vmSettings({ guests });
  if (timeoutS) settings.timeoutS = timeoutS;
  const timings = {};
  const t0 = Date.now();
  const lap = (key, since) => (timings[key] = round((Date.now() - since) / 1000));

  let t = Date.now();
  note("provisioning");
  const prov = await provision();
  lap("provision", t);

  t = Date.now();
  const cBins = await buildCBenches();
  const rt = runtimes ? resolveRuntimes() : {};
  const nonce = crypto.randomBytes(8).toString("hex");
  const runDir = path.join(CACHE, "runs", name);
  fs.rmSync(runDir, { recursive: true, force: true });
  fs.mkdirSync(runDir, { recursive: true });
  const parts = [await buildBase(prov, [...Object.values(rt), ...cBins])];
  if (runtimes) parts.push(await buildRuntimes(rt));
  if (toolstack || guests) parts.push(await buildTools(prov));
  if (guests) parts.push(await buildGuests(prov, resolveRuntimes(), cBins));
  const inVmTimeout = Math.max(60, settings.timeoutS - BOOT_BUDGET_S);
  parts.push(
    await buildRun({ nonce, script, env, project, binaries: cBins, timeoutS: inVmTimeout }),
  );
  const initrd = concatFiles(parts, path.join(CACHE, "initrd", "initrd.img"));
  lap("initrd", t);

  const logPath = path.join(runDir, "serial.log");
  const initrdMb = Math.round(fs.statSync(initrd).size / 2 ** 20);
  const vcpus = settings.dom0MaxVcpus ? `, dom0 ${settings.dom0MaxVcpus} vCPU` : "";
  note(
    `booting Xen (${settings.accel}, ${settings.smp} vCPU${vcpus}, ${settings.memMb} MiB, ` +
      `dom0 ${settings.dom0MemMb} MiB, initrd ${initrdMb} MiB); log ${logPath}`,
  );
  const boot = await bootXen({ prov, initrd, logPath, nonce, settings });
  timings.boot = boot.bootS === null ? null : round(boot.bootS);
  timings.run = boot.runS === null ? null : round(boot.runS);
  const parsed = parseConsole(boot.text, nonce);
  checkBoot(boot, parsed, logPath);

  const outDir = path.join(runDir, "out");
  fs.mkdirSync(outDir, { recursive: true });
  for (const [file, bytes] of parsed.files) {
    const dest = path.join(outDir, file);
    if (!dest.startsWith(outDir + path.sep)) continue; // never write outside outDir
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.writeFileSync(dest, bytes);
  }
  timings.total = round((Date.now() - t0) / 1000);
  note(`dom0 run "${name}": status ${parsed.status}; timings ${JSON.stringify(timings)}`);
  return { status: parsed.status, files: parsed.files, outDir, logPath, timings };
}

function checkBoot(boot, parsed, logPath) {
  const why = !parsed.started
    ? "dom0 never reached /init's start marker"
    : parsed.status === null
    ? "dom0 started the script but never reported an exit status"
    : parsed.errors.length
    ? parsed.errors.join("; ")
    : null;
  if (!why) return;
  const extra = boot.timedOut ? " (hard timeout hit; raise XENCHAN_XEN_TIMEOUT_S?)" : "";
  const tail = boot.text.replace(/\r/g, "").split("\n").slice(-LOG_TAIL_LINES).join("\n");
  throw new HarnessError(
    `${why}${extra}. QEMU ended with ${boot.qemuStatus} after ${round(boot.totalS)} s.`,
    `--- QEMU stderr ---\n${boot.qemuStderr.trim()}\n--- last ${LOG_TAIL_LINES} lines of ${logPath} ---\n${tail}`,
  );
}

function round(x) {
  return Math.round(x * 10) / 10;
}

async function main(argv) {
  const opts = { runtimes: true, name: "cli", guests: false };
  let script = null;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--no-runtimes") opts.runtimes = false;
    else if (argv[i] === "--guests") opts.guests = true;
    else if (argv[i] === "--name") opts.name = argv[++i];
    else if (argv[i] === "-c") script = argv[++i];
    else script = fs.readFileSync(argv[i], "utf8");
  }
  if (script === null) {
    console.error(
      "usage: node scripts/xen/dom0.mjs [--no-runtimes] [--guests] [--name N] <script.sh | -c CMDS>",
    );
    return 2;
  }
  try {
    const r = await runInDom0({ ...opts, script });
    for (const f of r.files.keys()) console.log(`result: ${path.join(r.outDir, f)}`);
    return r.status;
  } catch (e) {
    console.error(e instanceof HarnessError ? `harness failure: ${e.message}` : e);
    return 2;
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
