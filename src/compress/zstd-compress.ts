/**
 * zstd compression for the archive pipeline (tar -> zstd -> age), in node only. The input is split into blocks,
 * each compressed into an independent standard frame on worker threads, and the frames are written in input order.
 * Concatenated frames are a valid zstd stream, so `zstd -d` reads the result. This is how we get parallelism:
 * node:zlib's own multithreaded mode (the ZSTD_c_nbWorkers parameter) ends the stream early in Node 24.
 */
import { availableParallelism } from "node:os";
import { Transform, type TransformCallback } from "node:stream";
import { DEFAULT_COMPRESSION_LEVEL, MAX_COMPRESSION_LEVEL, MIN_COMPRESSION_LEVEL } from "../defaults.js";
import { InputError } from "../errors.js";
import { handOver } from "../runtime/buffers.js";
import { type BlockMemory, BlockPool } from "./block-pool.js";
import { type FileBlock, isFileBlock } from "./file-block.js";
import { type BlockEngine, type CompressedBlock, InlineEngine, WorkerPool } from "./zstd-engines.js";
import { wholeFrameBound } from "./zstd-frames.js";

export { type BlockMemory, BlockPool } from "./block-pool.js";
export type { FileBlock } from "./file-block.js";
export { liveZstdWorkerThreads } from "./zstd-engines.js";

export interface ZstdCompressOptions {
  /** zstd level, as `zstd -<level>`. Default DEFAULT_COMPRESSION_LEVEL, within the settings' range. */
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
  /**
   * Accept FileBlock objects between the buffers (the stream's writable side is then in object mode): each is a
   * whole block that the compressing thread reads from the file itself. They wait in a queue that holds no block
   * memory, and the threads take written blocks before them, so the writer can go on past a big file while the
   * threads are still compressing it. Each must start a block (the bytes written before it fill whole blocks).
   */
  fileBlocks?: boolean;
}

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
/**
 * Frames done but not written yet because an earlier one is not (a slower thread's, or a file block's still
 * queued), in blocks' worth of bytes: kept small on purpose. Measured with the bench's homes and 4 MiB blocks, in
 * paired runs: a bound of 6 MiB made no backup faster than 2 MiB did, and made the peak RSS of the 100k-small-files
 * backup ~50 MiB higher.
 */
const MAX_WAITING_FRAMES_IN_BLOCKS = 0.5;
/**
 * How far past the frame the output waits for a file block may start, per thread. A byte bound like the one above
 * stalled the threads: two blocks finishing out of order were already over it, and the faster thread sat idle
 * (a 1 GB backup took ~30 % longer).
 */
const FILE_BLOCKS_AHEAD_PER_THREAD = 2;
/**
 * File blocks queued and not yet given to a thread: how far (in blocks) the writer may run ahead of the threads
 * (1 GiB of big files). They cost no memory; the files they come from stay open until read (the backup's packer
 * keeps at most 64 of those open).
 */
const MAX_QUEUED_FILE_BLOCKS = 256;
const MIN_BLOCK_SIZE = 64 * 1024;
const MAX_BLOCK_SIZE = 256 * 1024 * 1024;
const MAX_WORKERS = 64;

/** A Transform that writes a zstd stream of independent frames, compressed in parallel. */
export function createZstdCompressStream(options: ZstdCompressOptions = {}): Transform {
  return new ZstdBlockCompressStream(resolveCompressOptions(options));
}

interface ResolvedCompressOptions {
  readonly level: number;
  readonly workers: number;
  readonly blockSize: number;
  readonly pool: BlockPool | undefined;
  readonly fileBlocks: boolean;
}

