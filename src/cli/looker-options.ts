/**
 * The backup command's Looker flags (consistency, keystore-independent, cluster nodes, MySQL, quiet window,
 * pre/post commands). They carry the action's inputs of the same names and mean exactly what those mean
 * (config/backup-settings.ts); only secrets arrive differently: from files or environment variables named on the
 * command line, never as argument values visible in `ps` (cli/backup.ts reads them).
 */
import {
  DEFAULT_BOOT_TIMEOUT_SECONDS,
  DEFAULT_LOOKER_UNIT,
  DEFAULT_QUIET_WINDOW_TIME_ZONE,
  DEFAULT_WEB_PORT,
} from "../defaults.js";
import type { OptionSpecs } from "./args.js";

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
    help: `systemd unit Looker runs under (default ${DEFAULT_LOOKER_UNIT})`,
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
  "web-port": {
    type: "string",
    placeholder: "N",
    help: `Looker's web port for /alive (default ${DEFAULT_WEB_PORT})`,
  },
  "boot-timeout": {
    type: "string",
    placeholder: "SEC",
    help: `seconds to wait for /alive after a start (default ${DEFAULT_BOOT_TIMEOUT_SECONDS})`,
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
    help: `IANA time zone of the quiet window (${DEFAULT_QUIET_WINDOW_TIME_ZONE})`,
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
