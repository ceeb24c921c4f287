/**
 * Keeps the previous backup's catalog snapshot per instance in the Actions cache, so each run can report what
 * changed and skip-if-unchanged can skip an identical backup. The cache is an optimisation for reporting: when it
 * is unavailable the backup still runs, with a warning.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as cache from "@actions/cache";
import * as core from "@actions/core";
import type { CatalogSnapshot } from "../report/change-report.js";

const FILE = "catalog-snapshot.json";

function keyPrefix(instance: string): string {
  return `looker-backup-catalog-${instance}-`;
}

export async function restorePreviousSnapshot(instance: string): Promise<CatalogSnapshot | undefined> {
  const dir = await mkdtemp(join(process.env.RUNNER_TEMP || tmpdir(), "lb-catalog-"));
  try {
    const hit = await cache.restoreCache([join(dir, FILE)], `${keyPrefix(instance)}none`, [
      keyPrefix(instance),
    ]);
    if (!hit) return undefined;
    const parsed = JSON.parse(await readFile(join(dir, FILE), "utf8")) as CatalogSnapshot;
    return parsed.version === 1 ? parsed : undefined;
  } catch (error) {
    core.warning(`could not read the previous catalog from the cache: ${(error as Error).message}`);
    return undefined;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function savePreviousSnapshot(instance: string, snapshot: CatalogSnapshot): Promise<void> {
  const dir = await mkdtemp(join(process.env.RUNNER_TEMP || tmpdir(), "lb-catalog-"));
  try {
    await writeFile(join(dir, FILE), JSON.stringify(snapshot), { mode: 0o600 });
    const runKey = `${process.env.GITHUB_RUN_ID ?? Date.now()}-${process.env.GITHUB_RUN_ATTEMPT ?? "1"}`;
    await cache.saveCache([join(dir, FILE)], `${keyPrefix(instance)}${runKey}`);
  } catch (error) {
    core.warning(`could not save this backup's catalog to the cache: ${(error as Error).message}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
