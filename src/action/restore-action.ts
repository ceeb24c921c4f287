/**
 * The restore-drill action: find the backup (newest artifact of a workflow, a given run/artifact, or a directory
 * store), download and verify it, then run the drill and report RTO, RPO and every step (outputs, summary, JSON).
 */
import { createWriteStream } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import * as core from "@actions/core";
import { absolutePath, checkedMasterKey, integer, lines } from "../config/source.js";
import { parseTrustedSigners } from "../crypto/ssh-keys.js";
import { type DrillRequest, runDrill } from "../drill/drill.js";
import { type DrillReport, drillSummaryMarkdown } from "../drill/report.js";
import { NOT_CHECKED_WARNING } from "../engine/authenticity.js";
import { describeError, exitCodeOf, InputError } from "../errors.js";
import { keyfileNameFor, signatureNameFor } from "../store/archive-name.js";
import { findNewestBackupArtifact } from "../store/artifact-find.js";
import { ArtifactStore } from "../store/artifact-store.js";
import { DirStore } from "../store/dir-store.js";
import { keepDrillHistory } from "./drill-history.js";
import { maskValue } from "./secrets.js";

const SECRETS = [
  "identity",
  "keyfile-identity",
  "ssh-key",
  "master-key",
  "api-client-secret",
  "drill-mysql-password",
];

