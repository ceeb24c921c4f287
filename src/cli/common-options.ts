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
import { parseArchiveName, validateInstanceName } from "../store/archive-name.js";
import { DirStore } from "../store/dir-store.js";
import type { StoredObject } from "../store/store.js";
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

/** `--archive FILE`, or `--archive latest` / `latest~N` in the directory store of `--out` (see resolveArchive). */
export async function archivePath(values: ParsedOptions, command: string): Promise<string> {
  return resolveArchive(requireString(values, "archive", command), values, command, "--archive");
}

/** How an archive argument is described wherever a command takes one (a flag or a positional). */
export const ARCHIVE_REF_HELP = "the .tar.zst.age archive, or latest / latest~N in the store of --out";

/** `--archive`: a file, or `latest` / `latest~N` (see archivePath). */
export const archiveRef = { type: "string", placeholder: "FILE", help: ARCHIVE_REF_HELP } as const;

/** What `latest` needs: the directory store and, when it holds several instances, which one. */
export const storeRefOptions = {
  out: {
    type: "string",
    placeholder: "DIR",
    help: "the directory store in which `latest` (the newest archive) and `latest~N` (the N-th before it) are found",
  },
  instance: {
    type: "string",
    placeholder: "NAME",
    help: "with latest: the instance, when the store holds archives of several",
  },
} as const;

const LATEST = /^latest(?:~(\d+))?$/;

/** True for `latest` and `latest~N`: names of archives in a store rather than files. */
export function isLatestRef(ref: string): boolean {
  return LATEST.test(ref);
}

/**
 * An archive as the command line names it: a file (relative to the working directory), or `latest` (the newest
 * archive of the directory store given by --out) or `latest~N` (the N-th archive before the newest). A file
 * literally named `latest` is `./latest`.
 */
export async function resolveArchive(
  ref: string,
  values: ParsedOptions,
  command: string,
  where = "ARCHIVE",
): Promise<string> {
  const latest = LATEST.exec(ref);
  if (latest !== null) {
    const back = Number(latest[1] ?? 0);
    const archives = await storeArchives(values, command, ref);
    const found = archives[back];
    if (found === undefined) {
      throw new InputError(
        `${command}: ${ref}: the store holds only ${archives.length} archive(s) of ${archives[0] ? instanceOf(archives[0].name) : "the instance"}`,
        `latest~${archives.length - 1} is the oldest; see looker-backup list --out DIR`,
      );
    }
    return found.location;
  }
  const archive = resolve(ref);
  try {
    const info = await stat(archive);
    if (!info.isFile()) throw new Error("not a regular file");
  } catch (error) {
    throw new InputError(
      `${command}: cannot read archive ${archive}: ${(error as Error).message}`,
      `check ${where}${ref === "" ? "" : ", or name an archive of a directory store as latest --out DIR"}`,
    );
  }
  return archive;
}

/**
 * The archives of one instance in the directory store of --out, newest first: --instance, or the store's only
 * instance. A store of several instances without --instance is exit 2, listing them: `latest` must not pick one.
 */
export async function storeArchives(
  values: ParsedOptions,
  command: string,
  ref: string,
): Promise<StoredObject[]> {
  if (optionalString(values, "out") === undefined) {
    throw new InputError(
      `${command}: ${ref} names an archive of a directory store, and no --out was given`,
      `add --out DIR (the directory the backups went to), or give the archive's path`,
    );
  }
  const out = await existingStoreDir(values, command);
  const instance = optionalString(values, "instance");
  const archives = await new DirStore(out).list(
    instance === undefined ? undefined : validateInstanceName(instance),
  );
  if (archives.length === 0) {
    throw new InputError(
      `${command}: ${ref}: no archives${instance === undefined ? "" : ` of instance ${instance}`} in ${out}`,
      "check --out and --instance (looker-backup list --out DIR shows what is there)",
    );
  }
  const instances = [...new Set(archives.map((a) => instanceOf(a.name)))].sort();
  if (instances.length > 1) {
    throw new InputError(
      `${command}: ${ref}: ${out} holds archives of several instances (${instances.join(", ")})`,
      "add --instance NAME",
    );
  }
  return archives;
}

function instanceOf(name: string): string {
  return parseArchiveName(name)?.instance ?? name;
}

/**
 * A directory store that must already exist (list, prune, latest): a misspelt --out is exit 2, not "no archives"; a file
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
