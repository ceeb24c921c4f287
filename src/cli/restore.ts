/**
 * `looker-backup restore`: decrypt, verify and restore an archive into a directory, staged; the whole home, or with
 * --include/--exclude the selected members only (member-selection.ts), into a new home or --into an existing
 * directory (engine/restore-into.ts).
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import { checkAuthenticity } from "../engine/authenticity.js";
import { type RestoreResult, restoreArchive } from "../engine/restore.js";
import { type RestoreIntoResult, restoreInto } from "../engine/restore-into.js";
import { ExitCode, InputError } from "../errors.js";
import { MemberSelection } from "../extract/member-selection.js";
import { formatBytes, formatDuration } from "../runtime/format.js";
import { optionalString, type ParsedOptions, stringList } from "./args.js";
import type { Command } from "./command.js";
import {
  archivePath,
  archiveRef,
  identity,
  json,
  keepPrivilegedModes,
  passphraseEnv,
  progressFor,
  quiet,
  reportAuthenticity,
  storeRefOptions,
  xattrModeOf,
} from "./common-options.js";
import { decryptionKeysFrom, trustedSignersFrom, trustedSignersOption } from "./key-options.js";

export const restoreCommand: Command = {
  spec: {
    name: "restore",
    summary:
      "Decrypt, verify and restore an archive into a directory (staged: the target changes only on success).",
    usage:
      "looker-backup restore --archive FILE|latest[~N] --identity FILE (--target DIR | --into DIR) [--out DIR] [--include GLOB]... [--exclude GLOB]... [--trusted-signers FILE] [--rootfs DIR] [--force] [--keep-privileged-modes]",
    options: {
      archive: archiveRef,
      ...storeRefOptions,
      identity,
      "passphrase-env": passphraseEnv,
      "trusted-signers": trustedSignersOption,
      target: {
        type: "string",
        placeholder: "DIR",
        help: "receives the looker home (the archive's home/ members); a partial restore needs it new or empty",
      },
      into: {
        type: "string",
        placeholder: "DIR",
        help: "add the selected members to this existing directory instead (no home swap; home paths below DIR, outside files below DIR/rootfs, dumps below DIR/mysql)",
      },
      include: {
        type: "string",
        multiple: true,
        placeholder: "GLOB",
        help: "restore only what this matches, with all below it: a path relative to the home (looker/models-user-7), /absolute for outside files, mysql:NAME for a dump; * ? **",
      },
      exclude: {
        type: "string",
        multiple: true,
        placeholder: "GLOB",
        help: "do not restore what this matches (wins over --include); same patterns",
      },
      rootfs: {
        type: "string",
        placeholder: "DIR",
        help: "root for files from outside the home (e.g. / or a chroot)",
      },
      "mysql-dir": {
        type: "string",
        placeholder: "DIR",
        help: "where MySQL dumps go (default <target>.mysql)",
      },
      force: {
        type: "boolean",
        help: "replace a non-empty target, keeping it as <target>.pre-restore-<time>; with --into, replace existing selected paths, keeping each as <name>.pre-restore-<time>",
      },
      "keep-privileged-modes": keepPrivilegedModes,
      xattrs: {
        type: "string",
        placeholder: "true|false",
        help: "set the extended attributes the archive holds (default true; needs setfattr)",
      },
      json,
      quiet,
    },
  },
  async run(values, context) {
    const command = "restore";
    const archive = await archivePath(values, command);
    const destination = destinationOf(values);
    const include = stringList(values, "include");
    const exclude = stringList(values, "exclude");
    // The patterns are checked here, before anything is decrypted; the restore makes its own selection of them.
    new MemberSelection({ include, exclude });
    const keys = await decryptionKeysFrom(values, command);
    // Before anything is decrypted, and before the target is even looked at.
    const authenticity = await checkAuthenticity(archive, await trustedSignersFrom(values, command));
    const progress = progressFor("restore", values, context);
    const started = Date.now();
    const source = createReadStream(archive, { highWaterMark: 1 << 20 });
    // The archive's bytes read, against its size: the plaintext (larger, and of unknown size) is shown beside them.
    const size = (await stat(archive)).size;
    const reading = { total: size, sample: () => source.bytesRead, alongside: "plaintext" };
    const common = {
      ...(authenticity.checked ? { signed: authenticity.signed } : {}),
      source,
      keys,
      include,
      exclude,
      force: Boolean(values.force),
      keepPrivilegedModes: Boolean(values["keep-privileged-modes"]),
      xattrs: xattrModeOf(values) !== "false",
      onProgress:
        progress && ((p: { bytes: number }) => progress.update(source.bytesRead, { alongside: p.bytes })),
      onPhase: progress && ((phase: string) => progress.phase(phase, phase === "reading" ? reading : {})),
      ...(context.signal ? { signal: context.signal } : {}),
    };
    const result = await ("into" in destination
      ? restoreInto({ ...common, into: destination.into }).then(intoReport)
      : restoreArchive({
          ...common,
          target: destination.target,
          rootfs: optionalString(values, "rootfs"),
          mysqlDir: optionalString(values, "mysql-dir"),
        }).then(targetReport)
    ).finally(() => progress?.finish());
    reportAuthenticity(authenticity, context);
    if (result.rootfsSkipped.length > 0) {
      const shown = result.rootfsSkipped.slice(0, 5).join(", ");
      const more = result.rootfsSkipped.length > 5 ? `, and ${result.rootfsSkipped.length - 5} more` : "";
      context.stderr(
        `note: ${result.rootfsSkipped.length} file(s) from outside the home were not placed: ${shown}${more}; restore again with --rootfs / (as root) to place them, or --rootfs DIR to look at them first\n`,
      );
    }
    for (const warning of result.warnings) context.stderr(`warning: ${warning}\n`);
    const summary = {
      target: result.target,
      into: result.into,
      members: result.members,
      bytes: result.bytes,
      restored: { members: result.restored.members, bytes: result.restored.bytes },
      include,
      exclude,
      placed: result.placed,
      replaced: result.replaced,
      previousContent: result.previousContent ?? null,
      rootfsFiles: result.rootfsFiles,
      rootfsSkipped: result.rootfsSkipped,
      mysqlDumps: result.mysqlDumps,
      signedBy: authenticity.checked ? authenticity.signer : null,
      warnings: authenticity.checked ? result.warnings : [authenticity.warning, ...result.warnings],
      backup: result.meta,
    };
    if (values.json) context.stdout(`${JSON.stringify(summary)}\n`);
    else {
      const partial = include.length > 0 || exclude.length > 0;
      const what = partial
        ? `${result.restored.members} of ${result.members} members (${formatBytes(result.restored.bytes)})`
        : `${result.members} members (${formatBytes(result.bytes)})`;
      context.stdout(
        `${[
          `restored ${what} into ${result.target} in ${formatDuration(Date.now() - started)}`,
          ...(partial ? [`the whole archive (${formatBytes(result.bytes)}) matched its catalog`] : []),
          ...(result.previousContent ? [`previous content kept at ${result.previousContent}`] : []),
          ...result.placed.map((f) => `placed ${f}`),
          ...result.replaced.map((r) => `replaced ${r.path}, the previous one kept at ${r.keptAt}`),
          ...result.rootfsFiles.map((f) => `placed ${f}`),
          ...result.mysqlDumps.map((f) => `mysql dump ${f}`),
        ].join("\n")}\n`,
      );
    }
    return ExitCode.Ok;
  },
};

/** --target DIR (the home, swapped) or --into DIR (added to), exactly one; --into takes no placing flags. */
function destinationOf(values: ParsedOptions): { target: string } | { into: string } {
  const target = optionalString(values, "target");
  const into = optionalString(values, "into");
  if ((target === undefined || target === "") === (into === undefined || into === "")) {
    throw new InputError(
      "restore: give exactly one of --target DIR (restore the home) and --into DIR (add the selected members to a directory)",
      "see looker-backup restore --help",
    );
  }
  if (into !== undefined && into !== "") {
    for (const flag of ["rootfs", "mysql-dir"]) {
      if (values[flag] !== undefined) {
        throw new InputError(
          `restore: --${flag} does not go with --into: files from outside the home and dumps go below DIR/rootfs and DIR/mysql`,
          `restore them with --target and --${flag}, or drop --${flag}`,
        );
      }
    }
    return { into: resolve(into) };
  }
  return { target: resolve(target!) };
}

/** What the two kinds of restore report, in one shape. */
interface Report {
  readonly target: string;
  readonly into: string | null;
  readonly members: number;
  readonly bytes: number;
  readonly restored: { readonly members: number; readonly bytes: number };
  readonly placed: readonly string[];
  readonly replaced: readonly { readonly path: string; readonly keptAt: string }[];
  readonly previousContent?: string;
  readonly rootfsFiles: readonly string[];
  readonly rootfsSkipped: readonly string[];
  readonly mysqlDumps: readonly string[];
  readonly warnings: readonly string[];
  readonly meta: Record<string, unknown>;
}

function targetReport(result: RestoreResult): Report {
  return { ...result, into: null, placed: [], replaced: [] };
}

function intoReport(result: RestoreIntoResult): Report {
  return { ...result, target: result.into, rootfsFiles: [], rootfsSkipped: [], mysqlDumps: [] };
}
