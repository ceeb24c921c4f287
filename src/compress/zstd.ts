/**
 * zstd streams for the archive pipeline (tar -> zstd -> age and back), in node only.
 *
 * Compression splits the input into blocks and compresses each into an independent standard frame on
 * worker threads, then writes the frames in input order. Concatenated frames are a valid zstd stream, so
 * `zstd -d` reads the result. This is how we get parallelism: node:zlib's own multithreaded mode (the
 * ZSTD_c_nbWorkers parameter) ends the stream early in Node 24.
 *
 * Decompression uses node:zlib one frame at a time, because its decompressor stops after the first frame
 * (see zstd-frames.ts).
 */
import { once } from "node:events";
import { availableParallelism } from "node:os";
import { Transform, type TransformCallback } from "node:stream";
import { finished } from "node:stream/promises";
import { createZstdDecompress, type ZstdDecompress, zstdDecompressSync } from "node:zlib";
import { InputError, IntegrityError } from "../errors.js";
import { type BlockMemory, BlockPool } from "./block-pool.js";
import { type BlockEngine, InlineEngine, WorkerPool } from "./zstd-engines.js";
import { ZstdFrameScanner } from "./zstd-frames.js";

export { type BlockMemory, BlockPool } from "./block-pool.js";
export { liveZstdWorkerThreads } from "./zstd-engines.js";

export interface ZstdCompressOptions {
  /** zstd level, as `zstd -<level>`. Default 3. */
  level?: number;
  /** Compression threads. Default os.availableParallelism(), at most 8. 1 compresses without worker threads. */
  workers?: number;
  /** Uncompressed bytes per frame. Default DEFAULT_ZSTD_BLOCK_SIZE, or the pool's block size. */
  blockSize?: number;
  /**
   * Buffers shared with the writer. Blocks are built from them and returned to them, and a written chunk that
   * is one whole buffer of the pool's size (BlockPool.isWholeBlock) is compressed as a block without a copy:
   * it is transferred (or, from a shared pool, lent) to a worker thread, so the writer must not touch it after
   * writing it; the pool gets it back when the frame is done.
   */
  pool?: BlockPool;
}

export const DEFAULT_ZSTD_LEVEL = 3;
/**
 * Measured on 1 GiB of mixed LookML/JSON/log text and database pages, 2 workers: 1 MiB blocks lose 4% of
 * ratio against `zstd -3`, 4 MiB 1.3%, 8 MiB 0.4%; speed is the same within noise (~630-710 MB/s, vs
 * 700-770 for `zstd -3 -T0`) and peak RSS grows with the block (~165, 190, 250+ MiB of the whole process
 * for 4, 8, 16 MiB). 4 MiB keeps memory low.
 */
export const DEFAULT_ZSTD_BLOCK_SIZE = 4 * 1024 * 1024;
/**
 * Each worker thread is a V8 isolate (~10 MiB) with its own zstd context; past 8 threads the single main
 * thread (tar, sha256, age) is the bottleneck anyway, so more would only cost memory.
 */
const DEFAULT_MAX_WORKERS = 8;
/** Cap on input held in flight (and so on busy threads), so memory stays bounded whatever the options. */
const MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024;
const MIN_BLOCK_SIZE = 64 * 1024;
const MAX_BLOCK_SIZE = 256 * 1024 * 1024;
const MAX_WORKERS = 64;

/** A Transform that writes a zstd stream of independent frames, compressed in parallel. */
export function createZstdCompressStream(options: ZstdCompressOptions = {}): Transform {
  return new ZstdBlockCompressStream(resolveCompressOptions(options));
}

/** A Transform that reads any zstd stream (one or many frames); bad input fails with IntegrityError. */
export function createZstdDecompressStream(): Transform {
  return new ZstdFramesDecompressStream();
}

interface ResolvedCompressOptions {
  readonly level: number;
  readonly workers: number;
  readonly blockSize: number;
  readonly pool: BlockPool | undefined;
}

