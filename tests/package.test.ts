/**
 * The npm package as a user gets it: tsc builds it (tsconfig.build.json),
 * `npm pack` packs it, and `npm install --offline <tarball>` installs it
 * into a scratch Bun project and a scratch Deno project (node_modules,
 * "nodeModulesDir": "manual"), where one script uses every entry point:
 * event channels and a grant on a simulated hypervisor, the real Xen
 * libraries loaded through the FFI layer, and (in Bun) the poll Worker
 * waiting on an eventfd; and one test file uses xenchan/testing under the
 * runtime's test runner (deno test, bun test): a clean test passes, a leaky
 * one fails with LeakError. The `xenchan` bin runs under Bun and, with only
 * Deno on PATH, under Deno.
 *
 * Everything happens in a temporary directory (the build goes to its own
 * dist/, never the checkout's); each child process has a time limit.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { after, describe, it } from "node:test";
import { whyNoXen } from "./helpers/xen.ts";

const REPO = fileURLToPath(new URL("../", import.meta.url));
const BIN = join(REPO, "node_modules", ".bin");
const ENV: NodeJS.ProcessEnv = {
  ...process.env,
  PATH: `${BIN}:${process.env.PATH ?? "/usr/bin:/bin"}`,
};
const NO_COLOR: NodeJS.ProcessEnv = { ...ENV, NO_COLOR: "1" };
const work = mkdtempSync(join(tmpdir(), "xenchan-package-"));

interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs argv in cwd (at most `seconds`); returns its exit status and output. */
function run(argv: string[], cwd: string, seconds = 120, env = ENV): Run {
  const r = spawnSync(argv[0], argv.slice(1), {
    cwd,
    env,
    encoding: "utf8",
    timeout: seconds * 1000,
    killSignal: "SIGKILL",
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs argv and fails the test, with its output, unless it exits 0. */
function mustRun(argv: string[], cwd: string, seconds?: number, env?: NodeJS.ProcessEnv): Run {
  const r = run(argv, cwd, seconds, env);
  assert.equal(r.status, 0, `${argv.join(" ")} exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
  return r;
}

interface Packed {
  readonly tarball: string;
  readonly files: readonly string[];
  readonly manifest: { dependencies?: Record<string, string>; exports: Record<string, unknown> };
}

let packed: Packed | Error | undefined;

/** Builds into work/stage/dist and packs that stage (once per run; a failure is kept too). */
function pack(): Packed {
  if (packed === undefined) {
    try {
      packed = buildAndPack();
    } catch (error) {
      packed = error instanceof Error ? error : new Error(String(error));
    }
  }
  if (packed instanceof Error) throw packed;
  return packed;
}

function buildAndPack(): Packed {
  const stage = join(work, "stage");
  mkdirSync(stage);
  for (const file of ["package.json", "LICENSE", "README.md"]) {
    cpSync(join(REPO, file), join(stage, file));
  }
  mustRun(
    [join(BIN, "tsc"), "-p", join(REPO, "tsconfig.build.json"), "--outDir", join(stage, "dist")],
    REPO,
  );
  const r = mustRun(
    ["npm", "pack", "--ignore-scripts", "--json", "--pack-destination", work],
    stage,
  );
  const [info] = JSON.parse(r.stdout) as [{ filename: string; files: { path: string }[] }];
  return {
    tarball: join(work, info.filename),
    files: info.files.map((f) => f.path),
    manifest: JSON.parse(readFileSync(join(stage, "package.json"), "utf8")),
  };
}

/** A scratch project with the packed tarball installed offline; returns its directory. */
function scratch(name: string, extra: Record<string, string> = {}): string {
  const { tarball } = pack();
  const dir = join(work, name);
  mkdirSync(dir);
  writeFileSync(
    join(dir, "package.json"),
    JSON.stringify({ name: `scratch-${name}`, private: true, type: "module" }),
  );
  for (const [file, text] of Object.entries(extra)) writeFileSync(join(dir, file), text);
  mustRun(["npm", "install", "--offline", "--no-audit", "--no-fund", tarball], dir);
  writeFileSync(join(dir, "use.ts"), USE);
  writeFileSync(join(dir, "kit.test.ts"), KIT_TEST);
  return dir;
}

/** The user's test file: xenchan/testing from the package, one clean and one leaky test. */
const KIT_TEST = `
import assert from "node:assert/strict";
import { test } from "node:test";
import { openEventChannels } from "xenchan";
import { LeakError, withXenSim } from "xenchan/testing";

test("kit: clean", () =>
  withXenSim(async (sim) => {
    const guest = sim.createGuest({ name: "front" });
    await using front = await openEventChannels({ backend: guest.backend });
    using back = sim.dom0.openEventChannels();
    const port = back.bindUnboundPort(guest.domid);
    const peer = front.bindInterdomain(0, port);
    assert.equal(await front.pending(), peer);
  }));

test("kit: leaky", () =>
  withXenSim((sim) => {
    sim.createGuest({ name: "front" }).openGrantShare().sharePages(0, 1);
  }));

test("kit: LeakError from the package", async () => {
  await assert.rejects(
    withXenSim((sim) => void sim.dom0.openEventChannels()),
    (error) => error instanceof LeakError && /d0 "Domain-0": EventChannels/.test(error.message),
  );
});
`;

/** Checks the runner's verdict on kit.test.ts: only "kit: leaky" failed, naming its share. */
function checkKitTest(r: Run, runtime: "deno" | "bun"): void {
  const out = `${r.stdout}\n${r.stderr}`;
  assert.notEqual(r.status, 0, `the leaky test fails the run:\n${out}`);
  assert.match(out, /d1 "front": GrantShare fd \d+ still open, 1 share of 1 page still shared/);
  if (runtime === "deno") {
    assert.match(out, /^kit: clean \.\.\. ok/m, out);
    assert.match(out, /^kit: leaky \.\.\. FAILED/m, out);
    assert.match(out, /^kit: LeakError from the package \.\.\. ok/m, out);
  } else {
    assert.match(out, /^\(pass\) kit: clean/m, out);
    assert.match(out, /^\(fail\) kit: leaky/m, out);
    assert.match(out, /^\(pass\) kit: LeakError from the package/m, out);
  }
}

/** The user's script: every entry point, the simulator, the FFI layer; prints one JSON line. */
const USE = `
import { ffiLibraryFacts, openEventChannels, openGrantShare, openGrantTable, selectBackend,
  SimHypervisor } from "xenchan";
import { SimHypervisor as SubpathSim } from "xenchan/sim";
import * as abi from "xenchan/abi";
import * as osevent from "xenchan/osevent";
import { EventFdNotifier } from "xenchan/doorbell";

const hv = new SimHypervisor();
await using a = await openEventChannels({ backend: hv.backend(0) });
await using b = await openEventChannels({ backend: hv.backend(0) });
const port = a.bindUnboundPort(0);
const peer = b.bindInterdomain(0, port);
b.unmask(await b.pending());
a.notify(port);
const got = await b.pending();
b.unmask(got);

using shr = await openGrantShare({ backend: hv.backend(0) });
using gnt = await openGrantTable({ backend: hv.backend(0) });
const share = shr.sharePages(0, 1);
share.bytes.set(new TextEncoder().encode("through the package"));
const mapping = gnt.mapDomainGrantRefs(0, share.refs);
const text = new TextDecoder().decode(mapping.bytes.subarray(0, 19));
mapping.unmap();
share.unshare();

const selection = await selectBackend("auto");
let facts: unknown;
try {
  facts = await ffiLibraryFacts();
} catch (error) {
  facts = { error: String(error) };
}

// A real eventfd waited on through the shared poller (Bun: the poll Worker).
using bell = await EventFdNotifier.create();
const waiting = bell.wait({ signal: AbortSignal.timeout(10_000) });
setTimeout(() => bell.notify(), 20);
const rung = await waiting;

console.log(JSON.stringify({
  runtime: "Bun" in globalThis ? "bun" : "deno",
  delivered: got === peer,
  text,
  selection: { kind: selection.kind, reason: selection.reason },
  facts,
  rung: String(rung),
  entryPoints: [SubpathSim === SimHypervisor, Object.keys(abi).length > 0,
    Object.keys(osevent).length > 0],
}));
`;

interface Used {
  readonly runtime: string;
  readonly delivered: boolean;
  readonly text: string;
  readonly selection: { readonly kind: string; readonly reason: string };
  readonly facts: { readonly evtchn?: string; readonly gnttab?: string; readonly error?: string };
  readonly rung: string;
  readonly entryPoints: readonly boolean[];
}

const noXen = await whyNoXen();

/** Building (~10 s), installing and running take tens of seconds; each child has its own limit. */
const SLOW = { timeout: 240_000 };

/** The checks on what use.ts printed, the same for both runtimes. */
function checkUse(r: Run, runtime: string): void {
  const line = r.stdout.trim().split("\n").at(-1) ?? "";
  const used = JSON.parse(line) as Used;
  assert.equal(used.runtime, runtime);
  assert.equal(used.delivered, true, "the notified port is the one delivered");
  assert.equal(used.text, "through the package", "the mapping shows the shared page");
  assert.equal(used.rung, "1", "the eventfd wait resolves with the counter");
  assert.deepEqual(used.entryPoints, [true, true, true]);
  assert.match(used.facts.evtchn ?? String(used.facts.error), /libxenevtchn\.so/);
  assert.match(used.facts.gnttab ?? String(used.facts.error), /libxengnttab\.so/);
  if (noXen === null) assert.equal(used.selection.kind, "ffi");
  else {
    assert.equal(used.selection.kind, "sim");
    assert.match(used.selection.reason, /\/dev\/xen\/evtchn/);
  }
  assert.equal(r.stderr.includes("leak"), false, `no leak report:\n${r.stderr}`);
}

after(() => rmSync(work, { recursive: true, force: true }));

describe("npm package (tsc build, npm pack, offline install)", () => {
  it(
    "packs JavaScript and .d.ts only (and the version's package.json), every export, the bin, no dependencies",
    SLOW,
    () => {
      const { files, manifest } = pack();
      const dist = files.filter((f) => f.startsWith("dist/"));
      assert.deepEqual(files.filter((f) => !f.startsWith("dist/")).sort(), [
        "LICENSE",
        "README.md",
        "package.json",
      ]);
      // dist/package.json is the one JSON file: `xenchan --version` imports it (cli/main.ts).
      assert.deepEqual(
        dist.filter((f) => !/\.(js|d\.ts)$/.test(f) && f !== "dist/package.json"),
        [],
        "only .js and .d.ts",
      );
      assert.deepEqual(dist.filter((f) => /^dist\/(tests|bench|scripts)\//.test(f)), []);
      for (
        const f of [
          "dist/mod.js",
          "dist/mod.d.ts",
          "dist/cli.js",
          "dist/ffi/poll_worker.js",
          "dist/testing/mod.js",
          "dist/testing/mod.d.ts",
        ]
      ) {
        assert.ok(files.includes(f), `${f} is in the tarball`);
      }
      for (const [entry, target] of Object.entries(manifest.exports)) {
        const { types, default: js } = target as { types: string; default: string };
        assert.ok(files.includes(js.slice(2)), `export ${entry}: ${js} is in the tarball`);
        assert.ok(files.includes(types.slice(2)), `export ${entry}: ${types} is in the tarball`);
      }
      assert.equal(manifest.dependencies, undefined, "no runtime dependencies");
      const js = readFileSync(join(work, "stage", "dist", "ffi", "runtime.js"), "utf8");
      assert.match(js, /import\("\.\/deno\.js"\)/, "the .ts import extensions became .js");
    },
  );

  it(
    "works in a scratch Bun project: simulator, FFI libraries, poll Worker, the testing kit, the bin",
    SLOW,
    () => {
      const dir = scratch("bun");
      checkUse(mustRun([join(BIN, "bun"), "use.ts"], dir, 60), "bun");
      const help = mustRun([join(dir, "node_modules", ".bin", "xenchan"), "--help"], dir, 60);
      assert.match(help.stdout, /demo/);
      const version = mustRun([join(dir, "node_modules", ".bin", "xenchan"), "--version"], dir, 60);
      assert.match(version.stdout, /^xenchan \d+\.\d+\.\d+ \(bun /);
      checkKitTest(run([join(BIN, "bun"), "test", "./kit.test.ts"], dir, 60, NO_COLOR), "bun");
    },
  );

  it(
    "works in a scratch Deno project (node_modules), types included, the testing kit under deno test, and the bin runs on Deno",
    SLOW,
    () => {
      const dir = scratch("deno", { "deno.json": JSON.stringify({ nodeModulesDir: "manual" }) });
      // A Deno project in manual node_modules mode type-checks node:test and node:assert
      // against node_modules/@types/node: the scratch project gets the project's pinned copy.
      for (const name of ["@types/node", "undici-types"]) {
        cpSync(join(REPO, "node_modules", name), join(dir, "node_modules", name), {
          recursive: true,
          dereference: true,
        });
      }
      mustRun([join(BIN, "deno"), "check", "use.ts", "kit.test.ts"], dir, 120);
      const flags = ["--allow-ffi", "--allow-read", "--allow-env", "--allow-sys"];
      checkUse(mustRun([join(BIN, "deno"), "run", ...flags, "use.ts"], dir, 60), "deno");
      // The kit needs no permissions.
      checkKitTest(
        run([join(BIN, "deno"), "test", "--no-prompt", "kit.test.ts"], dir, 120, NO_COLOR),
        "deno",
      );
      // Only Deno on PATH: the bin's first line falls back to `deno run -A`.
      const onlyDeno = join(work, "only-deno");
      mkdirSync(onlyDeno);
      symlinkSync(join(BIN, "deno"), join(onlyDeno, "deno"));
      const env = { ...process.env, PATH: `${onlyDeno}:/usr/bin:/bin` };
      const help = mustRun([join(dir, "node_modules", ".bin", "xenchan"), "--help"], dir, 60, env);
      assert.match(help.stdout, /demo/);
    },
  );
});
