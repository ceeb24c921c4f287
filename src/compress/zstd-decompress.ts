/**
 * zstd decompression for the restore pipeline (age -> zstd -> tar), in node only: node:zlib one frame at a time,
 * because its decompressor stops after the first frame (see zstd-frames.ts).
 */
import { once } from "node:events";
import { Transform, type TransformCallback } from "node:stream";
import { finished } from "node:stream/promises";
import { createZstdDecompress, type ZstdDecompress, zstdDecompress } from "node:zlib";
import { IntegrityError } from "../errors.js";
import { handOver, releaseHandedOver } from "../runtime/buffers.js";
import { wholeFrameBound, ZstdFrameScanner } from "./zstd-frames.js";

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
