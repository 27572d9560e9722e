/**
 * Runs a TypeScript fixture in a child process of the same runtime (deno or
 * bun), for tests that need a second process: a crash, or a fresh module
 * state (an environment variable read once at library load).
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";

/** Starts `fixture` (a path relative to tests/fixtures) with `args`. */
export function startFixture(
  fixture: string,
  args: string[],
  env: Record<string, string> = {},
): ChildProcess {
  const script = new URL(`../fixtures/${fixture}`, import.meta.url).pathname;
  const runArgs = "Deno" in globalThis ? ["run", "-A", script, ...args] : ["run", script, ...args];
  return spawn(process.execPath, runArgs, {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** Resolves with the first stdout line of `child` (rejects if it exits first). */
export function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    let errors = "";
    child.stderr?.on("data", (chunk) => (errors += chunk));
    child.stdout?.on("data", (chunk) => {
      text += chunk;
      const end = text.indexOf("\n");
      if (end >= 0) resolve(text.slice(0, end));
    });
    child.on(
      "exit",
      (code) => reject(new Error(`child exited (${code}) before a line: ${errors}`)),
    );
  });
}

/** Resolves with the exit of `child`: its code and signal. */
export function exited(
  child: ChildProcess,
): Promise<{ code: number | null; signal: string | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
}

/** What a finished child printed and how it ended. */
export interface ChildOutput {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs the CLI (cli.ts) in a child of this runtime, from the repository
 * root: `deno run <denoPermission> cli.ts ...args` or `bun run cli.ts ...args`.
 */
export function runCli(args: string[], denoPermission = "-P"): Promise<ChildOutput> {
  const cli = new URL("../../cli.ts", import.meta.url).pathname;
  const repo = new URL("../../", import.meta.url).pathname;
  const runArgs = "Deno" in globalThis
    ? ["run", denoPermission, cli, ...args]
    : ["run", cli, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, runArgs, {
      cwd: repo,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => (stderr += c));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** A leak report as tests/fixtures/leak_backstop.ts prints it (the error only as a flag). */
export interface SeenReport {
  readonly kind: string;
  readonly backend: string;
  readonly fd: number;
  readonly ports: readonly number[];
  readonly ranges: number;
  readonly pages: number;
  readonly refs: readonly number[];
  readonly failed: boolean;
  readonly message: string;
}

/** What tests/fixtures/leak_backstop.ts printed for one scenario. */
export interface BackstopRun<Facts> {
  readonly reports: SeenReport[];
  readonly facts: Facts;
}

/**
 * Runs a scenario of tests/fixtures/leak_backstop.ts in a child process of
 * this runtime where garbage collection can be forced (Deno:
 * --v8-flags=--expose-gc; Bun: Bun.gc), and parses the JSON line it prints.
 * Rejects when the child fails.
 */
export function runBackstop<Facts>(scenario: string): Promise<BackstopRun<Facts>> {
  const script = new URL("../fixtures/leak_backstop.ts", import.meta.url).pathname;
  const args = "Deno" in globalThis
    ? ["run", "-A", "--v8-flags=--expose-gc", script, scenario]
    : ["run", script, scenario];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (c) => (out += c));
    child.stderr.on("data", (c) => (err += c));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) reject(new Error(`${scenario} exited ${code}: ${out}${err}`));
      else resolve(JSON.parse(out.trim().split("\n").at(-1)!));
    });
  });
}
