/**
 * The small-file writer thread: makes restore's small files from batches of their bodies, in order
 * (extract/small-file-writer.ts). One message per batch, answered in order with { id, buffer } (the batch's buffer,
 * given back to be filled again) or { id, error }; after an error it answers every later batch with that error and
 * writes nothing more.
 */
import type { MessagePort } from "node:worker_threads";
import type { finishRestoredFile } from "./file-metadata.js";
import type { ThreadError, ThreadRequire, threadErrorOf } from "./thread.js";

/** What the thread needs to know of this process (its workerData). */
export interface SmallFileSettings {
  /** Running as root: files get the archive's owners. */
  readonly canChown: boolean;
  /** The process's umask, or -1 where it cannot be read without changing it. */
  readonly umask: number;
}

/** A batch as posted: the bodies, and per file its path and six numbers: offset, length, mode, uid, gid, mtime. */
export interface SmallFileBatch {
  readonly id: number;
  readonly buffer: ArrayBuffer;
  /** As fs calls take them: a name that is not UTF-8 travels as its bytes (runtime/byte-names.ts). */
  readonly paths: (string | Uint8Array)[];
  readonly numbers: number[];
}

/** Done: the batch's buffer comes back (transferred). Failed: the error, for this and every later batch. */
export type SmallFileReply = { id: number; buffer: ArrayBuffer } | { id: number; error: ThreadError };

/**
 * Writes one batch: open (exclusive: staging is fresh, so an existing file means the archive wrote a path twice),
 * the body, owner, then mode (chown clears setuid/setgid), then times after the last write, close. A file is created
 * with its final mode where the umask leaves that mode whole (0644, 0600, 0755 under the usual 022), which saves a
 * chmod: ~10 % of this thread's time at 100,000 small files. Self-contained: the thread takes it as a helper.
 */
export function writeBatch(
  fs: typeof import("node:fs"),
  finish: typeof finishRestoredFile,
  batch: Pick<SmallFileBatch, "buffer" | "paths" | "numbers">,
  settings: SmallFileSettings,
): void {
  const bytes = new Uint8Array(batch.buffer);
  const n = batch.numbers;
  const keeps = settings.umask === -1 ? 0 : ~(settings.umask | 0o7000);
  for (let i = 0; i < batch.paths.length; i++) {
    const offset = n[i * 6] as number;
    const length = n[i * 6 + 1] as number;
    const mode = n[i * 6 + 2] as number;
    const createdExact = (mode & keeps) === mode;
    const fd = fs.openSync(batch.paths[i] as string | Buffer, "wx", createdExact ? mode : 0o600);
    try {
      let written = 0;
      while (written < length) written += fs.writeSync(fd, bytes, offset + written, length - written);
      const owner = settings.canChown
        ? ([n[i * 6 + 3] as number, n[i * 6 + 4] as number] as const)
        : undefined;
      finish(fs, fd, owner, createdExact ? undefined : mode, n[i * 6 + 5] as number);
    } finally {
      fs.closeSync(fd);
    }
  }
}

/** The thread's code (see runtime/eval-worker.ts: threadSource). */
export function smallFileThread(
  port: MessagePort,
  settings: SmallFileSettings,
  require: ThreadRequire,
  write: typeof writeBatch,
  finish: typeof finishRestoredFile,
  errorOf: typeof threadErrorOf,
): void {
  const fs = require("node:fs");
  let failure: ThreadError | undefined;
  port.on("message", (batch: SmallFileBatch) => {
    if (failure === undefined) {
      try {
        write(fs, finish, batch, settings);
      } catch (error) {
        failure = errorOf(error);
      }
    }
    if (failure === undefined) {
      const reply: SmallFileReply = { id: batch.id, buffer: batch.buffer };
      port.postMessage(reply, [batch.buffer]);
    } else {
      const reply: SmallFileReply = { id: batch.id, error: failure };
      port.postMessage(reply);
    }
  });
}
