/**
 * Action inputs -> one typed, validated Settings object (actions/cache style). Everything is checked here, before
 * anything is touched, and every error names the input it is about.
 */

import { isAbsolute } from "node:path";
import type { XattrMode } from "../archive/xattr-index.js";
import { checkRecipientMix, parseRecipient } from "../crypto/age-keys.js";
import { parseSigningKey, type SigningKey } from "../crypto/ssh-keys.js";
import {
  DEFAULT_BOOT_TIMEOUT_SECONDS,
  DEFAULT_COMPRESSION_LEVEL,
  DEFAULT_LOOKER_UNIT,
  DEFAULT_RETENTION_DAYS,
  DEFAULT_WEB_PORT,
  MAX_COMPRESSION_LEVEL,
  MAX_RETENTION_DAYS,
  MIN_COMPRESSION_LEVEL,
} from "../defaults.js";
import type { ConsistencyChoice } from "../engine/looker-job.js";
import { InputError } from "../errors.js";
import type { MasterKey } from "../looker/master-key.js";
import type { NodeSettings } from "../looker/nodes.js";
import { parseQuietWindow, type QuietWindow } from "../looker/quiet-window.js";
import { checkedUnitName, type LookerControlChoice } from "../looker/systemd.js";
import type { MysqlConnection } from "../mysql/connection.js";
import { parseLookerEnv } from "../runtime/child-env.js";
import { defaultInstanceName, validateInstanceName } from "../store/archive-name.js";

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

export interface SshNodeSpec {
  readonly user: string;
  readonly host: string;
  readonly port: number;
}

export type StoreSettings =
  | { readonly kind: "artifact"; readonly retentionDays: number }
  | { readonly kind: "dir"; readonly directory: string; readonly keepLast?: number };

