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
//   XENCHAN_QEMU_MEM_MB      VM memory in MiB (default 3072, or 4096 for a boot with guests)
//   XENCHAN_DOM0_MEM_MB      dom0 memory in MiB (default VM memory minus 256, or 2048 with guests)
//   XENCHAN_QEMU_SMP         vCPUs (default 2)
//   XENCHAN_DOM0_VCPUS       dom0_max_vcpus (default none, or 1 with guests: see GUEST_VCPU_RULE)
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

/** Kernel modules dom0 and guests need for event channels and grants, loaded in this order. */
export const XEN_MODULES = ["xen-evtchn", "xen-gntdev", "xen-gntalloc"];

/**
 * Kernel modules the toolstack needs in dom0 on top of XEN_MODULES: /dev/xen/privcmd for
 * hypercalls (xl, xenstored) and xenfs for /proc/xen/xsd_kva and xsd_port (xenstored maps dom0's
 * store ring through them). xenfs uses symbols of xen-privcmd, so privcmd loads first.
 */
export const TOOLSTACK_MODULES = ["xen-privcmd", "xenfs"];

/** Every module provisioning extracts (dom0 loads all, guests load XEN_MODULES). */
export const ALL_MODULES = [...XEN_MODULES, ...TOOLSTACK_MODULES];

/**
 * Debian packages of the Xen toolstack, downloaded and unpacked (never installed) into
 * <cache>/tools: xl, xenstored and oxenstored, xen-init-dom0, xenconsoled, the xenstore-* tools
 * and the libraries libxenlight/libxenctrl/libxenguest/libxenvchan/libxenstore.
 */
export const TOOL_PACKAGES = [
  "xen-utils-4.17",
  "xen-utils-common",
  "xenstore-utils",
  "libxenmisc4.17",
  "libxenstore4",
];

/** Directory of the versioned Xen tools inside the unpacked packages (and in dom0). */
export const XEN_TOOL_BIN = "/usr/lib/xen-4.17/bin";

/**
 * Files of the unpacked toolstack copied into dom0 (same paths there). Debian's /usr/sbin
 * wrappers are bash scripts and dom0 has only busybox, so dom0 calls the real binaries in
 * XEN_TOOL_BIN (first on its PATH). The xenstore-* names are links to /usr/bin/xenstore.
 */
export const TOOL_FILES = [
  ...[
    "xl",
    "xenstored",
    "oxenstored",
    "xen-init-dom0",
    "xenconsoled",
    "xenconsole",
    "xenstore-control",
    "lsevtchn",
    "readnotes",
    "test-xenstore",
    "vchan-socket-proxy",
    "libxl-save-helper",
  ].map((f) => `${XEN_TOOL_BIN}/${f}`),
  "/usr/bin/xenstore",
  "/etc/xen/oxenstored.conf",
  "/etc/xen/xl.conf",
];

/** The xenstore client names, links to /usr/bin/xenstore (dom0 and guests). */
export const XENSTORE_LINKS = ["chmod", "exists", "list", "ls", "read", "rm", "watch", "write"]
  .map((c) => `/usr/bin/xenstore-${c}`);

/** Libraries guests get on top of XEN_SONAMES (vchan and XenStore from inside a guest). */
export const GUEST_SONAMES = ["libxenvchan.so.4.17", "libxenstore.so.4"];

/**
 * Guest memory (MiB) per runtime in the guest image. Measured minimums with rootfstype=ramfs:
 * Deno 288, Bun 320 (below that the initrd does not unpack); the defaults leave room for a
 * test's own allocations. "none" is the busybox-only image.
 */
export const GUEST_MEM_MB = { none: 128, deno: 448, bun: 480 };

/**
 * The vCPU rule: the PV vCPUs of all domains together must not exceed QEMU's -smp (under TCG,
 * time-shared PV vCPUs crash short-lived programs at random). A boot with guests therefore
 * gives dom0 one vCPU (dom0_max_vcpus=1) and each guest one; xenchan-guest checks the sum
 * against `xl info` before every create.
 */
export const GUEST_VCPU_RULE = "sum of all domains' vCPUs <= QEMU -smp (physical CPUs in xl info)";

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
  "package.json",
  "cli",
  "deno.json",
  "bunfig.toml",
  "core",
  "ffi",
  "sim",
  "plugins",
  "testing",
  "tests",
  "bench",
];

/**
 * Reads the VM knobs from the environment; returns a plain object. With guests: true the
 * defaults make room for guest domains: 4096 MiB VM, dom0 2048 MiB (its initrd holds Deno, Bun
 * and both guest images, about 500 MB, unpacked from a copy of the same size), about 1.9 GiB left
 * to Xen for guests (two runtime guests at once), and dom0_max_vcpus=1 (GUEST_VCPU_RULE).
 * Throws Error when a knob is malformed or dom0 would not fit in the VM.
 */
export function vmSettings({ guests = false } = {}) {
  const accel = process.env.XENCHAN_QEMU_ACCEL ?? "tcg";
  if (accel !== "tcg" && accel !== "kvm") {
    throw new Error(`XENCHAN_QEMU_ACCEL must be "tcg" or "kvm", not ${JSON.stringify(accel)}`);
  }
  const memMb = intEnv("XENCHAN_QEMU_MEM_MB", guests ? 4096 : 3072);
  const dom0MemMb = intEnv("XENCHAN_DOM0_MEM_MB", guests ? 2048 : memMb - 256);
  if (dom0MemMb > memMb - 128) {
    throw new Error(`dom0 memory ${dom0MemMb} MiB does not fit in a ${memMb} MiB VM`);
  }
  const vcpus = process.env.XENCHAN_DOM0_VCPUS;
  return {
    accel,
    cpu: process.env.XENCHAN_QEMU_CPU ?? (accel === "kvm" ? "host" : "max,-smap,-smep"),
    memMb,
    dom0MemMb,
    dom0MaxVcpus: vcpus ? intEnv("XENCHAN_DOM0_VCPUS", 1) : guests ? 1 : null,
    guests,
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
