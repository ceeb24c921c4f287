/**
 * The sha256 of every archived file, for the catalog. The packer tells a digester where each file's bytes sit in
 * the chunks it fills; the digester reports each file's digest once it has all of them.
 *
 * - InlineDigester hashes on the calling thread, at once. Small archives and tests use it.
 * - WorkerDigester hashes on a thread of its own, reading the packer's shared blocks in place. Why: on a 2-core
 *   runner the packer's thread is the backup's bottleneck (reading, tar, encryption, output) while the zstd
 *   threads wait for blocks; sha256 was its largest single cost, ~0.3 s of ~2.5 s at 512 MB / 20k files. Hashing
 *   must follow the stream's order (a file spans blocks), so one thread does it, behind a queue.
 */
import { createHash, type Hash } from "node:crypto";
import type { Worker } from "node:worker_threads";
import type { BlockMemory, BlockPool } from "../compress/block-pool.js";
import { sha256Hex } from "../crypto/digest.js";
import { LookerBackupError } from "../errors.js";
import { BacklogWaiters } from "../runtime/backlog-waiters.js";
import { startEvalWorker, stopEvalWorker, threadSource } from "../runtime/eval-worker.js";
import { type DigestBatch, type DigestReply, digestThread, hashSegments } from "../workers/digest-thread.js";

/** Receives a file's digest (lower-case hex), in the order files end. */
export type DigestListener = (fileId: number, sha256: string) => void;

export interface FileDigester {
  /** buffer[start, end) are the next bytes of file `fileId`; they must not change until `handOver(buffer)`. */
  update(fileId: number, buffer: Buffer, start: number, end: number): void;
  /** File `fileId` has no more bytes; its digest will be reported. */
  end(fileId: number): void;
  /**
   * The next bytes of file `fileId` are read later, by someone else (a FileBlock the compressor reads): call the
   * function returned with them once they are (undefined: they never will be). Later bytes of that file wait for
   * them; other files do not. Only digesters that can hold their input while it waits have this.
   */
  later?(fileId: number): (bytes: Buffer | undefined) => void;
  /** The buffer leaves the packer (downstream may reuse it once the digester gives it back). */
  handOver(buffer: Buffer): void;
  /** Undefined when more bytes may come now; otherwise a promise to wait for (the hashing lags behind). */
  whenReady(): Promise<void> | undefined;
  /** Resolves once every file ended so far has been reported. */
  drain(): Promise<void>;
  close(): Promise<void>;
}

export class InlineDigester implements FileDigester {
  private readonly open = new Map<number, Hash>();

  constructor(private readonly listener: DigestListener) {}

  update(fileId: number, buffer: Buffer, start: number, end: number): void {
    this.hashOf(fileId).update(buffer.subarray(start, end));
  }

  end(fileId: number): void {
    const digest = this.hashOf(fileId).digest("hex");
    this.open.delete(fileId);
    this.listener(fileId, digest);
  }

  handOver(): void {}

  whenReady(): undefined {
    return undefined;
  }

  async drain(): Promise<void> {}

  async close(): Promise<void> {}

  private hashOf(fileId: number): Hash {
    let hash = this.open.get(fileId);
    if (hash === undefined) {
      hash = createHash("sha256");
      this.open.set(fileId, hash);
    }
    return hash;
  }
}

/** The digest thread's code (see workers/digest-thread.ts). */
export const DIGEST_THREAD_SOURCE = threadSource(digestThread, hashSegments);

/** Segments gathered before a batch is sent even if no buffer was handed over (many tiny files in one block). */
const MAX_BATCH_SEGMENTS = 4096 * 5;
/** Batches the thread may lag behind by before the packer waits: each can hold blocks out of the pool. */
const MAX_BATCHES_IN_FLIGHT = 6;

interface Batch {
  readonly blocks: BlockMemory[];
  readonly segments: number[];
}

/** Bytes of a file where they lie in a block. */
interface Bytes {
  readonly memory: BlockMemory;
  readonly start: number;
  readonly end: number;
}

/** What a waiting file has next: bytes (undefined while they are still to be read), or its end. */
interface Waiting {
  bytes?: Bytes;
  readonly end?: true;
}

/**
 * Hashes on a thread of its own, started when the first chunk leaves the packer; an archive that ends within its
 * first chunk (tests, tiny homes) is hashed here at drain and never starts a thread.
 */
export class WorkerDigester implements FileDigester {
  private thread: Worker | undefined;
  private batch: Batch = { blocks: [], segments: [] };
  /**
   * Files waiting for bytes read later (see later), with what came after those bytes, in order. Each block in
   * here is retained, so the pool cannot hand it out again before it is hashed.
   */
  private readonly waiting = new Map<number, Waiting[]>();
  /** Batches sent and not answered yet, with the blocks each holds. */
  private readonly inFlight = new Map<number, BlockMemory[]>();
  private nextId = 0;
  private failure: Error | undefined;
  private closed = false;
  private readonly waiters = new BacklogWaiters(() => this.inFlight.size);

  /**
   * @param pool the shared pool the packer's chunks come from: each block a batch reads is held until the thread
   *   has hashed it, so the compressor cannot hand it out again too early
   */
  constructor(
    private readonly listener: DigestListener,
    private readonly pool: BlockPool,
  ) {
    if (!pool.shared) throw new Error("WorkerDigester needs a shared BlockPool");
  }

