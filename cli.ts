#!/usr/bin/env -S sh -c 'if command -v bun >/dev/null; then exec bun "$0" "$@"; fi; exec deno run -A "$0" "$@"'
/**
 * The xenchan command line: `deno run -P cli.ts <command>` or
 * `bun run cli.ts <command>`. Commands: demo, probe, watch, bench, domains, vchan;
 * see `--help`; `--version` prints the package version. SIGINT and SIGTERM stop a running watch or domains --follow cleanly.
 *
 * The first line lets the file run as a program (the npm package's `xenchan`
 * bin is this file built to dist/cli.js): it runs Bun if `bun` is on PATH,
 * else `deno run -A`. Node.js cannot run it (the FFI layer needs Deno or Bun).
 * It needs an `env` with -S (GNU coreutils 8.30+, BSD, macOS).
 *
 * @module
 */
import process from "node:process";
import { consoleOutput } from "./cli/io.ts";
import { main } from "./cli/main.ts";

if (import.meta.main) {
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  // Keeps the loop alive while a command waits on the simulator (pure promises). Without a
  // timer, Bun 1.4 spins a CPU at 100% when only a signal listener is left in its loop.
  const keepAlive = setInterval(() => {}, 1 << 30);
  const out = consoleOutput();
  let code: number;
  try {
    code = await main(process.argv.slice(2), out, controller.signal);
  } catch (error) {
    out.err(`xenchan: internal error: ${(error as Error)?.stack ?? String(error)}`);
    code = 1;
  }
  clearInterval(keepAlive);
  process.off("SIGINT", stop);
  process.off("SIGTERM", stop);
  // Pollers and workers of the FFI layer may still hold the loop: exit explicitly.
  process.exit(code);
}
