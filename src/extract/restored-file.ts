/**
 * What the writers of restored files share besides finishRestoredFile (workers/file-metadata.ts): the staging sink
 * on the main thread, and the small- and big-file writers that own the writer threads.
 */
import { LookerBackupError } from "../errors.js";

/** A time for utimes/lutimes: as finishRestoredFile does, a pre-1970 time as a numeric string (see there). */
export function timeArgument(mtime: number): number | string {
  return mtime < 0 ? String(mtime) : mtime;
}

export function writeFailed(detail: string, cause?: unknown): LookerBackupError {
  return new LookerBackupError(`writing the restored files failed: ${detail}`, { cause });
}
