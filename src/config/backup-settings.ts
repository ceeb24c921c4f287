/**
 * The backup's settings: one typed, validated BackupSettings, built by readBackupSettings from the action's inputs
 * (backup-action, post-action) or the CLI's flags (cli/backup.ts). Everything is checked here, before anything is
 * touched, and every error names the input or flag it is about (source.ts).
 */

import type { XattrMode } from "../archive/xattr-index.js";
import { checkRecipientMix, parseRecipient } from "../crypto/age-keys.js";
import { parseSigningKey, type SigningKey } from "../crypto/ssh-keys.js";
import {
  DEFAULT_BACKEND,
  DEFAULT_BOOT_TIMEOUT_SECONDS,
  DEFAULT_COMPRESSION_LEVEL,
  DEFAULT_CONSISTENCY,
  DEFAULT_HOME,
  DEFAULT_KEEP_LAST,
  DEFAULT_LOOKER_CONTROL,
  DEFAULT_LOOKER_UNIT,
  DEFAULT_ON_WARNINGS,
  DEFAULT_QUIET_WINDOW_TIME_ZONE,
  DEFAULT_RETENTION_DAYS,
  DEFAULT_STORE,
  DEFAULT_WEB_PORT,
  DEFAULT_XATTRS,
  MAX_COMPRESSION_LEVEL,
  MAX_KEEP,
  MAX_RETENTION_DAYS,
  MAX_TIMEOUT_SECONDS,
  MIN_COMPRESSION_LEVEL,
} from "../defaults.js";
import type { ConsistencyChoice, LookerJobRequest } from "../engine/looker-job.js";
import { InputError } from "../errors.js";
import type { MasterKey } from "../looker/master-key.js";
import type { NodeSettings } from "../looker/nodes.js";
import { parseQuietWindow, type QuietWindow } from "../looker/quiet-window.js";
import { checkedUnitName, type LookerControlChoice } from "../looker/systemd.js";
import type { BackendChoice } from "../manifest/user-manifest.js";
import type { MysqlConnection } from "../mysql/connection.js";
import { parseLookerEnv } from "../runtime/child-env.js";
import { defaultInstanceName, validateInstanceName } from "../store/archive-name.js";
import { prunes } from "../store/retention.js";
import type { RetentionPolicy } from "../store/store.js";
import { absolutePath, checkedMasterKey, SettingReader, type SettingSource } from "./source.js";

/**
 * The backup's settings by their action input names. The CLI's flags carry the same settings (cli/backup.ts says
 * which flag carries which); `backend` and `keep-days` exist only as flags, and the action never sets them.
 */
export const Inputs = {
  Recipients: "recipients",
  Home: "home",
  Instance: "instance",
  Manifest: "manifest",
  SslFiles: "ssl-files",
  Consistency: "consistency",
  KeystoreIndependent: "keystore-independent",
  MasterKey: "master-key",
  MasterKeyFile: "master-key-file",
  KeyfileRecipients: "keyfile-recipients",
  LookerUser: "looker-user",
  LookerControl: "looker-control",
  LookerUnit: "looker-unit",
  Nodes: "nodes",
  SshKey: "ssh-key",
  KnownHosts: "known-hosts",
  SshAcceptNewHostKeys: "ssh-accept-new-host-keys",
  WebPort: "web-port",
  BootTimeout: "boot-timeout",
  MysqlHost: "mysql-host",
  MysqlPort: "mysql-port",
  MysqlUser: "mysql-user",
  MysqlPassword: "mysql-password",
  MysqlDatabase: "mysql-database",
  QuietWindow: "quiet-window",
  QuietWindowTimeZone: "quiet-window-time-zone",
  ForceOutsideWindow: "force-outside-window",
  PreCommand: "pre-command",
  PostCommand: "post-command",
  Store: "store",
  StoreDir: "store-dir",
  RetentionDays: "retention-days",
  KeepLast: "keep-last",
  CompressionLevel: "compression-level",
  Xattrs: "xattrs",
  SkipIfUnchanged: "skip-if-unchanged",
  Passphrase: "passphrase",
  SigningKey: "signing-key",
  LookerEnv: "looker-env",
  OnWarnings: "on-warnings",
  GithubToken: "github-token",
  Backend: "backend",
  KeepDays: "keep-days",
  KeepDaily: "keep-daily",
  KeepWeekly: "keep-weekly",
  KeepMonthly: "keep-monthly",
  ForcePrune: "force-prune",
} as const;