function resolveCompressOptions(options: ZstdCompressOptions): ResolvedCompressOptions {
  const level = options.level ?? DEFAULT_ZSTD_LEVEL;
  const workers = options.workers ?? Math.min(availableParallelism(), DEFAULT_MAX_WORKERS);
  const blockSize = options.blockSize ?? options.pool?.blockSize ?? DEFAULT_ZSTD_BLOCK_SIZE;
  requireInteger("zstd level", level, -7, 22, "use a level from 1 (fast) to 19 (small); 3 is the default");
  requireInteger("zstd workers", workers, 1, MAX_WORKERS, "use a small number such as the count of cores");
  requireInteger("zstd block size", blockSize, MIN_BLOCK_SIZE, MAX_BLOCK_SIZE, "4 MiB is the default");
  if (options.pool !== undefined && options.pool.blockSize !== blockSize) {
    throw new InputError(
      `zstd block size ${blockSize} differs from the buffer pool's ${options.pool.blockSize}`,
      "give the pool the block size, or leave blockSize out",
    );
  }
  return { level, workers, blockSize, pool: options.pool };
}

function requireInteger(what: string, value: number, min: number, max: number, hint: string): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new InputError(`${what} must be an integer from ${min} to ${max}, got ${value}`, hint);
  }
}

class ZstdBlockCompressStream extends Transform {
  private readonly options: ResolvedCompressOptions;
  /** Threads that can have work at once, within the memory cap. */
  private readonly threads: number;
  /** Most blocks held at once: about two per thread, so each has its next block queued. */
  private readonly maxBlocksHeld: number;
  private engine: BlockEngine | undefined;
  private block: Buffer | undefined;
  private filled = 0;
  /** Where blocks come from and go back to once compressed (the caller's, when it gave one). */
  private readonly pool: BlockPool;
  /** Whole pool buffers written to us are compressed in place (the writer gave them up). */
  private readonly adoptWholeBlocks: boolean;
  private nextSequence = 0;
  private nextToPush = 0;
  /**
   * Blocks dispatched whose frames are not pushed yet: compressing, or done but waiting for an earlier
   * one. Counting until the push (not until the worker answers) is what bounds memory when one worker is
   * slow, e.g. still starting, while the others race ahead.
   */
  private blocksHeld = 0;
  /** Frames finished out of order, waiting for their predecessors. */
  private readonly readyFrames = new Map<number, Buffer>();
  private failure: Error | undefined;
  private wake: (() => void) | undefined;

  constructor(options: ResolvedCompressOptions) {
    super();
    this.options = options;
    const byMemory = Math.max(2, Math.floor(MAX_IN_FLIGHT_BYTES / options.blockSize));
    this.threads = Math.min(options.workers, byMemory);
    // One queued block beyond the busy threads keeps them fed; more only holds memory (2 cores: 3 x 4 MiB).
    this.maxBlocksHeld = this.threads === 1 ? 1 : Math.min(this.threads + 1, byMemory);
    this.adoptWholeBlocks = options.pool !== undefined;
    this.pool = options.pool ?? new BlockPool(options.blockSize, { maxSpare: this.maxBlocksHeld + 1 });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.consume(chunk).then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    this.finish().then(() => callback(), callback);
  }

  override _read(size: number): void {
    this.notify(); // our reader took frames: maybe there is room for another block now
    super._read(size);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.failure ??= error ?? new Error("zstd compress stream destroyed");
    this.notify();
    const engine = this.engine;
    if (engine === undefined) {
      callback(error);
      return;
    }
    // Call back only once the threads are gone, so 'close' means no worker is left running.
    engine.close().then(
      () => callback(error),
      () => callback(error),
    );
  }

  private async consume(chunk: Buffer): Promise<void> {
    if (this.adoptWholeBlocks && this.filled === 0 && this.pool.isWholeBlock(chunk)) {
      await this.waitForRoom();
      this.block = chunk;
      this.filled = chunk.length;
      this.dispatch(false);
      return;
    }
    let offset = 0;
    while (offset < chunk.length) {
      this.block ??= this.pool.take();
      const copied = chunk.copy(this.block, this.filled, offset);
      this.filled += copied;
      offset += copied;
      if (this.filled === this.options.blockSize) {
        await this.waitForRoom();
        this.dispatch(false);
      }
    }
  }

  private async finish(): Promise<void> {
    // An empty input still gets one (empty) frame, as `zstd` writes: `zstd -d` rejects a 0-byte file.
    if (this.filled > 0 || this.nextSequence === 0) {
      await this.waitForRoom();
      this.dispatch(true);
    }
    await this.waitUntil(() => this.blocksHeld === 0);
    await this.engine?.close();
  }

