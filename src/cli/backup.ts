/**
 * `looker-backup backup`: the action's backup, for disaster recovery when GitHub is unreachable. Its settings are
 * the action's (config/backup-settings.ts), read from the flags: the store is always the directory `--out`.
 */
import { resolve } from "node:path";
import {
  type BackupSettings,
  Inputs,
  jobSettingsOf,
  nodeSettingsOf,
  readBackupSettings,
} from "../config/backup-settings.js";
import { passphraseFromEnv } from "../config/keys.js";
import type { SettingSource } from "../config/source.js";
import { parseRecipients } from "../crypto/age-keys.js";
import { DEFAULT_COMPRESSION_LEVEL, MAX_COMPRESSION_LEVEL, MIN_COMPRESSION_LEVEL } from "../defaults.js";
import { type LookerJobResult, runLookerBackup } from "../engine/looker-job.js";
import { runBackupPreflight } from "../engine/preflight.js";
import type { ExitCode } from "../errors.js";
import type { ProgressReporter } from "../report/progress.js";
import { formatBytes, formatDuration } from "../runtime/format.js";
import { DirStore } from "../store/dir-store.js";
import { type CommandSpec, optionalString, type ParsedOptions, stringList } from "./args.js";
import type { Command, CommandContext } from "./command.js";
import {
  backend,
  fileContent,
  flagSource,
  json,
  passphraseEnv,
  progressFor,
  quiet,
  readFlagFile,
  requiredPath,
  secretFromEnv,
  sslFile,
  stderrLines,
} from "./common-options.js";
import { lookerOptionSpecs } from "./looker-options.js";

const spec: CommandSpec = {
  name: "backup",
  summary: "Back up a Looker home into an encrypted archive (pax tar + zstd + age) in a directory.",
  usage: "looker-backup backup --home DIR --out DIR --recipient AGE1... [options]",
  options: {
    home: { type: "string", placeholder: "DIR", help: "home of the looker user, e.g. /home/looker" },
    out: { type: "string", placeholder: "DIR", help: "directory that receives the archive" },
    recipient: {
      type: "string",
      short: "r",
      multiple: true,
      placeholder: "AGE1...",
      help: "age recipient: age1... (X25519) or age1pq1... (post-quantum); the two kinds cannot be mixed",
    },
    "recipients-file": {
      type: "string",
      multiple: true,
      placeholder: "FILE",
      help: "file of age recipients, one a line (age1... or age1pq1..., not both)",
    },
    "passphrase-env": passphraseEnv,
    "signing-key": {
      type: "string",
      placeholder: "FILE",
      help: "ed25519 key (OpenSSH format) that signs the archive: <archive>.sig beside it",
    },
    manifest: {
      type: "string",
      placeholder: "FILE",
      help: "YAML manifest adjusting the default selection",
    },
    instance: {
      type: "string",
      placeholder: "NAME",
      help: "instance name in the archive name (default: host name)",
    },
    "ssl-file": sslFile,
    backend,
    level: {
      type: "string",
      placeholder: "N",
      help: `zstd level ${MIN_COMPRESSION_LEVEL}-${MAX_COMPRESSION_LEVEL} (default ${DEFAULT_COMPRESSION_LEVEL})`,
    },
    "keep-last": {
      type: "string",
      placeholder: "N",
      help: "after success, keep only the N newest archives (0: all, the default)",
    },
    "keep-days": {
      type: "string",
      placeholder: "N",
      help: "after success, delete archives older than N days",
    },
    "keep-daily": {
      type: "string",
      placeholder: "N",
      help: "after success, keep the newest archive of each of the last N days (restic's rules; UTC)",
    },
    "keep-weekly": {
      type: "string",
      placeholder: "N",
      help: "after success, keep the newest archive of each of the last N ISO weeks",
    },
    "keep-monthly": {
      type: "string",
      placeholder: "N",
      help: "after success, keep the newest archive of each of the last N months",
    },
    "force-prune": {
      type: "boolean",
      help: "prune even after a backup less than half the size of the one before it",
    },
    xattrs: {
      type: "string",
      placeholder: "auto|true|false",
      help: "extended attributes: auto archives them where getfattr is installed (default), true requires it, false skips them",
    },
    ...lookerOptionSpecs,
    json,
    quiet,
  },
};

/** The flags that carry a backup setting under another name than the action's input. */
const FLAGS: Readonly<Record<string, string>> = {
  [Inputs.Recipients]: "recipient",
  [Inputs.Passphrase]: "passphrase-env",
  [Inputs.Store]: "out",
  [Inputs.StoreDir]: "out",
  [Inputs.SslFiles]: "ssl-file",
  [Inputs.CompressionLevel]: "level",
  [Inputs.MasterKey]: "master-key-env",
  [Inputs.MysqlPassword]: "mysql-password-env",
  [Inputs.KeyfileRecipients]: "keyfile-recipient",
  [Inputs.Nodes]: "node",
};

