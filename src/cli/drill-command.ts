/**
 * `looker-backup drill`: restore the newest (or a given) backup onto a fresh host or an empty directory, boot
 * Looker there, prove it answers, and write the evidence (JSON report, Markdown summary, history for a trend).
 * Secrets (CMK, API secret, drill database password) come from environment variables named by flags, never argv.
 */
import { appendFile, readFile, writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { loadIdentities } from "../config/keys.js";
import { type DrillRequest, type DrillTargetSpec, runDrill } from "../drill/drill.js";
import type { UrlCheck } from "../drill/http-checks.js";
import { type DrillReport, drillSummaryMarkdown, isDrillReport } from "../drill/report.js";
import { type ExitCode, InputError } from "../errors.js";
import type { MasterKey } from "../looker/master-key.js";
import { type MysqlConnection, validateMysqlConnection } from "../mysql/connection.js";
import { formatBytes, formatDuration } from "../runtime/format.js";
import { validateInstanceName } from "../store/archive-name.js";
import { DirStore } from "../store/dir-store.js";
import { integerOption, optionalString, type ParsedOptions, stringList } from "./args.js";
import type { Command, CommandContext } from "./command.js";
import { decryptionKeysFrom, trustedSignersFrom, trustedSignersOption } from "./key-options.js";

const NAME = "drill";
const port = (help: string) => ({ type: "string", placeholder: "N", help }) as const;
const envVar = (help: string) => ({ type: "string", placeholder: "VAR", help }) as const;

export const drillCommand: Command = {
  spec: {
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
      "target-port": port("its SSH port (default 22)"),
      "target-user": { type: "string", placeholder: "USER", help: "SSH user; must be root (default root)" },
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
        help: "how long the target may take to answer SSH (default 300)",
      },
      "target-dir": {
        type: "string",
        placeholder: "DIR",
        help: "restore into this empty local directory instead (no SSH)",
      },
      "master-key-env": envVar(
        "the drill host's new CMK is in this environment variable (LKR_MASTER_KEY_ENV)",
      ),
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
        help: "how long Looker may take to answer /alive (default 600)",
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
      "drill-mysql-port": port("its port (default 3306)"),
      "drill-mysql-user": { type: "string", placeholder: "USER", help: "its user" },
      "drill-mysql-database": {
        type: "string",
        placeholder: "NAME",
        help: "the drill's own database, dropped and re-created by every drill; never production's",
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
      quiet: { type: "boolean", short: "q", help: "no progress lines on stderr" },
    },
  },
  async run(values, context) {
    const request = await drillRequest(values, context);
    const history = await readHistory(optionalString(values, "history"));
    const report = await runDrill(request);
    await writeEvidence(values, report, history);
    if (values.json) context.stdout(`${JSON.stringify(report)}\n`);
    else context.stdout(humanSummary(report));
    return report.exitCode as ExitCode;
  },
};

async function drillRequest(values: ParsedOptions, context: CommandContext): Promise<DrillRequest> {
  const archive = await chooseArchive(values);
  const keys = await decryptionKeysFrom(values, NAME);
  const trustedSigners = await trustedSignersFrom(values, NAME);
  const keyfileIdentityFiles = stringList(values, "keyfile-identity");
  const keyfileIdentities =
    keyfileIdentityFiles.length > 0
      ? await loadIdentities(keyfileIdentityFiles, `${NAME}: --keyfile-identity`)
      : undefined;
  const apiClientId = optionalString(values, "api-client-id");
  const bootTimeout = integerOption(values, "boot-timeout", NAME, { min: 1, max: 86_400 });
  const keyfile = optionalString(values, "keyfile");
  const drillMysql = drillMysqlOf(values);
  const quiet = Boolean(values.quiet || values.json);
  return {
    archive,
    ...(keyfile ? { keyfile: resolve(keyfile) } : {}),
    keys,
    ...optional("trustedSigners", trustedSigners),
    ...(keyfileIdentities ? { keyfileIdentities } : {}),
    target: await targetOf(values),
    ...optional("masterKey", masterKeyOf(values)),
    ...optional("webPort", integerOption(values, "web-port", NAME, { min: 1, max: 65_535 })),
    ...optional("apiPort", integerOption(values, "api-port", NAME, { min: 1, max: 65_535 })),
    ...optional("bootTimeoutMs", bootTimeout === undefined ? undefined : bootTimeout * 1000),
    ...optional(
      "api",
      apiClientId
        ? { clientId: apiClientId, clientSecret: secretFromEnv(values, "api-client-secret-env", true)! }
        : undefined,
    ),
    checks: stringList(values, "check").map(parseCheck),
    ...optional("drillMysql", drillMysql),
    ...optional("provisionCommand", optionalString(values, "provision-command")),
    ...optional("teardownCommand", optionalString(values, "teardown-command")),
    keepRunning: Boolean(values["keep-running"]),
    log: quiet ? () => {} : (line) => context.stderr(`drill: ${line}\n`),
    ...optional("signal", context.signal),
  };
}

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

