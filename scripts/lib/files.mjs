// deno-lint-ignore-file explicit-module-boundary-types -- plain JS run by node: no type syntax
// scripts/lib/files.mjs - finds test files for the test scripts.
//
// listTests(dir, { exclude }) -> repo-relative paths (sorted, "/" separators) of the test files
// under <repo>/<dir>: names ending in .test.ts, _test.ts, .spec.ts (and .js/.mjs/.tsx variants).
// `exclude` lists repo-relative directories to leave out. A missing directory gives [].

import fs from "node:fs";
import path from "node:path";
import { REPO } from "../xen/config.mjs";

const TEST_FILE = /[._](test|spec)\.(ts|tsx|mts|js|mjs)$/;

/** Lists test files (see the file comment). */
export function listTests(dir, { exclude = [] } = {}) {
  const root = path.join(REPO, dir);
  if (!fs.existsSync(root)) return [];
  const skip = new Set(exclude.map((d) => path.join(REPO, d)));
  const found = [];
  const walk = (d) => {
    if (skip.has(d)) return;
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory() && e.name !== "node_modules") walk(p);
      else if (e.isFile() && TEST_FILE.test(e.name)) found.push(path.relative(REPO, p));
    }
  };
  walk(root);
  return found.map((p) => p.split(path.sep).join("/")).sort();
}

/** Reads a file as text, or returns null when it does not exist. */
export function readOrNull(file) {
  try {
    return fs.readFileSync(file, "utf8");
  } catch {
    return null;
  }
}
