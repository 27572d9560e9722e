/**
 * The CLI's command line: help texts, unknown commands and options, bad
 * values (exit status 2 with a message naming the mistake), run in-process.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { bufferOutput } from "../cli/io.ts";
import { COMMANDS, main, TOP_HELP, USAGE_EXIT } from "../cli/main.ts";

async function run(...argv: string[]) {
  const out = bufferOutput();
  const code = await main(argv, out);
  return { code, stdout: out.text(), stderr: out.stderr.join("\n") };
}

describe("xenchan command line", () => {
  it("--help prints the top-level help listing every command, exit 0", async () => {
    for (const flag of ["--help", "-h"]) {
      const r = await run(flag);
      assert.equal(r.code, 0);
      assert.equal(r.stdout, TOP_HELP);
      for (const name of ["demo", "probe", "watch", "bench"]) {
        assert.match(r.stdout, new RegExp(`^  ${name} `, "m"));
      }
    }
  });

  it("no command prints the help and exits 2", async () => {
    const r = await run();
    assert.equal(r.code, USAGE_EXIT);
    assert.match(r.stdout, /Usage:/);
  });

  it("every command has --help, -h and 'help <command>'", async () => {
    for (const { spec } of COMMANDS) {
      for (const argv of [[spec.name, "--help"], [spec.name, "-h"], ["help", spec.name]]) {
        const r = await run(...argv);
        assert.equal(r.code, 0, argv.join(" "));
        assert.equal(r.stdout, spec.help);
        assert.match(r.stdout, new RegExp(`^Usage: xenchan ${spec.name}`));
      }
    }
  });

  it("an unknown command is refused with exit 2 and a clear message", async () => {
    const r = await run("frobnicate");
    assert.equal(r.code, USAGE_EXIT);
    assert.match(r.stderr, /unknown command 'frobnicate'/);
    assert.match(r.stderr, /demo, probe, watch, bench/);
    const flag = await run("--verbose");
    assert.equal(flag.code, USAGE_EXIT);
    assert.match(flag.stderr, /unknown option '--verbose'/);
  });

  it("an unknown option of a command is refused with exit 2", async () => {
    for (const name of ["demo", "probe", "watch", "bench"]) {
      const r = await run(name, "--no-such-flag");
      assert.equal(r.code, USAGE_EXIT, name);
      assert.match(r.stderr, /--no-such-flag/);
      assert.match(r.stderr, new RegExp(`xenchan ${name} --help`));
    }
  });

  it("bad values are refused with exit 2 and name the option", async () => {
    const cases: [string[], RegExp][] = [
      [["demo", "--requests", "many"], /--requests must be an integer/],
      [["demo", "--requests", "0"], /--requests must be an integer from 1/],
      [["demo", "--requests"], /argument missing/],
      [["demo", "--backend", "kvm"], /--backend must be auto, sim or ffi/],
      [["demo", "--timeout", "0"], /--timeout must be a positive number/],
      [["demo", "--timeout=-1"], /--timeout must be a positive number/],
      [["demo", "stray"], /Unexpected argument 'stray'/],
      [["watch"], /name at least one port/],
      [["watch", "--interdomain", "3"], /--interdomain takes DOMID:PORT/],
      [["watch", "--unbound", "abc"], /is not a domain id/],
      [["watch", "--virq", "x", "--count", "1"], /--virq must be an integer/],
      [["watch", "--unbound", "0", "--count", "0"], /--count must be an integer from 1/],
      [["bench", "--only", "nope"], /unknown suite 'nope'/],
    ];
    for (const [argv, pattern] of cases) {
      const r = await run(...argv);
      assert.equal(r.code, USAGE_EXIT, argv.join(" "));
      assert.match(r.stderr, pattern, argv.join(" "));
      assert.equal(r.stdout, "", `${argv.join(" ")} printed nothing to stdout`);
    }
  });
});
