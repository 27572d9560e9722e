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
      args: joinNegativeValues(spec.options, argv),
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

/**
 * A word that starts like a negative number ("-1", "-0.5", "-.5", "-1:2"):
 * no option name starts with a digit, so it is a value.
 */
const NEGATIVE_NUMBER = /^-\.?\d/;

/**
 * Rewrites `--name -5` (and `-n -5`) into `--name=-5` when the option takes
 * a value and the next word starts like a negative number, so the value reaches the
 * option's own check, which says what range it accepts (parseArgs alone
 * refuses it as "ambiguous"). Other words are left alone. Pure; throws
 * nothing.
 */
export function joinNegativeValues(options: OptionTable, argv: readonly string[]): string[] {
  const takesValue = (word: string): string | undefined => {
    if (word.startsWith("--") && !word.includes("=")) {
      const name = word.slice(2);
      return options[name]?.type === "string" ? `--${name}` : undefined;
    }
    if (/^-[A-Za-z]$/.test(word)) {
      const entry = Object.entries(options).find(([, o]) => o.short === word[1]);
      return entry && entry[1].type === "string" ? `--${entry[0]}` : undefined;
    }
    return undefined;
  };
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i];
    if (word === "--") {
      out.push(...argv.slice(i));
      break;
    }
    const long = takesValue(word);
    const next = argv[i + 1];
    if (long !== undefined && next !== undefined && NEGATIVE_NUMBER.test(next)) {
      out.push(`${long}=${next}`);
      i++;
    } else {
      out.push(word);
    }
  }
  return out;
}

function describeParseError(error: unknown): string {
  const message = (error as Error)?.message ?? String(error);
  const ambiguous = /Option '([^']+)' argument is ambiguous/.exec(message);
  if (ambiguous) {
    const option = ambiguous[1].split(" ")[0];
    return `${option} needs a value, and the word after it starts with '-' (an option?); ` +
      `if the value itself starts with '-', write ${option}=VALUE`;
  }
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
    const range = max === Number.MAX_SAFE_INTEGER ? `from ${min} up` : `from ${min} to ${max}`;
    throw new UsageError(
      `xenchan ${command}: --${name} must be an integer ${range}, got '${text}'`,
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
