/**
 * Facts about the machine that probe and demo report: the runtime, the real
 * file behind each library soname (and so its version), the Xen version,
 * the event delivery ABI the dom0 kernel chose, and whether each /dev/xen
 * device opens. Every function here returns a reason instead of throwing
 * when a fact cannot be found, so a report is always complete.
 *
 * Deno note: with `-P` (this project's deno.json permissions) Deno refuses
 * to read /proc, /sys and /dev files unless run with --allow-all; the facts
 * that need them then say so.
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import { readFileSync, realpathSync } from "node:fs";
import { basename, isAbsolute, join } from "node:path";
import process from "node:process";
import { selectBackend, XenCallError } from "../mod.ts";

/** A fact, or why it is unknown. */
export type Fact<T> = { readonly ok: true; readonly value: T; readonly source: string } | {
  readonly ok: false;
  readonly reason: string;
};

/** "deno 2.9.5" or "bun 1.4.5" (or "node ..."). Throws nothing. */
export function runtimeLabel(): string {
  const v = process.versions as Record<string, string | undefined>;
  if (v.deno) return `deno ${v.deno}`;
  if (v.bun) return `bun ${v.bun}`;
  return `node ${v.node}`;
}

/** "deno", "bun" or "node". Throws nothing. */
export function runtimeKind(): "deno" | "bun" | "node" {
  if ("Deno" in globalThis) return "deno";
  if ("Bun" in globalThis) return "bun";
  return "node";
}

/**
 * The command that runs a TypeScript file in a child process of this same
 * runtime: Deno `run -A`, Bun `run`. Returns [executable, ...args].
 */
export function childCommand(script: string, args: readonly string[]): string[] {
  const runArgs = runtimeKind() === "deno" ? ["run", "-A", script] : ["run", script];
  return [process.execPath, ...runArgs, ...args];
}

function isNotCapable(error: unknown): boolean {
  const name = (error as { name?: string } | null)?.name;
  return name === "NotCapable" || name === "PermissionDenied";
}

const DENO_ALL =
  "Deno reads /proc, /sys and /dev only with --allow-all: run `deno run -A cli.ts probe`";

/** Reads a small text file, trimmed. Throws what readFileSync throws. */
function readText(path: string): string {
  return readFileSync(path, "utf8").trim();
}

/** The version part of a library file name: "libxenevtchn.so.1.2" -> "1.2". */
export function versionFromFileName(file: string): string | null {
  const m = /\.so\.(\d+(?:\.\d+)*)$/.exec(basename(file));
  return m ? m[1] : null;
}

const LIBRARY_DIRS = [
  "/lib/x86_64-linux-gnu",
  "/usr/lib/x86_64-linux-gnu",
  "/lib/aarch64-linux-gnu",
  "/usr/lib/aarch64-linux-gnu",
  "/lib64",
  "/usr/lib64",
  "/lib",
  "/usr/lib",
  "/usr/local/lib",
];

/**
 * The real file behind a loaded library (`loaded` is the name or path it was
 * loaded by, e.g. "libxenevtchn.so.1"): first the mapping in
 * /proc/self/maps (exactly what this process loaded), else the realpath of
 * the soname in LD_LIBRARY_PATH and the standard directories (what the
 * dynamic loader would pick).
 */
export function libraryFile(loaded: string): Fact<string> {
  const stem = basename(loaded).replace(/\.so(\..*)?$/, "");
  try {
    const maps = readFileSync("/proc/self/maps", "utf8");
    for (const line of maps.split("\n")) {
      const path = line.slice(line.indexOf("/"));
      if (line.includes("/") && basename(path).startsWith(`${stem}.so`)) {
        return { ok: true, value: path.trim(), source: "/proc/self/maps" };
      }
    }
  } catch {
    // not readable (Deno -P) or not Linux: fall back to resolving the soname
  }
  const candidates = isAbsolute(loaded) ? [loaded] : [
    ...(process.env.LD_LIBRARY_PATH ?? "").split(":").filter(Boolean),
    ...LIBRARY_DIRS,
  ].map((dir) => join(dir, loaded));
  for (const candidate of candidates) {
    try {
      return { ok: true, value: realpathSync(candidate), source: `realpath of ${candidate}` };
    } catch {
      // try the next directory
    }
  }
  return {
    ok: false,
    reason: `${loaded} not found in LD_LIBRARY_PATH or ${LIBRARY_DIRS.join(", ")}`,
  };
}

