/** `looker-backup restore`: decrypt, verify and restore an archive into a directory, staged. */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import { checkAuthenticity } from "../engine/authenticity.js";
import { restoreArchive } from "../engine/restore.js";
import { ExitCode } from "../errors.js";
import { formatBytes, formatDuration } from "../runtime/format.js";
import { optionalString, requireString } from "./args.js";
import type { Command } from "./command.js";
import {
  archivePath,
  identity,
  json,
  keepPrivilegedModes,
  passphraseEnv,
  progressFor,
  quiet,
  reportAuthenticity,
  xattrModeOf,
} from "./common-options.js";
import { decryptionKeysFrom, trustedSignersFrom, trustedSignersOption } from "./key-options.js";

export const restoreCommand: Command = {
  spec: {
    name: "restore",
    summary:
      "Decrypt, verify and restore an archive into a directory (staged: the target changes only on success).",
    usage:
      "looker-backup restore --archive FILE --identity FILE --target DIR [--trusted-signers FILE] [--rootfs DIR] [--force] [--keep-privileged-modes]",
    options: {
      archive: { type: "string", placeholder: "FILE", help: "the .tar.zst.age archive" },
      identity,
      "passphrase-env": passphraseEnv,
      "trusted-signers": trustedSignersOption,
      target: {
        type: "string",
        placeholder: "DIR",
        help: "receives the looker home (the archive's home/ members)",
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
        help: "replace a non-empty target, keeping it as <target>.pre-restore-<time>",
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
    const target = resolve(requireString(values, "target", command));
    const keys = await decryptionKeysFrom(values, command);
    // Before anything is decrypted, and before the target is even looked at.
    const authenticity = await checkAuthenticity(archive, await trustedSignersFrom(values, command));
    const progress = progressFor("restore", values, context);
    const started = Date.now();
    const source = createReadStream(archive, { highWaterMark: 1 << 20 });
    // The archive's bytes read, against its size: the plaintext (larger, and of unknown size) is shown beside them.
    const size = (await stat(archive)).size;
    const reading = { total: size, sample: () => source.bytesRead, alongside: "plaintext" };
    const result = await restoreArchive({
      ...(authenticity.checked ? { signed: authenticity.signed } : {}),
      source,
      keys,
      target,
      rootfs: optionalString(values, "rootfs"),
      mysqlDir: optionalString(values, "mysql-dir"),
      force: Boolean(values.force),
      keepPrivilegedModes: Boolean(values["keep-privileged-modes"]),
      xattrs: xattrModeOf(values) !== "false",
      onProgress: progress && ((p) => progress.update(source.bytesRead, { alongside: p.bytes })),
      onPhase: progress && ((phase) => progress.phase(phase, phase === "reading" ? reading : {})),
      ...(context.signal ? { signal: context.signal } : {}),
    }).finally(() => progress?.finish());
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
      members: result.members,
      bytes: result.bytes,
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
      context.stdout(
        `${[
          `restored ${result.members} members (${formatBytes(result.bytes)}) into ${result.target} in ${formatDuration(Date.now() - started)}`,
          ...(result.previousContent ? [`previous content kept at ${result.previousContent}`] : []),
          ...result.rootfsFiles.map((f) => `placed ${f}`),
          ...result.mysqlDumps.map((f) => `mysql dump ${f}`),
        ].join("\n")}\n`,
      );
    }
    return ExitCode.Ok;
  },
};
