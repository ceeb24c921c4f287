/**
 * What the writers of restored files share besides finishRestoredFile (workers/file-metadata.ts): the staging sink
 * on the main thread, and the small- and big-file writers that own the writer threads.
 */
import { LookerBackupError } from "../errors.js";

export function writeFailed(detail: string, cause?: unknown): LookerBackupError {
  return new LookerBackupError(`writing the restored files failed: ${detail}`, { cause });
}
