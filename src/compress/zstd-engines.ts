/**
 * Engines that turn one block of input into one standard zstd frame (content size + XXH64 checksum, like the
 * `zstd` CLI). The stream in zstd-compress.ts decides which engine to use and keeps the frames in order; an engine
 * only compresses.
 *
 * - InlineEngine: node:zlib's async zstdCompress, which runs on the libuv thread pool. No thread start-up
 *   cost, so it serves `workers: 1` and inputs smaller than one block.
 * - WorkerPool: worker_threads running zstdCompressSync, for parallel compression. We do not use the libuv
 *   pool for that because it is shared with fs reads; long compression jobs there would stall the tar reader.
 */
import { readSync } from "node:fs";
import type { Worker } from "node:worker_threads";
import { constants, type ZstdOptions, zstdCompress } from "node:zlib";
import { LookerBackupError } from "../errors.js";
import { startEvalWorker, stopEvalWorker, threadSource } from "../runtime/eval-worker.js";
import {
  outputChunkSize,
  readFileBlock,
  type ZstdJob,
  type ZstdReply,
  type ZstdThreadData,
  zstdThread,
} from "../workers/zstd-thread.js";
import type { BlockMemory } from "./block-pool.js";
import { fileReadFailed } from "./file-block.js";

/** The code each zstd thread runs (see workers/zstd-thread.ts). */
export const ZSTD_THREAD_SOURCE = threadSource(zstdThread, readFileBlock, outputChunkSize);

export interface CompressedBlock {
  /** One complete zstd frame. */
  readonly frame: Buffer;
  /** The input buffer, handed back so the caller can reuse it for a later block (the caller's own object). */
  readonly input: BlockMemory;
  /** With a FileRead: the bytes the file gave (the rest of the block is zeros). */
  readonly bytesRead?: number;
}

/** Where to fill a block from before compressing it (see file-block.ts); the path names it if that fails. */
export interface FileRead {
  readonly fd: number;
  readonly position: number;
  readonly path: string;
}

export interface BlockEngine {
  /**
   * Compresses input[0, length) into one frame, after filling it from `read` when given. `input` is lent to the
   * engine until the promise settles.
   */
  compress(input: BlockMemory, length: number, read?: FileRead): Promise<CompressedBlock>;
  /** Stops any threads; pending compressions reject. Safe to call more than once. */
  close(): Promise<void>;
}

function frameOptions(level: number, length: number): ZstdOptions {
  return {
    params: {
      [constants.ZSTD_c_compressionLevel]: level,
      [constants.ZSTD_c_checksumFlag]: 1,
      [constants.ZSTD_c_contentSizeFlag]: 1,
    },
    pledgedSrcSize: length,
    chunkSize: outputChunkSize(length),
  };
}

export class InlineEngine implements BlockEngine {
  constructor(private readonly level: number) {}

  compress(input: BlockMemory, length: number, read?: FileRead): Promise<CompressedBlock> {
    return new Promise((resolve, reject) => {
      let bytesRead: number | undefined;
      // One thread here: the read is the caller's, synchronous like the packer's own reads.
      if (read) {
        try {
          bytesRead = readFileBlock(
            readSync,
            read.fd,
            new Uint8Array(input, 0, length),
            read.position,
            length,
          );
        } catch (error) {
          reject(fileReadFailed(read.path, (error as Error).message, error));
          return;
        }
      }
      zstdCompress(Buffer.from(input, 0, length), frameOptions(this.level, length), (error, frame) => {
        if (error) reject(compressionFailed(error.message, error));
        else resolve({ frame, input, bytesRead });
      });
    });
  }

  async close(): Promise<void> {
    // Nothing to stop: a job already on the libuv pool finishes and its result is dropped by the caller.
  }
}

/** Worker threads currently alive (started and not yet exited), for diagnostics and leak tests. */
let liveWorkerThreads = 0;
export function liveZstdWorkerThreads(): number {
  return liveWorkerThreads;
}

export class WorkerPool implements BlockEngine {
  private readonly workers: PoolWorker[] = [];
  private closed = false;

  constructor(
    private readonly size: number,
    private readonly level: number,
  ) {}

  compress(input: BlockMemory, length: number, read?: FileRead): Promise<CompressedBlock> {
    if (this.closed) return Promise.reject(compressionFailed("the zstd worker pool is closed"));
    return this.pickWorker().run(input, length, read);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }

  /** The least busy worker; threads start lazily, only when every running one already has work. */
  private pickWorker(): PoolWorker {
    let best: PoolWorker | undefined;
    for (const worker of this.workers) {
      if (!worker.failed && (best === undefined || worker.queued < best.queued)) best = worker;
    }
    if (best === undefined || (best.queued > 0 && this.workers.length < this.size)) {
      best = new PoolWorker(this.level);
      this.workers.push(best);
    }
    return best;
  }
}

interface PendingJob {
  resolve: (block: CompressedBlock) => void;
  reject: (error: Error) => void;
  /** What the caller lent; a shared block comes back from the thread as another object of the same memory. */
  input: BlockMemory;
  read: FileRead | undefined;
}

class PoolWorker {
  private readonly thread: Worker;
  private readonly pending = new Map<number, PendingJob>();
  private nextId = 0;
  failed = false;

  constructor(level: number) {
    // An idle worker must never keep the process alive (a caller that forgets to end the stream, or
    // an error path that skips cleanup); a busy one must, or the process could exit mid-compression.
    this.thread = startEvalWorker<ZstdReply>(
      "zstd worker thread",
      ZSTD_THREAD_SOURCE,
      {
        onMessage: (reply) => this.settle(reply),
        onFailure: (detail, cause) => this.failAll(compressionFailed(detail, cause)),
        onExit: () => liveWorkerThreads--,
      },
      { level } satisfies ZstdThreadData,
      { background: true }, // the thread that fills the blocks comes first (see eval-worker.ts)
    );
    liveWorkerThreads++;
  }

  get queued(): number {
    return this.pending.size;
  }

  run(input: BlockMemory, length: number, read: FileRead | undefined): Promise<CompressedBlock> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) this.thread.ref();
      this.pending.set(id, { resolve, reject, input, read });
      // Shared memory is lent, not moved: the thread reads the same bytes and the caller keeps its object.
      const message: ZstdJob = { id, input, length, read: read && { fd: read.fd, position: read.position } };
      this.thread.postMessage(message, input instanceof SharedArrayBuffer ? [] : [input]);
    });
  }

  async terminate(): Promise<void> {
    await stopEvalWorker(this.thread);
  }

  private settle(reply: ZstdReply): void {
    const job = this.pending.get(reply.id);
    if (job === undefined) return;
    this.pending.delete(reply.id);
    if (this.pending.size === 0) this.thread.unref();
    if ("error" in reply) {
      const { read } = job;
      job.reject(
        read && reply.readFailed ? fileReadFailed(read.path, reply.error) : compressionFailed(reply.error),
      );
    } else {
      const input = job.input instanceof SharedArrayBuffer ? job.input : reply.input;
      job.resolve({
        frame: Buffer.from(reply.frame, 0, reply.frameLength),
        input,
        bytesRead: reply.bytesRead,
      });
    }
  }

  private failAll(error: Error): void {
    this.failed = true;
    for (const job of this.pending.values()) job.reject(error);
    this.pending.clear();
  }
}

function compressionFailed(detail: string, cause?: unknown): LookerBackupError {
  return new LookerBackupError(`zstd compression failed: ${detail}`, { cause });
}
