/**
 * The restore drill's settings: one typed, validated DrillSettings, built by readDrillSettings from the
 * restore-drill action's inputs (action/restore-action.ts) or the drill command's flags (cli/drill.ts). Everything
 * is checked here, before a backup is downloaded or a host is touched, and every error names the input or flag.
 */
import { parseIdentities } from "../crypto/age-keys.js";
import { parseTrustedSigners, type TrustedSigners } from "../crypto/ssh-keys.js";
import {
  DEFAULT_BOOT_TIMEOUT_SECONDS,
  DEFAULT_DRILL_DATABASE,
  DEFAULT_MYSQL_PORT,
  DEFAULT_SSH_PORT,
  DEFAULT_SSH_TIMEOUT_SECONDS,
  DEFAULT_TARGET_USER,
  MAX_TIMEOUT_SECONDS,
} from "../defaults.js";
import type { DecryptionKeys } from "../engine/restore.js";
import { InputError } from "../errors.js";
import type { MasterKey } from "../looker/master-key.js";
import { type MysqlConnection, validateMysqlConnection } from "../mysql/connection.js";
import { validateInstanceName } from "../store/archive-name.js";
import { absolutePath, checkedMasterKey, SettingReader, type SettingSource } from "./source.js";

/**
 * The drill's settings by their action input names. Some exist only as flags of the drill command (a local archive,
 * its key file, a passphrase, the CMK as a file, the SSH timeout, keep-running); the action never sets them. The
 * artifact search exists only in the action.
 */
export const DrillInputs = {
  Identity: "identity",
  KeyfileIdentity: "keyfile-identity",
  Passphrase: "passphrase",
  TrustedSigners: "trusted-signers",
  Archive: "archive",
  Keyfile: "keyfile",
  Workflow: "workflow",
  Repository: "repository",
  Branch: "branch",
  RunId: "run-id",
  ArtifactName: "artifact-name",
  Instance: "instance",
  StoreDir: "store-dir",
  GithubToken: "github-token",
  TargetHost: "target-host",
  TargetPort: "target-port",
  TargetUser: "target-user",
  SshKey: "ssh-key",
  KnownHosts: "known-hosts",
  SshTimeout: "ssh-timeout",
  TargetDir: "target-dir",
  MasterKey: "master-key",
  MasterKeyFile: "master-key-file",
  WebPort: "web-port",
  ApiPort: "api-port",
  BootTimeout: "boot-timeout",
  ApiClientId: "api-client-id",
  ApiClientSecret: "api-client-secret",
  Checks: "checks",
  DrillMysqlHost: "drill-mysql-host",
  DrillMysqlPort: "drill-mysql-port",
  DrillMysqlUser: "drill-mysql-user",
  DrillMysqlPassword: "drill-mysql-password",
  DrillMysqlDatabase: "drill-mysql-database",
  ProvisionCommand: "provision-command",
  TeardownCommand: "teardown-command",
  KeepRunning: "keep-running",
} as const;

/** Inputs whose values are secrets: masked in logs before anything else happens. */
export const DRILL_SECRET_INPUTS = [
  DrillInputs.Identity,
  DrillInputs.KeyfileIdentity,
  DrillInputs.SshKey,
  DrillInputs.MasterKey,
  DrillInputs.ApiClientSecret,
  DrillInputs.DrillMysqlPassword,
] as const;

/** Where the backup to drill is. */
export type BackupLocation =
  | { readonly kind: "file"; readonly path: string }
  | { readonly kind: "dir"; readonly directory: string; readonly instance?: string }
  | {
      readonly kind: "artifact";
      readonly owner: string;
      readonly repo: string;
      readonly workflow?: string;
      readonly branch?: string;
      readonly runId?: number;
      readonly artifactName?: string;
      readonly instance?: string;
    };

export type DrillTargetSettings =
  | {
      readonly kind: "ssh";
      /** Unset when the provision command prints it. */
      readonly host?: string;
      readonly port: number;
      readonly user: string;
      readonly privateKey: string;
      readonly knownHosts: string;
      readonly sshTimeoutMs: number;
    }
  | { readonly kind: "dir"; readonly dir: string };

/** What drill/drill.ts's DrillRequest takes, less the archive that the backup location leads to. */
export interface DrillSettings {
  readonly backup: BackupLocation;
  /** The encrypted key file; default `<archive>.keyfile.age` beside the archive. */
  readonly keyfile?: string;
  readonly keys: DecryptionKeys;
  readonly keyfileIdentities?: readonly string[];
  /** Unset: authenticity is not checked (a warning). */
  readonly trustedSigners?: TrustedSigners;
  readonly target: DrillTargetSettings;
  /** The drill host's own CMK (never production's). */
  readonly masterKey?: MasterKey;
  /** Unset: what the restored lookerstart.cfg says; set: the drill's copy is rewritten to it. */
  readonly webPort?: number;
  readonly apiPort?: number;
  readonly bootTimeoutMs: number;
  readonly api?: { readonly clientId: string; readonly clientSecret: string };
  readonly checks: readonly { readonly path: string; readonly status: number }[];
  readonly drillMysql?: MysqlConnection;
  readonly provisionCommand?: string;
  readonly teardownCommand?: string;
  readonly keepRunning: boolean;
  /** Finds artifacts of other runs and earlier drills (actions: read). */
  readonly githubToken?: string;
}