export interface BackupSettings {
  readonly home: string;
  readonly instance: string;
  readonly manifestFile?: string;
  readonly sslFiles: string[];
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
  /** For checking that the artifact a skipped run relies on still exists (actions: read). */
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

export type InputReader = (name: string) => string;

export function readBackupSettings(read: InputReader): BackupSettings {
  const get = (name: string) => read(name).trim();
  const optional = (name: string) => get(name) || undefined;
  const passphrase = optional(Inputs.Passphrase);
  // age allows a passphrase (scrypt) recipient only alone: silently dropping the other recipients would lock
  // their holders out of every archive.
  if (passphrase && get(Inputs.Recipients)) {
    throw new InputError(
      `set only one of '${Inputs.Recipients}' and '${Inputs.Passphrase}'`,
      "age encrypts to a passphrase only alone: keep the recipients, or use the passphrase for break-glass backups",
    );
  }
  const recipients = passphrase ? [] : recipientList(get(Inputs.Recipients), Inputs.Recipients, true);
  const keystoreIndependent = bool(get(Inputs.KeystoreIndependent), Inputs.KeystoreIndependent);
  const masterKey = masterKeyOf(optional(Inputs.MasterKey), optional(Inputs.MasterKeyFile));
  if (keystoreIndependent && !masterKey) {
    throw new InputError(
      `input '${Inputs.KeystoreIndependent}' needs the CMK`,
      `set '${Inputs.MasterKey}' from a secret, or '${Inputs.MasterKeyFile}' to its path on the Looker host`,
    );
  }
  const nodes = nodeList(get(Inputs.Nodes));
  const sshKey = optional(Inputs.SshKey);
  if (nodes.length > 0 && !sshKey) {
    throw new InputError(
      `input '${Inputs.Nodes}' needs '${Inputs.SshKey}'`,
      "pass the nodes' private key from a secret",
    );
  }
  const timeZone = get(Inputs.QuietWindowTimeZone) || "UTC";
  const window = optional(Inputs.QuietWindow);
  const keyfileRecipients = get(Inputs.KeyfileRecipients);
  return {
    home: absolutePath(get(Inputs.Home) || "/home/looker", Inputs.Home),
    instance: validateInstanceName(
      get(Inputs.Instance) || defaultInstanceName(),
      `input '${Inputs.Instance}'`,
    ),
    ...(optional(Inputs.Manifest) ? { manifestFile: get(Inputs.Manifest) } : {}),
    sslFiles: lines(get(Inputs.SslFiles)).map((p) => absolutePath(p, Inputs.SslFiles)),
    recipients,
    ...(passphrase ? { passphrase } : {}),
    // read(), not get(): the key's text is multi-line, and parseSigningKey trims it itself.
    ...(optional(Inputs.SigningKey)
      ? { signingKey: parseSigningKey(read(Inputs.SigningKey), `input '${Inputs.SigningKey}'`) }
      : {}),
    consistency: oneOf(
      get(Inputs.Consistency) || "auto",
      ["auto", "live", "brief-stop", "stopped"] as const,
      Inputs.Consistency,
    ),
    keystoreIndependent,
    ...(masterKey ? { masterKey } : {}),
    ...(keyfileRecipients
      ? { keyfileRecipients: recipientList(keyfileRecipients, Inputs.KeyfileRecipients, true) }
      : {}),
    ...(optional(Inputs.LookerUser) ? { lookerUser: get(Inputs.LookerUser) } : {}),
    lookerControl: oneOf(
      get(Inputs.LookerControl) || "auto",
      ["auto", "script", "systemd"] as const,
      Inputs.LookerControl,
    ),
    lookerUnit: checkedUnitName(
      get(Inputs.LookerUnit) || DEFAULT_LOOKER_UNIT,
      `input '${Inputs.LookerUnit}'`,
    ),
    nodes,
    ...(sshKey ? { sshKey } : {}),
    knownHosts: read(Inputs.KnownHosts),
    acceptNewHostKeys: bool(get(Inputs.SshAcceptNewHostKeys), Inputs.SshAcceptNewHostKeys),
    webPort: integer(get(Inputs.WebPort) || String(DEFAULT_WEB_PORT), Inputs.WebPort, 1, 65535),
    bootTimeoutMs:
      integer(
        get(Inputs.BootTimeout) || String(DEFAULT_BOOT_TIMEOUT_SECONDS),
        Inputs.BootTimeout,
        1,
        86_400,
      ) * 1000,
    mysql: mysqlOf(optional),
    ...(window
      ? {
          quietWindow: parseQuietWindow(
            window,
            timeZone,
            `input '${Inputs.QuietWindow}'`,
            `input '${Inputs.QuietWindowTimeZone}'`,
          ),
        }
      : {}),
    forceOutsideWindow: bool(get(Inputs.ForceOutsideWindow), Inputs.ForceOutsideWindow),
    ...(optional(Inputs.PreCommand) ? { preCommand: read(Inputs.PreCommand) } : {}),
    ...(optional(Inputs.PostCommand) ? { postCommand: read(Inputs.PostCommand) } : {}),
    store: storeOf(get),
    compressionLevel: integer(
      get(Inputs.CompressionLevel) || String(DEFAULT_COMPRESSION_LEVEL),
      Inputs.CompressionLevel,
      MIN_COMPRESSION_LEVEL,
      MAX_COMPRESSION_LEVEL,
    ),
    xattrs: oneOf(get(Inputs.Xattrs) || "auto", ["auto", "true", "false"] as const, Inputs.Xattrs),
    skipIfUnchanged: bool(get(Inputs.SkipIfUnchanged), Inputs.SkipIfUnchanged),
    onWarnings: oneOf(
      get(Inputs.OnWarnings) || "warn",
      ["ignore", "warn", "error"] as const,
      Inputs.OnWarnings,
    ),
    ...(optional(Inputs.GithubToken) ? { githubToken: get(Inputs.GithubToken) } : {}),
    // One variable per line: a value may hold commas.
    lookerEnv: parseLookerEnv(
      read(Inputs.LookerEnv)
        .split(/\r?\n/)
        .map((l) => l.trim())
        .filter((l) => l !== "" && !l.startsWith("#")),
      `input '${Inputs.LookerEnv}'`,
    ),
  };
}

export function lines(text: string): string[] {
  return text
    .split(/[\n,]/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
}

export function recipientList(text: string, input: string, required: boolean): string[] {
  const recipients = lines(text).map((r, i) => parseRecipient(r, `input '${input}' item ${i + 1}`));
  if (required && recipients.length === 0) {
    throw new InputError(
      `input '${input}' is empty`,
      "set it to one or more age recipients (age1..., or age1pq1... for post-quantum) from `looker-backup keygen [--pq]` or `age-keygen -y`",
    );
  }
  checkRecipientMix(recipients, `input '${input}'`);
  return recipients.map((recipient) => recipient.text);
}

export function bool(value: string, input: string): boolean {
  if (value === "" || /^(false|no|0|off)$/i.test(value)) return false;
  if (/^(true|yes|1|on)$/i.test(value)) return true;
  throw new InputError(`input '${input}' must be true or false, got '${value}'`);
}

export function integer(value: string, input: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) {
    throw new InputError(`input '${input}' must be a whole number from ${min} to ${max}, got '${value}'`);
  }
  return n;
}

export function oneOf<T extends string>(value: string, allowed: readonly T[], input: string): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new InputError(`input '${input}' must be one of ${allowed.join(", ")}, got '${value}'`);
}

