import { parseArgs } from "node:util";
import { InputError } from "../errors.js";

export interface OptionSpec {
  readonly type: "string" | "boolean";
  readonly multiple?: boolean;
  readonly short?: string;
  readonly help: string;
  readonly placeholder?: string;
}

export type OptionSpecs = Record<string, OptionSpec>;

/**
 * An argument without a flag (`ls ARCHIVE [PATH]`). Its value is found in the parsed values under `name`, which no
 * flag of the command may have: a string, or with `multiple` an array of one or more.
 */
export interface PositionalSpec {
  readonly name: string;
  readonly help: string;
  readonly optional?: boolean;
  /** Takes one or more arguments: those the positionals after it leave over. At most one per command. */
  readonly multiple?: boolean;
}

export interface CommandSpec {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  readonly options: OptionSpecs;
  /** In order; without them, any argument that is not a flag is refused. */
  readonly positionals?: readonly PositionalSpec[];
}

export type ParsedOptions = Record<string, string | boolean | string[] | undefined>;

/** Strict parsing: an unknown flag or a missing value is exit 2 with the flag named, never silently ignored. */
export function parseCommandArgs(spec: CommandSpec, argv: readonly string[]): ParsedOptions {
  const options = Object.fromEntries(
    Object.entries({ ...spec.options, help: HELP_OPTION }).map(([name, o]) => [
      name,
      { type: o.type, multiple: o.multiple ?? false, ...(o.short ? { short: o.short } : {}) },
    ]),
  );
  let parsed: { values: ParsedOptions; positionals: string[] };
  try {
    const { values, positionals } = parseArgs({
      args: [...argv],
      options,
      strict: true,
      allowPositionals: true,
    });
    parsed = { values: values as ParsedOptions, positionals };
  } catch (error) {
    const message = (error as Error).message.replace(/^Option/, "option").replace(/\. To specify.*$/s, "");
    throw new InputError(`${spec.name}: ${message}`, `see looker-backup ${spec.name} --help`);
  }
  // `ls --help` shows the help, whatever arguments are missing.
  if (parsed.values.help) return parsed.values;
  return { ...parsed.values, ...assignPositionals(spec, parsed.positionals) };
}

/** The arguments by the names the spec gives them; too few or too many is exit 2 naming what is missing or extra. */
function assignPositionals(spec: CommandSpec, given: readonly string[]): ParsedOptions {
  const specs = spec.positionals ?? [];
  const assigned: ParsedOptions = {};
  let next = 0;
  for (const [index, positional] of specs.entries()) {
    if (positional.name in spec.options) throw new Error(`${spec.name}: ${positional.name} is a flag too`);
    const after = specs.slice(index + 1).filter((p) => !p.optional).length;
    if (positional.multiple) {
      const count = Math.max(0, given.length - next - after);
      if (count === 0 && !positional.optional) throw missing(spec, positional);
      assigned[positional.name] = given.slice(next, next + count);
      next += count;
    } else if (next < given.length && (given.length - next > after || !positional.optional)) {
      assigned[positional.name] = given[next++];
    } else if (!positional.optional) {
      throw missing(spec, positional);
    }
  }
  if (next < given.length) {
    throw new InputError(
      `${spec.name}: unexpected argument '${given[next]}'`,
      `see looker-backup ${spec.name} --help`,
    );
  }
  return assigned;
}

function missing(spec: CommandSpec, positional: PositionalSpec): InputError {
  return new InputError(`${spec.name}: ${argumentName(positional)} is missing`, `usage: ${spec.usage}`);
}

function argumentName(positional: PositionalSpec): string {
  return `${positional.name.toUpperCase()}${positional.multiple ? "..." : ""}`;
}

const HELP_OPTION: OptionSpec = { type: "boolean", short: "h", help: "show this help" };

/** Every flag --help lists, as it lists them: the README's CLI reference is made from the same rows (scripts/docs.mjs). */
export function helpRows(spec: CommandSpec): { short?: string; flag: string; help: string }[] {
  return Object.entries({ ...spec.options, help: HELP_OPTION }).map(([name, o]) => ({
    ...(o.short ? { short: `-${o.short}` } : {}),
    flag: `--${name}${o.type === "string" ? ` ${o.placeholder ?? "VALUE"}` : ""}`,
    help: `${o.help}${o.multiple ? " (repeatable)" : ""}`,
  }));
}

export function helpText(spec: CommandSpec): string {
  const rows = helpRows(spec).map(({ short, flag, help }) => {
    return `  ${`${short ? `${short}, ` : "    "}${flag}`.padEnd(34)} ${help}`;
  });
  const positionals = (spec.positionals ?? []).map(
    (p) => `  ${argumentName(p).padEnd(34)} ${p.help}${p.optional ? " (optional)" : ""}`,
  );
  const argumentsPart = positionals.length > 0 ? `\n\nArguments:\n${positionals.join("\n")}` : "";
  return `${spec.summary}\n\nUsage: ${spec.usage}${argumentsPart}\n\nOptions:\n${rows.join("\n")}\n`;
}

export function requireString(values: ParsedOptions, name: string, command: string): string {
  const value = values[name];
  if (typeof value !== "string" || value === "") {
    throw new InputError(`${command}: --${name} is required`, `see looker-backup ${command} --help`);
  }
  return value;
}

export function optionalString(values: ParsedOptions, name: string): string | undefined {
  const value = values[name];
  return typeof value === "string" ? value : undefined;
}

export function stringList(values: ParsedOptions, name: string): string[] {
  const value = values[name];
  return Array.isArray(value) ? value : typeof value === "string" ? [value] : [];
}

export function integerOption(
  values: ParsedOptions,
  name: string,
  command: string,
  range: { min: number; max: number },
): number | undefined {
  const raw = optionalString(values, name);
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!/^-?\d+$/.test(raw.trim()) || value < range.min || value > range.max) {
    throw new InputError(
      `${command}: --${name} must be a whole number from ${range.min} to ${range.max}, got '${raw}'`,
      `e.g. --${name} ${range.min}`,
    );
  }
  return value;
}
