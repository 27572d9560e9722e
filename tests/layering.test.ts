/**
 * The layering rules, read against the real import graph.
 *
 * Every TypeScript and JavaScript file of the project belongs to one layer
 * (the first rule whose prefix matches its path). A layer may import only
 * the files its rule allows: its own layer, and what lies below it. The same
 * table stands in README.md (Layout); this test fails on any import edge that
 * breaks it, so the layering holds from now on.
 *
 * Bottom to top:
 *   core/              errors, validation, the driver seam, the public handles
 *   ffi/               the native layer (only ffi/mod.ts is visible above it)
 *   plugins/abi/       event delivery ABIs
 *   sim/               the simulated hypervisor (core and the ABIs only)
 *   plugins/osevent/, plugins/doorbell/   pluggable parts over core and ffi/mod.ts
 *   plugins/vchan/     vchan over the public handles and a XenStore connection (core only)
 *   mod.ts             the public API
 *   testing/           the testing kit (xenchan/testing): mod.ts and sim/mod.ts only
 *   cli.ts, cli/, bench/                  users of the public API
 *   tests/             may import anything but scripts/ (which imports nothing of ours)
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = normalize(join(dirname(fileURLToPath(import.meta.url)), ".."));

/** Public entry points that every layer above them may import. */
const ENTRY_POINTS = [
  "mod.ts",
  "sim/mod.ts",
  "plugins/abi/mod.ts",
  "plugins/osevent/mod.ts",
  "plugins/doorbell/mod.ts",
  "plugins/vchan/mod.ts",
];

interface Rule {
  /** Path prefix of the files this rule covers (first match wins). */
  readonly layer: string;
  /** Path prefixes (or exact files) those files may import. */
  readonly mayImport: readonly string[];
}

/** The written rules: most specific prefixes first. */
export const LAYER_RULES: readonly Rule[] = [
  { layer: "core/", mayImport: ["core/"] },
  { layer: "ffi/", mayImport: ["ffi/", "core/"] },
  { layer: "plugins/abi/", mayImport: ["plugins/abi/", "core/"] },
  { layer: "sim/", mayImport: ["sim/", "core/", "plugins/abi/mod.ts"] },
  {
    layer: "plugins/osevent/",
    mayImport: ["plugins/osevent/", "core/", "ffi/mod.ts", "plugins/abi/mod.ts"],
  },
  { layer: "plugins/doorbell/", mayImport: ["plugins/doorbell/", "core/", "ffi/mod.ts"] },
  { layer: "plugins/vchan/", mayImport: ["plugins/vchan/", "core/"] },
  {
    layer: "mod.ts",
    mayImport: ["core/", "ffi/mod.ts", ...ENTRY_POINTS.filter((e) => e !== "mod.ts")],
  },
  // The testing kit (xenchan/testing): above the public API and the simulator.
  { layer: "testing/", mayImport: ["testing/", "mod.ts", "sim/mod.ts"] },
  { layer: "cli.ts", mayImport: ["cli/"] },
  // package.json: the version --version prints (its one source)
  { layer: "cli/", mayImport: ["cli/", "package.json", ...ENTRY_POINTS] },
  { layer: "bench/", mayImport: ["bench/", "core/", "ffi/mod.ts", ...ENTRY_POINTS] },
  {
    layer: "tests/",
    mayImport: [
      "tests/",
      "core/",
      "ffi/",
      "sim/",
      "plugins/",
      "testing/",
      "cli/",
      "cli.ts",
      "mod.ts",
    ],
  },
  { layer: "scripts/", mayImport: ["scripts/"] },
];

const SKIP_DIRS = new Set(["node_modules", ".git", ".xen", "out", "dist"]);

function sourceFiles(dir: string): string[] {
  const found: string[] = [];
  for (const name of readdirSync(dir)) {
    if (SKIP_DIRS.has(name)) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) found.push(...sourceFiles(path));
    else if (/\.(ts|mjs|js)$/.test(name)) found.push(path);
  }
  return found;
}