export const Outputs = {
  ArchiveName: "archive-name",
  ArtifactId: "artifact-id",
  Sha256: "sha256",
  Bytes: "bytes",
  BytesIn: "bytes-in",
  Files: "files",
  DurationMs: "duration-ms",
  DowntimeMs: "downtime-ms",
  Warnings: "warnings",
  KeyfileArtifactName: "keyfile-artifact-name",
  CatalogName: "catalog-name",
  Skipped: "skipped",
  ArtifactUrl: "artifact-url",
} as const;

/** Inputs whose values are secrets: masked in logs before anything else happens. */
export const SECRET_INPUTS = [
  Inputs.MasterKey,
  Inputs.SshKey,
  Inputs.MysqlPassword,
  Inputs.Passphrase,
  Inputs.SigningKey,
  Inputs.GithubToken,
] as const;

/** Inputs of age recipients: public keys, where a pasted secret key must still be masked (action/secrets.ts). */
export const RECIPIENT_INPUTS = [Inputs.Recipients, Inputs.KeyfileRecipients] as const;

export interface SshNodeSpec {
  readonly user: string;
  readonly host: string;
  readonly port: number;
}

export type StoreSettings =
  | {
      readonly kind: "artifact";
      readonly retentionDays: number;
      /**
       * What the action prunes after a success, across the repository's runs (store/artifact-prune.ts, with
       * github-token); undefined keeps every artifact until its retention-days pass.
       */
      readonly retention?: RetentionPolicy;
    }
  | {
      readonly kind: "dir";
      readonly directory: string;
      /** What is pruned after a success (store/retention.ts); undefined keeps every archive. keep-days is CLI only. */
      readonly retention?: RetentionPolicy;
    };

export interface BackupSettings {
  readonly home: string;
  readonly instance: string;
  readonly manifestFile?: string;
  readonly sslFiles: string[];
  /** The database backend: auto (from the manifest and the home), internal or mysql (CLI only). */
  readonly backend: BackendChoice;
  readonly recipients: string[];
  readonly passphrase?: string;
  /** Signs each archive (`<archive>.sig`); read and checked before anything else happens. */
  readonly signingKey?: SigningKey;
  readonly consistency: ConsistencyChoice;
  readonly keystoreIndependent: boolean;
  readonly masterKey?: MasterKey;
  readonly keyfileRecipients?: string[];
  readonly lookerUser?: string;
  /** How Looker is stopped and started: auto (systemd where its unit is loaded), script or systemd. */
  readonly lookerControl: LookerControlChoice;
  /** The systemd unit Looker runs under. */
  readonly lookerUnit: string;
  readonly nodes: SshNodeSpec[];
  readonly sshKey?: string;
  readonly knownHosts: string;
  readonly acceptNewHostKeys: boolean;
  readonly webPort: number;
  readonly bootTimeoutMs: number;
  readonly mysql: Partial<MysqlConnection>;
  readonly quietWindow?: QuietWindow;
  readonly forceOutsideWindow: boolean;
  readonly preCommand?: string;
  readonly postCommand?: string;
  readonly store: StoreSettings;
  readonly compressionLevel: number;
  readonly xattrs: XattrMode;
  readonly skipIfUnchanged: boolean;
  /** What warnings do to the run: nothing, annotations (exit 0), or exit 3. */
  readonly onWarnings: "ignore" | "warn" | "error";
  /**
   * For checking that the artifact a skipped run relies on still exists (actions: read), and for pruning backup
   * artifacts of earlier runs with the keep- inputs (actions: write).
   */
  readonly githubToken?: string;
  /** Extra environment for Looker's commands and the pre/post commands (runtime/child-env.ts). */
  readonly lookerEnv: Readonly<Record<string, string>>;
}

/** The settings that say how to reach and drive the Looker nodes. */
export type NodeInputs = Pick<
  BackupSettings,
  | "lookerUser"
  | "lookerControl"
  | "lookerUnit"
  | "nodes"
  | "sshKey"
  | "knownHosts"
  | "acceptNewHostKeys"
  | "webPort"
  | "bootTimeoutMs"
  | "masterKey"
  | "lookerEnv"
