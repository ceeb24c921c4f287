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
import { createZstdDecompress, type ZstdDecompress, zstdDecompress } from "node:zlib";
import { InputError, IntegrityError } from "../errors.js";
import { handOver, releaseHandedOver } from "../runtime/buffers.js";
import { type BlockMemory, BlockPool } from "./block-pool.js";
import { type FileBlock, isFileBlock } from "./file-block.js";
import { type BlockEngine, type CompressedBlock, InlineEngine, WorkerPool } from "./zstd-engines.js";
import { ZstdFrameScanner } from "./zstd-frames.js";

export { type BlockMemory, BlockPool } from "./block-pool.js";
export type { FileBlock } from "./file-block.js";
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
  /**
   * Accept FileBlock objects between the buffers (the stream's writable side is then in object mode): each is a
   * whole block that the compressing thread reads from the file itself. They wait in a queue that holds no block
   * memory, and the threads take written blocks before them, so the writer can go on past a big file while the
   * threads are still compressing it. Each must start a block (the bytes written before it fill whole blocks).
   */
  fileBlocks?: boolean;
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

export interface ZstdDecompressOptions {
  /**
   * Free the chunks the writer hands over (our age decryptor's output batches, see handOver) once their bytes were
   * all copied into a gathered frame, not at V8's next collection.
   */
  releaseInput?: boolean;
}

/** A Transform that reads any zstd stream (one or many frames); bad input fails with IntegrityError. */
export function createZstdDecompressStream(options: ZstdDecompressOptions = {}): Transform {
  return new ZstdFramesDecompressStream(options.releaseInput ?? false);
}

interface ResolvedCompressOptions {
  readonly level: number;
  readonly workers: number;
  readonly blockSize: number;
  readonly pool: BlockPool | undefined;
  readonly fileBlocks: boolean;
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

/** zlib output chunk size when decompressing: fewer, larger pushes to the tar reader. */
const DECOMPRESS_CHUNK_SIZE = 256 * 1024;

/**
 * Frames that declare a content size up to this are gathered whole and decompressed in one call (our own frames
 * are DEFAULT_ZSTD_BLOCK_SIZE). Streaming each through node:zlib's stream decompressor costs a thread-pool round
 * trip per 256 KiB and left the restore's main thread idle a fifth of the time.
 */
const MAX_WHOLE_FRAME_CONTENT = 16 * 1024 * 1024;

/**
 * Whole frames are decompressed on the libuv thread pool (one job per frame), this many at a time, while the main
 * thread parses, hashes and writes the previous frame's output. Done synchronously on the main thread instead,
 * decompression was ~0.4 s of a ~2.5 s restore of 512 MB / 20k files into tmpfs, on the restore's critical path.
 * Two keep one frame decompressing while the next is gathered; more only hold memory (~8 MiB each).
 */
const WHOLE_FRAMES_IN_FLIGHT = 2;

/** Largest compressed size of a frame of `contentSize` bytes that we still gather whole (zstd adds very little). */
function wholeFrameBound(contentSize: number): number {
  return contentSize + (contentSize >> 7) + 65536;
}

interface WholeFrameJob {
  readonly offset: number;
  readonly contentSize: number;
  /** The gathered frame: lent to zlib until `output` settles, then back to the pool. */
  readonly input: ArrayBuffer;
  readonly output: Promise<Buffer>;
  settled: boolean;
}

class ZstdFramesDecompressStream extends Transform {
  private readonly scanner = new ZstdFrameScanner();
  /** The current frame's streaming decompressor, when it is not gathered whole. */
  private frame: ZstdDecompress | undefined;
  private frameOffset = 0;
  /** True while the current frame may still be decompressed whole. */
  private gathering = false;
  /** The frame's first bytes, copied, while its header is still incomplete (rare: pieces are large). */
  private headerParts: Buffer[] = [];
  /** Where the current frame is gathered, once its content size is known; sized to wholeFrameBound. */
  private wholeInput: Buffer | undefined;
  private wholeLength = 0;
  private wholeContentSize = 0;
  /** Whole frames being decompressed, in stream order; their outputs are pushed in that order. */
  private readonly jobs: WholeFrameJob[] = [];
  /**
   * Gathering buffers, reused: fresh ones cost a page fault per 4 KiB on first write (~0.1 s per 270 MB of
   * archive) and lots of external memory for the garbage collector.
   */
  private readonly spareInputs: ArrayBuffer[] = [];
  /** Set when a piece of the current input chunk went to a streaming decompressor, which may still hold it. */
  private inputLent = false;
  /** Resolves the wait of pushJobs for our reader (see waitForReader). */
  private readerWaiting: (() => void) | undefined;

