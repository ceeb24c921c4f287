/**
 * One restore per target at a time: a second one would do all its work and then fail on the swap (ENOTEMPTY), or
 * swap in between the first one's steps. The lock is a file beside the target, created exclusively, naming the
 * process that holds it; a lock left by a process that is gone (killed) on this host is taken over.
 */
import { mkdir, readFile, rm, unlink, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { basename, dirname, join } from "node:path";
import { display } from "../archive/display.js";
import { LookerBackupError } from "../errors.js";

export interface TargetLock {
  /** Removes the lock; a failure becomes a warning, as the restore itself is done or failed already. */
  release(warnings: string[]): Promise<void>;
}

export function lockPathOf(target: string): string {
  return join(dirname(target), `.${basename(target)}.restore.lock`);
}

/** `path`: where the lock is, beside the target unless given (`restore --into` keeps it inside its directory). */
export async function lockTarget(target: string, path = lockPathOf(target)): Promise<TargetLock> {
  await mkdir(dirname(path), { recursive: true });
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(path, `${process.pid} ${hostname()}\n`, { flag: "wx", mode: 0o600 });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const holder = (await readFile(path, "utf8").catch(() => "")).trim();
      if (attempt === 0 && isStale(holder)) {
        await rm(path, { force: true });
        continue;
      }
      throw new LookerBackupError(
        `another restore into ${target} is running (lock ${path} held by ${display(holder) || "an unknown process"})`,
        { hint: "wait for it to finish; if no restore is running any more, remove the lock file" },
      );
    }
  }
  return {
    async release(warnings) {
      await unlink(path).catch((error: Error) => {
        warnings.push(`could not remove the restore lock ${path}: ${error.message}`);
      });
    },
  };
}

/** Held by a process of this host that no longer exists. */
function isStale(holder: string): boolean {
  const [pid, host] = holder.split(" ");
  const number = Number(pid);
  if (host !== hostname() || !Number.isSafeInteger(number) || number <= 0) return false;
  try {
    process.kill(number, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ESRCH";
  }
}