>;

/**
 * The node connections' share of the settings, picked field by field: the SSH key and the CMK go here and nowhere
 * else, and none of the other secrets (the MySQL password, the passphrase, the signing key, the token) come along.
 */
export function nodeSettingsOf(home: string, settings: NodeInputs): NodeSettings {
  return {
    home,
    ...(settings.lookerUser ? { lookerUser: settings.lookerUser } : {}),
    lookerControl: settings.lookerControl,
    lookerUnit: settings.lookerUnit,
    nodes: settings.nodes,
    ...(settings.sshKey ? { sshKey: settings.sshKey } : {}),
    knownHosts: settings.knownHosts,
    acceptNewHostKeys: settings.acceptNewHostKeys,
    webPort: settings.webPort,
    bootTimeoutMs: settings.bootTimeoutMs,
    ...(settings.masterKey ? { masterKey: settings.masterKey } : {}),
    lookerEnv: settings.lookerEnv,
  };
}

/**
 * The backup job's share of the settings, picked field by field as nodeSettingsOf picks the nodes': what the action
 * and the CLI both hand to runLookerBackup. Each caller adds its own store, nodes, selection and hooks.
 */
export function jobSettingsOf(settings: BackupSettings) {
  return {
    home: settings.home,
    instance: settings.instance,
    recipients: settings.recipients,
    passphrase: settings.passphrase,
    signingKey: settings.signingKey,
    retention: settings.store.kind === "dir" ? settings.store.retention : undefined,
    compressionLevel: settings.compressionLevel,
    xattrs: settings.xattrs,
    consistency: settings.consistency,
    keystoreIndependent: settings.keystoreIndependent,
    keyfileRecipients: settings.keyfileRecipients,
    quietWindow: settings.quietWindow,
    forceOutsideWindow: settings.forceOutsideWindow,
    preCommand: settings.preCommand,
    postCommand: settings.postCommand,
    lookerEnv: settings.lookerEnv,
    mysql: settings.mysql,
  } satisfies Partial<LookerJobRequest>;
}

