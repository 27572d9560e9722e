// deno-lint-ignore-file explicit-module-boundary-types -- plain JS run by node: no type syntax
// scripts/test_host.mjs - runs the host test suites (`npm run test:host`).
//
// What it does: installs the missing host packages (scripts/xen/config.mjs HOST_PACKAGES, with
// apt-get), then runs every test file under tests/ except tests/dom0/ (those need a real Xen
// dom0; scripts/test_xen.mjs runs them) under
//   Deno: node_modules/.bin/deno test -P --junit-path=<xml> <files>   (permissions from deno.json)
//   Bun:  node_modules/.bin/bun test --reporter=junit --reporter-outfile=<xml> <files>
// and the harness's own self-tests (scripts/**/*.test.mjs) under `node --test`. Each runner's
// normal readable output goes to the terminal; the counts come from its JUnit report
// (<cache>/results/host/<runner>.xml).
// Output: per-runner counts, then the line "N passed, N failed[, N skipped]".
// Exports: testHost() -> Promise<RunnerResult[]> (see scripts/lib/junit.mjs).
// Exit:   0 when nothing failed, 1 otherwise (a runner without a JUnit report counts as failed).

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { $ } from "zx";
import { CACHE, HarnessError, REPO } from "./xen/config.mjs";
import { installHostPackages } from "./xen/provision.mjs";
import { listTests, readOrNull } from "./lib/files.mjs";
import { printResults, runnerResult, summaryLine } from "./lib/junit.mjs";

const OUT = path.join(CACHE, "results", "host");
const BIN = path.join(REPO, "node_modules", ".bin");

/**
 * Installs what the host suites need (libxen-dev: the real libraries and headers; gcc: the ABI
 * layout proof and the C benches). On failure the suites still run, and the tests that need
 * them fail with their own messages.
 */
async function hostPackages() {
  try {
    await installHostPackages();
  } catch (e) {
    if (!(e instanceof HarnessError)) throw e;
    console.error(`test_host: could not install the host packages: ${e.message}`);
  }
}

/** Runs the host suites; resolves to one RunnerResult per runner. */
export async function testHost() {
  fs.mkdirSync(OUT, { recursive: true });
  await hostPackages();
  const files = listTests("tests", { exclude: ["tests/dom0"] });
  const results = [];
  if (files.length === 0) {
    console.log("test_host: no host test files under tests/ yet; Deno and Bun suites skipped");
  } else {
    results.push(await runDeno(files));
    results.push(await runBun(files));
  }
  const selfTests = listTests("scripts");
  if (selfTests.length) results.push(await runNode(selfTests));
  return results;
}

async function runDeno(files) {
  const xml = fresh("deno.xml");
  banner(`deno test (${files.length} files)`);
  const r = await sh([`${BIN}/deno`, "test", "-P", `--junit-path=${xml}`, ...files]);
  return runnerResult("deno (host)", { xml: readOrNull(xml), status: r.exitCode, log: r.log });
}

async function runBun(files) {
  const xml = fresh("bun.xml");
  banner(`bun test (${files.length} files)`);
  const paths = files.map((f) => `./${f}`);
  const r = await sh([
    `${BIN}/bun`,
    "test",
    "--reporter=junit",
    `--reporter-outfile=${xml}`,
    ...paths,
  ]);
  return runnerResult("bun (host)", { xml: readOrNull(xml), status: r.exitCode, log: r.log });
}

async function runNode(files) {
  const xml = fresh("node.xml");
  banner(`node --test (harness self-tests, ${files.length} files)`);
  const r = await sh([
    process.execPath,
    "--test",
    ...["--test-reporter=spec", "--test-reporter-destination=stdout"],
    ...["--test-reporter=junit", `--test-reporter-destination=${xml}`],
    ...files,
  ]);
  return runnerResult("node (scripts)", { xml: readOrNull(xml), status: r.exitCode, log: r.log });
}

/**
 * Runs argv in the repo, streaming its output to ours as it comes; resolves to
 * { exitCode, log } where log is stdout + stderr (never throws).
 */
async function sh(argv) {
  const p = $({ cwd: REPO, nothrow: true, quiet: true })`${argv}`;
  p.stdout.on("data", (d) => process.stdout.write(d));
  p.stderr.on("data", (d) => process.stderr.write(d));
  const r = await p;
  return { exitCode: r.exitCode, log: r.stdout + r.stderr };
}

/** Deletes a stale report so an old file can never be counted; returns its path. */
function fresh(name) {
  const file = path.join(OUT, name);
  fs.rmSync(file, { force: true });
  return file;
}

function banner(title) {
  console.log(`\n== host: ${title} ==`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const results = await testHost();
  printResults("host results", results);
  console.log(summaryLine(results));
  process.exitCode = results.some((r) => r.failed > 0) ? 1 : 0;
}
