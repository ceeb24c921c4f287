/**
 * Where settings come from, and how an error names them. A command's settings are built once (backup-settings.ts,
 * drill-settings.ts) from a SettingSource: the action reads its inputs, the CLI its flags (and the files and
 * environment variables its flags name). Settings are known by their action input names; `label` gives the name the
 * user wrote, `input 'web-port'` or `--web-port`, so every message points at the right thing without rewriting.
 */
import { isAbsolute } from "node:path";
import { InputError } from "../errors.js";

export interface SettingSource {
  /** The setting's raw value, "" when unset. May throw an InputError (a file or variable a flag names is missing). */
  read(name: string): string;
  /** How messages name the setting where the user gave it. */
  label(name: string): string;
  /** Whether this source can give the setting at all (an action input, a flag of the command). */
  offers(name: string): boolean;
}

/** An action's inputs: read with @actions/core's getInput (or anything like it in tests). */
export function actionInputs(read: (name: string) => string): SettingSource {
  return { read, label: (name) => `input '${name}'`, offers: () => true };
}

/** Typed reads of one source; every failure is an InputError naming the setting by its label. */
export class SettingReader {
  constructor(readonly source: SettingSource) {}

  label(name: string): string {
    return this.source.label(name);
  }

  /** The value as given: multi-line text (keys, commands) keeps its form. */
  text(name: string): string {
    return this.source.read(name);
  }

  get(name: string): string {
    return this.source.read(name).trim();
  }

  optional(name: string): string | undefined {
    return this.get(name) || undefined;
  }

  /** Text kept as given when set (a command, a key), undefined when empty. */
  optionalText(name: string): string | undefined {
    const text = this.text(name);
    return text.trim() ? text : undefined;
  }

  bool(name: string): boolean {
    return bool(this.get(name), this.label(name));
  }

  integer(name: string, range: { min: number; max: number; fallback: number }): number;
  integer(name: string, range: { min: number; max: number }): number | undefined;
  integer(name: string, range: { min: number; max: number; fallback?: number }): number | undefined {
    const value = this.get(name);
    if (value === "") return range.fallback;
    return integer(value, this.label(name), range.min, range.max);
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    return oneOf(this.get(name) || fallback, allowed, this.label(name));
  }

  absolutePath(name: string): string | undefined {
    const value = this.get(name);
    return value ? absolutePath(value, this.label(name)) : undefined;
  }

  /** One item per line or comma; blank lines and `#` comments skipped. */
  list(name: string): string[] {
    return lines(this.get(name));
  }
}

export function lines(text: string): string[] {
  return text
    .split(/[\n,]/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
}

export function bool(value: string, label: string): boolean {
  if (value === "" || /^(false|no|0|off)$/i.test(value)) return false;
  if (/^(true|yes|1|on)$/i.test(value)) return true;
  throw new InputError(`${label} must be true or false, got '${value}'`);
}

export function integer(value: string, label: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) {
    throw new InputError(`${label} must be a whole number from ${min} to ${max}, got '${value}'`);
  }
  return n;
}

export function oneOf<T extends string>(value: string, allowed: readonly T[], label: string): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new InputError(`${label} must be one of ${allowed.join(", ")}, got '${value}'`);
}

export function absolutePath(value: string, label: string): string {
  if (!isAbsolute(value)) throw new InputError(`${label} must be an absolute path, got '${value}'`);
  return value;
}

/** Looker's CMK: 32 random bytes in base64. Checked up front so a typo fails before Looker is touched. */
export function checkedMasterKey(value: string, label: string): string {
  if (!/^[A-Za-z0-9+/]{43}=$/.test(value)) {
    throw new InputError(`${label} is not a base64 32-byte key`, "Looker's CMK is 32 random bytes in base64");
  }
  return value;
}
