/**
 * What the CLI's commands share: the common flags, progress, and the flags as a SettingSource (config/source.ts), so
 * a command's settings are built by the same builder as the action's, with messages naming the flags.
 */
import { readFileSync } from "node:fs";
import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import type { XattrMode } from "../archive/xattr-index.js";
import { oneOf, type SettingSource } from "../config/source.js";
import { DEFAULT_BACKEND } from "../defaults.js";
import type { checkAuthenticity } from "../engine/authenticity.js";
import { InputError } from "../errors.js";
import type { BackendChoice } from "../manifest/user-manifest.js";
import { ProgressReporter } from "../report/progress.js";
import { type CommandSpec, optionalString, type ParsedOptions, requireString } from "./args.js";
import type { CommandContext } from "./command.js";

export const json = {
  type: "boolean",
  help: "print one JSON object on stdout and nothing else there",
} as const;
export const quiet = { type: "boolean", short: "q", help: "no progress on stderr" } as const;
export const keepPrivilegedModes = {
  type: "boolean",
  help: "keep setuid/setgid/sticky and world-writable mode bits (dropped by default, with a warning)",
} as const;
export const identity = {
  type: "string",
  short: "i",
  multiple: true,
  placeholder: "FILE",
  help: "age identity file (AGE-SECRET-KEY-1... or AGE-SECRET-KEY-PQ-1...)",
} as const;
export const passphraseEnv = {
  type: "string",
  placeholder: "VAR",
  help: "read a passphrase (scrypt recipient) from this environment variable",
} as const;
export const backend = {
  type: "string",
  placeholder: "auto|internal|mysql",
  help: `database backend (default ${DEFAULT_BACKEND})`,
} as const;
export const sslFile = {
  type: "string",
  multiple: true,
  placeholder: "PATH",
  help: "SSL certificate or key file outside the home to back up",
} as const;

/**
 * A command's flags as a SettingSource. Settings are named as the action names them: `flags` maps a setting to the
 * flag that carries it when the names differ (`compression-level` is `--level`), and `indirect` reads the settings a
 * flag gives indirectly: a file's content, an environment variable it names, a path made absolute. Each setting is
 * read once.
 */
export function flagSource(
  spec: CommandSpec,
  values: ParsedOptions,
  flags: Readonly<Record<string, string>>,
  indirect: Readonly<Record<string, () => string>>,
): SettingSource {
  const flagOf = (name: string) => flags[name] ?? name;
  const read = new Map<string, string>();
  return {
    label: (name) => `--${flagOf(name)}`,
    offers: (name) => name in indirect || flagOf(name) in spec.options,
    read(name) {
      let value = read.get(name);
      if (value === undefined) {
        value = name in indirect ? indirect[name]!() : plain(spec, values, flagOf(name));
        read.set(name, value);
      }
      return value;
    },
  };
}

/** A flag's value as an action input would hold it: a boolean as true, a repeated flag one value a line. */
function plain(spec: CommandSpec, values: ParsedOptions, flag: string): string {
  if (!(flag in spec.options)) return "";
  const value = values[flag];
  if (value === true) return "true";
  if (Array.isArray(value)) return value.join("\n");
  return typeof value === "string" ? value : "";
}

/** The secret in the environment variable a flag names: secrets never pass through argv (visible in `ps`). */
export function secretFromEnv(values: ParsedOptions, flag: string): string {
  const variable = optionalString(values, flag);
  if (variable === undefined) return "";
  const value = process.env[variable];
  if (!value) {
    throw new InputError(
      `--${flag}: environment variable ${variable} is empty or unset`,
      `export ${variable} first`,
    );
  }
  return value;
}

/** The content of the file a flag names ("" without the flag). */
export function fileContent(values: ParsedOptions, flag: string): string {
  const file = optionalString(values, flag);
  return file === undefined ? "" : readFlagFile(file, `--${flag}`);
}

export function readFlagFile(file: string, what: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    throw new InputError(
      `${what}: cannot read ${file}: ${(error as Error).message}`,
      "check the path",
      error,
    );
  }
}

/** A path flag, required, relative to the working directory. */
export function requiredPath(values: ParsedOptions, flag: string, command: string): string {
  return resolve(requireString(values, flag, command));
}

/**
 * The command's progress on stderr (report/progress.ts): a live line on a terminal, plain lines in a pipe; none with
 * --quiet. --json keeps it: only stdout is the JSON's.
 */
export function progressFor(
  label: string,
  values: ParsedOptions,
  context: CommandContext,
): ProgressReporter | undefined {
  if (values.quiet) return undefined;
  return new ProgressReporter(label, context.stderr, { tty: context.stderrIsTTY === true });
}

/** Where a command's other lines go while its progress may hold a live line: through it, so the line is not torn. */
export function stderrLines(
  progress: ProgressReporter | undefined,
  context: CommandContext,
): (line: string) => void {
  return progress ? (line) => progress.log(line) : (line) => context.stderr(`${line}\n`);
}

export function backendOf(values: ParsedOptions): BackendChoice {
  return oneOf(
    optionalString(values, "backend") ?? DEFAULT_BACKEND,
    ["auto", "internal", "mysql"],
    "--backend",
  );
}

export function xattrModeOf(values: ParsedOptions): XattrMode {
  return oneOf(optionalString(values, "xattrs") ?? "auto", ["auto", "true", "false"], "--xattrs");
}

/**
 * The authenticity verdict on stderr, once the command has done its work (a failure's message comes first): who
 * signed, or the warning that nobody checked.
 */
export function reportAuthenticity(
  result: Awaited<ReturnType<typeof checkAuthenticity>>,
  context: CommandContext,
): void {
  if (result.checked) context.stderr(`signature: good, by ${result.signer}\n`);
  else context.stderr(`warning: ${result.warning}\n`);
}

export async function archivePath(values: ParsedOptions, command: string): Promise<string> {
  const archive = requiredPath(values, "archive", command);
  try {
    const info = await stat(archive);
    if (!info.isFile()) throw new Error("not a regular file");
  } catch (error) {
    throw new InputError(
      `${command}: cannot read archive ${archive}: ${(error as Error).message}`,
      "check --archive",
    );
  }
  return archive;
}

/**
 * A directory store that must already exist (list, prune): a misspelt --out is exit 2, not "no archives"; a file
 * given for it gets a hint.
 */
export async function existingStoreDir(values: ParsedOptions, command: string): Promise<string> {
  const out = resolve(requireString(values, "out", command));
  const info = await stat(out).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") {
      throw new InputError(
        `${command}: --out ${out} does not exist`,
        "give the directory store the backups went to",
      );
    }
    throw error;
  });
  if (!info.isDirectory()) {
    throw new InputError(
      `${command}: --out ${out} is a file, not a directory store`,
      "give the directory that holds the archives (the archive itself goes to --archive)",
    );
  }
  return out;
}
