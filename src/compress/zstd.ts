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
import { createZstdDecompress, type ZstdDecompress } from "node:zlib";
import { InputError, IntegrityError } from "../errors.js";
import { type BlockEngine, InlineEngine, WorkerPool } from "./zstd-engines.js";
import { ZstdFrameScanner } from "./zstd-frames.js";

export { liveZstdWorkerThreads } from "./zstd-engines.js";

export interface ZstdCompressOptions {
  /** zstd level, as `zstd -<level>`. Default 3. */
  level?: number;
  /** Compression threads. Default os.availableParallelism(), at most 8. 1 compresses without worker threads. */
  workers?: number;
  /** Uncompressed bytes per frame. Default DEFAULT_ZSTD_BLOCK_SIZE. */
  blockSize?: number;
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
}

function resolveCompressOptions(options: ZstdCompressOptions): ResolvedCompressOptions {
  const level = options.level ?? DEFAULT_ZSTD_LEVEL;
  const workers = options.workers ?? Math.min(availableParallelism(), DEFAULT_MAX_WORKERS);
  const blockSize = options.blockSize ?? DEFAULT_ZSTD_BLOCK_SIZE;
  requireInteger("zstd level", level, -7, 22, "use a level from 1 (fast) to 19 (small); 3 is the default");
  requireInteger("zstd workers", workers, 1, MAX_WORKERS, "use a small number such as the count of cores");
  requireInteger("zstd block size", blockSize, MIN_BLOCK_SIZE, MAX_BLOCK_SIZE, "4 MiB is the default");
  return { level, workers, blockSize };
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
  /** Input buffers returned by the engine, reused for later blocks. */
  private readonly spareBuffers: ArrayBuffer[] = [];
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
    this.maxBlocksHeld = this.threads === 1 ? 1 : Math.min(2 * this.threads, byMemory);
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
    let offset = 0;
    while (offset < chunk.length) {
      this.block ??= Buffer.from(this.spareBuffers.pop() ?? new ArrayBuffer(this.options.blockSize));
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
    // Blocks are always made from a plain ArrayBuffer (see consume), never a SharedArrayBuffer.
    const input = (this.block?.buffer as ArrayBuffer | undefined) ?? new ArrayBuffer(0);
    const length = this.filled;
    this.block = undefined;
    this.filled = 0;
    this.blocksHeld++;
    this.engineFor(lastBlock)
      .compress(input, length)
      .then(
        ({ frame, input: returned }) => {
          if (returned.byteLength === this.options.blockSize) this.spareBuffers.push(returned);
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

class ZstdFramesDecompressStream extends Transform {
  private readonly scanner = new ZstdFrameScanner();
  private frame: ZstdDecompress | undefined;
  private frameOffset = 0;

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
      if (event.kind === "frame-start") this.openFrame(event.offset);
      else if (event.kind === "data") await this.writeToFrame(event.bytes);
      else await this.closeFrame();
    }
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
