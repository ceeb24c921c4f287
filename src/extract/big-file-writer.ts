/**
 * Big restored files are written and hashed on a thread of their own. Why: restore's main thread (decrypt, tar,
 * safety checks) is what limits it on 2 cores. Hashing a big file's bytes was ~0.3 s of it per 512 MB, and waiting
 * for each 4 MiB part to be written before asking for the next left it idle a fifth of the time.
 *
 * A part is moved to the thread, not copied, when it is a whole buffer its producer gave up (a frame decompressed
 * into one file, see takeOwnership); any other part (a file's share of a frame, a view the tar reader will free) is
 * copied first, a memcpy ~15x cheaper than hashing it. The thread writes each part where it belongs, hashes it, and
 * at the end gives the file its owner, mode and times, closes it and answers with the digest.
 *
 * The thread opens each file itself and alone closes it (finish or abandon), after every write before it: a
 * descriptor closed by the main thread while writes were queued could be reused by the next file, and those writes
 * land there. (Node also warns when a thread closes a descriptor it did not open, and closes a thread's own ones
 * when it stops, so a failed restore leaves none open.)
 */
import type { Worker } from "node:worker_threads";
import type { TarHeader } from "../archive/tar-format.js";
import { BacklogWaiters } from "../runtime/backlog-waiters.js";
import { takeOwnership } from "../runtime/buffers.js";
import { fsPath } from "../runtime/byte-names.js";
import { startEvalWorker, stopEvalWorker, threadSource } from "../runtime/eval-worker.js";
import {
  type BigFileMessage,
  type BigFileReply,
  bigFileThread,
  handleMessage,
} from "../workers/big-file-thread.js";
import { finishRestoredFile } from "../workers/file-metadata.js";
import { errorFromThread, threadErrorOf } from "../workers/thread.js";
import { writeFailed } from "./restored-file.js";

/** Parts the thread may lag behind by (each up to a 4 MiB frame) before a file's writer waits. */
const MAX_PARTS_IN_FLIGHT = 4;
/**
 * A part larger than our frames counts as one part per started PART_UNIT bytes, so the backlog stays ~16 MiB
 * whatever the archive's frames (a hand-made one has 16 MiB frames; four of them in flight were 64 MiB).
 */
const PART_UNIT = 4 * 1024 * 1024;

/** The writer thread's code (see workers/big-file-thread.ts). */
export const BIG_FILE_THREAD_SOURCE = threadSource(
  bigFileThread,
  handleMessage,
  finishRestoredFile,
  threadErrorOf,
);

/** One file being written on the thread. */
export interface ThreadWrittenFile {
  /** Hands the next part over; the caller must not use it afterwards. A promise when the thread lags too far. */
  add(part: Buffer): Promise<void> | undefined;
  /** Owner (when given), mode and times, then closes the file; resolves to the sha256 of its bytes. */
  finish(header: TarHeader, canChown: boolean): Promise<string>;
  /** Closes the file without finishing it (the restore failed), after the writes already handed over. */
  abandon(): void;
}

export class BigFileWriter {
  private thread: Worker | undefined;
  private nextFile = 0;
  private partsInFlight = 0;
  /** The parts' weights (see PART_UNIT), oldest first: the thread answers parts in order. */
  private readonly weights: number[] = [];
  private weightInFlight = 0;
  private failure: Error | undefined;
  private readonly waiters = new BacklogWaiters(() => this.weightInFlight);
  private readonly finishing = new Map<
    number,
    { resolve: (digest: string) => void; reject: (error: Error) => void }
  >();

  /** Creates the file at `path` (it must not exist yet) on the thread; failing that is reported by finish(). */
  open(path: string): ThreadWrittenFile {
    if (this.failure) throw this.failure;
    const file = this.nextFile++;
    // A name that is not UTF-8 travels as its bytes (runtime/byte-names.ts).
    this.post({ op: "open", file, path: fsPath(path) });
    return {
      add: (part) => this.add(file, part),
      finish: (header, canChown) => this.finish(file, header, canChown),
      abandon: () => {
        // After a failure the thread is stopping or gone, and its descriptors with it.
        if (this.failure === undefined) this.post({ op: "abandon", file });
      },
    };
  }

  /** Parts and files handed over and not answered yet: 0 when the thread is idle. */
  backlog(): number {
    return this.weightInFlight + this.finishing.size;
  }

  /** Stops the thread, if it was started; files not finished are not. */
  async close(): Promise<void> {
    this.fail(writeFailed("the file writer was closed"));
    await stopEvalWorker(this.thread);
  }

  private add(file: number, part: Buffer): Promise<void> | undefined {
    if (this.failure) throw this.failure;
    const buffer =
      takeOwnership(part) ??
      (part.buffer as ArrayBuffer).slice(part.byteOffset, part.byteOffset + part.length);
    if (this.partsInFlight++ === 0) this.started().ref();
    const weight = Math.max(1, Math.ceil(part.length / PART_UNIT));
    this.weights.push(weight);
    this.weightInFlight += weight;
    this.post({ op: "part", file, buffer, length: part.length }, [buffer]);
    return this.weightInFlight >= MAX_PARTS_IN_FLIGHT ? this.waitUntil(MAX_PARTS_IN_FLIGHT - 1) : undefined;
  }

  private finish(file: number, header: TarHeader, canChown: boolean): Promise<string> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.finishing.set(file, { resolve, reject });
      this.started().ref();
      const owner: [number, number] | undefined = canChown ? [header.uid, header.gid] : undefined;
      this.post({ op: "finish", file, owner, mode: header.mode, mtime: header.mtime });
    });
  }

  private post(message: BigFileMessage, transfer: ArrayBuffer[] = []): void {
    this.started().postMessage(message, transfer);
  }

  private started(): Worker {
    if (this.thread !== undefined) return this.thread;
    // Unref'd: only a pending part or file keeps the process alive (see add and finish).
    this.thread = startEvalWorker<BigFileReply>("the big-file writer", BIG_FILE_THREAD_SOURCE, {
      onMessage: (reply) => this.receive(reply),
      onFailure: (detail, cause) => this.fail(writeFailed(detail, cause)),
    });
    return this.thread;
  }

  private receive(reply: BigFileReply): void {
    if (reply.op === "part") {
      this.partsInFlight -= 1;
      this.weightInFlight -= this.weights.shift() ?? 0;
      this.waiters.wake();
    } else {
      const waiter = this.finishing.get(reply.file);
      this.finishing.delete(reply.file);
      if (reply.op === "finish") waiter?.resolve(reply.digest);
      // A system error (a full disk) as the same call here would have thrown it, so its hint reaches the user.
      else waiter?.reject(errorFromThread(reply.error));
    }
    if (this.partsInFlight === 0 && this.finishing.size === 0) this.thread?.unref();
  }

  private waitUntil(inFlight: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return this.waiters.until(inFlight);
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.waiters.rejectAll(this.failure);
    for (const waiter of this.finishing.values()) waiter.reject(this.failure);
    this.finishing.clear();
    this.thread?.unref();
  }
}
