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
import { type BackupLocation, DRILL_SECRET_INPUTS, readDrillSettings } from "../config/drill-settings.js";
import { actionInputs } from "../config/source.js";
import { runDrill } from "../drill/drill.js";
import { type DrillReport, drillSummaryMarkdown } from "../drill/report.js";
import { NOT_CHECKED_WARNING } from "../engine/authenticity.js";
import { describeError, exitCodeOf, InputError } from "../errors.js";
import { ProgressReporter } from "../report/progress.js";
import { keyfileNameFor, signatureNameFor } from "../store/archive-name.js";
import { findNewestBackupArtifact } from "../store/artifact-find.js";
import { ArtifactStore } from "../store/artifact-store.js";
import { DirStore } from "../store/dir-store.js";
import { keepDrillHistory } from "./drill-history.js";
import { maskValue } from "./secrets.js";

export async function runRestoreAction(): Promise<void> {
  for (const name of DRILL_SECRET_INPUTS) maskValue(core.getInput(name));
  // A cancelled job (the runner's SIGINT, then SIGTERM) stops the drill's step under way; its teardown still runs,
  // so a provisioned drill host is not left running (node's default would end the process at once).
  const controller = new AbortController();
  const onSignal = () => {
    if (controller.signal.aborted) return;
    core.info("cancel received: stopping the drill; its teardown runs");
    controller.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const scratch = await mkdtemp(join(process.env.RUNNER_TEMP || tmpdir(), "looker-drill-"));
  try {
    // Every input is checked before the download: a typo should not cost a multi-GB transfer.
    const { backup, githubToken, ...drill } = readDrillSettings(actionInputs((name) => core.getInput(name)));
    if (!drill.trustedSigners) core.warning(NOT_CHECKED_WARNING);
    const source = await fetchBackup(backup, githubToken ?? "", scratch);
    // The Actions log is no terminal: a line per step, and while the archive is read every 10 s or each tenth.
    const progress = new ProgressReporter("drill", (text) => core.info(text.replace(/\n$/, "")), {
      tty: false,
    });
    const report = await runDrill({
      ...drill,
      archive: source.archive,
      ...(source.keyfile ? { keyfile: source.keyfile } : {}),
      ...(source.signature ? { signature: source.signature } : {}),
      log: (line) => core.info(line),
      progress,
      signal: controller.signal,
    }).finally(() => progress.finish());
    const instance = backup.kind === "file" ? undefined : backup.instance;
    await publish(report, instance ?? String(report.backup.instance ?? "looker"), githubToken ?? "");
    if (report.result !== "passed") core.setFailed(`drill failed: ${report.error ?? "see the report"}`);
    process.exitCode = report.exitCode;
  } catch (error) {
    core.setFailed(describeError(error));
    process.exitCode = exitCodeOf(error);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await rm(scratch, { recursive: true, force: true });
  }
}

interface FetchedBackup {
  readonly archive: string;
  readonly keyfile?: string;
  /** `<archive>.sig` when the run stored one (a dir store keeps it beside the archive, where the drill looks). */
  readonly signature?: string;
}

async function fetchBackup(location: BackupLocation, token: string, scratch: string): Promise<FetchedBackup> {
  if (location.kind === "file") return { archive: location.path };
  if (location.kind === "dir") {
    const { directory, instance } = location;
    const [newest] = await new DirStore(directory).list(instance);
    if (!newest)
      throw new InputError(
        `no archive${instance ? ` of ${instance}` : ""} in ${directory}`,
        "run a backup first",
      );
    return { archive: newest.location };
  }
  const { owner, repo } = location;
  const found = await findNewestBackupArtifact({
    token,
    owner,
    repo,
    workflow: location.workflow,
    ...(location.branch ? { branch: location.branch } : {}),
    ...(location.runId === undefined ? {} : { runId: location.runId }),
    ...(location.artifactName ? { artifactName: location.artifactName } : {}),
    ...(location.instance ? { instance: location.instance } : {}),
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