const I = DrillInputs;
const PORT = { min: 1, max: 65_535 } as const;

export function readDrillSettings(source: SettingSource): DrillSettings {
  const input = new SettingReader(source);
  const keyfile = input.optional(I.Keyfile);
  const trustedSigners = input.optional(I.TrustedSigners);
  const keyfileIdentity = input.optionalText(I.KeyfileIdentity);
  const webPort = input.integer(I.WebPort, PORT);
  const apiPort = input.integer(I.ApiPort, PORT);
  const api = apiOf(input);
  const drillMysql = drillMysqlOf(input);
  const masterKey = masterKeyOf(input);
  const provisionCommand = input.optionalText(I.ProvisionCommand);
  const teardownCommand = input.optionalText(I.TeardownCommand);
  const githubToken = input.optional(I.GithubToken);
  return {
    backup: backupLocationOf(input),
    ...(keyfile ? { keyfile: absolutePath(keyfile, input.label(I.Keyfile)) } : {}),
    keys: keysOf(input),
    ...(keyfileIdentity
      ? { keyfileIdentities: [identityText(keyfileIdentity, input.label(I.KeyfileIdentity))] }
      : {}),
    ...(trustedSigners
      ? { trustedSigners: parseTrustedSigners(input.text(I.TrustedSigners), input.label(I.TrustedSigners)) }
      : {}),
    target: targetOf(input),
    ...(masterKey ? { masterKey } : {}),
    ...(webPort !== undefined ? { webPort } : {}),
    ...(apiPort !== undefined ? { apiPort } : {}),
    bootTimeoutMs:
      input.integer(I.BootTimeout, {
        min: 1,
        max: MAX_TIMEOUT_SECONDS,
        fallback: DEFAULT_BOOT_TIMEOUT_SECONDS,
      }) * 1000,
    ...(api ? { api } : {}),
    checks: input.list(I.Checks).map((line) => checkOf(line, input.label(I.Checks))),
    ...(drillMysql ? { drillMysql } : {}),
    ...(provisionCommand ? { provisionCommand } : {}),
    ...(teardownCommand ? { teardownCommand } : {}),
    keepRunning: input.bool(I.KeepRunning),
    ...(githubToken ? { githubToken } : {}),
  };
}

/** A local archive, the newest in a directory store, or (the action) the newest backup artifact. */
function backupLocationOf(input: SettingReader): BackupLocation {
  const archive = input.optional(I.Archive);
  const storeDir = input.optional(I.StoreDir);
  const instanceName = input.optional(I.Instance);
  const instance = instanceName ? validateInstanceName(instanceName, input.label(I.Instance)) : undefined;
  const filter = instance ? { instance } : {};
  if (archive && storeDir) {
    throw new InputError(`give only one of ${input.label(I.Archive)} and ${input.label(I.StoreDir)}`);
  }
  if (archive) return { kind: "file", path: absolutePath(archive, input.label(I.Archive)) };
  if (storeDir) return { kind: "dir", directory: absolutePath(storeDir, input.label(I.StoreDir)), ...filter };
  if (!input.source.offers(I.Workflow)) {
    throw new InputError(`give exactly one of ${input.label(I.Archive)} or ${input.label(I.StoreDir)}`);
  }
  const runId = input.integer(I.RunId, { min: 1, max: Number.MAX_SAFE_INTEGER });
  const workflow = input.optional(I.Workflow);
  const branch = input.optional(I.Branch);
  const artifactName = input.optional(I.ArtifactName);
  return {
    kind: "artifact",
    ...repositoryOf(
      input.get(I.Repository) || process.env.GITHUB_REPOSITORY || "",
      input.label(I.Repository),
    ),
    ...(workflow ? { workflow } : {}),
    ...(branch ? { branch } : {}),
    ...(runId !== undefined ? { runId } : {}),
    ...(artifactName ? { artifactName } : {}),
    ...filter,
  };
}

/** `owner/name` of the repository whose backups are restored (a drill may restore another repository's). */
function repositoryOf(value: string, label: string): { owner: string; repo: string } {
  const match = /^([A-Za-z0-9_.-]+)\/([A-Za-z0-9_.-]+)$/.exec(value.trim());
  if (!match) {
    throw new InputError(
      `${label}: '${value}' is not owner/name`,
      "the repository that runs the backups, e.g. acme/looker-ops (default: this repository)",
    );
  }
  return { owner: match[1]!, repo: match[2]! };
}

