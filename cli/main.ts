/**
 * The CLI dispatcher: `xenchan <command> [options]`. Kept apart from the
 * entry (cli.ts) so tests can run any command line in-process with their
 * own output sink and signal.
 *
 * @module
 */
import packageJson from "../package.json" with { type: "json" };
import { type CommandSpec, parseCommand, type ParsedValues, UsageError } from "./args.ts";
import { BENCH_SPEC, benchOptions, runBench } from "./bench.ts";
import { DEMO_SPEC, demoOptions, runDemo } from "./demo.ts";
import { DOMAINS_SPEC, domainsOptions, runDomains } from "./domains.ts";
import type { Output } from "./io.ts";
import { PROBE_SPEC, probeOptions, runProbe } from "./probe.ts";
import { runtimeLabel } from "./facts.ts";
import { runVchan, VCHAN_SPEC, vchanOptions } from "./vchan.ts";
import { runWatch, WATCH_SPEC, watchOptions } from "./watch.ts";

/**
 * The package's version: package.json's "version", the one source of truth
 * (deno.json's "version" is checked against it by tests/cli_version.test.ts).
 */
export const VERSION: string = packageJson.version;

/** Exit status for a command-line mistake. */
export const USAGE_EXIT = 2;

interface Command {
  readonly spec: CommandSpec;
  run(values: ParsedValues, out: Output, signal?: AbortSignal): Promise<number>;
}

/** The commands, in help order. */
export const COMMANDS: readonly Command[] = [
  { spec: DEMO_SPEC, run: (v, out) => runDemo(demoOptions(v), out) },
  { spec: PROBE_SPEC, run: (v, out) => runProbe(probeOptions(v), out) },
  { spec: WATCH_SPEC, run: (v, out, signal) => runWatch(watchOptions(v), out, { signal }) },
  { spec: BENCH_SPEC, run: (v, out) => runBench(benchOptions(v), out) },
  {
    spec: DOMAINS_SPEC,
    run: (v, out, signal) => runDomains(domainsOptions(v), out, { signal }),
  },
  { spec: VCHAN_SPEC, run: (v, out, signal) => runVchan(vchanOptions(v), out, signal) },
];

/** The top-level help text. */
export const TOP_HELP = `xenchan: Xen event channels and grant tables for Deno and Bun

Usage:
  deno run -P cli.ts <command> [options]
  bun run cli.ts <command> [options]

Commands:
${COMMANDS.map((c) => `  ${c.spec.name.padEnd(7)} ${c.spec.summary}`).join("\n")}

Options:
  -h, --help     show this help ('xenchan help <command>' for a command's)
  -V, --version  print the version and the runtime

Run 'xenchan <command> --help' for a command's options.
Off Xen every command runs on the built-in simulator; in a Xen dom0 (root)
"auto" uses the real libxenevtchn and libxengnttab.`;

/**
 * Runs one command line (`argv` without the runtime and script). Resolves
 * to the exit status: the command's, 0 for help and --version, 2 (USAGE_EXIT) for a
 * usage error (printed to out.err). `signal` stops long-running commands
 * (watch). Rejects only for programming errors.
 */
export async function main(
  argv: readonly string[],
  out: Output,
  signal?: AbortSignal,
): Promise<number> {
  const [name, ...rest] = argv;
  if ((name === "--version" || name === "-V" || name === "version") && rest.length === 0) {
    out.log(`xenchan ${VERSION} (${runtimeLabel()})`);
    return 0;
  }
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    const topic = name === "help" ? COMMANDS.find((c) => c.spec.name === rest[0]) : undefined;
    if (name === "help" && rest[0] !== undefined && !topic) {
      out.err(
        `xenchan help: unknown command '${rest[0]}' (commands: ${
          COMMANDS.map((c) => c.spec.name).join(", ")
        })`,
      );
      return USAGE_EXIT;
    }
    out.log(topic ? topic.spec.help : TOP_HELP);
    if (name === undefined) return USAGE_EXIT;
    return 0;
  }
  const command = COMMANDS.find((c) => c.spec.name === name);
  try {
    if (!command) {
      throw new UsageError(
        `xenchan: unknown ${name.startsWith("-") ? "option" : "command"} '${name}'` +
          ` (commands: ${
            COMMANDS.map((c) => c.spec.name).join(", ")
          })\nRun 'xenchan --help' for usage.`,
      );
    }
    const values = parseCommand(command.spec, rest);
    if (values === null) {
      out.log(command.spec.help);
      return 0;
    }
    return await command.run(values, out, signal);
  } catch (error) {
    if (error instanceof UsageError) {
      out.err(error.message);
      return USAGE_EXIT;
    }
    throw error;
  }
}
