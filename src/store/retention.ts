/**
 * Which archives a retention policy keeps, with restic's semantics (`restic forget`, "Removing snapshots according to
 * a policy"): newest first, each `keep-daily N` (weekly, monthly) rule keeps the newest archive of each of the last N
 * days (ISO weeks, months) that have one; `keep-last N` the N newest; `keep-days N` every archive younger than N days.
 * An archive is kept when any rule keeps it. Days, weeks and months are UTC, as the archive names are.
 */
import type { RetentionPolicy, StoredObject } from "./store.js";

/** True when the policy would ever remove anything. */
export function prunes(policy: RetentionPolicy): boolean {
  return [policy.keepLast, policy.keepDays, policy.keepDaily, policy.keepWeekly, policy.keepMonthly].some(
    (value) => value !== undefined,
  );
}

/** The names a policy drops from a list of one instance's archives (any order), newest first. */
export function namesToPrune(
  archives: readonly StoredObject[],
  policy: RetentionPolicy,
  now: Date,
): string[] {
  return archivesToPrune(archives, policy, now).map((archive) => archive.name);
}

/**
 * The archives a policy drops, newest first: the objects themselves, so that two stored under one name (artifacts of
 * two runs) are told apart.
 */
export function archivesToPrune<T extends StoredObject>(
  archives: readonly T[],
  policy: RetentionPolicy,
  now: Date,
): T[] {
  if (!prunes(policy)) return [];
  const newestFirst = [...archives].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime());
  const kept = new Set<T>();
  for (const archive of newestFirst.slice(0, policy.keepLast ?? 0)) kept.add(archive);
  if (policy.keepDays !== undefined) {
    const cutoff = now.getTime() - policy.keepDays * 86_400_000;
    for (const archive of newestFirst) if (archive.createdAt.getTime() >= cutoff) kept.add(archive);
  }
  for (const [count, bucket] of [
    [policy.keepDaily, dayOf],
    [policy.keepWeekly, isoWeekOf],
    [policy.keepMonthly, monthOf],
  ] as const) {
    let left = count ?? 0;
    let last: string | undefined;
    for (const archive of newestFirst) {
      if (left === 0) break;
      const key = bucket(archive.createdAt);
      if (key === last) continue;
      last = key;
      kept.add(archive);
      left--;
    }
  }
  return newestFirst.filter((archive) => !kept.has(archive));
}

/**
 * The sanity check before pruning: undefined when pruning may go ahead, else the warning that says why not. The
 * newest archive is the one just made.
 */
export function pruneRefusal(archives: readonly StoredObject[], policy: RetentionPolicy): string | undefined {
  if (policy.forcePrune || archives.length < 2) return undefined;
  const [newest, previous] = [...archives].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime());
  if (newest === undefined || previous === undefined || newest.size * 2 >= previous.size) return undefined;
  return (
    `nothing pruned: the new archive ${newest.name} (${newest.size} bytes) is less than half the size of ` +
    `${previous.name} (${previous.size} bytes); check the backed-up home, or prune with --force-prune`
  );
}

function dayOf(at: Date): string {
  return at.toISOString().slice(0, 10);
}

function monthOf(at: Date): string {
  return at.toISOString().slice(0, 7);
}

/** ISO 8601 week-year and week, as restic buckets (Go's Time.ISOWeek), in UTC. */
function isoWeekOf(at: Date): string {
  const day = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate()));
  const weekday = day.getUTCDay() || 7; // Monday 1 .. Sunday 7
  day.setUTCDate(day.getUTCDate() + 4 - weekday); // the Thursday of this week decides its year
  const yearStart = Date.UTC(day.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((day.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${day.getUTCFullYear()}-W${String(week).padStart(2, "0")}`;
}