/** The identity, or a passphrase alone (scrypt): what decrypts the archive. */
function keysOf(input: SettingReader): DecryptionKeys {
  const passphrase = input.optional(I.Passphrase);
  const identity = input.optionalText(I.Identity);
  if (!identity && !passphrase) {
    throw new InputError(
      `${input.label(I.Identity)} is required`,
      "the age identity (AGE-SECRET-KEY-1... or AGE-SECRET-KEY-PQ-1...) that decrypts the archive",
    );
  }
  return {
    identities: identity ? [identityText(identity, input.label(I.Identity))] : [],
    ...(passphrase ? { passphrase } : {}),
  };
}

/** An age identity file's text, checked now rather than after a download. */
function identityText(text: string, label: string): string {
  parseIdentities(text, label);
  return text;
}

function targetOf(input: SettingReader): DrillTargetSettings {
  const dir = input.optional(I.TargetDir);
  const host = input.optional(I.TargetHost);
  const provisioned = input.optional(I.ProvisionCommand) !== undefined;
  if (dir) {
    if (host || provisioned) {
      throw new InputError(
        `${input.label(I.TargetDir)} cannot be combined with ${input.label(I.TargetHost)} or ${input.label(I.ProvisionCommand)}`,
      );
    }
    return { kind: "dir", dir: absolutePath(dir, input.label(I.TargetDir)) };
  }
  if (!host && !provisioned) {
    throw new InputError(
      `give ${input.label(I.TargetHost)} (or ${input.label(I.ProvisionCommand)}) or ${input.label(I.TargetDir)}`,
      "the drill restores onto a fresh host over SSH, or into an empty local directory",
    );
  }
  const port = input.integer(I.TargetPort, { ...PORT, fallback: DEFAULT_SSH_PORT });
  const user = input.get(I.TargetUser) || DEFAULT_TARGET_USER;
  const sshTimeoutSeconds = input.integer(I.SshTimeout, {
    min: 1,
    max: MAX_TIMEOUT_SECONDS,
    fallback: DEFAULT_SSH_TIMEOUT_SECONDS,
  });
  if (!input.get(I.SshKey) || !input.get(I.KnownHosts)) {
    throw new InputError(
      `an SSH target needs ${input.label(I.SshKey)} and ${input.label(I.KnownHosts)}`,
      "strict host key checking is not optional",
    );
  }
  return {
    kind: "ssh",
    ...(host ? { host } : {}),
    port,
    user,
    privateKey: input.text(I.SshKey),
    knownHosts: input.text(I.KnownHosts),
    sshTimeoutMs: sshTimeoutSeconds * 1000,
  };
}

function masterKeyOf(input: SettingReader): MasterKey | undefined {
  const value = input.optional(I.MasterKey);
  const file = input.optional(I.MasterKeyFile);
  if (value && file) {
    throw new InputError(`set only one of ${input.label(I.MasterKey)} and ${input.label(I.MasterKeyFile)}`);
  }
  if (value) return { kind: "env", value: checkedMasterKey(value, input.label(I.MasterKey)) };
  if (file) return { kind: "file", path: absolutePath(file, input.label(I.MasterKeyFile)) };
  return undefined;
}

function apiOf(input: SettingReader): DrillSettings["api"] {
  const clientId = input.optional(I.ApiClientId);
  if (!clientId) return undefined;
  const clientSecret = input.get(I.ApiClientSecret);
  if (!clientSecret) {
    throw new InputError(`${input.label(I.ApiClientId)} needs ${input.label(I.ApiClientSecret)}`);
  }
  return { clientId, clientSecret };
}

/** `PATH=STATUS`; a bare PATH must answer 200. */
function checkOf(line: string, label: string): { path: string; status: number } {
  const match = /^(\/[^\s=]*)(?:=(\d{3}))?$/.exec(line);
  const status = Number(match?.[2] ?? 200);
  if (!match || status < 100 || status > 599) {
    throw new InputError(`${label} '${line}' is not PATH=STATUS`, "e.g. /alive=200");
  }
  return { path: match[1]!, status };
}

/**
 * The drill's own database, for a MySQL-backend backup: set by its host or user (its name has a default, so it
 * cannot say by itself that there is one).
 */
function drillMysqlOf(input: SettingReader): MysqlConnection | undefined {
  const host = input.optional(I.DrillMysqlHost);
  const user = input.optional(I.DrillMysqlUser);
  const port = input.integer(I.DrillMysqlPort, { ...PORT, fallback: DEFAULT_MYSQL_PORT });
  if (!host && !user) return undefined;
  if (!host || !user) {
    throw new InputError(
      `the drill database needs ${input.label(I.DrillMysqlHost)} and ${input.label(I.DrillMysqlUser)}`,
      `give both (and ${input.label(I.DrillMysqlPassword)}; ${input.label(I.DrillMysqlDatabase)} defaults to ${DEFAULT_DRILL_DATABASE})`,
    );
  }
  return validateMysqlConnection({
    host,
    port,
    user,
    password: input.text(I.DrillMysqlPassword),
    database: input.get(I.DrillMysqlDatabase) || DEFAULT_DRILL_DATABASE,
  });
}
