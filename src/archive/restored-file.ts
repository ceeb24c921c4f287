/**
 * What every writer of restored files shares: the staging sink on the main thread, and the small- and big-file
 * writer threads, whose code is built from these functions' source text (so they take what they use as arguments).
 */
import { LookerBackupError } from "../errors.js";

/**
 * Gives a written file its owner (when given), then its mode (chown clears setuid/setgid, so chmod comes after; no
 * mode when the file was created with it), then its times (after the last write, which would change them).
 */
export function finishRestoredFile(
  fs: Pick<typeof import("node:fs"), "fchownSync" | "fchmodSync" | "futimesSync">,
  fd: number,
  owner: readonly [uid: number, gid: number] | undefined,
  mode: number | undefined,
  mtime: number,
): void {
  if (owner !== undefined) fs.fchownSync(fd, owner[0], owner[1]);
  if (mode !== undefined) fs.fchmodSync(fd, mode);
  // Node takes a negative number of seconds as "now" and a numeric string as it stands (documented for utimes):
  // a 1960 mtime must come back as 1960. libuv sets times to the microsecond.
  const time = mtime < 0 ? String(mtime) : mtime;
  fs.futimesSync(fd, time, time);
}

/** A time for utimes/lutimes: as finishRestoredFile does, a pre-1970 time as a numeric string (see there). */
export function timeArgument(mtime: number): number | string {
  return mtime < 0 ? String(mtime) : mtime;
}

export function writeFailed(detail: string, cause?: unknown): LookerBackupError {
  return new LookerBackupError(`writing the restored files failed: ${detail}`, { cause });
}