  private dispatch(lastBlock: boolean): void {
    const sequence = this.nextSequence++;
    // Blocks are always whole pool buffers (see consume): plain, or shared when the pool is.
    const input: BlockMemory = this.block?.buffer ?? new ArrayBuffer(0);
    const length = this.filled;
    this.block = undefined;
    this.filled = 0;
    this.blocksHeld++;
    this.engineFor(lastBlock)
      .compress(input, length)
      .then(
        ({ frame, input: returned }) => {
          this.pool.give(returned);
          this.readyFrames.set(sequence, frame);
          this.pushReadyFrames();
          this.notify();
        },
        (error: Error) => {
          this.failure ??= error;
          this.notify();
          this.destroy(error);
        },
      );
  }

  /** Worker threads pay off only when there is more than one block and more than one thread. */
  private engineFor(lastBlock: boolean): BlockEngine {
    if (this.engine === undefined) {
      const singleBlock = lastBlock && this.nextSequence === 1;
      this.engine =
        this.threads === 1 || singleBlock
          ? new InlineEngine(this.options.level)
          : new WorkerPool(this.threads, this.options.level);
    }
    return this.engine;
  }

  private pushReadyFrames(): void {
    if (this.destroyed) return;
    for (let frame = this.readyFrames.get(this.nextToPush); frame !== undefined; ) {
      this.readyFrames.delete(this.nextToPush);
      this.nextToPush++;
      this.blocksHeld--;
      this.push(frame);
      frame = this.readyFrames.get(this.nextToPush);
    }
  }

  /**
   * Backpressure: a free compression slot, and our reader has taken the frames already pushed. Transform
   * alone does not give the second: it only holds back input when a transform call pushed synchronously,
   * and our frames are pushed later, when the workers finish.
   */
  private waitForRoom(): Promise<void> {
    return this.waitUntil(
      () => this.blocksHeld < this.maxBlocksHeld && this.readableLength < this.readableHighWaterMark,
    );
  }

