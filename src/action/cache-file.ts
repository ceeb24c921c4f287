/**
 * One small JSON document kept between workflow runs in the Actions cache (the previous backup's catalog). The cache
 * is an optimisation for reporting: when it is unavailable the caller goes on with a warning. Entries unused for 7
 * days are evicted and entries are scoped by branch, so nothing that must last (the drill history) lives here.
 *
 * Why a fixed path: @actions/cache versions an entry by the exact path strings it holds and extracts it back to the
 * same place, so a file under a fresh mkdtemp() directory would never be found again by the next run. The file lives
 * at the same path in every run instead: a fixed directory under RUNNER_TEMP (stable on a self-hosted runner, and
 * emptied by the runner after each job). Without RUNNER_TEMP (not on a runner) a private temp dir is used and the
 * document is simply never found again.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as cache from "@actions/cache";
import * as core from "@actions/core";

const CACHE_DIR = "looker-backup-cache";

/**
 * Whether this runner has an Actions cache service at all; without one (some self-hosted or GHES setups) every
 * cache call would only wait for its own timeouts, so callers skip the cache and say so.
 */
export function cacheServiceAvailable(): boolean {
  return cache.isFeatureAvailable();
}

/** The newest document saved under a key starting with `keyPrefix`, parsed; undefined when there is none. */
export async function restoreCachedJson(
  keyPrefix: string,
  fileName: string,
  what: string,
): Promise<unknown | undefined> {
  if (!cacheServiceAvailable()) return undefined;
  try {
    return await withCacheFile(fileName, async (path) => {
      const hit = await cache.restoreCache([path], `${keyPrefix}none`, [keyPrefix]);
      if (!hit) return undefined;
      core.info(`${what}: restored from the Actions cache (key ${hit})`);
      return JSON.parse(await readFile(path, "utf8")) as unknown;
    });
  } catch (error) {
    core.warning(`could not read ${what} from the Actions cache: ${(error as Error).message}`);
    return undefined;
  }
}

/** Saves `value` as the document of `keyPrefix` + this run (run id and attempt make the key unique). */
export async function saveCachedJson(
  keyPrefix: string,
  fileName: string,
  value: unknown,
  what: string,
): Promise<void> {
  if (!cacheServiceAvailable()) return;
  try {
    await withCacheFile(fileName, async (path) => {
      await writeFile(path, JSON.stringify(value), { mode: 0o600 });
      await cache.saveCache([path], `${keyPrefix}${runKey()}`);
    });
  } catch (error) {
    core.warning(`could not save ${what} to the Actions cache: ${(error as Error).message}`);
  }
}

function runKey(): string {
  return `${process.env["GITHUB_RUN_ID"] ?? Date.now()}-${process.env["GITHUB_RUN_ATTEMPT"] ?? "1"}`;
}

/** Runs `fn` with the document's path; the file is removed before and after, whatever happens. */
async function withCacheFile<T>(fileName: string, fn: (path: string) => Promise<T>): Promise<T> {
  const runnerTemp = process.env["RUNNER_TEMP"];
  const dir = runnerTemp ? join(runnerTemp, CACHE_DIR) : await mkdtemp(join(tmpdir(), `${CACHE_DIR}-`));
  const path = join(dir, fileName);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await rm(path, { force: true });
    return await fn(path);
  } finally {
    await rm(runnerTemp ? path : dir, { recursive: true, force: true });
  }
}