export async function runRestoreAction(): Promise<void> {
  for (const name of SECRETS) maskValue(core.getInput(name));
  const scratch = await mkdtemp(join(process.env.RUNNER_TEMP || tmpdir(), "looker-drill-"));
  try {
    const get = (name: string) => core.getInput(name).trim();
    // Inputs that need no download are checked before one: a typo should not cost a multi-GB transfer.
    if (get("master-key")) checkedMasterKey(get("master-key"), "input 'master-key'");
    const trustedSigners = get("trusted-signers")
      ? parseTrustedSigners(core.getInput("trusted-signers"), "input 'trusted-signers'")
      : undefined;
    if (!trustedSigners) core.warning(NOT_CHECKED_WARNING);
    const source = await fetchBackup(get, scratch);
    const request = {
      ...drillRequest(get, source),
      ...(trustedSigners ? { trustedSigners } : {}),
      ...(source.signature ? { signature: source.signature } : {}),
    };
    const report = await runDrill({ ...request, log: (line) => core.info(line) });
    await publish(report, get("instance") || String(report.backup.instance ?? "looker"), get("github-token"));
    if (report.result !== "passed") core.setFailed(`drill failed: ${report.error ?? "see the report"}`);
    process.exitCode = report.exitCode;
  } catch (error) {
    core.setFailed(describeError(error));
    process.exitCode = exitCodeOf(error);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

interface FetchedBackup {
  readonly archive: string;
  readonly keyfile?: string;
  /** `<archive>.sig` when the run stored one (a dir store keeps it beside the archive, where the drill looks). */
  readonly signature?: string;
}

async function fetchBackup(get: (name: string) => string, scratch: string): Promise<FetchedBackup> {
  const instance = get("instance") || undefined;
  const storeDir = get("store-dir");
  if (storeDir) {
    const [newest] = await new DirStore(absolutePath(storeDir, "input 'store-dir'")).list(instance);
    if (!newest)
      throw new InputError(
        `no archive${instance ? ` of ${instance}` : ""} in ${storeDir}`,
        "run a backup first",
      );
    return { archive: newest.location };
  }
  const runId = get("run-id")
    ? integer(get("run-id"), "input 'run-id'", 1, Number.MAX_SAFE_INTEGER)
    : undefined;
  const { owner, repo } = repositoryOf(get("repository") || process.env.GITHUB_REPOSITORY || "");
  const token = get("github-token");
  const found = await findNewestBackupArtifact({
    token,
    owner,
    repo,
    workflow: get("workflow") || undefined,
    ...(get("branch") ? { branch: get("branch") } : {}),
    ...(runId === undefined ? {} : { runId }),
    ...(get("artifact-name") ? { artifactName: get("artifact-name") } : {}),
    ...(instance ? { instance } : {}),
    log: (line) => core.info(line),
  });
  core.info(`restoring artifact ${found.name} (id ${found.id}) from run ${found.runId} of ${owner}/${repo}`);
  const store = new ArtifactStore({
    findBy: { token, workflowRunId: found.runId, repositoryOwner: owner, repositoryName: repo },
  });
  const archive = join(scratch, found.name);
  await pipeline(await store.open(found.name), createWriteStream(archive, { mode: 0o600 }));
  // A signed backup has its signature beside it in the same run; the drill refuses the archive without one only
  // when trusted signers are configured.
  const signature = await companion(store, signatureNameFor(found.name), scratch);
  // A keystore-independent backup has its key file beside it in the same run; other backups have none.
  const keyfile = await companion(store, keyfileNameFor(found.name), scratch);
  return { archive, ...(keyfile ? { keyfile } : {}), ...(signature ? { signature } : {}) };
}

/** Downloads the artifact `name` of the same run into `scratch`, if there is one. */
async function companion(store: ArtifactStore, name: string, scratch: string): Promise<string | undefined> {
  if (!(await store.has(name))) return undefined;
  core.info(`restoring ${name} of the same run`);
  const path = join(scratch, name);
  await pipeline(await store.open(name), createWriteStream(path, { mode: 0o600 }));
  return path;
}

/** `owner/name` of the repository whose backups are restored (a drill may restore another repository's). */
function repositoryOf(value: string): { owner: string; repo: string } {
  const match = /^([A-Za-z0-9_.-]+)\/([A-Za-z0-9_.-]+)$/.exec(value.trim());
  if (!match) {
    throw new InputError(
      `repository: '${value}' is not owner/name`,
      "set repository to the repository that runs the backups, e.g. acme/looker-ops (default: this repository)",
    );
  }
  return { owner: match[1]!, repo: match[2]! };
}

function drillRequest(get: (name: string) => string, source: FetchedBackup): DrillRequest {
  const identity = core.getInput("identity");
  if (identity.trim() === "") {
    throw new InputError(
      "input 'identity' is required",
      "set it to the age identity (AGE-SECRET-KEY-1... or AGE-SECRET-KEY-PQ-1...) from a secret",
    );
  }
  const keyfileIdentity = core.getInput("keyfile-identity");
  const targetDir = get("target-dir");
  const masterKey = get("master-key");
  const mysqlHost = get("drill-mysql-host");
  const clientId = get("api-client-id");
  return {
    archive: source.archive,
    ...(source.keyfile ? { keyfile: source.keyfile } : {}),
    keys: { identities: [identity] },
    ...(keyfileIdentity ? { keyfileIdentities: [keyfileIdentity] } : {}),
    target: targetDir
      ? { kind: "dir", dir: absolutePath(targetDir, "input 'target-dir'") }
      : {
          kind: "ssh",
          ...(get("target-host") ? { host: get("target-host") } : {}),
          port: integer(get("target-port") || "22", "input 'target-port'", 1, 65535),
          user: get("target-user") || "root",
          privateKey: core.getInput("ssh-key"),
          knownHosts: core.getInput("known-hosts"),
        },
    ...(masterKey
      ? { masterKey: { kind: "env", value: checkedMasterKey(masterKey, "input 'master-key'") } }
      : {}),
    // Empty: the ports the restored lookerstart.cfg names; set: the drill rewrites its copy to use them.
    ...(get("web-port") ? { webPort: integer(get("web-port"), "input 'web-port'", 1, 65535) } : {}),
    ...(get("api-port") ? { apiPort: integer(get("api-port"), "input 'api-port'", 1, 65535) } : {}),
    bootTimeoutMs: integer(get("boot-timeout") || "600", "input 'boot-timeout'", 1, 86_400) * 1000,
    ...(clientId ? { api: { clientId, clientSecret: core.getInput("api-client-secret") } } : {}),
    checks: lines(get("checks")).map((line) => {
      const [path, status] = line.split("=");
      return { path: path ?? "/", status: integer(status ?? "200", "input 'checks'", 100, 599) };
    }),
    ...(mysqlHost
      ? {
          drillMysql: {
            host: mysqlHost,
            port: integer(get("drill-mysql-port") || "3306", "input 'drill-mysql-port'", 1, 65535),
            user: get("drill-mysql-user"),
            password: core.getInput("drill-mysql-password"),
            database: get("drill-mysql-database") || "looker_drill",
          },
        }
      : {}),
    ...(get("provision-command") ? { provisionCommand: core.getInput("provision-command") } : {}),
    ...(get("teardown-command") ? { teardownCommand: core.getInput("teardown-command") } : {}),
  };
}

/** Outputs, the JSON report, and a summary with the last drills of the instance (kept as artifacts). */
async function publish(report: DrillReport, instance: string, token: string): Promise<void> {
  const reportPath = join(process.env.RUNNER_TEMP || tmpdir(), `looker-drill-report-${Date.now()}.json`);
  await writeFile(reportPath, `${JSON.stringify(report, null, 2)}\n`);
  core.setOutput("result", report.result);
  core.setOutput("rto-ms", report.rtoMs === undefined ? "" : String(report.rtoMs));
  core.setOutput("rpo-ms", report.rpoMs === undefined ? "" : String(report.rpoMs));
  core.setOutput("archive-name", report.archive.split("/").pop() ?? "");
  core.setOutput("files-verified", String(report.filesVerified));
  core.setOutput("report", reportPath);
  // The history lives in this repository (where this drill runs), whichever repository the backup came from.
  const [owner = "", repo = ""] = (process.env.GITHUB_REPOSITORY ?? "/").split("/");
  const history = await keepDrillHistory(report, { instance, token, owner, repo });
  await core.summary.addRaw(drillSummaryMarkdown(report, history)).write();
}
