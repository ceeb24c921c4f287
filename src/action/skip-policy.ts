/**
 * Whether skip-if-unchanged may skip this run. Unchanged content is not enough: the backup that stands in for this
 * one must still exist, and stay long enough. An instance unchanged for longer than the artifacts' retention would
 * otherwise lose its last artifact and have no backup at all.
 */
import type { CatalogSnapshot, ChangeReport, StoredReference } from "../report/change-report.js";

export interface SkipContext {
  readonly now: Date;
  /** The artifacts' retention; undefined for a directory store (nothing expires there by itself). */
  readonly retentionDays: number | undefined;
  /** Whether the stored archive can still be found; rejects or resolves false when it cannot be confirmed. */
  readonly stillStored: (stored: StoredReference) => Promise<boolean>;
}

export interface SkipVerdict {
  readonly skip: boolean;
  /** Why not, when there were no changes but the run backs up anyway. */
  readonly reason?: string;
}

export async function skipVerdict(
  previous: CatalogSnapshot | undefined,
  changes: ChangeReport,
  context: SkipContext,
): Promise<SkipVerdict> {
  if (previous === undefined || !changes.unchanged) return { skip: false };
  const ageDays = (context.now.getTime() - Date.parse(previous.createdAt)) / 86_400_000;
  if (!(ageDays >= 0)) return { skip: false, reason: `the time of ${previous.archive} is not known` };
  if (context.retentionDays !== undefined && ageDays > context.retentionDays / 2) {
    return {
      skip: false,
      reason: `${previous.archive} is ${ageDays.toFixed(1)} days old, over half the ${context.retentionDays}-day retention`,
    };
  }
  if (previous.stored === undefined)
    return { skip: false, reason: `where ${previous.archive} was stored is not recorded` };
  const found = await context.stillStored(previous.stored).catch(() => false);
  if (!found) return { skip: false, reason: `${previous.archive} can no longer be found` };
  return { skip: true };
}
