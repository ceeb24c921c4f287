/** What this process holds open, from /proc (Linux): for tests that a run closes what it opened. */
import { readdirSync, readlinkSync } from "node:fs";

export function openFileDescriptors(): number {
  return readdirSync("/proc/self/fd").length;
}

/** Descriptors of this process open on files below `dir` (other threads opening their own do not count). */
export function openFilesUnder(dir: string): number {
  let count = 0;
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith(`${dir}/`)) count++;
    } catch {
      // closed meanwhile
    }
  }
  return count;
}
