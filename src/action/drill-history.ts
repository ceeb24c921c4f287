/**
 * The drill history: each drill uploads its JSON report as an artifact of its own run, and the next drill reads the
 * previous ones back through the REST API. Not the Actions cache: its entries are evicted after 7 days without use
 * and are scoped by branch, so a quarterly drill would never see its history; artifacts last the repository's
 * retention (up to 400 days). The history is reporting only: whatever goes wrong here costs a warning, never the drill.
 */
import * as core from "@actions/core";
import { type DrillReport, isDrillReport } from "../drill/report.js";
import { compactUtc } from "../store/archive-name.js";
import { findRepositoryArtifacts } from "../store/artifact-find.js";
import { ArtifactStore, artifactServiceUnavailable } from "../store/artifact-store.js";

/** How many earlier drills the summary shows. */
export const HISTORY_LENGTH = 4;
/** GitHub's longest artifact retention; the repository's own limit is applied below. */
const MAX_RETENTION_DAYS = 400;

export interface DrillHistoryRequest {
  readonly instance: string;
  /** A token with `actions: read` on the current repository, to list and download earlier drills' reports. */
  readonly token: string;
  /** Where the history lives: the repository running the drill (GITHUB_REPOSITORY). */
  readonly owner: string;
  readonly repo: string;
}

export function drillArtifactPrefix(instance: string): string {
  return `looker-drill-${instance}-`;
}

/** `looker-drill-<instance>-<UTC yyyymmddThhmmssZ>.json`, timed by the drill's start. */
export function drillArtifactName(instance: string, startedAt: Date): string {
  return `${drillArtifactPrefix(instance)}${compactUtc(startedAt)}.json`;
}

/** The drill time in a drill report artifact's name of this instance; undefined for any other name. */
export function drillTimeOf(instance: string, name: string): Date | undefined {
  const prefix = drillArtifactPrefix(instance);
  if (!name.startsWith(prefix)) return undefined;
  // The time must follow the prefix at once: instance `prod` must not pick up the drills of `prod-eu`.
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z\.json$/.exec(name.slice(prefix.length));
  if (!match) return undefined;
  const [, y, mo, d, h, mi, s] = match;
  const at = new Date(`${y}-${mo}-${d}T${h}:${mi}:${s}Z`);
  return Number.isNaN(at.getTime()) ? undefined : at;
}

/**
 * Reads the last HISTORY_LENGTH drills of the instance (newest first), then uploads this drill's report. Returns the
 * earlier drills; an empty list, with a warning, when the history cannot be kept on this runner.
 */
export async function keepDrillHistory(
  report: DrillReport,
  request: DrillHistoryRequest,
): Promise<DrillReport[]> {
  const unavailable = artifactServiceUnavailable();
  if (unavailable !== undefined) {
    core.warning(`the drill history is not kept: ${unavailable}; this drill's report is only in this job`);
    return [];
  }
  const history = await previousDrills(request);
  await uploadReport(report, request.instance);
  return history;
}

async function previousDrills(request: DrillHistoryRequest): Promise<DrillReport[]> {
  let found: Awaited<ReturnType<typeof findRepositoryArtifacts>>;
  try {
    found = await findRepositoryArtifacts({
      token: request.token,
      owner: request.owner,
      repo: request.repo,
      wanted: (name) => drillTimeOf(request.instance, name) !== undefined,
      timeOf: (name) => drillTimeOf(request.instance, name),
      log: (line) => core.info(line),
    });
  } catch (error) {
    core.warning(`could not list earlier drills: ${(error as Error).message}`);
    return [];
  }
  const history: DrillReport[] = [];
  for (const artifact of found.slice(0, HISTORY_LENGTH)) {
    try {
      const store = new ArtifactStore({
        findBy: {
          token: request.token,
          workflowRunId: artifact.runId,
          repositoryOwner: request.owner,
          repositoryName: request.repo,
        },
      });
      const text = await readText(await store.open(artifact.name));
      const parsed: unknown = JSON.parse(text);
      if (!isDrillReport(parsed)) throw new Error("it is not a drill report");
      history.push(parsed);
    } catch (error) {
      core.warning(
        `earlier drill ${artifact.name} (run ${artifact.runId}) left out: ${(error as Error).message}`,
      );
    }
  }
  return history;
}

async function uploadReport(report: DrillReport, instance: string): Promise<void> {
  const name = drillArtifactName(instance, new Date(Date.parse(report.startedAt) || Date.now()));
  try {
    const store = new ArtifactStore({ retentionDays: retentionDays() });
    const pending = await store.create(name);
    const stored = await new Promise<void>((resolve, reject) =>
      pending.stream.end(`${JSON.stringify(report, null, 2)}\n`, (error?: Error | null) =>
        error ? reject(error) : resolve(),
      ),
    ).then(
      () => pending.commit(),
      async (error: unknown) => {
        await pending.abort();
        throw error;
      },
    );
    core.info(`drill report kept as artifact ${name} (id ${stored.artifactId})`);
  } catch (error) {
    core.warning(`could not keep this drill's report as artifact ${name}: ${(error as Error).message}`);
  }
}

/**
 * As long as the repository allows: the runner passes its limit as GITHUB_RETENTION_DAYS. The client would cap a
 * longer request too, but with a warning on every drill.
 */
function retentionDays(): number {
  const limit = Number.parseInt(process.env["GITHUB_RETENTION_DAYS"] ?? "", 10);
  return Number.isInteger(limit) && limit >= 1 ? Math.min(limit, MAX_RETENTION_DAYS) : MAX_RETENTION_DAYS;
}

async function readText(stream: AsyncIterable<unknown>): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}