/** Xen's version from /sys/hypervisor ("4.17.7" or similar), or why not. */
export function xenVersion(): Fact<string> {
  try {
    const type = readText("/sys/hypervisor/type");
    if (type !== "xen") return { ok: false, reason: `the hypervisor is ${type}, not Xen` };
    const major = readText("/sys/hypervisor/version/major");
    const minor = readText("/sys/hypervisor/version/minor");
    const extra = readText("/sys/hypervisor/version/extra");
    return { ok: true, value: `${major}.${minor}${extra}`, source: "/sys/hypervisor/version" };
  } catch (error) {
    if (isNotCapable(error)) return { ok: false, reason: DENO_ALL };
    const code = (error as { code?: string }).code;
    if (code === "ENOENT") return { ok: false, reason: "no /sys/hypervisor: not running on Xen" };
    return { ok: false, reason: `reading /sys/hypervisor failed: ${(error as Error).message}` };
  }
}

/**
 * The event delivery ABI the running Linux kernel chose at boot, from its
 * log line "xen:events: Using FIFO-based ABI" or "Using 2-level ABI"
 * (read with dmesg). Returns "fifo" or "2l", or why it is unknown.
 */
export function kernelEventAbi(): Fact<"fifo" | "2l"> {
  let log: string;
  try {
    const r = spawnSync("dmesg", [], { encoding: "utf8", timeout: 5000 });
    if (r.error) return { ok: false, reason: `dmesg could not run: ${r.error.message}` };
    if (r.status !== 0) {
      return {
        ok: false,
        reason: `dmesg failed (${r.status}): ${String(r.stderr).trim().split("\n")[0]}`,
      };
    }
    log = String(r.stdout);
  } catch (error) {
    return { ok: false, reason: `dmesg could not run: ${(error as Error).message}` };
  }
  const m = /xen:events: Using (FIFO-based|2-level) ABI/.exec(log);
  if (!m) {
    return {
      ok: false,
      reason:
        "the kernel log has no 'xen:events: Using ... ABI' line (not a Xen guest, or the log rotated)",
    };
  }
  return {
    ok: true,
    value: m[1] === "FIFO-based" ? "fifo" : "2l",
    source: `kernel log: "${m[0]}"`,
  };
}

/** Whether one /dev/xen device opens through the real library. */
export interface DeviceFact {
  readonly device: string;
  /** The C call that opened it. */
  readonly call: string;
  /** "ok", or the errno name (ENOENT: missing, EACCES: no permission), or "unknown". */
  readonly status: string;
  /** In words. */
  readonly detail: string;
}

/**
 * Opens (and closes again) an event channel, a grant table and a grant
 * share handle on the real libraries, one per /dev/xen device. Rejects only
 * when the libraries cannot be loaded (LibraryNotFoundError, or Deno's
 * NotCapable without --allow-ffi).
 */
export async function deviceFacts(): Promise<DeviceFact[]> {
  const { backend } = await selectBackend("ffi");
  const tries: [string, string, () => { close(): void }][] = [
    ["/dev/xen/evtchn", "xenevtchn_open", () => backend.openEventChannels()],
    ["/dev/xen/gntdev", "xengnttab_open", () => backend.openGrantTable()],
    ["/dev/xen/gntalloc", "xengntshr_open", () => backend.openGrantShare()],
  ];
  return tries.map(([device, call, open]) => {
    try {
      open().close();
      return { device, call, status: "ok", detail: "opens" };
    } catch (error) {
      if (error instanceof XenCallError) {
        const detail = error.code === "ENOENT"
          ? "does not exist"
          : error.code === "EACCES" || error.code === "EPERM"
          ? "exists, but no permission to open it (run as root)"
          : error.message;
        return { device, call, status: error.code, detail };
      }
      return {
        device,
        call,
        status: "unknown",
        detail: (error as Error)?.message ?? String(error),
      };
    }
  });
}

/**
 * A hint for an error from opening a real handle: what an ENOENT or EACCES
 * from xen*_open means for the user. Returns "" when there is none.
 */
export function openErrorHint(error: unknown): string {
  if (!(error instanceof XenCallError) || !error.call.endsWith("_open")) return "";
  if (error.code === "ENOENT") {
    return " (the /dev/xen device does not exist: this is not a Xen dom0, or the xen-evtchn/" +
      "xen-gntdev/xen-gntalloc modules are not loaded; see 'xenchan probe')";
  }
  if (error.code === "EACCES" || error.code === "EPERM") {
    return " (no permission to open the /dev/xen device: run as root; see 'xenchan probe')";
  }
  return "";
}