/** The backup settings as the flags give them; what only the command line has is read here. */
export function backupFlags(values: ParsedOptions): SettingSource {
  return flagSource(spec, values, FLAGS, {
    [Inputs.Home]: () => requiredPath(values, "home", spec.name),
    // --out names a directory: the CLI keeps archives nowhere else.
    [Inputs.Store]: () => "dir",
    [Inputs.StoreDir]: () => requiredPath(values, "out", spec.name),
    [Inputs.Recipients]: () => recipientsOf(values),
    [Inputs.Passphrase]: () =>
      passphraseFromEnv(optionalString(values, "passphrase-env"), "--passphrase-env") ?? "",
    [Inputs.MasterKey]: () => secretFromEnv(values, "master-key-env"),
    [Inputs.MysqlPassword]: () => secretFromEnv(values, "mysql-password-env"),
    [Inputs.SshKey]: () => fileContent(values, "ssh-key"),
    [Inputs.KnownHosts]: () => fileContent(values, "known-hosts"),
    [Inputs.SigningKey]: () => fileContent(values, "signing-key"),
    // A path on the command line is relative to the working directory.
    [Inputs.SslFiles]: () =>
      stringList(values, "ssl-file")
        .map((path) => resolve(path))
        .join("\n"),
  });
}

/** `--recipient` and the recipients of every `--recipients-file`, each file checked on its own (its lines named). */
function recipientsOf(values: ParsedOptions): string {
  const fromFiles = stringList(values, "recipients-file").flatMap((file) =>
    parseRecipients(readFlagFile(file, "recipients file"), file).map((recipient) => recipient.text),
  );
  return [...stringList(values, "recipient"), ...fromFiles].join("\n");
}

export const backupCommand: Command = {
  spec,
  async run(values, context) {
    const settings = readBackupSettings(backupFlags(values));
    const store = directoryStore(settings);
    const progress = progressFor("backup", values, context);
    const log = values.quiet || values.json ? undefined : stderrLines(progress, context);
    try {
      return await backup(settings, store, progress, log, values, context);
    } finally {
      progress?.finish();
    }
  },
};

async function backup(
  settings: BackupSettings,
  store: ReturnType<typeof directoryStore>,
  progress: ProgressReporter | undefined,
  log: ((line: string) => void) | undefined,
  values: ParsedOptions,
  context: CommandContext,
): Promise<ExitCode> {
  const { home, instance, recipients } = settings;
  // The action's preflight: nothing that can fail cheaply fails after Looker was stopped.
  const { checks, connected, selection } = await runBackupPreflight({
    inputs: `${recipients.length > 0 ? `${recipients.length} recipient(s)` : "passphrase"}; consistency ${settings.consistency}`,
    xattrs: settings.xattrs,
    home,
    consistency: settings.consistency,
    keystoreIndependent: settings.keystoreIndependent,
    quietWindow: settings.quietWindow,
    forceOutsideWindow: settings.forceOutsideWindow,
    store: { kind: "dir", directory: store.directory, instance },
    ...(settings.manifestFile ? { manifestFile: settings.manifestFile } : {}),
    sslFiles: settings.sslFiles,
    backend: settings.backend,
    mysql: settings.mysql,
    nodes: nodeSettingsOf(home, settings),
    ...(log ? { log } : {}),
  });
  for (const row of checks) log?.(`preflight: ${row.check}: ${row.detail}`);
  let result: LookerJobResult;
  try {
    result = await runLookerBackup({
      ...jobSettingsOf(settings),
      selection,
      store: new DirStore(store.directory),
      nodes: connected.nodes,
      onProgress: progress && ((p) => progress.update(p.bytesRead, { total: p.bytesTotal })),
      onPhase: progress && ((phase) => progress.phase(phase)),
      ...(log ? { log } : {}),
      signal: context.signal,
    });
  } finally {
    await connected.close();
  }
  progress?.finish();
  const archive = result.archive!;
  if (values.json) {
    context.stdout(
      `${JSON.stringify({
        archive: archive.location,
        signature: result.signature?.location ?? null,
        catalog: result.catalogSidecar?.location ?? null,
        sha256: result.sha256,
        files: result.files,
        bytesIn: result.bytesIn,
        bytesOut: result.bytesOut,
        warnings: result.warnings,
        notices: result.notices,
      })}\n`,
    );
  } else {
    context.stdout(
      `${[
        `archive  ${archive.location}`,
        ...(result.signature ? [`signed   ${result.signature.location}`] : []),
        ...(result.catalogSidecar ? [`catalog  ${result.catalogSidecar.location}`] : []),
        `sha256   ${result.sha256}`,
        `members  ${result.files}`,
        `read     ${formatBytes(result.bytesIn)} in ${formatDuration(result.durationMs)}`,
        `written  ${formatBytes(result.bytesOut)}`,
        ...result.pruned.map((name) => `pruned   ${name}`),
        ...result.warnings.map((w) => `warning  ${w}`),
        ...result.notices.map((n) => `note     ${n}`),
      ].join("\n")}\n`,
    );
  }
  return result.exitCode;
}

function directoryStore(settings: BackupSettings): Extract<BackupSettings["store"], { kind: "dir" }> {
  if (settings.store.kind !== "dir") throw new Error("the CLI's backup store is always a directory");
  return settings.store;
}
