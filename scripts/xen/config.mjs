// deno-lint-ignore-file explicit-module-boundary-types -- plain JS run by node: no type syntax
// scripts/xen/config.mjs - paths and knobs shared by the real-Xen harness.
//
// What it does: names the repository root, the cache directory (.xen/ in the
// repo, gitignored) and reads the environment knobs below. No side effects.
//
// Environment (all optional):
//   XENCHAN_CACHE_DIR        cache directory (default <repo>/.xen)
//   XENCHAN_QEMU_ACCEL       "tcg" (default) or "kvm" (hosts with real VT-x/AMD-V only)
//   XENCHAN_QEMU_CPU         QEMU -cpu model (default "max,-smap,-smep" for tcg, "host" for kvm)
//   XENCHAN_QEMU_MEM_MB      VM memory in MiB (default 3072; dom0 gets this minus 256)
//   XENCHAN_QEMU_SMP         vCPUs (default 2)
//   XENCHAN_XEN_TIMEOUT_S    hard limit for one VM run, QEMU is killed after it (default 1200)
//   XENCHAN_XEN_ECHO         "0" to stop echoing dom0 console lines live (default on)
//   XENCHAN_XEN_ARGS         extra words appended to Xen's command line (default none)

import path from "node:path";
import { fileURLToPath } from "node:url";

/** Absolute path of the repository root (two levels above this file). */
export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Absolute path of the harness cache directory. */
export const CACHE = path.resolve(process.env.XENCHAN_CACHE_DIR ?? path.join(REPO, ".xen"));

/** Debian packages the host needs installed (apt-get install). */
export const HOST_PACKAGES = [
  "qemu-system-x86",
  "busybox-static",
  "cpio",
  "libxen-dev",
  "gcc",
  "xenstore-utils",
];

/** Debian package with the Xen hypervisor image (downloaded and unpacked only). */
export const XEN_PACKAGE = "xen-hypervisor-4.17-amd64";

/** Meta package whose dependency names the real kernel image package. */
export const KERNEL_META_PACKAGE = "linux-image-amd64";

/** Kernel modules dom0 needs, loaded by /init in this order. */
export const XEN_MODULES = ["xen-evtchn", "xen-gntdev", "xen-gntalloc"];

/** Shared libraries the FFI layer opens by soname (their dependencies come along). */
export const XEN_SONAMES = [
  "libxenevtchn.so.1",
  "libxengnttab.so.1",
  "libxentoollog.so.1",
  "libxentoolcore.so.1",
];

/** Project paths copied into dom0 (under /xenchan) for each run, when they exist. */
export const PROJECT_PATHS = [
  "mod.ts",
  "cli.ts",
  "cli",
  "deno.json",
  "bunfig.toml",
  "core",
  "ffi",
  "sim",
  "plugins",
  "tests",
  "bench",
];

/** Reads the VM knobs from the environment; returns a plain object. */
export function vmSettings() {
  const accel = process.env.XENCHAN_QEMU_ACCEL ?? "tcg";
  if (accel !== "tcg" && accel !== "kvm") {
    throw new Error(`XENCHAN_QEMU_ACCEL must be "tcg" or "kvm", not ${JSON.stringify(accel)}`);
  }
  const memMb = intEnv("XENCHAN_QEMU_MEM_MB", 3072);
  return {
    accel,
    cpu: process.env.XENCHAN_QEMU_CPU ?? (accel === "kvm" ? "host" : "max,-smap,-smep"),
    memMb,
    dom0MemMb: memMb - 256,
    smp: intEnv("XENCHAN_QEMU_SMP", 2),
    timeoutS: intEnv("XENCHAN_XEN_TIMEOUT_S", 1200),
    echo: process.env.XENCHAN_XEN_ECHO !== "0",
    xenArgs: process.env.XENCHAN_XEN_ARGS ?? "",
  };
}

function intEnv(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer`);
  return n;
}

/** Error raised by the harness itself (not by the code under test). */
export class HarnessError extends Error {
  /** @param {string} message  @param {string} [detail] extra text, e.g. a log tail */
  constructor(message, detail) {
    super(detail ? `${message}\n${detail}` : message);
    this.name = "HarnessError";
  }
}

/** Logs one harness progress line to stderr with a stable prefix. */
export function note(msg) {
  process.stderr.write(`[xen] ${msg}\n`);
}