export function readBackupSettings(source: SettingSource): BackupSettings {
  const input = new SettingReader(source);
  const label = (name: string) => input.label(name);
  // Where from and where to first: without them nothing else is worth reading.
  const home = absolutePath(input.get(Inputs.Home) || DEFAULT_HOME, label(Inputs.Home));
  const store = storeOf(input);
  const passphrase = input.optional(Inputs.Passphrase);
  // age allows a passphrase (scrypt) recipient only alone: silently dropping the other recipients would lock
  // their holders out of every archive.
  if (passphrase && input.get(Inputs.Recipients)) {
    throw new InputError(
      `set only one of ${label(Inputs.Recipients)} and ${label(Inputs.Passphrase)}`,
      "age encrypts to a passphrase only alone: keep the recipients, or use the passphrase for break-glass backups",
    );
  }
  const recipients = passphrase ? [] : recipientList(input, Inputs.Recipients);
  const keystoreIndependent = input.bool(Inputs.KeystoreIndependent);
  const masterKey = masterKeyOf(input);
  if (keystoreIndependent && !masterKey) {
    throw new InputError(
      `${label(Inputs.KeystoreIndependent)} needs the CMK`,
      `set ${label(Inputs.MasterKey)}, or ${label(Inputs.MasterKeyFile)} to its path on the Looker host`,
    );
  }
  const nodes = nodeList(input);
  const sshKey = input.optional(Inputs.SshKey);
  if (nodes.length > 0 && !sshKey) {
    throw new InputError(
      `${label(Inputs.Nodes)} needs ${label(Inputs.SshKey)}`,
      "the nodes' private key, from a secret",
    );
  }
  const window = input.optional(Inputs.QuietWindow);
  const signingKey = input.optional(Inputs.SigningKey);
  const manifestFile = input.optional(Inputs.Manifest);
  const lookerUser = input.optional(Inputs.LookerUser);
  const preCommand = input.optionalText(Inputs.PreCommand);
  const postCommand = input.optionalText(Inputs.PostCommand);
  const githubToken = input.optional(Inputs.GithubToken);
  return {
    home,
    instance: validateInstanceName(
      input.get(Inputs.Instance) || defaultInstanceName(),
      label(Inputs.Instance),
    ),
    ...(manifestFile ? { manifestFile } : {}),
    sslFiles: input.list(Inputs.SslFiles).map((p) => absolutePath(p, label(Inputs.SslFiles))),
    backend: input.oneOf(Inputs.Backend, ["auto", "internal", "mysql"] as const, DEFAULT_BACKEND),
    recipients,
    ...(passphrase ? { passphrase } : {}),
    // The key's text as given: it is multi-line, and parseSigningKey trims it itself.
    ...(signingKey
      ? { signingKey: parseSigningKey(input.text(Inputs.SigningKey), label(Inputs.SigningKey)) }
      : {}),
    consistency: input.oneOf(
      Inputs.Consistency,
      ["auto", "live", "brief-stop", "stopped"] as const,
      DEFAULT_CONSISTENCY,
    ),
    keystoreIndependent,
    ...(masterKey ? { masterKey } : {}),
    ...(input.get(Inputs.KeyfileRecipients)
      ? { keyfileRecipients: recipientList(input, Inputs.KeyfileRecipients) }
      : {}),
    ...(lookerUser ? { lookerUser } : {}),
    lookerControl: input.oneOf(
      Inputs.LookerControl,
      ["auto", "script", "systemd"] as const,
      DEFAULT_LOOKER_CONTROL,
    ),
    lookerUnit: checkedUnitName(
      input.get(Inputs.LookerUnit) || DEFAULT_LOOKER_UNIT,
      label(Inputs.LookerUnit),
    ),
    nodes,
    ...(sshKey ? { sshKey } : {}),
    knownHosts: input.text(Inputs.KnownHosts),
    acceptNewHostKeys: input.bool(Inputs.SshAcceptNewHostKeys),
    webPort: input.integer(Inputs.WebPort, { min: 1, max: 65_535, fallback: DEFAULT_WEB_PORT }),
    bootTimeoutMs:
      input.integer(Inputs.BootTimeout, {
        min: 1,
        max: MAX_TIMEOUT_SECONDS,
        fallback: DEFAULT_BOOT_TIMEOUT_SECONDS,
      }) * 1000,
    mysql: mysqlOf(input),
    ...(window
      ? {
          quietWindow: parseQuietWindow(
            window,
            input.get(Inputs.QuietWindowTimeZone) || DEFAULT_QUIET_WINDOW_TIME_ZONE,
            label(Inputs.QuietWindow),
            label(Inputs.QuietWindowTimeZone),
          ),
        }
      : {}),
    forceOutsideWindow: input.bool(Inputs.ForceOutsideWindow),
    ...(preCommand ? { preCommand } : {}),
    ...(postCommand ? { postCommand } : {}),
    store,
    compressionLevel: input.integer(Inputs.CompressionLevel, {
      min: MIN_COMPRESSION_LEVEL,
      max: MAX_COMPRESSION_LEVEL,
      fallback: DEFAULT_COMPRESSION_LEVEL,
    }),
    xattrs: input.oneOf(Inputs.Xattrs, ["auto", "true", "false"] as const, DEFAULT_XATTRS),
    skipIfUnchanged: input.bool(Inputs.SkipIfUnchanged),
    onWarnings: input.oneOf(Inputs.OnWarnings, ["ignore", "warn", "error"] as const, DEFAULT_ON_WARNINGS),
    ...(githubToken ? { githubToken } : {}),
    // One variable per line: a value may hold commas.
    lookerEnv: parseLookerEnv(
      input
        .text(Inputs.LookerEnv)
        .split(/\r?\n/)
        .map((l) => l.trim())
        .filter((l) => l !== "" && !l.startsWith("#")),
      label(Inputs.LookerEnv),
    ),
  };
}

/** Required (a backup encrypts to someone), checked, one kind only, each once. */
function recipientList(input: SettingReader, name: string): string[] {
  const label = input.label(name);
  const recipients = input.list(name).map((r, i) => parseRecipient(r, `${label} item ${i + 1}`));
  if (recipients.length === 0) {
    throw new InputError(
      `${label}: no recipients given`,
      "give one or more age recipients (age1..., or age1pq1... for post-quantum) from `looker-backup keygen [--pq]` or `age-keygen -y`",
    );
  }
  checkRecipientMix(recipients, label);
  return [...new Set(recipients.map((recipient) => recipient.text))];
}

