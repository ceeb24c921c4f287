/**
 * `looker-backup drill`: restore the newest (or a given) backup onto a fresh host or an empty directory, boot
 * Looker there, prove it answers, and write the evidence (JSON report, Markdown summary, history for a trend).
 * Secrets (CMK, API secret, drill database password) come from environment variables named by flags, never argv.
 */
import { appendFile, readFile, writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { type BackupLocation, DrillInputs, readDrillSettings } from "../config/drill-settings.js";
import { passphraseFromEnv } from "../config/keys.js";
import type { SettingSource } from "../config/source.js";
import { parseIdentities } from "../crypto/age-keys.js";
import {
  DEFAULT_BOOT_TIMEOUT_SECONDS,
  DEFAULT_DRILL_DATABASE,
  DEFAULT_MYSQL_PORT,
  DEFAULT_SSH_PORT,
  DEFAULT_SSH_TIMEOUT_SECONDS,
  DEFAULT_TARGET_USER,
} from "../defaults.js";
import { runDrill } from "../drill/drill.js";
import { type DrillReport, drillSummaryMarkdown, isDrillReport } from "../drill/report.js";
import { type ExitCode, InputError } from "../errors.js";
import { formatBytes, formatDuration } from "../runtime/format.js";
import { DirStore } from "../store/dir-store.js";
import { type CommandSpec, optionalString, type ParsedOptions, stringList } from "./args.js";
import type { Command } from "./command.js";
import {
  fileContent,
  flagSource,
  progressFor,
  quiet,
  readFlagFile,
  secretFromEnv,
  stderrLines,
} from "./common-options.js";
import { trustedSignersOption } from "./key-options.js";

const NAME = "drill";
const port = (help: string) => ({ type: "string", placeholder: "N", help }) as const;
const envVar = (help: string) => ({ type: "string", placeholder: "VAR", help }) as const;

const spec: CommandSpec = {
  name: NAME,
  summary:
    "Restore a backup onto a fresh host (SSH) or an empty directory, boot Looker there and report RTO/RPO.",
  usage:
    "looker-backup drill (--archive FILE | --store-dir DIR [--instance NAME]) --identity FILE " +
    "(--target-host H --ssh-key FILE --known-hosts FILE | --target-dir DIR) [options]",
  options: {
    archive: { type: "string", placeholder: "FILE", help: "the .tar.zst.age archive to drill" },
    "store-dir": { type: "string", placeholder: "DIR", help: "directory store: drill its newest archive" },
    instance: {
      type: "string",
      placeholder: "NAME",
      help: "with --store-dir: only this instance's archives",
    },
    identity: {
      type: "string",
      short: "i",
      multiple: true,
      placeholder: "FILE",
      help: "age identity file for the archive",
    },
    "passphrase-env": envVar("read the archive's passphrase from this environment variable"),
    "trusted-signers": trustedSignersOption,
    "keyfile-identity": {
      type: "string",
      multiple: true,
      placeholder: "FILE",
      help: "age identity file for <archive>.keyfile.age (default: --identity)",
    },
    keyfile: {
      type: "string",
      placeholder: "FILE",
      help: "the encrypted key file (default: <archive>.keyfile.age beside it)",
    },
    "target-host": {
      type: "string",
      placeholder: "HOST",
      help: "the fresh drill host (reached over SSH as root)",
    },
    "target-port": port(`its SSH port (default ${DEFAULT_SSH_PORT})`),
    "target-user": {
      type: "string",
      placeholder: "USER",
      help: `SSH user; must be root (default ${DEFAULT_TARGET_USER})`,
    },
    "ssh-key": {
      type: "string",
      placeholder: "FILE",
      help: "unencrypted OpenSSH private key for the target",
    },
    "known-hosts": {
      type: "string",
      placeholder: "FILE",
      help: "known_hosts holding the target's host key",
    },
    "ssh-timeout": {
      type: "string",
      placeholder: "SEC",
      help: `how long the target may take to answer SSH (default ${DEFAULT_SSH_TIMEOUT_SECONDS})`,
    },
    "target-dir": {
      type: "string",
      placeholder: "DIR",
      help: "restore into this empty local directory instead (no SSH)",
    },
    "master-key-env": envVar("the drill host's new CMK is in this environment variable (LKR_MASTER_KEY_ENV)"),
    "master-key-file": {
      type: "string",
      placeholder: "PATH",
      help: "the drill host's CMK file, a path on the target (LKR_MASTER_KEY_FILE)",
    },
    "web-port": port(
      "web port for the drill (default: the restored lookerstart.cfg's; set: rewritten there)",
    ),
    "api-port": port(
      "API port for the drill (default: the restored lookerstart.cfg's; set: rewritten there)",
    ),
    "boot-timeout": {
      type: "string",
      placeholder: "SEC",
      help: `how long Looker may take to answer /alive (default ${DEFAULT_BOOT_TIMEOUT_SECONDS})`,
    },
    "api-client-id": {
      type: "string",
      placeholder: "ID",
      help: "log in to the API with this client id after boot",
    },
    "api-client-secret-env": envVar("the API client secret is in this environment variable"),
    check: {
      type: "string",
      multiple: true,
      placeholder: "PATH=STATUS",
      help: "GET PATH on the web port must answer STATUS",
    },
    "drill-mysql-host": {
      type: "string",
      placeholder: "HOST",
      help: "MySQL backend: the drill database's server (as the target reaches it)",
    },
    "drill-mysql-port": port(`its port (default ${DEFAULT_MYSQL_PORT})`),
    "drill-mysql-user": { type: "string", placeholder: "USER", help: "its user" },
    "drill-mysql-database": {
      type: "string",
      placeholder: "NAME",
      help: `the drill's own database, dropped and re-created by every drill; never production's (default ${DEFAULT_DRILL_DATABASE})`,
    },
    "drill-mysql-password-env": envVar("its password is in this environment variable"),
    "provision-command": {
      type: "string",
      placeholder: "CMD",
      help: "creates the drill host; its last stdout line is the host",
    },
    "teardown-command": {
      type: "string",
      placeholder: "CMD",
      help: "run at the end, always (LOOKER_DRILL_TARGET, LOOKER_DRILL_RESULT set)",
    },
    "keep-running": { type: "boolean", help: "leave Looker running on the target after the drill" },
    report: { type: "string", placeholder: "FILE", help: "write the JSON report here" },
    summary: {
      type: "string",
      placeholder: "FILE",
      help: "append the Markdown summary here (e.g. $GITHUB_STEP_SUMMARY)",
    },
    history: {
      type: "string",
      placeholder: "FILE",
      help: "JSON lines of earlier drills: shown as a trend, this drill appended",
    },
    json: { type: "boolean", help: "print the JSON report on stdout and nothing else there" },
    quiet,
  },
};

/** The flags that carry a drill setting under another name than the action's input. */
const FLAGS: Readonly<Record<string, string>> = {
  [DrillInputs.Passphrase]: "passphrase-env",
  [DrillInputs.MasterKey]: "master-key-env",
  [DrillInputs.ApiClientSecret]: "api-client-secret-env",
  [DrillInputs.DrillMysqlPassword]: "drill-mysql-password-env",
  [DrillInputs.Checks]: "check",
};

/** The drill settings as the flags give them: keys and secrets from the files and variables the flags name. */
export function drillFlags(values: ParsedOptions): SettingSource {
  const path = (flag: string) => () => {
    const value = optionalString(values, flag);
    return value === undefined ? "" : resolve(value);
  };
  return flagSource(spec, values, FLAGS, {
    [DrillInputs.Identity]: () => identityFiles(values, "identity"),
    [DrillInputs.KeyfileIdentity]: () => identityFiles(values, "keyfile-identity"),
    [DrillInputs.Passphrase]: () =>
      passphraseFromEnv(optionalString(values, "passphrase-env"), "--passphrase-env") ?? "",
    [DrillInputs.TrustedSigners]: () => fileContent(values, "trusted-signers"),
    [DrillInputs.SshKey]: () => fileContent(values, "ssh-key"),
    [DrillInputs.KnownHosts]: () => fileContent(values, "known-hosts"),
    [DrillInputs.MasterKey]: () => secretFromEnv(values, "master-key-env"),
    [DrillInputs.ApiClientSecret]: () => secretFromEnv(values, "api-client-secret-env"),
    [DrillInputs.DrillMysqlPassword]: () => secretFromEnv(values, "drill-mysql-password-env"),
    // Paths on the command line are relative to the working directory.
    [DrillInputs.Archive]: path("archive"),
    [DrillInputs.StoreDir]: path("store-dir"),
    [DrillInputs.Keyfile]: path("keyfile"),
    [DrillInputs.TargetDir]: path("target-dir"),
  });
}

/** The identities of every file a flag names, each file checked on its own (its lines named). */
function identityFiles(values: ParsedOptions, flag: string): string {
  return stringList(values, flag)
    .map((file) => {
      const text = readFlagFile(file, `--${flag}`);
      parseIdentities(text, file);
      return text;
    })
    .join("\n");
}

export const drillCommand: Command = {
  spec,
  async run(values, context) {
    const { backup, githubToken: _, ...drill } = readDrillSettings(drillFlags(values));
    const archive = await archiveOf(backup);
    const history = await readHistory(optionalString(values, "history"));
    const silent = Boolean(values.quiet || values.json);
    const progress = progressFor(NAME, values, context);
    const line = stderrLines(progress, context);
    const report = await runDrill({
      ...drill,
      archive,
      log: silent ? () => {} : (text) => line(`drill: ${text}`),
      ...(progress ? { progress } : {}),
      ...(context.signal ? { signal: context.signal } : {}),
    }).finally(() => progress?.finish());
    await writeEvidence(values, report, history);
    if (values.json) context.stdout(`${JSON.stringify(report)}\n`);
    else context.stdout(humanSummary(report));
    return report.exitCode as ExitCode;
  },
};

/** The archive given, or the newest of the directory store. */
async function archiveOf(backup: BackupLocation): Promise<string> {
  if (backup.kind === "file") return backup.path;
  if (backup.kind === "artifact")
    throw new InputError(`${NAME}: the command line drills local archives only`);
  const newest = (await new DirStore(backup.directory).list(backup.instance))[0];
  if (!newest) {
    throw new InputError(
      `${NAME}: no archives${backup.instance ? ` of ${backup.instance}` : ""} in ${backup.directory}`,
      "check --store-dir and --instance",
    );
  }
  return newest.location;
}

async function readHistory(file: string | undefined): Promise<DrillReport[]> {
  if (file === undefined) return [];
  const text = await readFile(file, "utf8").catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return "";
    throw new InputError(`${NAME}: cannot read --history ${file}: ${error.message}`);
  });
  const reports: DrillReport[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    try {
      const parsed = JSON.parse(line) as unknown;
      if (isDrillReport(parsed)) reports.push(parsed);
    } catch {
      // a damaged history line costs a trend point, not the drill
    }
  }
  return reports.slice(-10);
}