function resolveCompressOptions(options: ZstdCompressOptions): ResolvedCompressOptions {
  const level = options.level ?? DEFAULT_COMPRESSION_LEVEL;
  const workers = options.workers ?? Math.min(availableParallelism(), DEFAULT_MAX_WORKERS);
  const blockSize = options.blockSize ?? options.pool?.blockSize ?? DEFAULT_ZSTD_BLOCK_SIZE;
  requireInteger(
    "zstd level",
    level,
    MIN_COMPRESSION_LEVEL,
    MAX_COMPRESSION_LEVEL,
    `use a level from ${MIN_COMPRESSION_LEVEL} (fast) to ${MAX_COMPRESSION_LEVEL} (small); ${DEFAULT_COMPRESSION_LEVEL} is the default`,
  );
  requireInteger("zstd workers", workers, 1, MAX_WORKERS, "use a small number such as the count of cores");
  requireInteger("zstd block size", blockSize, MIN_BLOCK_SIZE, MAX_BLOCK_SIZE, "4 MiB is the default");
  if (options.pool !== undefined && options.pool.blockSize !== blockSize) {
    throw new InputError(
      `zstd block size ${blockSize} differs from the buffer pool's ${options.pool.blockSize}`,
      "give the pool the block size, or leave blockSize out",
    );
  }
  return { level, workers, blockSize, pool: options.pool, fileBlocks: options.fileBlocks ?? false };
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
  /** Most written blocks at the threads at once: one queued beyond the busy threads keeps them fed. */
  private readonly maxBlocksInFlight: number;
  private engine: BlockEngine | undefined;
  private block: Buffer | undefined;
  private filled = 0;
  /** Where blocks come from and go back to once compressed (the caller's, when it gave one). */
  private readonly pool: BlockPool;
  /** Whole pool buffers written to us are compressed in place (the writer gave them up). */
  private readonly adoptWholeBlocks: boolean;
  private nextSequence = 0;
  private nextToPush = 0;
  /** Written blocks given to the engine and not answered yet (each holds a block of memory). */
  private blocksInFlight = 0;
  /** Compressions at the engine, file blocks included: file blocks go only to an idle thread. */
  private jobsAtEngine = 0;
  /** File blocks in stream order, not given to a thread yet. */
  private readonly queuedFileBlocks: { readonly sequence: number; readonly block: FileBlock }[] = [];
  /** Frames finished out of order, waiting for their predecessors, and their bytes. */
  private readonly readyFrames = new Map<number, Buffer>();
  private waitingFrameBytes = 0;
  private readonly maxWaitingFrameBytes: number;
  /** Frames pushed and not yet read by our reader up to which file blocks still start: about one frame. */
  private readonly maxUnreadForFileBlocks: number;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;

  constructor(options: ResolvedCompressOptions) {
    // In object mode a writable high-water mark counts chunks: one, as the byte mode's 16 KiB held one block.
    super(options.fileBlocks ? { writableObjectMode: true, writableHighWaterMark: 1 } : {});
    this.options = options;
    const byMemory = Math.max(2, Math.floor(MAX_IN_FLIGHT_BYTES / options.blockSize));
    this.threads = Math.min(options.workers, byMemory);
    // One queued block beyond the busy threads keeps them fed; more only holds memory (2 cores: 3 x 4 MiB).
    this.maxBlocksInFlight = this.threads === 1 ? 1 : Math.min(this.threads + 1, byMemory);
    this.maxWaitingFrameBytes = MAX_WAITING_FRAMES_IN_BLOCKS * options.blockSize;
    this.maxUnreadForFileBlocks = wholeFrameBound(options.blockSize) + this.readableHighWaterMark;
    this.adoptWholeBlocks = options.pool !== undefined;
    this.pool = options.pool ?? new BlockPool(options.blockSize, { maxSpare: this.maxBlocksInFlight + 1 });
  }

  override _transform(
    chunk: Buffer | FileBlock,
    _encoding: BufferEncoding,
    callback: TransformCallback,
  ): void {
    const work = isFileBlock(chunk) ? this.queueFileBlock(chunk) : this.consume(chunk);
    work.then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    this.finish().then(() => callback(), callback);
  }

  override _read(size: number): void {
    this.notify(); // our reader took frames: maybe there is room for another block now
    super._read(size);
  }

  /**
   * Every way of reading (a pipe's flow, an async iterator, read() itself) comes through here, and only here has
   * the chunk left the buffer: _read runs before that, and not again until the next push. Queued file blocks are
   * started from here, so a reader that takes the whole buffer at once does not leave them waiting for a push
   * that no running compression will make.
   */
  override read(size?: number): ReturnType<Transform["read"]> {
    const chunk = super.read(size);
    if (this.queuedFileBlocks.length > 0) this.startFileBlocks();
    return chunk;
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.failure ??= error ?? new Error("zstd compress stream destroyed");
    for (const { block } of this.queuedFileBlocks.splice(0)) block.dropped();
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

  private async queueFileBlock(block: FileBlock): Promise<void> {
    if (!this.options.fileBlocks || this.filled !== 0 || block.length !== this.options.blockSize) {
      block.dropped();
      throw new Error(
        "a file block must be a whole block at a block boundary, on a stream made with fileBlocks: true",
      );
    }
    try {
      await this.waitUntil(() => this.queuedFileBlocks.length < MAX_QUEUED_FILE_BLOCKS);
    } catch (error) {
      block.dropped();
      throw error;
    }
    this.queuedFileBlocks.push({ sequence: this.nextSequence++, block });
    this.startFileBlocks();
  }

  private async finish(): Promise<void> {
    // An empty input still gets one (empty) frame, as `zstd` writes: `zstd -d` rejects a 0-byte file.
    if (this.filled > 0 || this.nextSequence === 0) {
      await this.waitForRoom();
      this.dispatch(true);
    }
    await this.waitUntil(() => this.nextToPush === this.nextSequence);
    await this.engine?.close();
  }

  private dispatch(lastBlock: boolean): void {
    const sequence = this.nextSequence++;
    // Blocks are always whole pool buffers (see consume): plain, or shared when the pool is.
    const input: BlockMemory = this.block?.buffer ?? new ArrayBuffer(0);
    const length = this.filled;
    this.block = undefined;
    this.filled = 0;
    this.blocksInFlight++;
    this.jobsAtEngine++;
    this.track(sequence, this.engineFor(lastBlock).compress(input, length), () => this.blocksInFlight--);
  }

  /**
   * File blocks go to the engine only while a thread is idle, so the written blocks (which hold memory) go first
   * (letting each thread queue one more file block measured no faster, and ~30 MiB higher peak RSS); only while
   * our reader keeps up, within a frame (compressed ahead of it, their frames piled up here: 150 MB at the end of a
   * 1 GB home, once the reader was the slower); and only a few blocks past the frame the output waits for, which
   * bounds the frames waiting for it (a thread still starting let the other race ahead). That frame always goes.
   */
  private startFileBlocks(): void {
    for (;;) {
      const next = this.queuedFileBlocks[0];
      if (next === undefined || this.jobsAtEngine >= this.threads || this.failure) return;
      if (this.readableLength > this.maxUnreadForFileBlocks) return;
      if (next.sequence >= this.nextToPush + FILE_BLOCKS_AHEAD_PER_THREAD * this.threads) return;
      this.queuedFileBlocks.shift();
      const { sequence, block } = next;
      this.jobsAtEngine++;
      const read = { fd: block.fd, position: block.position, path: block.path };
      const compressed = this.engineFor(false).compress(this.pool.take().buffer, block.length, read);
      // Told before the pool gets the memory back: the digest thread retains it to hash the file's bytes.
      compressed
        .then(
          ({ input, bytesRead }) => block.filled(input, bytesRead ?? 0),
          () => block.dropped(),
        )
        .catch((error: Error) => this.destroy(error));
      this.track(sequence, compressed);
    }
  }

  private track(sequence: number, compressed: Promise<CompressedBlock>, settled?: () => void): void {
    compressed.then(
      ({ frame, input }) => {
        settled?.();
        this.jobsAtEngine--;
        this.pool.give(input);
        this.readyFrames.set(sequence, frame);
        this.waitingFrameBytes += frame.length;
        this.pushReadyFrames();
        this.startFileBlocks();
        this.notify();
      },
      (error: Error) => {
        settled?.();
        this.jobsAtEngine--;
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
      this.waitingFrameBytes -= frame.length;
      handOver(frame); // the age stream frees it once encrypted (releaseInput)
      this.push(frame);
      frame = this.readyFrames.get(this.nextToPush);
    }
  }

  /**
   * Backpressure: a free compression slot, room among the frames waiting for an earlier one, and our reader has
   * taken the frames already pushed. Transform alone does not give the last: it only holds back input when a
   * transform call pushed synchronously, and our frames are pushed later, when the workers finish. Counting the
   * waiting frames is what bounds memory when one thread is slow (e.g. still starting) while the others race
   * ahead, or when file blocks ahead of the written ones are still queued.
   */
  private waitForRoom(): Promise<void> {
    return this.waitUntil(
      () =>
        this.blocksInFlight < this.maxBlocksInFlight &&
        this.waitingFrameBytes < this.maxWaitingFrameBytes &&
        this.readableLength < this.readableHighWaterMark,
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
