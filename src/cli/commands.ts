/**
 * The CLI commands: the same engine as the action, for disaster recovery when GitHub is unreachable.
 * Each command parses its flags into a request, runs the engine and prints a result (JSON with --json).
 */

import { createReadStream } from "node:fs";
import { open, stat } from "node:fs/promises";
import { resolve } from "node:path";
import { droppedModesWarning } from "../archive/restore-policy.js";
import { formatIdentityFile, generateHybridIdentity, generateIdentity } from "../crypto/age-keys.js";
import { fingerprint, generateSigningKey, publicKeyLine, SIGNATURE_NAMESPACE } from "../crypto/ssh-keys.js";
import { checkAuthenticity } from "../engine/authenticity.js";
import { resolveManifest } from "../engine/backup.js";
import { restoreArchive, verifyArchive } from "../engine/restore.js";
import { ExitCode, InputError } from "../errors.js";
import { selectFiles } from "../manifest/select.js";
import { formatBytes, formatDuration } from "../runtime/format.js";
import { validateInstanceName } from "../store/archive-name.js";
import { DirStore } from "../store/dir-store.js";
import { optionalString, type ParsedOptions, requireString, stringList } from "./args.js";
import type { Command, CommandContext } from "./command.js";
import {
  archivePath,
  backend,
  backendOf,
  identity,
  json,
  keepPrivilegedModes,
  passphraseEnv,
  progressFor,
  quiet,
  reportAuthenticity,
  sslFile,
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
    const total = (await stat(archive)).size;
    const started = Date.now();
    const result = await restoreArchive({
      ...(authenticity.checked ? { signed: authenticity.signed } : {}),
      source: createReadStream(archive, { highWaterMark: 1 << 20 }),
      keys,
      target,
      rootfs: optionalString(values, "rootfs"),
      mysqlDir: optionalString(values, "mysql-dir"),
      force: Boolean(values.force),
      keepPrivilegedModes: Boolean(values["keep-privileged-modes"]),
      xattrs: xattrModeOf(values) !== "false",
      onProgress: progress && ((p) => progress.update(p.bytes, total)),
    });
    reportAuthenticity(authenticity, context);
    for (const warning of result.warnings) context.stderr(`warning: ${warning}\n`);
    const summary = {
      target: result.target,
      members: result.members,
      bytes: result.bytes,
      previousContent: result.previousContent ?? null,
      rootfsFiles: result.rootfsFiles,
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

export const verifyCommand: Command = {
  spec: {
    name: "verify",
    summary: "Decrypt an archive and check every member against its catalog, writing nothing.",
    usage:
      "looker-backup verify --archive FILE --identity FILE [--trusted-signers FILE] [--keep-privileged-modes]",
    options: {
      archive: { type: "string", placeholder: "FILE", help: "the .tar.zst.age archive" },
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
    const total = (await stat(archive)).size;
    const keepPrivileged = Boolean(values["keep-privileged-modes"]);
    const outcome = await verifyArchive(
      createReadStream(archive, { highWaterMark: 1 << 20 }),
      keys,
      (p) => progress?.update(p.bytes, total),
      {
        keepPrivilegedModes: keepPrivileged,
        ...(authenticity.checked ? { signed: authenticity.signed } : {}),
      },
    );
    // Verify tells what a restore with the same flags would not write as archived.
    const dropped = droppedModesWarning(outcome.droppedModes, "would be dropped");
    const warnings = dropped === undefined ? [] : [dropped];
    reportAuthenticity(authenticity, context);
    for (const warning of warnings) context.stderr(`warning: ${warning}\n`);
    const summary = {
      archive,
      ok: true,
      signedBy: authenticity.checked ? authenticity.signer : null,
      members: outcome.members,
      bytes: outcome.bytes,
      warnings: authenticity.checked ? warnings : [authenticity.warning, ...warnings],
      backup: outcome.meta,
    };
    if (values.json) context.stdout(`${JSON.stringify(summary)}\n`);
    else
      context.stdout(
        `ok: ${outcome.members} members, ${formatBytes(outcome.bytes)} verified against the catalog${authenticity.checked ? `; signed by ${authenticity.signer}` : ""}\n`,
      );
    return ExitCode.Ok;
  },
};

export const planCommand: Command = {
  spec: {
    name: "plan",
    summary: "Show what a backup would include and exclude, and why, without writing anything.",
    usage: "looker-backup plan --home DIR [--manifest FILE]",
    options: {
      home: { type: "string", placeholder: "DIR", help: "home of the looker user" },
      manifest: {
        type: "string",
        placeholder: "FILE",
        help: "YAML manifest adjusting the default selection",
      },
      "ssl-file": sslFile,
      backend,
      json,
    },
  },
  async run(values, context) {
    const home = resolve(requireString(values, "home", "plan"));
    const { manifest, mysqlBackend } = await resolveManifest({
      home,
      manifestFile: optionalString(values, "manifest"),
      sslFiles: stringList(values, "ssl-file"),
      backend: backendOf(values),
    });
    const selection = await selectFiles({ home, manifest, countExcluded: true });
    if (values.json) {
      context.stdout(
        `${JSON.stringify({ home, backend: mysqlBackend ? "mysql" : "internal", rules: selection.tallies, skipped: selection.skipped })}\n`,
      );
      return ExitCode.Ok;
    }
    const lines = [`plan for ${home} (backend: ${mysqlBackend ? "mysql" : "internal"})`, ""];
    for (const t of selection.tallies) {
      const what = t.action === "exclude" ? "exclude" : t.action === "outside" ? "outside" : "include";
      const size = `${t.files} files, ${formatBytes(t.bytes)}`;
      lines.push(
        `${what.padEnd(8)} ${t.pattern.padEnd(28)} ${size.padEnd(24)} ${t.required ? "required; " : ""}${t.reason}`,
      );
      if (t.action === "exclude") for (const p of t.paths) lines.push(`           - ${p}`);
    }
    for (const s of selection.skipped) lines.push(`skipped  ${s.path}: ${s.reason}`);
    context.stdout(`${lines.join("\n")}\n`);
    return ExitCode.Ok;
  },
};

export const listCommand: Command = {
  spec: {
    name: "list",
    summary: "List the archives in a directory store, newest first.",
    usage: "looker-backup list --out DIR [--instance NAME]",
    options: {
      out: { type: "string", placeholder: "DIR", help: "the directory store" },
      instance: { type: "string", placeholder: "NAME", help: "only this instance" },
      json,
    },
  },
  async run(values, context) {
    const out = resolve(requireString(values, "out", "list"));
    const instance = optionalString(values, "instance");
    const archives = await new DirStore(out).list(
      instance === undefined ? undefined : validateInstanceName(instance),
    );
    if (values.json) {
      context.stdout(
        `${JSON.stringify(archives.map((a) => ({ ...a, createdAt: a.createdAt.toISOString() })))}\n`,
      );
    } else {
      for (const a of archives) {
        context.stdout(`${a.createdAt.toISOString()}  ${formatBytes(a.size).padStart(10)}  ${a.location}\n`);
      }
      if (archives.length === 0) context.stderr(`no archives in ${out}\n`);
    }
    return ExitCode.Ok;
  },
};

export const keygenCommand: Command = {
  spec: {
    name: "keygen",
    summary:
      "Create an age identity file (mode 0600) and print its recipient (--pq: post-quantum); with --signing, an ed25519 signing key instead.",
    usage: "looker-backup keygen --output FILE [--pq | --signing]",
    options: {
      output: {
        type: "string",
        short: "o",
        placeholder: "FILE",
        help: "where to write the identity or signing key (must not exist)",
      },
      pq: {
        type: "boolean",
        help: "make a post-quantum identity (AGE-SECRET-KEY-PQ-1..., recipient age1pq1...); decrypting needs age 1.3 or newer with stock tools",
      },
      signing: {
        type: "boolean",
        help: "make an ed25519 signing key (OpenSSH format) for --signing-key; prints its public key and allowed_signers line",
      },
      json,
    },
  },
  async run(values, context) {
    const output = resolve(requireString(values, "output", "keygen"));
    if (values.signing && values.pq) {
      throw new InputError(
        "keygen: --pq and --signing cannot be combined",
        "--pq makes an age identity, --signing an ed25519 key",
      );
    }
    if (values.signing) return signingKeygen(output, values, context);
    const generated = values.pq ? generateHybridIdentity() : generateIdentity();
    await writeNewKeyFile(output, formatIdentityFile(generated));
    if (values.json)
      context.stdout(`${JSON.stringify({ identityFile: output, recipient: generated.recipient })}\n`);
    else {
      context.stderr(`identity written to ${output}; keep it offline, it decrypts every backup made for:\n`);
      context.stdout(`${generated.recipient}\n`);
    }
    return ExitCode.Ok;
  },
};

async function signingKeygen(
  output: string,
  values: ParsedOptions,
  context: CommandContext,
): Promise<ExitCode> {
  const { key, file } = generateSigningKey(SIGNATURE_NAMESPACE);
  await writeNewKeyFile(output, file);
  const publicKey = publicKeyLine(key.publicKey, key.comment);
  // The principal is what `ssh-keygen -Y verify -I looker-backup` names; namespaces= keeps the key to backups.
  const allowedSigners = `${SIGNATURE_NAMESPACE} namespaces="${SIGNATURE_NAMESPACE}" ${publicKey}`;
  if (values.json) {
    context.stdout(
      `${JSON.stringify({ signingKeyFile: output, publicKey, allowedSigners, fingerprint: fingerprint(key.publicKey) })}\n`,
    );
  } else {
    context.stderr(
      `signing key written to ${output}; give it to the backup side only (signing-key / --signing-key). Its public key, and the allowed_signers line that trusts it (trusted-signers / --trusted-signers):\n`,
    );
    context.stdout(`${publicKey}\n${allowedSigners}\n`);
  }
  return ExitCode.Ok;
}

/** 0600, and never over an existing file: a key overwritten is every backup made with it lost or unprovable. */
async function writeNewKeyFile(output: string, content: string): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(output, "wx", 0o600);
  } catch (error) {
    throw new InputError(
      `cannot create ${output}: ${(error as Error).message}`,
      "choose a new file name; keygen never overwrites a key",
    );
  }
  try {
    await handle.writeFile(content);
  } finally {
    await handle.close();
  }
}