  update(fileId: number, buffer: Buffer, start: number, end: number): void {
    const memory = buffer.buffer;
    if (!(memory instanceof SharedArrayBuffer))
      throw new Error("WorkerDigester hashes shared blocks only (take chunks from the shared pool)");
    const bytes = { memory, start: buffer.byteOffset + start, end: buffer.byteOffset + end };
    const waiting = this.waiting.get(fileId);
    if (waiting === undefined) this.addSegment(fileId, bytes);
    else {
      this.pool.retain(memory);
      waiting.push({ bytes });
    }
  }

  end(fileId: number): void {
    const waiting = this.waiting.get(fileId);
    if (waiting !== undefined) {
      waiting.push({ end: true });
      return;
    }
    this.batch.segments.push(-1, fileId, 0, 0, 1);
    if (this.batch.segments.length >= MAX_BATCH_SEGMENTS) this.send();
  }

  later(fileId: number): (bytes: Buffer | undefined) => void {
    const slot: Waiting = {};
    let waiting = this.waiting.get(fileId);
    if (waiting === undefined) {
      waiting = [];
      this.waiting.set(fileId, waiting);
    }
    waiting.push(slot);
    return (bytes) => {
      if (bytes === undefined || !(bytes.buffer instanceof SharedArrayBuffer) || this.closed) {
        this.forget(fileId); // the stream failed: no digest of this file will be needed
        return;
      }
      this.pool.retain(bytes.buffer);
      slot.bytes = { memory: bytes.buffer, start: bytes.byteOffset, end: bytes.byteOffset + bytes.length };
      this.release(fileId);
    };
  }

  /** Moves a waiting file's segments into the batch, in order, up to the next bytes not read yet. */
  private release(fileId: number): void {
    const waiting = this.waiting.get(fileId);
    if (waiting === undefined) return;
    const held: BlockMemory[] = [];
    while (waiting.length > 0 && (waiting[0]!.bytes !== undefined || waiting[0]!.end)) {
      const { bytes } = waiting.shift()!;
      if (bytes === undefined) this.batch.segments.push(-1, fileId, 0, 0, 1);
      else {
        this.addSegment(fileId, bytes);
        held.push(bytes.memory);
      }
    }
    if (waiting.length === 0) this.waiting.delete(fileId);
    this.send(); // the batch retains its blocks: the holds taken while they waited can go
    for (const memory of held) this.pool.give(memory);
  }

  private forget(fileId: number): void {
    for (const { bytes } of this.waiting.get(fileId) ?? []) if (bytes) this.pool.give(bytes.memory);
    this.waiting.delete(fileId);
  }

  private addSegment(fileId: number, { memory, start, end }: Bytes): void {
    let index = this.batch.blocks.indexOf(memory);
    if (index < 0) index = this.batch.blocks.push(memory) - 1;
    this.batch.segments.push(index, fileId, start, end, 0);
  }

  handOver(): void {
    this.send();
  }

  /** Undefined when the thread keeps up; otherwise resolves once it has caught up a little. */
  whenReady(): Promise<void> | undefined {
    if (this.inFlight.size <= MAX_BATCHES_IN_FLIGHT) return undefined;
    return this.waitUntil(MAX_BATCHES_IN_FLIGHT / 2);
  }

  drain(): Promise<void> {
    if (this.waiting.size > 0)
      return Promise.reject(digestFailed(`${this.waiting.size} files still wait for bytes read later`));
    if (this.thread === undefined && !this.closed) this.hashHere();
    else this.send();
    return this.waitUntil(0);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const fileId of [...this.waiting.keys()]) this.forget(fileId);
    this.failure ??= digestFailed("the digest thread was closed");
    await stopEvalWorker(this.thread);
  }

  private hashHere(): void {
    const { blocks, segments } = this.takeBatch();
    const views = blocks.map((block) => Buffer.from(block));
    const digests = hashSegments(views, segments, new Map(), () => createHash("sha256"), sha256Hex);
    this.report(digests);
  }

  private takeBatch(): Batch {
    const batch = this.batch;
    this.batch = { blocks: [], segments: [] };
    return batch;
  }

  private send(): void {
    if (this.batch.segments.length === 0 || this.failure) return;
    const { blocks, segments } = this.takeBatch();
    const thread = this.startThread();
    const id = this.nextId++;
    for (const block of blocks) this.pool.retain(block);
    this.inFlight.set(id, blocks);
    if (this.inFlight.size === 1) thread.ref();
    thread.postMessage({ id, blocks, segments } satisfies DigestBatch);
  }

  private startThread(): Worker {
    if (this.thread !== undefined) return this.thread;
    // Unref'd: only a pending batch keeps the process alive (see send).
    this.thread = startEvalWorker<DigestReply>("the digest thread", DIGEST_THREAD_SOURCE, {
      onMessage: (reply) => this.settle(reply),
      onFailure: (detail, cause) => this.fail(digestFailed(detail, cause)),
    });
    return this.thread;
  }

  private settle(reply: DigestReply): void {
    const blocks = this.inFlight.get(reply.id);
    if (blocks === undefined) return;
    this.inFlight.delete(reply.id);
    for (const block of blocks) this.pool.give(block);
    if ("error" in reply) {
      this.fail(digestFailed(reply.error));
      return;
    }
    this.report(reply.digests);
    if (this.inFlight.size === 0) this.thread?.unref();
    this.waiters.wake();
  }

  private report(digests: readonly (number | string)[]): void {
    for (let i = 0; i < digests.length; i += 2) this.listener(digests[i] as number, digests[i + 1] as string);
  }

  private waitUntil(inFlight: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return this.waiters.until(inFlight);
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.inFlight.clear();
    this.thread?.unref();
    this.waiters.rejectAll(this.failure);
  }
}

function digestFailed(detail: string, cause?: unknown): LookerBackupError {
  return new LookerBackupError(`hashing the archived files failed: ${detail}`, { cause });
}
