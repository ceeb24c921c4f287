/**
 * The backup command's Looker options (consistency, keystore-independent, cluster nodes, MySQL, quiet window,
 * pre/post commands). They mean exactly what the action's inputs of the same names mean, so they are read through the
 * action's one validator (config/inputs.ts); only secrets arrive differently: from files or environment variables
 * named on the command line, never as argument values visible in `ps`.
 */
import { readFileSync } from "node:fs";
import { type BackupSettings, Inputs, readBackupSettings } from "../config/inputs.js";
import { InputError } from "../errors.js";
import { type OptionSpecs, optionalString, type ParsedOptions, stringList } from "./args.js";

export const lookerOptionSpecs: OptionSpecs = {
  consistency: {
    type: "string",
    placeholder: "MODE",
    help: "auto (default: brief-stop for the internal database, live for MySQL), live, brief-stop or stopped",
  },
  "keystore-independent": {
    type: "boolean",
    help: "keystore-independent backup (stops every node; needs the CMK)",
  },
  "master-key-env": {
    type: "string",
    placeholder: "VAR",
    help: "environment variable holding the CMK (base64)",
  },
  "master-key-file": { type: "string", placeholder: "PATH", help: "CMK file on the Looker host(s)" },
  "keyfile-recipient": {
    type: "string",
    multiple: true,
    placeholder: "AGE1...",
    help: "recipient of the key file (age1... or age1pq1..., not both)",
  },
  "looker-user": {
    type: "string",
    placeholder: "USER",
    help: "user that runs Looker (default: owner of --home)",
  },
  "looker-control": {
    type: "string",
    placeholder: "MODE",
    help: "how Looker is stopped and started: auto (default: systemd when its unit is loaded), script or systemd",
  },
  "looker-unit": {
    type: "string",
    placeholder: "UNIT",
    help: "systemd unit Looker runs under (default looker.service)",
  },
  node: {
    type: "string",
    multiple: true,
    placeholder: "USER@HOST[:PORT]",
    help: "another cluster node, over SSH",
  },
  "ssh-key": { type: "string", placeholder: "FILE", help: "private key for the nodes" },
  "known-hosts": { type: "string", placeholder: "FILE", help: "known_hosts for the nodes (strict checking)" },
  "ssh-accept-new-host-keys": {
    type: "boolean",
    help: "accept unknown node host keys (changed keys are refused)",
  },
  "web-port": { type: "string", placeholder: "N", help: "Looker's web port for /alive (default 9999)" },
  "boot-timeout": {
    type: "string",
    placeholder: "SEC",
    help: "seconds to wait for /alive after a start (default 600)",
  },
  "mysql-host": {
    type: "string",
    placeholder: "HOST",
    help: "MySQL backend host (default from looker-db.yml)",
  },
  "mysql-port": { type: "string", placeholder: "N", help: "MySQL backend port" },
  "mysql-user": { type: "string", placeholder: "USER", help: "MySQL backend user" },
  "mysql-password-env": {
    type: "string",
    placeholder: "VAR",
    help: "environment variable holding the MySQL password",
  },
  "mysql-database": { type: "string", placeholder: "DB", help: "MySQL backend database" },
  "quiet-window": {
    type: "string",
    placeholder: "HH:MM-HH:MM",
    help: "hours in which Looker may be stopped",
  },
  "quiet-window-time-zone": {
    type: "string",
    placeholder: "TZ",
    help: "IANA time zone of the quiet window (UTC)",
  },
  "force-outside-window": { type: "boolean", help: "stop Looker even outside the quiet window" },
  "pre-command": {
    type: "string",
    placeholder: "CMD",
    help: "shell command before the backup (failure aborts)",
  },
  "looker-env": {
    type: "string",
    multiple: true,
    placeholder: "NAME[=VALUE]",
    help: "environment for Looker's commands and the pre/post commands (repeatable)",
  },
  "post-command": {
    type: "string",
    placeholder: "CMD",
    help: "shell command after the backup, also after a failure",
  },
};

/** Flags whose action input of the same meaning has another name (secrets come indirectly on the command line). */
const FLAG_OF_INPUT: Record<string, string> = {
  [Inputs.MasterKey]: "--master-key-env",
  [Inputs.MysqlPassword]: "--mysql-password-env",
  [Inputs.KeyfileRecipients]: "--keyfile-recipient",
  [Inputs.Nodes]: "--node",
  [Inputs.SshKey]: "--ssh-key",
};

export type LookerSettings = Pick<
  BackupSettings,
  | "consistency"
  | "keystoreIndependent"
  | "masterKey"
  | "keyfileRecipients"
  | "lookerUser"
  | "lookerControl"
  | "lookerUnit"
  | "nodes"
  | "sshKey"
  | "knownHosts"
  | "acceptNewHostKeys"
  | "webPort"
  | "bootTimeoutMs"
  | "mysql"
  | "quietWindow"
  | "forceOutsideWindow"
  | "preCommand"
  | "postCommand"
  | "lookerEnv"
  | "signingKey"
>;

/** Reads the Looker options through the action's validator; errors name the flag, not the input. */
export function lookerSettingsFrom(
  values: ParsedOptions,
  home: string,
  recipients: readonly string[],
): LookerSettings {
  const read = (name: string): string => {
    switch (name) {
      case Inputs.Recipients:
        return recipients.join("\n");
      case Inputs.Passphrase:
        return recipients.length === 0 ? "passphrase-set" : "";
      case Inputs.Home:
        return home;
      case Inputs.Store:
        return "dir";
      case Inputs.StoreDir:
        return "/";
      case Inputs.Instance:
        return "cli";
      case Inputs.MasterKey:
        return fromEnv(values, "master-key-env");
      case Inputs.MysqlPassword:
        return fromEnv(values, "mysql-password-env");
      case Inputs.KeyfileRecipients:
        return stringList(values, "keyfile-recipient").join("\n");
      case Inputs.Nodes:
        return stringList(values, "node").join("\n");
      case Inputs.LookerEnv:
        return stringList(values, "looker-env").join("\n");
      case Inputs.SshKey:
      case Inputs.KnownHosts:
      case Inputs.SigningKey:
        return fileContent(values, name);
      default: {
        const value = values[name];
        return value === true ? "true" : typeof value === "string" ? value : "";
      }
    }
  };
  try {
    return readBackupSettings(read);
  } catch (error) {
    if (!(error instanceof InputError)) throw error;
    throw new InputError(relabel(error.message), error.hint, error.cause);
  }
}

function relabel(message: string): string {
  return message.replace(/input '([a-z-]+)'/g, (_, name: string) => FLAG_OF_INPUT[name] ?? `--${name}`);
}

function fromEnv(values: ParsedOptions, flag: string): string {
  const variable = optionalString(values, flag);
  if (variable === undefined) return "";
  const value = process.env[variable];
  if (!value)
    throw new InputError(
      `--${flag}: environment variable ${variable} is empty or unset`,
      `export ${variable} first`,
    );
  return value;
}

function fileContent(values: ParsedOptions, flag: string): string {
  const file = optionalString(values, flag);
  if (file === undefined) return "";
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    throw new InputError(`--${flag}: cannot read ${file}: ${(error as Error).message}`, "check the path");
  }
}
