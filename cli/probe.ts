/**
 * `xenchan probe`: which backend is usable here and exactly why (or why
 * not), the real library files and versions, their optional symbols, the
 * /dev/xen devices, the Xen version and the event delivery ABI in use.
 *
 * @module
 */
import { defaultSimulator, ffiLibraryFacts, LibraryNotFoundError, selectBackend } from "../mod.ts";
import type { CommandSpec, ParsedValues } from "./args.ts";
import {
  type DeviceFact,
  deviceFacts,
  type Fact,
  kernelEventAbi,
  libraryFile,
  runtimeLabel,
  versionFromFileName,
  xenVersion,
} from "./facts.ts";
import type { Output } from "./io.ts";

/** The probe command's arguments. */
export const PROBE_SPEC: CommandSpec = {
  name: "probe",
  summary: "which backend is usable here and why; library versions; event delivery ABI",
  options: { json: { type: "boolean" } },
  help: `Usage: xenchan probe [--json]

Reports which backend "auto" selects here and exactly why: the real Xen
libraries (libxenevtchn, libxengnttab) and their versions and optional
symbols, whether /dev/xen/evtchn, /dev/xen/gntdev and /dev/xen/gntalloc
open (missing, or no permission), the Xen version, and the event delivery
ABI in use.

Options:
  --json      print one JSON object instead of text
  -h, --help  show this help

Under Deno, -P (this project's permissions) cannot read /proc, /sys or
/dev files; run 'deno run -A cli.ts probe' to include the Xen version.`,
};

/** Options of runProbe. */
export interface ProbeOptions {
  readonly json: boolean;
}

/** Converts parsed arguments. Throws nothing (probe has no values to check). */
export function probeOptions(values: ParsedValues): ProbeOptions {
  return { json: values.json === true };
}

/** One library as the probe reports it. */
export interface LibraryReport {
  readonly soname: string;
  readonly file?: string;
  readonly version?: string;
  readonly how?: string;
  readonly error?: string;
}

/** Everything the probe found (the --json output). */
export interface ProbeReport {
  readonly runtime: string;
  /** What backend "auto" chose, and why. */
  readonly selected: { readonly kind: "ffi" | "sim"; readonly reason: string };
  readonly ffi: {
    readonly usable: boolean;
    /** Set when the libraries could not be loaded. */
    readonly libraryError?: string;
    readonly libraries: LibraryReport[];
    readonly optionalSymbols: Record<string, boolean>;
    readonly devices: DeviceFact[];
  };
  readonly xen: { readonly version?: string; readonly reason?: string };
  /** The event delivery ABI of the backend in use, and how it is known. */
  readonly abi: { readonly kind: string; readonly source: string };
}

function factField<T>(fact: Fact<T>): { value?: T; reason?: string; source?: string } {
  return fact.ok ? { value: fact.value, source: fact.source } : { reason: fact.reason };
}

/**
 * Gathers the probe report. Never rejects for a missing library, device or
 * permission: those are what it reports.
 */
export async function gatherProbe(): Promise<ProbeReport> {
  const selection = await selectBackend("auto");
  let libraryError: string | undefined;
  let libraries: LibraryReport[] = [];
  let optionalSymbols: Record<string, boolean> = {};
  let devices: DeviceFact[] = [];
  try {
    const facts = await ffiLibraryFacts();
    optionalSymbols = facts.optional;
    libraries = [facts.evtchn, facts.gnttab].map((loaded) => {
      const file = libraryFile(loaded);
      if (!file.ok) return { soname: loaded, error: file.reason };
      return {
        soname: loaded,
        file: file.value,
        version: versionFromFileName(file.value) ?? "unknown",
        how: versionFromFileName(file.value)?.includes(".") === false
          ? `${file.source}; the file is named by its soname, so only the major version is known`
          : file.source,
      };
    });
    devices = await deviceFacts();
  } catch (error) {
    libraryError = error instanceof LibraryNotFoundError
      ? error.message
      : `the libraries cannot be used: ${(error as Error)?.message ?? String(error)}`;
  }
  const xen = factField(xenVersion());
  let abi: { kind: string; source: string };
  if (selection.kind === "sim") {
    const kind = defaultSimulator().domainInfo(0)?.abi ?? "unknown";
    abi = {
      kind,
      source:
        "the simulator's dom0; it offers 2-level and FIFO like Xen >= 4.4, and domains ask for FIFO as Linux does",
    };
  } else {
    const fact = kernelEventAbi();
    abi = fact.ok ? { kind: fact.value, source: fact.source } : {
      kind: "unknown",
      source: `${fact.reason}; Linux uses FIFO whenever Xen offers it (Xen >= 4.4), else 2-level`,
    };
  }
  return {
    runtime: runtimeLabel(),
    selected: { kind: selection.kind, reason: selection.reason },
    ffi: {
      usable: selection.kind === "ffi",
      libraryError,
      libraries,
      optionalSymbols,
      devices,
    },
    xen: { version: xen.value, reason: xen.reason },
    abi,
  };
}

/** Prints the report as text lines. */
export function printProbe(report: ProbeReport, out: Output): void {
  out.log(`xenchan probe (${report.runtime})`);
  out.log(
    `backend "auto" selects: ${
      report.selected.kind === "ffi" ? "ffi (real Xen)" : "sim (simulator)"
    }`,
  );
  out.log(`  why: ${report.selected.reason}`);
  out.log("");
  out.log(`real Xen backend (ffi): ${report.ffi.usable ? "usable" : "not usable here"}`);
  if (report.ffi.libraryError) {
    out.log(`  libraries: ${report.ffi.libraryError}`);
  } else {
    for (const lib of report.ffi.libraries) {
      out.log(
        lib.file
          ? `  library ${lib.soname} -> ${lib.file} (version ${lib.version}; ${lib.how})`
          : `  library ${lib.soname}: file not found (${lib.error})`,
      );
    }
    const symbols = Object.entries(report.ffi.optionalSymbols)
      .map(([name, present]) => `${name} ${present ? "yes" : "no"}`).join(", ");
    out.log(`  optional symbols: ${symbols}`);
    for (const d of report.ffi.devices) {
      out.log(
        `  ${d.device}: ${d.status === "ok" ? "opens" : `${d.status}: ${d.detail}`} (${d.call})`,
      );
    }
  }
  out.log(`  Xen version: ${report.xen.version ?? `unknown: ${report.xen.reason}`}`);
  out.log("");
  out.log(`simulator backend (sim): always available`);
  out.log(`event delivery ABI in use: ${report.abi.kind}`);
  out.log(`  how known: ${report.abi.source}`);
}

/** Runs the probe; prints text or JSON to `out`. Resolves to exit status 0. */
export async function runProbe(options: ProbeOptions, out: Output): Promise<number> {
  const report = await gatherProbe();
  if (options.json) out.log(JSON.stringify(report));
  else printProbe(report, out);
  return 0;
}
