/**
 * Keeps the previous backup's catalog snapshot per instance in the Actions cache, so each run can report what
 * changed and skip-if-unchanged can skip an identical backup. The cache is an optimisation for reporting: when it
 * is unavailable the backup still runs, with a warning.
 */
import type { CatalogSnapshot } from "../report/change-report.js";
import { cacheServiceAvailable, restoreCachedJson, saveCachedJson } from "./cache-file.js";

/** Without a cache service there is no previous catalog: no change report and no skip-if-unchanged. */
export const catalogCacheAvailable = cacheServiceAvailable;

const FILE = "catalog-snapshot.json";
const WHAT = "the previous backup's catalog";

function keyPrefix(instance: string): string {
  return `looker-backup-catalog-${instance}-`;
}

export async function restorePreviousSnapshot(instance: string): Promise<CatalogSnapshot | undefined> {
  const parsed = (await restoreCachedJson(keyPrefix(instance), FILE, WHAT)) as CatalogSnapshot | undefined;
  return parsed?.version === 1 && typeof parsed.members === "object" ? parsed : undefined;
}

export async function savePreviousSnapshot(instance: string, snapshot: CatalogSnapshot): Promise<void> {
  await saveCachedJson(keyPrefix(instance), FILE, snapshot, "this backup's catalog");
}
