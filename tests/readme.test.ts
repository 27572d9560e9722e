/**
 * Every TypeScript example in README.md runs, unchanged but for its import
 * paths, under the runtime running this test, and prints what the README
 * says it prints. Off Xen the examples run on the simulator.
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

/** What each example prints, in README order (one pattern per console.log line). */
const expected: RegExp[][] = [
  [/^true (sim|ffi)$/],
  [/^hello$/, /^0$/],
  [/^true 0$/],
  [/^xenevtchn_notify ENOTCONN$/],
  [/^hello$/, /^1$/, /^EACCES$/],
  [/^true guest-1$/],
  [/^notified 1n$/, /^callback \[ 65543n \]$/],
];

function run(index: number): { status: number | null; stdout: string; stderr: string } {
  const source = examples[index].replaceAll(/from "\.\//g, `from "${repo.href}`);
  const file = join(scratch, `example_${index}.ts`);
  writeFileSync(file, source);
  const args = "Deno" in globalThis ? ["run", "-A", file] : ["run", file];
  const result = spawnSync(process.execPath, args, { encoding: "utf8", timeout: 60_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe("README examples", () => {
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it("has exactly the examples this test knows", () => {
    assert.equal(examples.length, expected.length);
  });

  for (let i = 0; i < expected.length; i++) {
    it(`example ${i + 1} runs and prints what the README says`, () => {
      const { status, stdout, stderr } = run(i);
      assert.equal(status, 0, `exit ${status}: ${stderr}`);
      const lines = stdout.trim().split("\n");
      assert.equal(lines.length, expected[i].length, `output: ${stdout}`);
      expected[i].forEach((pattern, j) => assert.match(lines[j], pattern));
    });
  }
});