export function absolutePath(value: string, input: string): string {
  if (!isAbsolute(value)) throw new InputError(`input '${input}' must be an absolute path, got '${value}'`);
  return value;
}

/** Looker's CMK: 32 random bytes in base64. Checked up front so a typo fails before Looker is touched. */
export function checkedMasterKey(value: string, input: string): string {
  if (!/^[A-Za-z0-9+/]{43}=$/.test(value)) {
    throw new InputError(
      `input '${input}' is not a base64 32-byte key`,
      "Looker's CMK is 32 random bytes in base64",
    );
  }
  return value;
}

function masterKeyOf(value: string | undefined, file: string | undefined): MasterKey | undefined {
  if (value && file) {
    throw new InputError(`set only one of '${Inputs.MasterKey}' and '${Inputs.MasterKeyFile}'`);
  }
  if (value) return { kind: "env", value: checkedMasterKey(value, Inputs.MasterKey) };
  if (file) return { kind: "file", path: absolutePath(file, Inputs.MasterKeyFile) };
  return undefined;
}

const NODE_PATTERN = /^([a-z_][a-z0-9_.-]*)@(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/;

export function nodeList(text: string): SshNodeSpec[] {
  return lines(text).map((line) => {
    const match = NODE_PATTERN.exec(line);
    const port = Number(match?.[3] ?? 22);
    if (!match || port < 1 || port > 65535) {
      throw new InputError(
        `input '${Inputs.Nodes}': '${line}' is not user@host[:port]`,
        "e.g. looker@node-2.internal:22",
      );
    }
    return { user: match[1]!, host: match[2]!.replace(/^\[|\]$/g, ""), port };
  });
}

function mysqlOf(optional: (name: string) => string | undefined): Partial<MysqlConnection> {
  const port = optional(Inputs.MysqlPort);
  const fields: Partial<MysqlConnection> = {};
  const host = optional(Inputs.MysqlHost);
  const user = optional(Inputs.MysqlUser);
  const password = optional(Inputs.MysqlPassword);
  const database = optional(Inputs.MysqlDatabase);
  if (host) fields.host = host;
  if (port) fields.port = integer(port, Inputs.MysqlPort, 1, 65535);
  if (user) fields.user = user;
  if (password) fields.password = password;
  if (database) fields.database = database;
  return fields;
}

function storeOf(get: (name: string) => string): StoreSettings {
  const kind = oneOf(get(Inputs.Store) || "artifact", ["artifact", "dir"] as const, Inputs.Store);
  if (kind === "artifact")
    // GitHub allows up to 90 days in public repositories and 400 in private ones; the artifact client lowers a
    // longer request to the repository's own limit (GITHUB_RETENTION_DAYS) with a warning.
    // 0: the repository's default retention (the client sends none).
    return {
      kind,
      retentionDays: integer(
        get(Inputs.RetentionDays) || String(DEFAULT_RETENTION_DAYS),
        Inputs.RetentionDays,
        0,
        MAX_RETENTION_DAYS,
      ),
    };
  const directory = get(Inputs.StoreDir);
  if (!directory) throw new InputError(`input '${Inputs.StoreDir}' is required with store: dir`);
  const keepLast = integer(get(Inputs.KeepLast) || "0", Inputs.KeepLast, 0, 100_000);
  return { kind, directory: absolutePath(directory, Inputs.StoreDir), ...(keepLast > 0 ? { keepLast } : {}) };
}
