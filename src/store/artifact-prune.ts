/**
 * Retention for the artifact store: the keep- rules (retention.ts: restic's semantics, and the size check before
 * pruning) applied to one instance's backup artifacts across every workflow run of the repository, and what they no
 * longer keep deleted through the REST API with its companions (`.sig`, key file, catalog sidecar). Artifacts still
 * expire after their own retention-days; this only removes superseded ones sooner. Deleting needs `actions: write`.
 */
import { InputError, type LookerBackupError, RateLimitError } from "../errors.js";
import { parseArchiveName } from "./archive-name.js";
import {
  artifactLocation,
  type BackupArtifact,
  GitHubApi,
  type ListBackupArtifactsRequest,
} from "./artifact-find.js";
import { archivesToPrune, pruneRefusal } from "./retention.js";
import type { RetentionPolicy } from "./store.js";

export interface PruneBackupArtifactsRequest extends ListBackupArtifactsRequest {
  readonly instance: string;
  readonly policy: RetentionPolicy;
  /** The moment keep-days counts back from. Default now. */
  readonly now?: Date;
  /** Decide and report, delete nothing (needs only `actions: read`). */
  readonly dryRun?: boolean;
  /**
   * The archive this run just uploaded: counted even before GitHub's listing shows it, so that the size check
   * compares it with the one before it and the rules count it as the newest.
   */
  readonly justUploaded?: {
    readonly id: number;
    readonly name: string;
    readonly size: number;
    readonly runId: number;
  };
  /**
   * Deletes at most this many archives (each with its companions), the oldest first; the others are left for a later
   * call. Default: all. Deletions are a second apart (GitHub's advice), and each counts against the rate limit.
   */
  readonly maxArchives?: number;
  /** Says what was deleted. */
  readonly log?: (line: string) => void;
}

export interface ArtifactPruneResult {
  /** The instance's backups as listed, newest first. */
  readonly archives: readonly BackupArtifact[];
  /** What the policy drops, newest first; none after a refusal. */
  readonly doomed: readonly BackupArtifact[];
  /** Deleted, companions first, then the archive; none in a dry run. */
  readonly removed: readonly BackupArtifact[];
  /** Dropped by the policy but still there (beyond maxArchives, or after a failed deletion): a later call retries. */
  readonly left: readonly BackupArtifact[];
  /** The size check's warning; nothing was deleted. */
  readonly refusal: string | undefined;
  /** Why deleting stopped, one line naming what to fix; undefined when nothing failed. */
  readonly warning: string | undefined;
  /** The error behind the warning: an InputError when the token may not delete, a RateLimitError, ... */
  readonly stoppedBy: LookerBackupError | Error | undefined;
  /** The listing did not reach the repository's oldest artifacts: older backups, if any, were not considered. */
  readonly truncated: boolean;
}

/**
 * Lists the instance's backups across runs, decides with the policy, and deletes what it drops, oldest first: each
 * archive's companions, then the archive, so that a failure leaves the archive listed and a later call retries it
 * (nothing is left without the archive it belongs to). The first failed deletion stops the deletions, with a warning;
 * what it left stays as it was. Listing errors (no token, `actions: read` missing, rate limit) are thrown.
 */
export async function pruneBackupArtifacts(
  request: PruneBackupArtifactsRequest,
): Promise<ArtifactPruneResult> {
  const api = new GitHubApi(request);
  const listing = await api.backupArtifacts(request);
  const archives = withJustUploaded(listing.archives, request);
  const refusal = pruneRefusal(archives, request.policy);
  const doomed =
    refusal === undefined ? archivesToPrune(archives, request.policy, request.now ?? new Date()) : [];
  const decided = { archives, doomed, refusal, truncated: listing.truncated };
  if (request.dryRun || doomed.length === 0) {
    return { ...decided, removed: [], left: [], warning: undefined, stoppedBy: undefined };
  }
  const log = request.log ?? (() => {});
  const oldestFirst = [...doomed].reverse();
  const budget = Math.min(oldestFirst.length, request.maxArchives ?? oldestFirst.length);
  const removed: BackupArtifact[] = [];
  let stoppedBy: Error | undefined;
  let failedOn: string | undefined;
  for (const archive of oldestFirst.slice(0, budget)) {
    try {
      for (const companion of archive.companions) {
        failedOn = `${companion.name} (artifact ${companion.id})`;
        await api.deleteArtifact(companion.id);
      }
      failedOn = `${archive.name} (${archive.location})`;
      await api.deleteArtifact(archive.id);
    } catch (error) {
      stoppedBy = error instanceof Error ? error : new Error(String(error));
      break;
    }
    removed.push(archive);
    const companions = archive.companions.map((companion) => companion.name);
    log(
      `deleted ${archive.name} (${archive.location}, ${archive.createdAt.toISOString()})` +
        (companions.length > 0 ? ` and ${companions.join(", ")}` : ""),
    );
  }
  const left = doomed.filter((archive) => !removed.includes(archive));
  return {
    ...decided,
    removed,
    left,
    warning:
      stoppedBy && failedOn ? failureWarning(stoppedBy, failedOn, removed.length, doomed.length) : undefined,
    stoppedBy,
  };
}

/** The listing, with the archive this run uploaded added when GitHub does not list it yet. */
function withJustUploaded(
  listed: readonly BackupArtifact[],
  request: PruneBackupArtifactsRequest,
): BackupArtifact[] {
  const uploaded = request.justUploaded;
  const parsed = uploaded && parseArchiveName(uploaded.name);
  if (!uploaded || !parsed || parsed.instance !== request.instance) return [...listed];
  if (listed.some((archive) => archive.id === uploaded.id)) return [...listed];
  const archive: BackupArtifact = {
    ...uploaded,
    createdAt: parsed.createdAt,
    location: artifactLocation(uploaded.id, uploaded.runId),
    instance: parsed.instance,
    companions: [],
  };
  return [archive, ...listed].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || b.id - a.id);
}

/** One line: how far pruning got, what failed, and what to do about it. */
function failureWarning(error: Error, failedOn: string, removed: number, doomed: number): string {
  const progress =
    removed === 0
      ? `nothing pruned (${doomed} superseded backup(s) kept)`
      : `pruned ${removed} of ${doomed} superseded backups, then stopped`;
  const next =
    error instanceof InputError || error instanceof RateLimitError
      ? (error.hint ?? "")
      : "the next backup retries; the artifacts expire after their retention-days anyway";
  return `${progress}: deleting ${failedOn} failed: ${error.message}${next ? `; ${next}` : ""}`;
}
