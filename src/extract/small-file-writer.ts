/**
 * Small restored files are written on a thread of their own. Why: a file costs restore six system calls (open,
 * write, chown, chmod, utimes, close), ~15 us of kernel time that GNU tar spends too; on the main thread they came
 * on top of reading the tar, the safety checks and hashing, and at 100,000 small files they were half of it. Here
 * the main thread copies each body into a batch and moves on; the thread makes the files in order.
 *
 * Ordering: a file op is posted after its directory exists (the sink makes directories at once, on its own
 * thread). Whatever must see the files on disk (a hard link to one, directory metadata, the final move) waits for
 * drain(). A failure is reported by the next reserve() or drain(); the thread stops at its first error.
 *
 * Memory: batch buffers come back from the thread with its reply and are filled again, rather than freed there and
 * allocated anew here for every batch (fresh 1 MiB buffers cost page faults, and freed ones linger in glibc's heap
 * once its mmap threshold has risen). 100k small files onto a tmpfs, 4 pairs: 4.0-4.6 s -> 3.7-4.3 s.
 */
import { readFileSync } from "node:fs";
import type { Worker } from "node:worker_threads";
import type { TarHeader } from "../archive/tar-format.js";
import { BacklogWaiters } from "../runtime/backlog-waiters.js";
import { fsPath } from "../runtime/byte-names.js";
import { startEvalWorker, stopEvalWorker, threadSource } from "../runtime/eval-worker.js";
import { finishRestoredFile } from "../workers/file-metadata.js";
import {
  type SmallFileBatch,
  type SmallFileReply,
  type SmallFileSettings,
  smallFileThread,
  writeBatch,
} from "../workers/small-file-thread.js";
import { errorFromThread, threadErrorOf } from "../workers/thread.js";
import { writeFailed } from "./restored-file.js";

/** Files up to this size are batched; bigger ones are written by the caller, part by part as they arrive. */
export const SMALL_FILE_MAX = 256 * 1024;
/** A batch holds this many bytes of bodies (at least one file of SMALL_FILE_MAX) ... */
const BATCH_BYTES = 1 << 20;
/** ... or this many files, so that a batch of empty files is not endless either. */
const BATCH_FILES = 1024;
/** Batches the thread may lag behind by: each holds up to BATCH_BYTES. */
const MAX_BATCHES_IN_FLIGHT = 4;

/**
 * The umask, read from /proc (process.umask() without an argument sets it and sets it back, a race with every
 * other thread creating files); -1 where /proc does not say.
 */
function currentUmask(): number {
  try {
    const match = /^Umask:\s*([0-7]+)$/m.exec(readFileSync("/proc/self/status", "utf8"));
    return match ? Number.parseInt(match[1]!, 8) : -1;
  } catch {
    return -1;
  }
}

/** The writer thread's code (see workers/small-file-thread.ts). */
export const SMALL_FILE_THREAD_SOURCE = threadSource(
  smallFileThread,
  writeBatch,
  finishRestoredFile,
  threadErrorOf,
);

export class SmallFileWriter {
  private thread: Worker | undefined;
  private current: SmallFileBatch | undefined;
  /** A Buffer over the current batch's bytes, made once per batch rather than once per file. */
  private view: Buffer | undefined;
  private used = 0;
  private nextId = 0;
  private inFlight = 0;
  private failure: Error | undefined;
  /** Buffers of answered batches, to fill again (at most MAX_BATCHES_IN_FLIGHT). */
  private readonly spare: ArrayBuffer[] = [];
  private readonly waiters = new BacklogWaiters(() => this.inFlight);

  constructor(private readonly canChown: boolean) {}

  /**
   * Where to copy the body of a file of `size` bytes (at most SMALL_FILE_MAX), then call add(). Waits when the
   * thread lags too far behind; throws what the thread failed with.
   */
  async reserve(size: number): Promise<{ target: Buffer; offset: number }> {
    for (;;) {
      const place = this.reserveNow(size);
      if (place !== undefined) return place;
      await this.waitUntil(MAX_BATCHES_IN_FLIGHT - 1);
    }
  }

  /** As reserve, without waiting: undefined when the thread lags too far behind (then use reserve). */
  reserveNow(size: number): { target: Buffer; offset: number } | undefined {
    if (this.failure) throw this.failure;
    const batch = this.current;
    if (
      batch !== undefined &&
      (this.used + size > batch.buffer.byteLength || batch.paths.length >= BATCH_FILES)
    )
      this.send();
    if (this.current === undefined) {
      if (this.inFlight >= MAX_BATCHES_IN_FLIGHT) return undefined;
      const buffer = this.spare.pop() ?? new ArrayBuffer(BATCH_BYTES);
      this.current = { id: this.nextId++, buffer, paths: [], numbers: [] };
      this.view = Buffer.from(buffer);
    }
    return { target: this.view!, offset: this.used };
  }

  /** Queues the file whose `size` body bytes were copied at the reserved offset. */
  add(path: string, header: TarHeader, offset: number): void {
    const batch = this.current!;
    batch.paths.push(fsPath(path));
    batch.numbers.push(offset, header.size, header.mode, header.uid, header.gid, header.mtime);
    this.used = offset + header.size;
  }

  /** Resolves once every file queued so far is on disk; throws what the thread failed with. */
  drain(): Promise<void> {
    this.send();
    return this.waitUntil(0);
  }

  /** Stops the thread without waiting for what is queued (after a failure, or once drained). */
  async close(): Promise<void> {
    this.failure ??= writeFailed("the file writer was closed");
    this.current = undefined;
    this.spare.length = 0;
    await stopEvalWorker(this.thread);
  }

  private send(): void {
    const batch = this.current;
    if (batch === undefined || batch.paths.length === 0 || this.failure) return;
    this.current = undefined;
    this.view = undefined;
    this.used = 0;
    const thread = this.started();
    if (this.inFlight++ === 0) thread.ref();
    thread.postMessage(batch, [batch.buffer]);
  }

  private started(): Worker {
    if (this.thread !== undefined) return this.thread;
    // Unref'd: only a pending batch keeps the process alive (see send).
    this.thread = startEvalWorker<SmallFileReply>(
      "the file writer",
      SMALL_FILE_THREAD_SOURCE,
      {
        onMessage: (reply) => this.settle(reply),
        onFailure: (detail, cause) => this.fail(writeFailed(detail, cause)),
      },
      { canChown: this.canChown, umask: currentUmask() } satisfies SmallFileSettings,
    );
    return this.thread;
  }

  private settle(reply: SmallFileReply): void {
    this.inFlight -= 1;
    if (this.inFlight === 0) this.thread?.unref();
    if ("error" in reply) {
      this.fail(errorFromThread(reply.error));
      return;
    }
    if (this.spare.length < MAX_BATCHES_IN_FLIGHT && !this.failure) this.spare.push(reply.buffer);
    this.waiters.wake();
  }

  private waitUntil(inFlight: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return this.waiters.until(inFlight);
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.thread?.unref();
    this.waiters.rejectAll(this.failure);
  }
}
