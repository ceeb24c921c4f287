/**
 * One backup per instance at a time. The lock is a file created with O_EXCL holding who owns it; a lock whose
 * owner process is gone (same host) is stale and taken over, with a warning, so a crashed run never blocks the
 * next night's backup forever.
 */
import { randomBytes } from "node:crypto";
import { link, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { LookerBackupError } from "../errors.js";

export interface LockOwner {
  readonly pid: number;
  readonly host: string;
  readonly startedAt: string;
  readonly description: string;
}

export interface InstanceLock {
  readonly path: string;
  readonly tookOverStale?: LockOwner;
  release(): Promise<void>;
}

export async function acquireInstanceLock(
  directory: string,
  instance: string,
  description: string,
): Promise<InstanceLock> {
  const path = join(directory, `looker-backup-${instance}.lock`);
  const me: LockOwner = {
    pid: process.pid,
    host: hostname(),
    startedAt: new Date().toISOString(),
    description,
  };
  let tookOverStale: LockOwner | undefined;
  await mkdir(directory, { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    if (await createComplete(path, `${JSON.stringify(me)}\n`)) {
      return {
        path,
        ...(tookOverStale ? { tookOverStale } : {}),
        release: async () => {
          await rm(path, { force: true });
        },
      };
    }
    const text = await readFile(path, "utf8").catch(() => undefined);
    const owner = parseOwner(text);
    if (owner && isAlive(owner)) {
      throw new LookerBackupError(
        `another backup of instance ${instance} is running: pid ${owner.pid} on ${owner.host} since ${owner.startedAt} (${owner.description})`,
        { hint: `wait for it to finish; if it is gone, remove ${path}` },
      );
    }
    tookOverStale = owner;
    // Remove only the stale lock we judged: a run that took it over meanwhile keeps its own.
    if ((await readFile(path, "utf8").catch(() => undefined)) === text) await rm(path, { force: true });
  }
  throw new LookerBackupError(`could not take the lock ${path}`, {
    hint: "another run took it at the same moment; retry",
  });
}

/**
 * Creates `path` holding `content`, or returns false when it exists. The content is written to a private temp
 * file first and then hard-linked into place (link fails on an existing name): a competitor never sees the lock
 * empty or half-written, which it would otherwise take for a stale lock and remove (two writers).
 */
async function createComplete(path: string, content: string): Promise<boolean> {
  const temp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  await writeFile(temp, content, { mode: 0o600, flag: "wx" });
  try {
    await link(temp, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  } finally {
    await rm(temp, { force: true });
  }
}

function parseOwner(text: string | undefined): LockOwner | undefined {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as LockOwner;
  } catch {
    return undefined; // not ours to understand (edited by hand, disk error): treat as stale
  }
}

function isAlive(owner: LockOwner): boolean {
  if (owner.host !== hostname()) return true; // cannot check another host's processes: assume alive
  try {
    process.kill(owner.pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
