/**
 * The backup action's main step: inputs -> settings -> run -> report (outputs, job summary, exit code).
 */
import * as core from "@actions/core";
import { type BackupSettings, Outputs, readBackupSettings } from "../config/inputs.js";
import { type LookerJobResult, runLookerBackup } from "../engine/looker-job.js";
import { CancelledError, describeError, ExitCode, exitCodeOf, LookerError } from "../errors.js";
import { connectNodes } from "../looker/nodes.js";
import {
  type CatalogSnapshot,
  type ChangeReport,
  compareSnapshots,
  snapshotOf,
} from "../report/change-report.js";
import { ProgressReporter } from "../report/progress.js";
import { backupSummaryMarkdown } from "../report/summary.js";
import { keyfileNameFor } from "../store/archive-name.js";
import { ArtifactStore } from "../store/artifact-store.js";
import { DirStore } from "../store/dir-store.js";
import type { Store } from "../store/store.js";
import { catalogCacheAvailable, restorePreviousSnapshot, savePreviousSnapshot } from "./catalog-cache.js";
import { maskSecretInputs } from "./secrets.js";
import { saveStopRecord } from "./state.js";

/**
 * How long main may take to wind down after SIGINT/SIGTERM. The runner sends SIGTERM 7.5 s after SIGINT and kills
 * the process tree 2.5 s after that (actions/runner, ProcessInvoker): what is still in flight after this (a `looker
 * stop` that takes its 20 s, say) is abandoned, and the post step starts every node the stop record names.
 */
const CANCEL_GRACE_MS = 2000;

