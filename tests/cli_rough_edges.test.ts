/**
 * The command line's rough edges, each pinned down: negative numbers after
 * a space reach the option's own check, --virq is checked against Xen's
 * VIRQ range while parsing, watch off Xen says it runs on the simulator,
 * --version, and every command (whatever COMMANDS holds) answers --help and
 * refuses bad arguments with exit 2 and a message naming the option.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";
import fc from "fast-check";
import { joinNegativeValues } from "../cli/args.ts";
import { bufferOutput } from "../cli/io.ts";
import { COMMANDS, main, TOP_HELP, USAGE_EXIT, VERSION } from "../cli/main.ts";
import { NR_VIRQS, watchOptions } from "../cli/watch.ts";
import { runCli } from "./helpers/child.ts";

async function run(...argv: string[]) {
  const out = bufferOutput();
  const code = await main(argv, out);
  return { code, stdout: out.text(), stderr: out.stderr.join("\n") };
}

describe("negative numbers after a space", () => {
  it("reach the option's check, which names the option, the range and the value", async () => {
    const cases: [string[], RegExp][] = [
      [["demo", "--timeout", "-1"], /--timeout must be a positive number of seconds, got '-1'/],
      [["demo", "--requests", "-4"], /--requests must be an integer from 1 to 10000000, got '-4'/],
      [["watch", "--unbound", "0", "--count", "-2"], /--count must be an integer from 1 up/],
      [["watch", "--unbound", "0", "--interval", "-.5"], /--interval must be a positive number/],
      [["watch", "--unbound", "-1"], /--unbound: '-1' is not a domain id/],
      [["watch", "--interdomain", "-1:2"], /--interdomain takes DOMID:PORT, got '-1:2'/],
      [["watch", "--virq", "-1"], /--virq must be an integer from 0 to 23/],
      [["vchan", "--client", "--domid", "0", "--port", "-5"], /--port must be an integer .*'-5'/],
      [["vchan", "--server", "--domid", "-1", "--port", "1"], /--domid must be an integer .*'-1'/],
      [["vchan", "--simulate", "--read-min", "-1"], /--read-min must be an integer .*'-1'/],
      [["domains", "--follow", "--count", "-3"], /--count must be an integer from 1 up, got '-3'/],
      [["domains", "--interval", "-1"], /--interval must be a positive number of seconds/],
    ];
    for (const [argv, pattern] of cases) {
      const r = await run(...argv);
      assert.equal(r.code, USAGE_EXIT, argv.join(" "));
      assert.match(r.stderr, pattern, argv.join(" "));
      assert.doesNotMatch(r.stderr, /ambiguous/, argv.join(" "));
    }
  });

  it("a value that looks like an option gets a message saying how to pass it", async () => {
    const r = await run("vchan", "--client", "--domid", "0", "--path", "-x");
    assert.equal(r.code, USAGE_EXIT);
    assert.match(r.stderr, /--path needs a value.*write --path=VALUE/);
    assert.doesNotMatch(r.stderr, /ambiguous/);
  });

  it("joinNegativeValues joins only a value-taking option and a negative number", () => {
    const options = {
      count: { type: "string" },
      follow: { type: "boolean", short: "f" },
      n: { type: "string", short: "n" },
    } as const;
    assert.deepEqual(joinNegativeValues(options, ["--count", "-1", "-f"]), ["--count=-1", "-f"]);
    assert.deepEqual(joinNegativeValues(options, ["-n", "-0.5"]), ["--n=-0.5"]);
    assert.deepEqual(joinNegativeValues(options, ["--follow", "-1"]), ["--follow", "-1"]);
    assert.deepEqual(joinNegativeValues(options, ["--count", "-x"]), ["--count", "-x"]);
    assert.deepEqual(joinNegativeValues(options, ["--count=-1"]), ["--count=-1"]);
    assert.deepEqual(joinNegativeValues(options, ["--", "--count", "-1"]), ["--", "--count", "-1"]);
    fc.assert(fc.property(fc.integer({ min: -1e9, max: -1 }), (n) => {
      assert.deepEqual(joinNegativeValues(options, ["--count", String(n)]), [`--count=${n}`]);
    }));
  });
});

describe("--virq against Xen's VIRQ range", () => {
  it("NR_VIRQS is Xen's (xen/include/public/xen.h, when the headers are installed)", () => {
    const header = "/usr/include/xen/xen.h";
    if (existsSync(header)) {
      const m = /#define\s+NR_VIRQS\s+(\d+)/.exec(readFileSync(header, "utf8"));
      assert.ok(m, "NR_VIRQS in xen.h");
      assert.equal(NR_VIRQS, Number(m[1]));
    }
    assert.equal(NR_VIRQS, 24, "Xen 4.17");
  });

  it("0..NR_VIRQS-1 parse; anything else is exit 2 while parsing, before any backend", async () => {
    for (const v of [0, 3, NR_VIRQS - 1]) {
      const options = watchOptions({ virq: [String(v)] });
      assert.deepEqual(options.ports, [{ kind: "virq", virq: v }]);
    }
    for (const v of [String(NR_VIRQS), "99", "4294967295", "-1", "3.5", "x"]) {
      const r = await run("watch", "--backend", "ffi", "--virq", v);
      assert.equal(r.code, USAGE_EXIT, v);
      assert.match(
        r.stderr,
        /--virq must be an integer from 0 to 23 \(Xen's VIRQs, NR_VIRQS = 24\)/,
      );
      assert.equal(r.stdout, "", `${v}: nothing bound`);
    }
  });
});

describe("watch off Xen", () => {
  it("says it runs on the simulator, where nothing arrives without --simulate-notify", async () => {
    const r = await run("watch", "--backend", "sim", "--unbound", "0", "--timeout", "0.05");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /running on the built-in simulator \(--backend sim\)/);
    assert.match(r.stderr, /nothing will arrive: add --simulate-notify N/);
    const auto = await run("watch", "--unbound", "0", "--timeout", "0.05");
    if (/simulated/.test(auto.stdout)) {
      assert.match(auto.stderr, /running on the built-in simulator \(no Xen here: /);
    }
    const driven = await run(
      "watch",
      "--backend",
      "sim",
      "--virq",
      "3",
      "--simulate-notify",
      "1",
      "--interval",
      "0.01",
      "--count",
      "1",
    );
    assert.equal(driven.code, 0, driven.stderr);
    assert.match(driven.stderr, /the events below come from --simulate-notify, not from Xen/);
  });
});

describe("--version", () => {
  it("prints package.json's version (deno.json agrees) and the runtime, exit 0", async () => {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
    const deno = JSON.parse(readFileSync(new URL("../deno.json", import.meta.url), "utf8"));
    assert.equal(VERSION, pkg.version);
    assert.equal(deno.version, pkg.version, "deno.json's version follows package.json's");
    for (const flag of ["--version", "-V", "version"]) {
      const r = await run(flag);
      assert.equal(r.code, 0);
      assert.match(
        r.stdout,
        new RegExp(`^xenchan ${VERSION.replaceAll(".", "\\.")} \\((deno|bun) `),
      );
    }
    assert.match(TOP_HELP, /-V, --version/);
  });

  it("works from cli.ts in a child process of this runtime", { timeout: 60_000 }, async () => {
    const r = await runCli(["--version"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim().split(" ")[1], VERSION);
  });
});

describe("every command", () => {
  it("'help' of an unknown command is exit 2 naming the commands", async () => {
    const r = await run("help", "frobnicate");
    assert.equal(r.code, USAGE_EXIT);
    assert.match(r.stderr, /unknown command 'frobnicate' \(commands: demo, probe, watch, bench/);
  });

  it("has --help and a usage line", async () => {
    assert.ok(COMMANDS.length >= 6);
    for (const { spec } of COMMANDS) {
      const r = await run(spec.name, "--help");
      assert.equal(r.code, 0, spec.name);
      assert.match(r.stdout, new RegExp(`^Usage: xenchan ${spec.name}`), spec.name);
      assert.match(r.stdout, /-h, --help/, `${spec.name} lists -h, --help`);
    }
  });

  it("refuses an unknown option, a stray word and each value-taking option without its value", async () => {
    for (const { spec } of COMMANDS) {
      for (const argv of [[spec.name, "--no-such-flag"], [spec.name, "stray"]]) {
        const r = await run(...argv);
        assert.equal(r.code, USAGE_EXIT, argv.join(" "));
        assert.match(r.stderr, /--no-such-flag|'stray'/, argv.join(" "));
        assert.match(r.stderr, new RegExp(`xenchan ${spec.name} --help`), argv.join(" "));
        assert.equal(r.stdout, "", argv.join(" "));
      }
      for (const [name, option] of Object.entries(spec.options)) {
        if (option.type !== "string") continue;
        const r = await run(spec.name, `--${name}`);
        assert.equal(r.code, USAGE_EXIT, `${spec.name} --${name}`);
        assert.match(r.stderr, new RegExp(`--${name}`), `${spec.name} --${name}`);
      }
    }
  });
});