  constructor(private readonly releaseInput: boolean) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.inputLent = false;
    this.consume(chunk).then(
      () => {
        if (this.releaseInput && !this.inputLent) releaseHandedOver(chunk);
        callback();
      },
      (error: unknown) => callback(this.asIntegrityError(error, this.frameOffset)),
    );
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.scanner.finish();
    } catch (error) {
      callback(error as Error);
      return;
    }
    this.pushJobs(0).then(
      () => callback(),
      (error: unknown) => callback(error as Error),
    );
  }

  override _read(size: number): void {
    // Our reader wants more: let the frame decompressor produce again (it pauses when we are full), and pushJobs
    // push the next whole frame's output.
    this.frame?.resume();
    this.wakeWriter();
    super._read(size);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.frame?.destroy();
    this.wakeWriter();
    // Jobs on the thread pool cannot be stopped; they finish and their output is dropped.
    this.jobs.length = 0;
    callback(error);
  }

  private async consume(chunk: Buffer): Promise<void> {
    for (const event of this.scanner.scan(chunk)) {
      if (event.kind === "frame-start") {
        this.frameOffset = event.offset;
        this.gathering = true;
        this.headerParts = [];
        this.wholeInput = undefined;
        this.wholeLength = 0;
      } else if (event.kind === "data") {
        if (this.gathering) await this.gather(event.bytes);
        else await this.writeToFrame(event.bytes);
      } else if (this.gathering) {
        await this.startWholeFrame();
      } else {
        await this.closeFrame();
      }
    }
    // Push what is already decompressed, so the reader is not kept waiting for the next input chunk.
    await this.pushJobs(this.jobs.length, true);
  }

  /** Copies into the gathering buffer (the producer may reuse its own); streams the frame when it cannot go whole. */
  private async gather(bytes: Buffer): Promise<void> {
    if (this.wholeInput === undefined) {
      const head = this.headerParts.length === 0 ? bytes : Buffer.concat([...this.headerParts, bytes]);
      const contentSize = frameContentSize(head);
      if (contentSize === "need-more") {
        this.headerParts.push(Buffer.from(bytes));
        return;
      }
      this.headerParts = [];
      if (contentSize === "unknown" || contentSize > MAX_WHOLE_FRAME_CONTENT) {
        await this.streamFrame([head]);
        return;
      }
      this.wholeContentSize = contentSize;
      this.wholeInput = this.takeInput(wholeFrameBound(contentSize));
      this.wholeLength = 0;
      bytes = head;
    }
    const input = this.wholeInput;
    if (this.wholeLength + bytes.length > input.length) {
      // Larger than any real frame of that content size: let zlib's streaming decoder judge it.
      this.wholeInput = undefined;
      await this.streamFrame([input.subarray(0, this.wholeLength), bytes]);
      return;
    }
    this.wholeLength += bytes.copy(input, this.wholeLength);
  }

  /** Switches the current frame to the streaming decompressor, after the whole frames before it are out. */
  private async streamFrame(parts: Buffer[]): Promise<void> {
    this.gathering = false;
    await this.pushJobs(0);
    this.openFrame(this.frameOffset);
    for (const part of parts) await this.writeToFrame(part);
  }

  private async startWholeFrame(): Promise<void> {
    const input = this.wholeInput;
    if (input === undefined)
      throw new IntegrityError(
        `zstd stream is corrupt: the frame at byte ${this.frameOffset} ends inside its header`,
      );
    this.wholeInput = undefined;
    this.gathering = false;
    const contentSize = this.wholeContentSize;
    // One output chunk with room to spare: zlib then returns the content as one buffer at the start of its
    // ArrayBuffer. Exactly the content size would make it allocate (and drop) a second chunk to look for more.
    const output = new Promise<Buffer>((resolve, reject) => {
      // libzstd itself stops at the declared size; maxOutputLength bounds the output whatever the library does.
      const options = { chunkSize: contentSize + 64, maxOutputLength: contentSize + 64 };
      zstdDecompress(input.subarray(0, this.wholeLength), options, (error, result) =>
        error ? reject(error) : resolve(result),
      );
    });
    const job: WholeFrameJob = {
      offset: this.frameOffset,
      contentSize,
      input: input.buffer as ArrayBuffer,
      output,
      settled: false,
    };
    output.then(
      () => {
        job.settled = true;
      },
      () => {
        job.settled = true;
      },
    );
    this.jobs.push(job);
    await this.pushJobs(WHOLE_FRAMES_IN_FLIGHT - 1);
  }

  /**
   * Pushes whole-frame outputs in order until at most `keep` jobs are left; with `readyOnly`, stops at the first
   * one still running. After each push that fills our readable side it waits for our reader: Transform's own
   * backpressure holds back only the next input chunk, and one chunk can hold hundreds of frames (64 KiB of age
   * payload held 120 frames of 16 MiB of zeros, and a restore of 1 GiB of them peaked at 979 MiB RSS).
   */
  private async pushJobs(keep: number, readyOnly = false): Promise<void> {
    while (this.jobs.length > keep) {
      const job = this.jobs[0]!;
      if (readyOnly && !job.settled) return;
      let output: Buffer;
      try {
        output = await job.output;
      } catch (error) {
        throw this.asIntegrityError(error, job.offset);
      } finally {
        this.giveInput(job.input);
      }
      this.jobs.shift();
      if (output.length !== job.contentSize) {
        throw new IntegrityError(
          `zstd stream is corrupt: the frame starting at byte ${job.offset} declares ${job.contentSize} bytes and holds ${output.length}`,
          "the archive was damaged in storage or transfer; use another copy or backup",
        );
      }
      if (output.length > 0) {
        // Nothing else views zlib's output chunk once the job is done: whoever reads it last may free it.
        handOver(output);
        if (!this.push(output)) await this.waitForReader();
      }
    }
  }

  /** Until our reader asks for more (_read) or we are destroyed. */
  private waitForReader(): Promise<void> {
    if (this.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      this.readerWaiting = resolve;
    });
  }

  private wakeWriter(): void {
    const wake = this.readerWaiting;
    this.readerWaiting = undefined;
    wake?.();
  }

  private takeInput(size: number): Buffer {
    const index = this.spareInputs.findIndex((spare) => spare.byteLength >= size);
    const buffer = index === -1 ? new ArrayBuffer(size) : this.spareInputs.splice(index, 1)[0]!;
    return Buffer.from(buffer, 0, size);
  }

  private giveInput(buffer: ArrayBuffer): void {
    if (this.spareInputs.length <= WHOLE_FRAMES_IN_FLIGHT && !this.spareInputs.includes(buffer))
      this.spareInputs.push(buffer);
  }

  private openFrame(offset: number): void {
    const frame = createZstdDecompress({ chunkSize: DECOMPRESS_CHUNK_SIZE });
    frame.on("data", (data: Buffer) => {
      if (!this.push(data)) frame.pause();
    });
    // A frame can fail after its bytes were accepted, while nothing awaits it: fail the whole stream then.
    frame.on("error", (error) => this.destroy(this.asIntegrityError(error, offset)));
    this.frame = frame;
    this.frameOffset = offset;
  }

  private async writeToFrame(bytes: Buffer): Promise<void> {
    this.inputLent = true;
    const frame = this.frame!;
    if (!frame.write(bytes)) await once(frame, "drain");
  }

  private async closeFrame(): Promise<void> {
    const frame = this.frame!;
    frame.end();
    await finished(frame);
    this.frame = undefined;
  }

  private asIntegrityError(error: unknown, frameOffset: number): Error {
    if (error instanceof IntegrityError || !(error instanceof Error)) return error as Error;
    const code = (error as NodeJS.ErrnoException).code ?? "";
    const dataError =
      (code.startsWith("ZSTD_error_") && code !== "ZSTD_error_memory_allocation") ||
      code.startsWith("Z_") ||
      code === "ERR_BUFFER_TOO_LARGE"; // more than a whole frame's declared content (maxOutputLength)
    if (!dataError) return error;
    return new IntegrityError(
      `zstd stream is corrupt: ${error.message} (frame starting at byte ${frameOffset})`,
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