  private async waitUntil(condition: () => boolean): Promise<void> {
    for (;;) {
      if (this.failure) throw this.failure;
      if (condition()) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}

/** zlib output chunk size when decompressing: fewer, larger pushes to the tar reader. */
const DECOMPRESS_CHUNK_SIZE = 256 * 1024;

/**
 * Frames that declare a content size up to this are gathered whole and decompressed in one synchronous call
 * (our own frames are DEFAULT_ZSTD_BLOCK_SIZE). Streaming each through node:zlib's async decompressor costs a
 * thread-pool round trip per 256 KiB and left the restore's main thread idle a fifth of the time.
 */
const MAX_WHOLE_FRAME_CONTENT = 16 * 1024 * 1024;
/** A compressed frame bigger than this is not gathered (incompressible data grows by a little only). */
const MAX_WHOLE_FRAME_BYTES = MAX_WHOLE_FRAME_CONTENT + (MAX_WHOLE_FRAME_CONTENT >> 7) + 65536;

class ZstdFramesDecompressStream extends Transform {
  private readonly scanner = new ZstdFrameScanner();
  private frame: ZstdDecompress | undefined;
  private frameOffset = 0;
  /** The current frame's bytes, while it may still be decompressed whole; undefined once streaming. */
  private gathered: Buffer[] | undefined;
  private gatheredBytes = 0;
  /** The current frame's declared content size, once its header was seen and it fits MAX_WHOLE_FRAME_CONTENT. */
  private wholeContentSize: number | undefined;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.consume(chunk).then(
      () => callback(),
      (error: unknown) => callback(this.asIntegrityError(error)),
    );
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.scanner.finish();
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _read(size: number): void {
    // Our reader wants more: let the frame decompressor produce again (it pauses when we are full).
    this.frame?.resume();
    super._read(size);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.frame?.destroy();
    callback(error);
  }

  private async consume(chunk: Buffer): Promise<void> {
    for (const event of this.scanner.scan(chunk)) {
      if (event.kind === "frame-start") {
        this.frameOffset = event.offset;
        this.gathered = [];
        this.gatheredBytes = 0;
        this.wholeContentSize = undefined;
      } else if (event.kind === "data") {
        if (this.gathered !== undefined) await this.gather(event.bytes);
        else await this.writeToFrame(event.bytes);
      } else if (this.gathered !== undefined) {
        this.decompressWhole();
      } else {
        await this.closeFrame();
      }
    }
  }

  /** Keeps a copy (the producer may reuse its buffer); falls back to streaming when the frame cannot go whole. */
  private async gather(bytes: Buffer): Promise<void> {
    const gathered = this.gathered!;
    gathered.push(Buffer.from(bytes));
    this.gatheredBytes += bytes.length;
    if (this.wholeContentSize === undefined) {
      // The header is at most 18 bytes; it usually arrives in the first piece, so this concat is rare.
      const contentSize = frameContentSize(gathered.length === 1 ? gathered[0]! : Buffer.concat(gathered));
      if (contentSize === "need-more") return;
      if (typeof contentSize === "number" && contentSize <= MAX_WHOLE_FRAME_CONTENT)
        this.wholeContentSize = contentSize;
    }
    if (this.wholeContentSize !== undefined && this.gatheredBytes <= MAX_WHOLE_FRAME_BYTES) return;
    this.gathered = undefined;
    this.openFrame(this.frameOffset);
    for (const part of gathered) await this.writeToFrame(part);
  }

  private decompressWhole(): void {
    const frame = this.gathered!.length === 1 ? this.gathered![0]! : Buffer.concat(this.gathered!);
    this.gathered = undefined;
    const contentSize = this.wholeContentSize;
    if (contentSize === undefined)
      throw new IntegrityError(
        `zstd stream is corrupt: the frame at byte ${this.frameOffset} ends inside its header`,
      );
    let output: Buffer;
    try {
      output = zstdDecompressSync(frame, { chunkSize: Math.max(contentSize, 64) });
    } catch (error) {
      throw this.asIntegrityError(error);
    }
    if (output.length !== contentSize) {
      throw new IntegrityError(
        `zstd stream is corrupt: the frame starting at byte ${this.frameOffset} declares ${contentSize} bytes and holds ${output.length}`,
        "the archive was damaged in storage or transfer; use another copy or backup",
      );
    }
    if (output.length > 0) this.push(output);
  }

  private openFrame(offset: number): void {
    const frame = createZstdDecompress({ chunkSize: DECOMPRESS_CHUNK_SIZE });
    frame.on("data", (data: Buffer) => {
      if (!this.push(data)) frame.pause();
    });
    // A frame can fail after its bytes were accepted, while nothing awaits it: fail the whole stream then.
    frame.on("error", (error) => this.destroy(this.asIntegrityError(error)));
    this.frame = frame;
    this.frameOffset = offset;
  }

  private async writeToFrame(bytes: Buffer): Promise<void> {
    const frame = this.frame!;
    if (!frame.write(bytes)) await once(frame, "drain");
  }

  private async closeFrame(): Promise<void> {
    const frame = this.frame!;
    frame.end();
    await finished(frame);
    this.frame = undefined;
  }

  private asIntegrityError(error: unknown): Error {
    if (error instanceof IntegrityError || !(error instanceof Error)) return error as Error;
    const code = (error as NodeJS.ErrnoException).code ?? "";
    const dataError =
      (code.startsWith("ZSTD_error_") && code !== "ZSTD_error_memory_allocation") || code.startsWith("Z_");
    if (!dataError) return error;
    return new IntegrityError(
      `zstd stream is corrupt: ${error.message} (frame starting at byte ${this.frameOffset})`,
      "the archive was damaged in storage or transfer; use another copy or backup",
      error,
    );
  }
}

/**
 * Frame_Content_Size from a frame's header (RFC 8878, 3.1.1.1), given the frame's first bytes: a number,
 * "unknown" when the frame does not declare it, "need-more" when the header is not complete yet.
 */
function frameContentSize(frame: Buffer): number | "unknown" | "need-more" {
  const magicSize = 4;
  if (frame.length < magicSize + 1) return "need-more";
  const descriptor = frame[magicSize]!;
  const contentSizeFlag = descriptor >> 6;
  const singleSegment = (descriptor >> 5) & 1;
  const fieldSize = [singleSegment, 2, 4, 8][contentSizeFlag]!;
  if (fieldSize === 0) return "unknown";
  const start = magicSize + 1 + (singleSegment ? 0 : 1) + [0, 1, 2, 4][descriptor & 3]!;
  if (frame.length < start + fieldSize) return "need-more";
  if (fieldSize === 1) return frame[start]!;
  if (fieldSize === 2) return frame.readUInt16LE(start) + 256;
  if (fieldSize === 4) return frame.readUInt32LE(start);
  const value = frame.readBigUInt64LE(start);
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(value);
}
