/**
 * The backup action's main step: inputs -> settings -> run -> report (outputs, job summary, exit code).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import * as core from "@actions/core";
import {
  type BackupSettings,
  jobSettingsOf,
  nodeSettingsOf,
  Outputs,
  readBackupSettings,
} from "../config/backup-settings.js";
import { actionInputs } from "../config/source.js";
import type { BackupSelection } from "../engine/backup.js";
import { type LookerJobResult, runLookerBackup } from "../engine/looker-job.js";
import { type PreflightCheck, PreflightError, runBackupPreflight } from "../engine/preflight.js";
import {
  CancelledError,
  describeError,
  ExitCode,
  exitCodeOf,
  LookerBackupError,
  LookerError,
} from "../errors.js";
import type { ConnectedNodes } from "../looker/nodes.js";
import {
  type CatalogSnapshot,
  type ChangeReport,
  compareSnapshots,
  type StoredReference,
  snapshotOf,
} from "../report/change-report.js";
import { ProgressReporter } from "../report/progress.js";
import { backupSummaryMarkdown, preflightTable } from "../report/summary.js";
import { keyfileNameFor } from "../store/archive-name.js";
import { artifactStillExists } from "../store/artifact-find.js";
import { pruneBackupArtifacts } from "../store/artifact-prune.js";
import { ArtifactStore } from "../store/artifact-store.js";
import { DirStore } from "../store/dir-store.js";
import type { Store } from "../store/store.js";
import { catalogCacheAvailable, restorePreviousSnapshot, savePreviousSnapshot } from "./catalog-cache.js";
import { maskSecretInputs } from "./secrets.js";
import { skipVerdict } from "./skip-policy.js";
import { saveStopRecord } from "./state.js";

/**
 * How long main may take to wind down after SIGINT/SIGTERM. The runner sends SIGTERM 7.5 s after SIGINT and kills
 * the process tree 2.5 s after that (actions/runner, ProcessInvoker): what is still in flight after this (a `looker
 * stop` that takes its 20 s, say) is abandoned, and the post step starts every node the stop record names.
 */
const CANCEL_GRACE_MS = 2000;

