/**
 * Where the CLI's commands write: an output sink, so tests can run a command
 * in-process and read what it printed, and the console sink the entry uses.
 *
 * @module
 */
import process from "node:process";

/**
 * An output sink. `log` is the result (stdout), `err` diagnostics and
 * progress (stderr). `progress` rewrites one status line in place when the
 * sink is an interactive terminal, and is a no-op otherwise. None of the
 * methods throw.
 */
export interface Output {
  /** Writes one line of results (stdout). */
  log(line?: string): void;
  /** Writes one line of diagnostics (stderr). */
  err(line: string): void;
  /** Shows a transient status line (stderr, terminals only); "" clears it. */
  progress(text: string): void;
  /** Whether `progress` draws anything (stderr is a terminal). */
  readonly interactive: boolean;
}

/** The process's stdout/stderr as an Output. Throws nothing. */
export function consoleOutput(): Output {
  const interactive = Boolean(process.stderr.isTTY);
  let shown = false;
  const clear = () => {
    if (shown) process.stderr.write("\r\x1b[K");
    shown = false;
  };
  return {
    interactive,
    log(line = "") {
      clear();
      process.stdout.write(`${line}\n`);
    },
    err(line: string) {
      clear();
      process.stderr.write(`${line}\n`);
    },
    progress(text: string) {
      if (!interactive) return;
      clear();
      if (text) {
        process.stderr.write(text);
        shown = true;
      }
    },
  };
}

/** An Output that records lines in memory (for tests). */
export interface BufferedOutput extends Output {
  /** Lines written with log(), in order. */
  readonly stdout: string[];
  /** Lines written with err(), in order. */
  readonly stderr: string[];
  /** Everything written with log(), joined with newlines. */
  text(): string;
}

/**
 * Returns an Output that keeps every line in arrays. `onLine`, when given,
 * sees each stdout line as it is written (tests use it to react to a
 * command while it runs). Throws nothing.
 */
export function bufferOutput(onLine?: (line: string) => void): BufferedOutput {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return {
    stdout,
    stderr,
    interactive: false,
    log(line = "") {
      stdout.push(line);
      onLine?.(line);
    },
    err(line: string) {
      stderr.push(line);
    },
    progress() {},
    text() {
      return stdout.join("\n");
    },
  };
}

/** Formats an integer with thousands separators ("12,345"). */
export function grouped(n: number): string {
  return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/**
 * Renders rows as an aligned text table: `header` then a rule then `rows`.
 * Columns listed in `right` are right-aligned. Returns the lines.
 */
export function table(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  right: readonly number[] = [],
): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => right.includes(i) ? c.padStart(widths[i]) : c.padEnd(widths[i])).join("  ")
      .trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)];
}
