/**
 * `xenchan vchan`: the simulated loopback echo through real stdin/stdout of
 * a child process (both runtimes), the same in-process with a custom stdio,
 * --help, and exit status 2 for bad arguments.
 *
 * @module
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import process from "node:process";
import { bufferOutput } from "../cli/io.ts";
import { main } from "../cli/main.ts";
import { runVchan, vchanOptions } from "../cli/vchan.ts";
import { runCli } from "./helpers/child.ts";
import { patternBytes } from "./helpers/vchan.ts";

function runWithStdin(
  args: string[],
  input: Uint8Array,
): Promise<{ code: number | null; stdout: Uint8Array; stderr: string }> {
  const cli = new URL("../cli.ts", import.meta.url).pathname;
  const cwd = new URL("../", import.meta.url).pathname;
  const runArgs = "Deno" in globalThis ? ["run", "-P", cli, ...args] : ["run", cli, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, runArgs, { cwd, stdio: ["pipe", "pipe", "pipe"] });
    const out: Uint8Array[] = [];
    let stderr = "";
    child.stdout.on("data", (c: Uint8Array) => out.push(new Uint8Array(c)));
    child.stderr.on("data", (c) => (stderr += c));
    child.on("error", reject);
    child.on("close", (code) => {
      const stdout = new Uint8Array(out.reduce((n, c) => n + c.length, 0));
      let at = 0;
      for (const c of out) {
        stdout.set(c, at);
        at += c.length;
      }
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

test("cli: vchan --simulate echoes 1 MiB of stdin to stdout (child process) [vchan:sim]", async () => {
  const input = patternBytes(1 << 20, 21);
  const { code, stdout, stderr } = await runWithStdin(["vchan", "--simulate"], input);
  assert.equal(code, 0, stderr);
  assert.equal(stdout.length, input.length);
  assert.deepEqual(stdout, input);
  assert.match(stderr, /simulated echo server in dom0 at \/local\/domain\/0\/data\/vchan\/1\/1/);
});

test("cli: runVchan in-process with granted rings, empty input too [vchan:sim]", async () => {
  for (const input of [patternBytes(300000, 2), new Uint8Array(0)]) {
    const chunks: Uint8Array[] = [];
    const out = bufferOutput();
    const stdin = (async function* () {
      for (let at = 0; at < input.length; at += 7000) yield input.subarray(at, at + 7000);
    })();
    const code = await runVchan(
      vchanOptions({ simulate: true, "read-min": "8192", "write-min": "16384" }),
      out,
      undefined,
      { stdin, write: (c) => Promise.resolve(void chunks.push(c)) },
    );
    assert.equal(code, 0, out.stderr.join("\n"));
    assert.match(out.stderr.join("\n"), /rings 8192 and 16384 bytes/);
    assert.deepEqual(new Uint8Array(chunks.flatMap((c) => [...c])), input);
  }
});

test("cli: vchan --help, bad arguments exit 2, no Xen exits 1 [vchan:sim]", async () => {
  const help = await runCli(["vchan", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: xenchan vchan \(--server \| --client\)/);
  for (
    const [args, message] of [
      [["vchan"], /exactly one of --server and --client/],
      [["vchan", "--server", "--client", "--domid", "1", "--port", "1"], /exactly one/],
      [["vchan", "--server", "--port", "1"], /--domid is required/],
      [["vchan", "--client", "--domid", "0"], /exactly one of --path and --port/],
      [["vchan", "--client", "--domid", "0", "--path", "rel/x"], /absolute XenStore path/],
      [["vchan", "--simulate", "--domid", "3"], /--simulate takes no --domid/],
      [["vchan", "--server", "--domid", "x", "--port", "1"], /--domid must be an integer/],
      [["vchan", "--server", "--domid", "1", "--port", "1", "--wait"], /--wait is for --client/],
      [["vchan", "--bogus"], /Unknown option/i],
    ] as const
  ) {
    const out = bufferOutput();
    assert.equal(await main([...args], out), 2, args.join(" "));
    assert.match(out.stderr.join("\n"), message);
  }
  const out = bufferOutput();
  const code = await main(["vchan", "--server", "--domid", "1", "--port", "1"], out);
  if (out.stderr.join("\n").includes("not on Xen")) assert.equal(code, 1);
});