async function writeEvidence(
  values: ParsedOptions,
  report: DrillReport,
  history: DrillReport[],
): Promise<void> {
  const reportFile = optionalString(values, "report");
  if (reportFile) await writeFile(reportFile, `${JSON.stringify(report, null, 2)}\n`, { mode: 0o644 });
  const summaryFile = optionalString(values, "summary");
  if (summaryFile) await appendFile(summaryFile, drillSummaryMarkdown(report, history));
  const historyFile = optionalString(values, "history");
  if (historyFile) await appendFile(historyFile, `${JSON.stringify(report)}\n`);
}

function humanSummary(report: DrillReport): string {
  const lines = [
    `drill ${report.result}: ${report.archive} -> ${report.target}`,
    `RTO ${report.rtoMs === undefined ? "not reached" : formatDuration(report.rtoMs)}, RPO ${report.rpoMs === undefined ? "unknown" : formatDuration(report.rpoMs)}`,
    `restored ${formatBytes(report.bytesRestored)}, ${report.filesVerified} files verified on the target`,
  ];
  if (report.error) lines.push(`error: ${report.error}`);
  if (report.hint) lines.push(`hint: ${report.hint}`);
  if (report.logTail) lines.push("looker log tail:", report.logTail.trimEnd());
  return `${lines.join("\n")}\n`;
}
