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

export interface CommandSpec {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  readonly options: OptionSpecs;
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
  try {
    const { values, positionals } = parseArgs({
      args: [...argv],
      options,
      strict: true,
      allowPositionals: true,
    });
    if (positionals.length > 0) {
      throw new InputError(
        `${spec.name}: unexpected argument '${positionals[0]}'`,
        `see looker-backup ${spec.name} --help`,
      );
    }
    return values as ParsedOptions;
  } catch (error) {
    if (error instanceof InputError) throw error;
    const message = (error as Error).message.replace(/^Option/, "option").replace(/\. To specify.*$/s, "");
    throw new InputError(`${spec.name}: ${message}`, `see looker-backup ${spec.name} --help`);
  }
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
  return `${spec.summary}\n\nUsage: ${spec.usage}\n\nOptions:\n${rows.join("\n")}\n`;
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