async function chooseArchive(values: ParsedOptions): Promise<string> {
  const archive = optionalString(values, "archive");
  const storeDir = optionalString(values, "store-dir");
  if ((archive === undefined) === (storeDir === undefined)) {
    throw new InputError(
      `${NAME}: give exactly one of --archive or --store-dir`,
      `see looker-backup ${NAME} --help`,
    );
  }
  if (archive !== undefined) return resolve(archive);
  const instance = optionalString(values, "instance");
  const store = new DirStore(resolve(storeDir!));
  const newest = (await store.list(instance === undefined ? undefined : validateInstanceName(instance)))[0];
  if (!newest) {
    throw new InputError(
      `${NAME}: no archives${instance ? ` of ${instance}` : ""} in ${store.directory}`,
      "check --store-dir and --instance",
    );
  }
  return newest.location;
}

async function targetOf(values: ParsedOptions): Promise<DrillTargetSpec> {
  const dir = optionalString(values, "target-dir");
  const host = optionalString(values, "target-host");
  const provisioned = optionalString(values, "provision-command") !== undefined;
  if (dir !== undefined) {
    if (host !== undefined || provisioned) {
      throw new InputError(
        `${NAME}: --target-dir cannot be combined with --target-host or --provision-command`,
      );
    }
    return { kind: "dir", dir: resolve(dir) };
  }
  if (host === undefined && !provisioned) {
    throw new InputError(
      `${NAME}: give --target-host (or --provision-command) or --target-dir`,
      `see looker-backup ${NAME} --help`,
    );
  }
  const sshKey = optionalString(values, "ssh-key");
  const knownHosts = optionalString(values, "known-hosts");
  if (!sshKey || !knownHosts) {
    throw new InputError(
      `${NAME}: an SSH target needs --ssh-key and --known-hosts`,
      "strict host key checking is not optional",
    );
  }
  const sshTimeout = integerOption(values, "ssh-timeout", NAME, { min: 1, max: 86_400 });
  const targetPort = integerOption(values, "target-port", NAME, { min: 1, max: 65_535 });
  const user = optionalString(values, "target-user");
  return {
    kind: "ssh",
    ...optional("host", host),
    ...optional("port", targetPort),
    ...optional("user", user),
    privateKey: await readInput(sshKey, "--ssh-key"),
    knownHosts: await readInput(knownHosts, "--known-hosts"),
    ...optional("sshTimeoutMs", sshTimeout === undefined ? undefined : sshTimeout * 1000),
  };
}

function masterKeyOf(values: ParsedOptions): MasterKey | undefined {
  const file = optionalString(values, "master-key-file");
  const variable = optionalString(values, "master-key-env");
  if (file !== undefined && variable !== undefined) {
    throw new InputError(`${NAME}: give --master-key-env or --master-key-file, not both`);
  }
  if (file !== undefined) return { kind: "file", path: file };
  if (variable !== undefined) return { kind: "env", value: secretFromEnv(values, "master-key-env", true)! };
  return undefined;
}

function drillMysqlOf(values: ParsedOptions): MysqlConnection | undefined {
  const host = optionalString(values, "drill-mysql-host");
  const user = optionalString(values, "drill-mysql-user");
  const database = optionalString(values, "drill-mysql-database");
  if (host === undefined && user === undefined && database === undefined) return undefined;
  if (!host || !user || !database) {
    throw new InputError(
      `${NAME}: the drill database needs --drill-mysql-host, --drill-mysql-user and --drill-mysql-database`,
      "give all three (and --drill-mysql-password-env)",
    );
  }
  return validateMysqlConnection({
    host,
    port: integerOption(values, "drill-mysql-port", NAME, { min: 1, max: 65_535 }) ?? 3306,
    user,
    password: secretFromEnv(values, "drill-mysql-password-env", false) ?? "",
    database,
  });
}

/** The flag names an environment variable; the secret itself never passes through argv. */
function secretFromEnv(values: ParsedOptions, flag: string, required: boolean): string | undefined {
  const variable = optionalString(values, flag);
  if (variable === undefined) {
    if (required)
      throw new InputError(
        `${NAME}: --${flag} is required here`,
        `name the environment variable holding the secret`,
      );
    return undefined;
  }
  const value = process.env[variable];
  if (value === undefined || value === "") {
    throw new InputError(
      `${NAME}: --${flag}: environment variable ${variable} is empty or unset`,
      `export ${variable} first`,
    );
  }
  return value;
}

function parseCheck(text: string): UrlCheck {
  const match = /^(\/\S*)=(\d{3})$/.exec(text);
  if (!match)
    throw new InputError(`${NAME}: --check '${text}' is not PATH=STATUS`, "e.g. --check /alive=200");
  return { path: match[1]!, status: Number(match[2]) };
}

async function readInput(file: string, flag: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (error) {
    throw new InputError(
      `${NAME}: cannot read ${flag} ${file}: ${(error as Error).message}`,
      "check the path",
      error,
    );
  }
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
