/**
 * One backup per instance at a time. The lock is a file created with O_EXCL holding who owns it; a lock whose
 * owner process is gone (same host) is stale and taken over, with a warning, so a crashed run never blocks the
 * next night's backup forever.
 */
import { open, readFile, rm } from "node:fs/promises";
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
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(path, "wx", 0o600);
      await handle.writeFile(`${JSON.stringify(me)}\n`);
      await handle.close();
      return {
        path,
        ...(tookOverStale ? { tookOverStale } : {}),
        release: async () => {
          await rm(path, { force: true });
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const owner = await readOwner(path);
      if (owner && isAlive(owner)) {
        throw new LookerBackupError(
          `another backup of instance ${instance} is running: pid ${owner.pid} on ${owner.host} since ${owner.startedAt} (${owner.description})`,
          { hint: `wait for it to finish; if it is gone, remove ${path}` },
        );
      }
      tookOverStale = owner;
      await rm(path, { force: true });
    }
  }
  throw new LookerBackupError(`could not take the lock ${path}`, {
    hint: "another run took it at the same moment; retry",
  });
}

async function readOwner(path: string): Promise<LockOwner | undefined> {
  try {
    return JSON.parse(await readFile(path, "utf8")) as LockOwner;
  } catch {
    return undefined; // unreadable or half-written: treat as stale
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