export async function runBackupAction(): Promise<void> {
  maskSecretInputs();
  const controller = new AbortController();
  const onSignal = () => {
    if (controller.signal.aborted) return;
    core.info("cancel received: stopping the backup; the post step starts what this run stopped");
    controller.abort(new CancelledError("cancelled"));
    setTimeout(() => {
      core.setFailed(
        `cancelled; gave up waiting after ${CANCEL_GRACE_MS} ms: the post step starts every Looker node this run stopped`,
      );
      process.exit(ExitCode.Cancelled);
    }, CANCEL_GRACE_MS).unref();
  };
  // `on`, not `once`: the runner's SIGTERM follows its SIGINT, and must not kill the step before it winds down.
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    const settings = readBackupSettings((name) => core.getInput(name));
    const exitCode = await backup(settings, controller.signal);
    process.exitCode = exitCode;
  } catch (error) {
    reportFailure(error, controller.signal.aborted);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

async function backup(settings: BackupSettings, signal: AbortSignal): Promise<number> {
  const store = storeFor(settings);
  const cacheAvailable = catalogCacheAvailable();
  if (settings.skipIfUnchanged && !cacheAvailable) {
    core.warning(
      "skip-if-unchanged needs the Actions cache service, which this runner lacks; backing up anyway",
    );
  }
  const previous = await restorePreviousSnapshot(settings.instance);
  let changes: ChangeReport | undefined;
  let snapshot: CatalogSnapshot | undefined;
  const connected = await core.group("Connecting to Looker nodes", () =>
    connectNodes(settings, (l) => core.info(l)),
  );
  const progress = new ProgressReporter("backup", (line) => core.info(line));
  let result: LookerJobResult;
  try {
    result = await core.group("Backup", () =>
      runLookerBackup({
        ...settings,
        store,
        nodes: connected.nodes,
        retention:
          settings.store.kind === "dir" && settings.store.keepLast
            ? { keepLast: settings.store.keepLast }
            : undefined,
        onStopRecord: saveStopRecord,
        leaveStoppedOnCancel: true,
        onProgress: (p) => progress.update(p.bytesRead, p.bytesTotal),
        log: (line) => core.info(line),
        signal,
        shouldCommit: async (catalog, name) => {
          snapshot = snapshotOf(name, new Date(), catalog);
          if (!cacheAvailable) return true;
          changes = compareSnapshots(previous, snapshot);
          return !(settings.skipIfUnchanged && changes.unchanged);
        },
      }),
    );
  } finally {
    await connected.close();
  }
  if (snapshot && result.archive) await savePreviousSnapshot(settings.instance, snapshot);
  setOutputs(settings, result, store);
  await writeSummary(settings, result, changes);
  for (const warning of result.warnings.slice(0, 50)) core.warning(warning);
  if (!result.archive)
    core.notice(`nothing changed since ${changes?.previousArchive}; no new backup was uploaded`);
  // Warnings (files changing under a live backup) do not fail a scheduled job; they are annotated and counted.
  return ExitCode.Ok;
}

function storeFor(settings: BackupSettings): Store {
  if (settings.store.kind === "dir") return new DirStore(settings.store.directory);
  return new ArtifactStore({ retentionDays: settings.store.retentionDays });
}

function setOutputs(settings: BackupSettings, result: LookerJobResult, store: Store): void {
  const uploaded = result.archive;
  core.setOutput(Outputs.Skipped, String(uploaded === undefined));
  // A skipped run stored nothing: no name or digest a later step could mistake for an archive it can download.
  core.setOutput(Outputs.ArchiveName, uploaded ? result.archiveName : "");
  core.setOutput(Outputs.Sha256, uploaded ? result.sha256 : "");
  core.setOutput(Outputs.Bytes, uploaded ? String(result.bytesOut) : "0");
  core.setOutput(Outputs.BytesIn, String(result.bytesIn));
  core.setOutput(Outputs.Files, String(result.files));
  core.setOutput(Outputs.DurationMs, String(result.durationMs));
  core.setOutput(Outputs.DowntimeMs, String(result.downtimeMs));
  core.setOutput(Outputs.Warnings, String(result.warnings.length));
  if (store instanceof ArtifactStore && uploaded)
    core.setOutput(Outputs.ArtifactId, String(store.artifactIdOf(uploaded.name) ?? ""));
  if (settings.keystoreIndependent && uploaded)
    core.setOutput(Outputs.KeyfileArtifactName, keyfileNameFor(result.archiveName));
}

async function writeSummary(
  settings: BackupSettings,
  result: LookerJobResult,
  changes: ChangeReport | undefined,
) {
  const markdown = backupSummaryMarkdown({
    instance: settings.instance,
    archiveName: result.archiveName,
    ...(result.archive ? { location: result.archive.location } : {}),
    sha256: result.sha256,
    bytesIn: result.bytesIn,
    bytesOut: result.bytesOut,
    files: result.files,
    durationMs: result.durationMs,
    downtimeMs: result.downtimeMs,
    consistency: result.consistency,
    keystoreIndependent: settings.keystoreIndependent,
    ...(settings.keystoreIndependent ? { keyfileName: keyfileNameFor(result.archiveName) } : {}),
    tallies: result.selection.tallies,
    warnings: result.warnings,
    ...(changes ? { changes } : {}),
    skipped: result.archive === undefined,
    ...(result.mysqlDatabase ? { mysqlDatabase: result.mysqlDatabase } : {}),
  });
  await core.summary.addRaw(markdown).write();
}

function reportFailure(error: unknown, aborted: boolean): void {
  // A Looker that failed to come back outranks the cancellation that led there: exit 5, with the log.
  const cancelled = aborted && !(error instanceof LookerError);
  const code = cancelled ? ExitCode.Cancelled : exitCodeOf(error);
  core.setFailed(
    cancelled ? "cancelled; the post step starts every Looker node this run stopped" : describeError(error),
  );
  if (error instanceof LookerError && error.logTail) {
    core.startGroup("Looker log (last lines)");
    core.info(error.logTail);
    core.endGroup();
  }
  process.exitCode = code;
  void core.summary
    .addRaw(
      `## Looker backup failed\n\n${describeError(error).replace(/\n/g, "  \n")}\n\nExit code ${code}.\n`,
    )
    .write()
    .catch(() => undefined);
}