export async function runBackupAction(): Promise<void> {
  // duration-ms covers the whole run: preflight, connecting, the backup, the summary.
  const startedAt = performance.now();
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
    const settings = readBackupSettings(actionInputs((name) => core.getInput(name)));
    process.exitCode = await backup(settings, controller.signal, startedAt);
  } catch (error) {
    reportFailure(error, controller.signal.aborted);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

async function backup(settings: BackupSettings, signal: AbortSignal, startedAt: number): Promise<number> {
  const store = storeFor(settings);
  const { checks, connected, selection } = await core.group("Preflight", () =>
    runBackupPreflight({
      inputs: describeInputs(settings),
      xattrs: settings.xattrs,
      home: settings.home,
      consistency: settings.consistency,
      keystoreIndependent: settings.keystoreIndependent,
      quietWindow: settings.quietWindow,
      forceOutsideWindow: settings.forceOutsideWindow,
      store:
        settings.store.kind === "dir"
          ? { kind: "dir", directory: settings.store.directory, instance: settings.instance }
          : { kind: "artifact" },
      manifestFile: settings.manifestFile,
      sslFiles: settings.sslFiles,
      mysql: settings.mysql,
      // Only what the connections need: the SSH key and the CMK go there, the other secrets do not.
      nodes: nodeSettingsOf(settings.home, settings),
      log: (l) => core.info(l),
    }),
  );
  try {
    for (const row of checks) core.info(`preflight: ${row.check}: ${row.detail}`);
    return await backupAfterPreflight(settings, store, connected, selection, checks, signal, startedAt);
  } finally {
    await connected.close();
  }
}

async function backupAfterPreflight(
  settings: BackupSettings,
  store: Store,
  connected: ConnectedNodes,
  selection: BackupSelection,
  preflight: readonly PreflightCheck[],
  signal: AbortSignal,
  startedAt: number,
): Promise<number> {
  const cacheAvailable = catalogCacheAvailable();
  if (settings.skipIfUnchanged && !cacheAvailable) {
    core.warning(
      "skip-if-unchanged needs the Actions cache service, which this runner lacks; backing up anyway",
    );
  }
  const previous = await restorePreviousSnapshot(settings.instance);
  let changes: ChangeReport | undefined;
  let snapshot: CatalogSnapshot | undefined;
  let notSkippedBecause: string | undefined;
  // The Actions log is no terminal: a line every 10 s or each tenth of the selection's bytes, and one per phase.
  const progress = new ProgressReporter("backup", (text) => core.info(text.replace(/\n$/, "")), {
    tty: false,
  });
  let result = await core.group("Backup", () =>
    runLookerBackup({
      ...jobSettingsOf(settings),
      selection,
      store,
      nodes: connected.nodes,
      onStopRecord: saveStopRecord,
      leaveStoppedOnCancel: true,
      onProgress: (p) => progress.update(p.bytesRead, { total: p.bytesTotal }),
      onPhase: (phase) => progress.phase(phase),
      log: (line) => core.info(line),
      signal,
      shouldCommit: async (catalog, name) => {
        snapshot = snapshotOf(name, new Date(), catalog);
        if (!cacheAvailable) return true;
        changes = compareSnapshots(previous, snapshot);
        if (!settings.skipIfUnchanged) return true;
        const verdict = await skipVerdict(previous, changes, {
          now: new Date(),
          retentionDays:
            settings.store.kind === "artifact" ? retentionOf(settings.store.retentionDays) : undefined,
          stillStored: (stored) => stillStored(stored, settings),
        });
        notSkippedBecause = verdict.reason;
        return !verdict.skip;
      },
    }).finally(() => progress.finish()),
  );
  const artifact = uploadedArtifact(store, result);
  const pruneWarnings = await pruneArtifacts(settings, result, artifact);
  if (pruneWarnings.length > 0) result = { ...result, warnings: [...result.warnings, ...pruneWarnings] };
  if (snapshot && result.archive) {
    const stored = storedReference(store, result.archive.name, artifact);
    await savePreviousSnapshot(settings.instance, stored ? { ...snapshot, stored } : snapshot);
  }
  if (notSkippedBecause) core.notice(`nothing changed, but backing up anyway: ${notSkippedBecause}`);
  const durationMs = Math.round(performance.now() - startedAt);
  setOutputs(settings, result, artifact, durationMs);
  await writeSummary(settings, result, artifact, changes, preflight, selection, durationMs);
  annotateWarnings(result.warnings, settings.onWarnings);
  for (const notice of result.notices) core.notice(notice);
  if (!result.archive)
    core.notice(`nothing changed since ${changes?.previousArchive}; no new backup was uploaded`);
  // Not a warning like the others: the archive's internal database may not restore. Whatever on-warnings says.
  if (result.databaseChanged) {
    core.setFailed(
      "looker/.db changed while this live backup read it, so the internal database in the archive may not restore\nhint: use consistency: brief-stop (Looker stops for the seconds it takes to copy looker/.db), or stopped; live is only safe with the MySQL backend",
    );
    return ExitCode.Warnings;
  }
  if (result.warnings.length > 0 && settings.onWarnings === "error") {
    core.setFailed(
      `the backup was made, with ${result.warnings.length} warning(s), and on-warnings is error (see the job summary)`,
    );
    return ExitCode.Warnings;
  }
  return ExitCode.Ok;
}

/**
 * The keep- inputs with store artifact: after a stored backup, this instance's backup artifacts across the
 * repository's runs are listed and what the policy no longer keeps is deleted (store/artifact-prune.ts). Never fails
 * the backup: whatever goes wrong (no token, a token without `actions: write`, a rate limit) is a warning, and every
 * artifact not deleted still expires after its retention-days.
 */
async function pruneArtifacts(
  settings: BackupSettings,
  result: LookerJobResult,
  artifact: UploadedArtifact | undefined,
): Promise<string[]> {
  const retention = settings.store.kind === "artifact" ? settings.store.retention : undefined;
  if (!retention || !result.archive) return [];
  const [owner, repo] = (process.env.GITHUB_REPOSITORY ?? "").split("/");
  const runId = Number(process.env.GITHUB_RUN_ID);
  if (!settings.githubToken || !owner || !repo) {
    return [
      `nothing pruned: ${!settings.githubToken ? "github-token is empty" : "GITHUB_REPOSITORY is not set"}; the keep- inputs with store artifact delete older backup artifacts through GitHub's API, with github-token and the job's \`permissions: actions: write\``,
    ];
  }
  return core.group("Retention", async () => {
    try {
      const pruned = await pruneBackupArtifacts({
        token: settings.githubToken!,
        owner,
        repo,
        instance: settings.instance,
        policy: retention,
        ...(artifact && Number.isInteger(runId)
          ? {
              justUploaded: {
                id: artifact.id,
                name: result.archiveName,
                size: result.archive!.size,
                runId,
              },
            }
          : {}),
        maxArchives: MAX_PRUNED_PER_RUN,
        log: (line) => core.info(line),
      });
      core.info(
        `retention: ${pruned.archives.length} backup(s) of ${settings.instance} in ${owner}/${repo}; ` +
          `${pruned.removed.length} deleted, ${pruned.archives.length - pruned.doomed.length} kept` +
          (pruned.left.length > 0 ? `, ${pruned.left.length} left for the next run` : ""),
      );
      if (pruned.truncated) {
        core.info(
          "retention: the repository holds more artifacts than were listed; older backups are left to their retention-days",
        );
      }
      return [...(pruned.refusal ? [pruned.refusal] : []), ...(pruned.warning ? [pruned.warning] : [])];
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      const hint = error instanceof LookerBackupError && error.hint ? `; ${error.hint}` : "";
      return [
        `nothing pruned: listing the backup artifacts failed: ${reason}${hint} (pruning needs github-token with \`permissions: actions: write\`)`,
      ];
    }
  });
}

/**
 * Archives deleted per run at most (each with up to three companions, a second apart): a first run after enabling the
 * keep- inputs on months of backups takes a couple of minutes, not an hour of GITHUB_TOKEN's rate limit; the rest go
 * in the runs after it.
 */
const MAX_PRUNED_PER_RUN = 30;

/** The repository default (0) counts as GitHub's 90 days, the default of a new repository. */
function retentionOf(days: number): number {
  return days === 0 ? 90 : days;
}

function storedReference(
  store: Store,
  name: string,
  artifact: UploadedArtifact | undefined,
): StoredReference | undefined {
  if (artifact) {
    return {
      kind: "artifact",
      artifactId: artifact.id,
      ...(process.env.GITHUB_REPOSITORY ? { repository: process.env.GITHUB_REPOSITORY } : {}),
    };
  }
  if (store instanceof DirStore) return { kind: "dir", location: join(store.directory, name) };
  return undefined;
}

/** Whether the archive a skip would rely on is still there; without a token an artifact cannot be confirmed. */
async function stillStored(stored: StoredReference, settings: BackupSettings): Promise<boolean> {
  if (stored.kind === "dir") return existsSync(stored.location);
  const [owner, repo] = (stored.repository ?? process.env.GITHUB_REPOSITORY ?? "").split("/");
  if (!settings.githubToken || !owner || !repo) return false;
  return artifactStillExists({ token: settings.githubToken, owner, repo, artifactId: stored.artifactId });
}

/**
 * GitHub shows at most 10 warning annotations per step: the first nine are shown as they are, and one more says how
 * many others the job summary lists.
 */
const ANNOTATED_WARNINGS = 10;

function annotateWarnings(warnings: readonly string[], mode: BackupSettings["onWarnings"]): void {
  if (mode === "ignore") return;
  const shown = warnings.length > ANNOTATED_WARNINGS ? warnings.slice(0, ANNOTATED_WARNINGS - 1) : warnings;
  for (const warning of shown) core.warning(warning);
  if (warnings.length > shown.length)
    core.warning(`${warnings.length - shown.length} more warnings are listed in the job summary`);
}

function describeInputs(settings: BackupSettings): string {
  const keys = settings.passphrase ? "passphrase" : `${settings.recipients.length} recipient(s)`;
  return `${keys}; consistency ${settings.consistency}${settings.keystoreIndependent ? ", keystore-independent" : ""}; ${settings.nodes.length + 1} node(s)`;
}

function storeFor(settings: BackupSettings): Store {
  if (settings.store.kind === "dir") return new DirStore(settings.store.directory);
  return new ArtifactStore({ retentionDays: settings.store.retentionDays });
}

/** The artifact this run uploaded (store artifact), with its page when the runner says where that is. */
interface UploadedArtifact {
  readonly id: number;
  readonly url: string | undefined;
}

function uploadedArtifact(store: Store, result: LookerJobResult): UploadedArtifact | undefined {
  if (!(store instanceof ArtifactStore) || result.archive === undefined) return undefined;
  const id = store.artifactIdOf(result.archive.name);
  return id === undefined ? undefined : { id, url: artifactUrl(id) };
}

function setOutputs(
  settings: BackupSettings,
  result: LookerJobResult,
  artifact: UploadedArtifact | undefined,
  durationMs: number,
): void {
  const uploaded = result.archive;
  core.setOutput(Outputs.Skipped, String(uploaded === undefined));
  // A skipped run stored nothing: no name or digest a later step could mistake for an archive it can download.
  core.setOutput(Outputs.ArchiveName, uploaded ? result.archiveName : "");
  core.setOutput(Outputs.Sha256, uploaded ? result.sha256 : "");
  core.setOutput(Outputs.Bytes, uploaded ? String(result.bytesOut) : "0");
  core.setOutput(Outputs.BytesIn, String(result.bytesIn));
  core.setOutput(Outputs.Files, String(result.files));
  core.setOutput(Outputs.DurationMs, String(durationMs));
  core.setOutput(Outputs.DowntimeMs, String(result.downtimeMs));
  core.setOutput(Outputs.Warnings, String(result.warnings.length));
  if (artifact) {
    core.setOutput(Outputs.ArtifactId, String(artifact.id));
    core.setOutput(Outputs.ArtifactUrl, artifact.url ?? "");
  }
  if (settings.keystoreIndependent && uploaded)
    core.setOutput(Outputs.KeyfileArtifactName, keyfileNameFor(result.archiveName));
  core.setOutput(Outputs.CatalogName, result.catalogSidecar?.name ?? "");
}

/** The artifact's page, as actions/upload-artifact builds its `artifact-url` output. */
function artifactUrl(id: number): string | undefined {
  const { GITHUB_SERVER_URL: server, GITHUB_REPOSITORY: repository, GITHUB_RUN_ID: runId } = process.env;
  if (!repository || !runId) return undefined;
  return `${(server || "https://github.com").replace(/\/+$/, "")}/${repository}/actions/runs/${runId}/artifacts/${id}`;
}

async function writeSummary(
  settings: BackupSettings,
  result: LookerJobResult,
  artifact: UploadedArtifact | undefined,
  changes: ChangeReport | undefined,
  preflight: readonly PreflightCheck[],
  selection: BackupSelection,
  durationMs: number,
) {
  const url = artifact?.url;
  const markdown = backupSummaryMarkdown({
    instance: settings.instance,
    archiveName: result.archiveName,
    ...(result.archive
      ? { location: url ? `[${result.archive.location}](${url})` : result.archive.location }
      : {}),
    preflight,
    sha256: result.sha256,
    bytesIn: result.bytesIn,
    bytesOut: result.bytesOut,
    files: result.files,
    durationMs,
    downtimeMs: result.downtimeMs,
    consistency: result.consistency,
    keystoreIndependent: settings.keystoreIndependent,
    ...(settings.keystoreIndependent ? { keyfileName: keyfileNameFor(result.archiveName) } : {}),
    tallies: result.selection.tallies,
    ...(selection.measured ? { measured: selection.measured.tallies } : {}),
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
      [
        "## Looker backup failed",
        "",
        ...(error instanceof PreflightError ? preflightTable(error.checks) : []),
        describeError(error).replace(/\n/g, "  \n"),
        "",
        `Exit code ${code}.`,
        "",
      ].join("\n"),
    )
    .write()
    .catch(() => undefined);
}
