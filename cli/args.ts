/**
 * Argument parsing shared by the commands: node:util parseArgs in strict
 * mode, with every mistake turned into a UsageError whose message says what
 * was wrong and how to get help (the entry prints it and exits with 2).
 *
 * @module
 */
import { parseArgs } from "node:util";

/** A command-line mistake: unknown command or option, bad value. Exit status 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** The option table parseArgs takes (strings and booleans, optionally repeatable). */
export type OptionTable = Record<
  string,
  {
    readonly type: "string" | "boolean";
    readonly short?: string;
    readonly multiple?: boolean;
  }
>;

/** What a command declares about its arguments. */
export interface CommandSpec {
  /** The command name as typed ("demo"). */
  readonly name: string;
  /** One line for the top-level help. */
  readonly summary: string;
  /** The full `--help` text (usage, options, examples). */
  readonly help: string;
  /** Its options; "help" (-h) is added to every command. */
  readonly options: OptionTable;
}

/** Parsed values: strings, booleans, or string lists for repeatable options. */
export type ParsedValues = Record<string, string | boolean | string[] | undefined>;

/**
 * Parses `argv` (the words after the command name) against `spec`.
 * Returns the values, or null when --help/-h was given. Throws UsageError
 * for an unknown option, a missing or unexpected value, or a positional
 * argument.
 */
export function parseCommand(spec: CommandSpec, argv: readonly string[]): ParsedValues | null {
  let values: ParsedValues;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: { ...spec.options, help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals: false,
    }) as { values: ParsedValues });
  } catch (error) {
    throw new UsageError(
      `xenchan ${spec.name}: ${
        describeParseError(error)
      }\nRun 'xenchan ${spec.name} --help' for usage.`,
    );
  }
  return values.help ? null : values;
}

function describeParseError(error: unknown): string {
  const message = (error as Error)?.message ?? String(error);
  // parseArgs' messages mention its own API ("To specify an option argument starting with ...");
  // keep the first sentence, which names the offending option.
  return message.split(/\.\s|\n/)[0].replace(/\.$/, "");
}

/**
 * Reads an integer option: `fallback` when absent; UsageError when it is
 * not an integer in [min, max].
 */
export function intOption(
  command: string,
  name: string,
  value: string | boolean | string[] | undefined,
  fallback: number,
  min: number,
  max: number = Number.MAX_SAFE_INTEGER,
): number {
  if (value === undefined) return fallback;
  const text = String(value);
  const n = /^[+-]?\d+$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(
      `xenchan ${command}: --${name} must be an integer from ${min} to ${max}, got '${text}'`,
    );
  }
  return n;
}

/**
 * Reads a number of seconds (decimals allowed) as milliseconds: `fallback`
 * (ms) when absent; UsageError unless it is a positive finite number.
 */
export function secondsOption(
  command: string,
  name: string,
  value: string | boolean | string[] | undefined,
  fallbackMs: number,
): number {
  if (value === undefined) return fallbackMs;
  const n = Number(String(value));
  if (!Number.isFinite(n) || n <= 0 || String(value).trim() === "") {
    throw new UsageError(
      `xenchan ${command}: --${name} must be a positive number of seconds, got '${value}'`,
    );
  }
  return Math.round(n * 1000);
}

/** The backends a user may name. */
export type BackendName = "auto" | "sim" | "ffi";

/** Reads --backend: "auto" when absent; UsageError for anything but auto, sim, ffi. */
export function backendOption(
  command: string,
  value: string | boolean | string[] | undefined,
): BackendName {
  if (value === undefined) return "auto";
  if (value === "auto" || value === "sim" || value === "ffi") return value;
  throw new UsageError(
    `xenchan ${command}: --backend must be auto, sim or ffi, got '${String(value)}'`,
  );
}

/** A repeatable string option as a list (empty when absent). */
export function listOption(value: string | boolean | string[] | undefined): string[] {
  if (value === undefined || typeof value === "boolean") return [];
  return Array.isArray(value) ? value : [value];
}