/** Static imports, re-exports, dynamic imports and `new URL("x.ts", import.meta.url)`. */
const IMPORT_PATTERNS = [
  /(?:^|\n)\s*(?:import|export)\b[^;"']*?\bfrom\s*["']([^"']+)["']/g,
  /(?:^|\n)\s*import\s*["']([^"']+)["']/g,
  /\bimport\(\s*["']([^"']+)["']\s*\)/g,
  /new URL\(\s*["'](\.{1,2}\/[^"']+\.(?:ts|mjs|js))["']\s*,\s*import\.meta\.url/g,
];

/** The project files one file imports, as root-relative paths. */
export function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8").replace(/\/\*[\s\S]*?\*\//g, "");
  const targets: string[] = [];
  for (const pattern of IMPORT_PATTERNS) {
    for (const match of text.matchAll(pattern)) {
      const spec = match[1];
      if (!spec.startsWith(".")) continue; // node:, bun:ffi, npm packages
      targets.push(relative(ROOT, normalize(join(dirname(file), spec))).replaceAll("\\", "/"));
    }
  }
  return targets;
}

function ruleFor(path: string): Rule | undefined {
  return LAYER_RULES.find((r) => path === r.layer || path.startsWith(r.layer));
}

function allowed(rule: Rule, target: string): boolean {
  return rule.mayImport.some((p) => target === p || (p.endsWith("/") && target.startsWith(p)));
}

test("layering: every source file belongs to a layer", () => {
  const files = sourceFiles(ROOT).map((f) => relative(ROOT, f).replaceAll("\\", "/"));
  assert.ok(files.length > 100, `only ${files.length} source files found under ${ROOT}`);
  const orphans = files.filter((f) => ruleFor(f) === undefined);
  assert.deepEqual(orphans, [], "files outside every layer: add them to LAYER_RULES and README");
});

test("layering: every import points down (the written rules hold)", () => {
  const broken: string[] = [];
  let edges = 0;
  for (const file of sourceFiles(ROOT)) {
    const path = relative(ROOT, file).replaceAll("\\", "/");
    const rule = ruleFor(path);
    if (rule === undefined) continue;
    for (const target of importsOf(file)) {
      edges++;
      if (!allowed(rule, target)) broken.push(`${path} -> ${target} (layer ${rule.layer})`);
    }
  }
  assert.ok(edges > 300, `only ${edges} import edges found: is the import reader broken?`);
  assert.deepEqual(broken, []);
});

test("layering: the checker itself catches an upward import", () => {
  const ffi = ruleFor("ffi/grants.ts");
  assert.ok(ffi);
  assert.equal(allowed(ffi, "plugins/osevent/mod.ts"), false);
  assert.equal(allowed(ffi, "core/errors.ts"), true);
  const osevent = ruleFor("plugins/osevent/loop.ts");
  assert.ok(osevent);
  assert.equal(
    allowed(osevent, "ffi/poller.ts"),
    false,
    "ffi internals are hidden behind ffi/mod.ts",
  );
  assert.equal(allowed(osevent, "ffi/mod.ts"), true);
  const sim = ruleFor("sim/hypervisor.ts");
  assert.ok(sim);
  assert.equal(allowed(sim, "ffi/mod.ts"), false, "the simulator needs no native layer");
  const cli = ruleFor("cli/probe.ts");
  assert.ok(cli);
  assert.equal(allowed(cli, "ffi/backend.ts"), false, "the CLI goes through mod.ts");
  const kit = ruleFor("testing/fixture.ts");
  assert.ok(kit);
  assert.equal(
    allowed(kit, "sim/hypervisor.ts"),
    false,
    "the kit uses the simulator's entry point",
  );
  assert.equal(allowed(kit, "sim/mod.ts"), true);
  const parsed = importsOf(join(ROOT, "mod.ts"));
  assert.ok(parsed.includes("core/errors.ts"), `mod.ts imports read as ${parsed.join(", ")}`);
});

test("layering: README.md's Layout table names every layer of LAYER_RULES", () => {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const section = readme.match(/^## Layout\n([\s\S]*?)(?=^## )/m)?.[1];
  assert.ok(section, "README.md has no Layout section");
  assert.match(section, /tests\/layering\.test\.ts/);
  const rows = section.split("\n").filter((line) => line.startsWith("| `"));
  for (const { layer } of LAYER_RULES) {
    assert.ok(
      rows.some((row) => row.split("|")[1].includes(`\`${layer}\``)),
      `layer ${layer} is missing from README.md's Layout table`,
    );
  }
});
