/**
 * `looker-backup verify`: decrypt an archive and check every member against its catalog, writing nothing; then
 * compare the catalog sidecar beside it, if any, with what the archive holds.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { checkSidecar, sidecarBeside } from "../engine/archive-catalog.js";
import { checkAuthenticity } from "../engine/authenticity.js";
import { verifyArchive } from "../engine/restore.js";
import { ExitCode } from "../errors.js";
import { droppedModesWarning } from "../extract/restore-policy.js";
import { formatBytes } from "../runtime/format.js";
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
} from "./common-options.js";
import { decryptionKeysFrom, trustedSignersFrom, trustedSignersOption } from "./key-options.js";

export const verifyCommand: Command = {
  spec: {
    name: "verify",
    summary: "Decrypt an archive and check every member against its catalog, writing nothing.",
    usage:
      "looker-backup verify --archive FILE|latest[~N] --identity FILE [--out DIR] [--trusted-signers FILE] [--keep-privileged-modes]",
    options: {
      archive: archiveRef,
      ...storeRefOptions,
      identity,
      "passphrase-env": passphraseEnv,
      "trusted-signers": trustedSignersOption,
      "keep-privileged-modes": keepPrivilegedModes,
      json,
      quiet,
    },
  },
  async run(values, context) {
    const archive = await archivePath(values, "verify");
    const keys = await decryptionKeysFrom(values, "verify");
    const authenticity = await checkAuthenticity(archive, await trustedSignersFrom(values, "verify"));
    const progress = progressFor("verify", values, context);
    const keepPrivileged = Boolean(values["keep-privileged-modes"]);
    const source = createReadStream(archive, { highWaterMark: 1 << 20 });
    // The archive's bytes read, against its size: the plaintext (larger, and of unknown size) is shown beside them.
    const size = (await stat(archive)).size;
    progress?.phase("reading", { total: size, sample: () => source.bytesRead, alongside: "plaintext" });
    const outcome = await verifyArchive(
      source,
      keys,
      (p) => progress?.update(source.bytesRead, { alongside: p.bytes }),
      {
        keepPrivilegedModes: keepPrivileged,
        ...(authenticity.checked ? { signed: authenticity.signed } : {}),
        ...(context.signal ? { signal: context.signal } : {}),
      },
    ).finally(() => progress?.finish());
    // Verify tells what a restore with the same flags would not write as archived.
    const dropped = droppedModesWarning(outcome.droppedModes, "would be dropped");
    const warnings = dropped === undefined ? [] : [dropped];
    // The sidecar is a copy for ls, find, diff and show: one that says something else is worth a warning (exit 3).
    const sidecar = await sidecarBeside(archive);
    const sidecarWarning =
      sidecar === undefined ? undefined : await checkSidecar(sidecar, outcome, keys, context.signal);
    if (sidecarWarning !== undefined) warnings.push(sidecarWarning);
    reportAuthenticity(authenticity, context);
    for (const warning of warnings) context.stderr(`warning: ${warning}\n`);
    const summary = {
      archive,
      ok: true,
      signedBy: authenticity.checked ? authenticity.signer : null,
      members: outcome.members,
      bytes: outcome.bytes,
      warnings: authenticity.checked ? warnings : [authenticity.warning, ...warnings],
      sidecar: sidecar === undefined ? null : { path: sidecar, agrees: sidecarWarning === undefined },
      backup: outcome.meta,
    };
    if (values.json) context.stdout(`${JSON.stringify(summary)}\n`);
    else
      context.stdout(
        `ok: ${outcome.members} members, ${formatBytes(outcome.bytes)} verified against the catalog${authenticity.checked ? `; signed by ${authenticity.signer}` : ""}${sidecar !== undefined && sidecarWarning === undefined ? "; the catalog sidecar agrees" : ""}\n`,
      );
    return sidecarWarning === undefined ? ExitCode.Ok : ExitCode.Warnings;
  },
};