function masterKeyOf(input: SettingReader): MasterKey | undefined {
  const value = input.optional(Inputs.MasterKey);
  const file = input.optional(Inputs.MasterKeyFile);
  if (value && file) {
    throw new InputError(
      `set only one of ${input.label(Inputs.MasterKey)} and ${input.label(Inputs.MasterKeyFile)}`,
    );
  }
  if (value) return { kind: "env", value: checkedMasterKey(value, input.label(Inputs.MasterKey)) };
  if (file) return { kind: "file", path: input.absolutePath(Inputs.MasterKeyFile)! };
  return undefined;
}

const NODE_PATTERN = /^([a-z_][a-z0-9_.-]*)@(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/;

function nodeList(input: SettingReader): SshNodeSpec[] {
  return input.list(Inputs.Nodes).map((line) => {
    const match = NODE_PATTERN.exec(line);
    const port = Number(match?.[3] ?? 22);
    if (!match || port < 1 || port > 65535) {
      throw new InputError(
        `${input.label(Inputs.Nodes)}: '${line}' is not user@host[:port]`,
        "e.g. looker@node-2.internal:22",
      );
    }
    return { user: match[1]!, host: match[2]!.replace(/^\[|\]$/g, ""), port };
  });
}

function mysqlOf(input: SettingReader): Partial<MysqlConnection> {
  const fields: Partial<MysqlConnection> = {};
  const host = input.optional(Inputs.MysqlHost);
  const port = input.integer(Inputs.MysqlPort, { min: 1, max: 65_535 });
  const user = input.optional(Inputs.MysqlUser);
  const password = input.optional(Inputs.MysqlPassword);
  const database = input.optional(Inputs.MysqlDatabase);
  if (host) fields.host = host;
  if (port !== undefined) fields.port = port;
  if (user) fields.user = user;
  if (password) fields.password = password;
  if (database) fields.database = database;
  return fields;
}

function storeOf(input: SettingReader): StoreSettings {
  const kind = input.oneOf(Inputs.Store, ["artifact", "dir"] as const, DEFAULT_STORE);
  if (kind === "artifact") {
    // GitHub allows up to 90 days in public repositories and 400 in private ones; the artifact client lowers a
    // longer request to the repository's own limit (GITHUB_RETENTION_DAYS) with a warning.
    // 0: the repository's default retention (the client sends none).
    const retentionDays = input.integer(Inputs.RetentionDays, {
      min: 0,
      max: MAX_RETENTION_DAYS,
      fallback: DEFAULT_RETENTION_DAYS,
    });
    const retention = retentionOf(input);
    return { kind, retentionDays, ...(retention ? { retention } : {}) };
  }
  const directory = input.absolutePath(Inputs.StoreDir);
  if (!directory) {
    throw new InputError(`${input.label(Inputs.StoreDir)} is required when the store is a directory`);
  }
  const retention = retentionOf(input);
  return { kind, directory, ...(retention ? { retention } : {}) };
}

/** The keep- settings, the same for both stores; undefined when no rule would remove anything. */
function retentionOf(input: SettingReader): RetentionPolicy | undefined {
  const keepLast = input.integer(Inputs.KeepLast, { min: 0, max: MAX_KEEP, fallback: DEFAULT_KEEP_LAST });
  const counts = {
    keepDays: input.integer(Inputs.KeepDays, { min: 1, max: MAX_KEEP }),
    keepDaily: input.integer(Inputs.KeepDaily, { min: 1, max: MAX_KEEP }),
    keepWeekly: input.integer(Inputs.KeepWeekly, { min: 1, max: MAX_KEEP }),
    keepMonthly: input.integer(Inputs.KeepMonthly, { min: 1, max: MAX_KEEP }),
  };
  const retention: RetentionPolicy = {
    ...(keepLast > 0 ? { keepLast } : {}),
    ...Object.fromEntries(Object.entries(counts).filter(([, value]) => value !== undefined)),
    ...(input.bool(Inputs.ForcePrune) ? { forcePrune: true } : {}),
  };
  return prunes(retention) ? retention : undefined;
}
