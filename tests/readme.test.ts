/**
 * Every TypeScript example in README.md runs, unchanged but for its import
 * paths, under the runtime running this test, and prints what the README
 * says it prints. Off Xen the examples run on the simulator. Import paths:
 * "./x" is the checkout's file x; "xenchan" and "xenchan/<entry>" are the
 * checkout's files that deno.json's exports name (as a user imports the
 * package). An example that imports node:test is a test file: it runs under
 * the runtime's test runner (deno test with no permissions and no config,
 * bun test), and every test in it must pass.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, describe, it } from "node:test";

const repo = new URL("../", import.meta.url);
const readme = readFileSync(new URL("README.md", repo), "utf8");
const examples = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
const scratch = mkdtempSync(join(tmpdir(), "xenchan-readme-"));

/** A test-file example: the names of the tests that must pass, in order. */
interface TestFile {
  readonly passes: readonly string[];
}

/** What each example prints, in README order (one pattern per console.log line), or its tests. */
const expected: (RegExp[] | TestFile)[] = [
  [/^true (sim|ffi)$/],
  [/^hello$/, /^0$/],
  [/^true 0$/],
  [/^xenevtchn_notify ENOTCONN$/],
  [/^hello$/, /^1$/, /^EACCES$/],
  {
    passes: [
      "the split driver answers a request",
      "a front end that cannot connect leaves nothing open",
    ],
  },
  [/^true guest-1$/],
  [/^notified 1n$/, /^callback \[ 65543n \]$/],
];

/** deno.json's exports as package specifiers: "xenchan", "xenchan/sim", ... -> checkout URLs. */
const packageExports = Object.entries(
  (JSON.parse(readFileSync(new URL("deno.json", repo), "utf8")) as {
    exports: Record<string, string>;
  }).exports,
).map(([entry, target]) => [`xenchan${entry.slice(1)}`, new URL(target, repo).href] as const);

/** The example's source with its import paths pointing into the checkout. */
function resolved(source: string): string {
  let out = source.replaceAll(/from "\.\//g, `from "${repo.href}`);
  for (const [specifier, url] of packageExports) {
    out = out.replaceAll(`from "${specifier}"`, `from "${url}"`);
  }
  return out;
}

const isTestFile = (source: string) => /from "node:test"/.test(source);

function run(index: number): { status: number | null; stdout: string; stderr: string } {
  const source = resolved(examples[index]);
  const test = isTestFile(source);
  const file = join(scratch, `example_${index}${test ? ".test" : ""}.ts`);
  writeFileSync(file, source);
  const deno = "Deno" in globalThis;
  const args = test
    ? (deno ? ["test", "--no-config", "--no-prompt", file] : ["test", file])
    : (deno ? ["run", "-A", file] : ["run", file]);
  const result = spawnSync(process.execPath, args, {
    cwd: scratch,
    encoding: "utf8",
    timeout: test ? 110_000 : 60_000, // deno test type-checks the file first
    env: { ...process.env, NO_COLOR: "1" },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** The test names the runner reported as passed, in order (deno test's and bun test's formats). */
function passedTests(output: string): string[] {
  const deno = [...output.matchAll(/^(.+?) \.\.\. ok\b/gm)].map((m) => m[1]);
  const bun = [...output.matchAll(/^\(pass\) (.+?)(?: \[[\d.]+m?s\])?$/gm)].map((m) => m[1]);
  return deno.length > 0 ? deno : bun;
}

describe("README examples", () => {
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it("has exactly the examples this test knows", () => {
    assert.equal(examples.length, expected.length);
  });

  it("every test-file example imports the package as a user does", () => {
    const tests = examples.filter(isTestFile);
    assert.ok(tests.length > 0, "README has a test-file example (Testing your own code)");
    for (const source of tests) {
      assert.match(source, /from "xenchan"/);
      assert.match(source, /from "xenchan\/testing"/);
      assert.ok(!resolved(source).includes('from "xenchan'), "every xenchan specifier resolved");
    }
  });

  for (let i = 0; i < expected.length; i++) {
    const want = expected[i];
    if (!Array.isArray(want)) {
      it(`example ${i + 1} is a test file whose tests all pass under this runtime's runner`, {
        timeout: 120_000,
      }, () => {
        assert.ok(isTestFile(examples[i]), `example ${i + 1} imports node:test`);
        const { status, stdout, stderr } = run(i);
        assert.equal(status, 0, `exit ${status}:\n${stdout}\n${stderr}`);
        assert.deepEqual(passedTests(`${stdout}\n${stderr}`), want.passes);
      });
      continue;
    }
    it(`example ${i + 1} runs and prints what the README says`, () => {
      const { status, stdout, stderr } = run(i);
      assert.equal(status, 0, `exit ${status}: ${stderr}`);
      const lines = stdout.trim().split("\n");
      assert.equal(lines.length, want.length, `output: ${stdout}`);
      want.forEach((pattern, j) => assert.match(lines[j], pattern));
    });
  }
});
