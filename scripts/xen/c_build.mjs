// deno-lint-ignore-file explicit-module-boundary-types -- plain JS run by node: no type syntax
// scripts/xen/c_build.mjs - builds the C baselines in bench/c/ for dom0.
//
// What it does: compiles every bench/c/*.c with `gcc -O2 -Wall` against the host's
// libxen-dev (linked with -lxenevtchn -lxengnttab -lxentoollog -lxenstore -lxenvchan -lpthread,
// --as-needed) into
// <cache>/build/<name>. A binary newer than its source is reused.
// Output: buildCBenches() resolves to the list of built binary paths (may be empty).
// Errors: HarnessError with gcc's output when a compile fails.

import fs from "node:fs";
import path from "node:path";
import { $ } from "zx";
import { CACHE, HarnessError, REPO } from "./config.mjs";

const SRC = path.join(REPO, "bench", "c");
const LIBS = [
  "-Wl,--as-needed",
  "-lxenevtchn",
  "-lxengnttab",
  "-lxentoollog",
  "-lxenstore",
  "-lxenvchan",
  "-lpthread",
];

/** Builds stale C benches; returns the binary paths. */
export async function buildCBenches() {
  if (!fs.existsSync(SRC)) return [];
  const outDir = path.join(CACHE, "build");
  fs.mkdirSync(outDir, { recursive: true });
  const built = [];
  for (const file of fs.readdirSync(SRC).filter((f) => f.endsWith(".c")).sort()) {
    const src = path.join(SRC, file);
    const bin = path.join(outDir, file.slice(0, -2));
    if (!isFresh(bin, src)) {
      const r = await $({
        nothrow: true,
        quiet: true,
      })`gcc -O2 -Wall -Wextra -o ${bin} ${src} ${LIBS}`;
      if (r.exitCode !== 0) throw new HarnessError(`gcc failed for bench/c/${file}`, r.stderr);
    }
    built.push(bin);
  }
  return built;
}

function isFresh(bin, src) {
  try {
    return fs.statSync(bin).mtimeMs >= fs.statSync(src).mtimeMs;
  } catch {
    return false;
  }
}
