import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { Readable, type Transform, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { constants, zstdCompressSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import {
  createZstdCompressStream,
  liveZstdWorkerThreads,
  type ZstdCompressOptions,
} from "../../src/compress/zstd-compress.js";
import { createZstdDecompressStream } from "../../src/compress/zstd-decompress.js";
import { ZstdFrameScanner } from "../../src/compress/zstd-frames.js";
import { InputError, IntegrityError } from "../../src/errors.js";

const BLOCK = 64 * 1024;

/** Resolves on 'close' (events.once would reject on the 'error' that a destroy with an error emits). */
function closed(stream: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve) => stream.once("close", () => resolve()));
}

/** Compressible but block-distinct data: each line names its offset, so swapped frames would show. */
function sampleData(size: number, seed = 1): Buffer {
  const out = Buffer.alloc(size);
  let state = seed;
  let offset = 0;
  while (offset < size) {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    const line = `dimension: field_${state % 97} { sql: \${TABLE}.col_${offset} ;; } # ${state.toString(36)}\n`;
    offset += out.write(line, offset);
  }
  return out;
}

/** Feeds `input` in irregular chunk sizes (so chunks straddle block and frame boundaries). */
function chunked(input: Buffer, sizes = [1000, 77_777, 3, 65_536, 150_000]): Readable {
  const chunks: Buffer[] = [];
  for (let offset = 0, index = 0; offset < input.length; index++) {
    const size = sizes[index % sizes.length]!;
    chunks.push(input.subarray(offset, offset + size));
    offset += size;
  }
  return Readable.from(chunks);
}

async function collect(source: Readable, transform: Transform): Promise<Buffer> {
  const parts: Buffer[] = [];
  await pipeline(source, transform, async (stream: AsyncIterable<Buffer>) => {
    for await (const part of stream) parts.push(part);
  });
  return Buffer.concat(parts);
}

function compress(input: Buffer, options: ZstdCompressOptions): Promise<Buffer> {
  return collect(chunked(input), createZstdCompressStream(options));
}

function decompress(input: Buffer, chunkSizes?: number[]): Promise<Buffer> {
  return collect(chunked(input, chunkSizes), createZstdDecompressStream());
}

function countFrames(stream: Buffer): number {
  const scanner = new ZstdFrameScanner();
  scanner.scan(stream);
  scanner.finish();
  return scanner.frames;
}

describe("createZstdCompressStream", () => {
  const sizes: Array<[string, number]> = [
    ["0 B", 0],
    ["1 B", 1],
    ["exactly one block", BLOCK],
    ["one block + 1 B", BLOCK + 1],
    ["many blocks", 10 * BLOCK + 12_345],
  ];
  for (const workers of [1, 2]) {
    for (const [name, size] of sizes) {
      it(`round-trips ${name} with ${workers} worker(s), one frame per block`, async () => {
        const input = sampleData(size, size + workers);
        const compressed = await compress(input, { workers, blockSize: BLOCK });
        expect(countFrames(compressed)).toBe(Math.max(1, Math.ceil(size / BLOCK)));
        expect((await decompress(compressed)).equals(input)).toBe(true);
      });
    }
  }

  it("writes frames with content size and checksum, like the zstd CLI", async () => {
    const compressed = await compress(sampleData(3 * BLOCK), { workers: 2, blockSize: BLOCK });
    const descriptor = compressed[4]!;
    expect(compressed.readUInt32LE(0)).toBe(0xfd2fb528);
    expect(descriptor >> 6).not.toBe(0); // Frame_Content_Size_flag: 0 would mean no size (or a 1-byte one)
    expect((descriptor >> 2) & 1).toBe(1); // Content_Checksum_flag
  });

  it("keeps input order when later blocks finish first", async () => {
    // Block 0 is slow to compress (high level, incompressible-ish), the rest are trivial.
    const slow = Buffer.from(sampleData(BLOCK, 7).map((byte, index) => byte ^ ((index * 2654435761) >>> 24)));
    const input = Buffer.concat([slow, Buffer.alloc(8 * BLOCK, 0x61), sampleData(BLOCK, 9)]);
    const compressed = await compress(input, { workers: 2, blockSize: BLOCK, level: 19 });
    expect((await decompress(compressed)).equals(input)).toBe(true);
  });

  it("terminates its worker threads when it ends", async () => {
    const input = sampleData(6 * BLOCK);
    await compress(input, { workers: 2, blockSize: BLOCK });
    expect(liveZstdWorkerThreads()).toBe(0);
  });

  it("terminates its worker threads when destroyed mid-stream", async () => {
    const compressor = createZstdCompressStream({ workers: 2, blockSize: BLOCK });
    const errors: Error[] = [];
    compressor.on("error", (error) => errors.push(error));
    compressor.write(sampleData(4 * BLOCK));
    await once(compressor, "readable"); // a frame is out, so the pool is running
    expect(liveZstdWorkerThreads()).toBeGreaterThan(0);
    compressor.destroy(new Error("cancelled by test"));
    await closed(compressor);
    expect(liveZstdWorkerThreads()).toBe(0);
    expect(errors.map((error) => error.message)).toEqual(["cancelled by test"]);
  });

  it("terminates its worker threads when the source fails", async () => {
    async function* failingSource() {
      for (let index = 0; index < 6; index++) yield sampleData(BLOCK, index);
      throw new Error("source read failed");
    }
    const compressor = createZstdCompressStream({ workers: 2, blockSize: BLOCK });
    const compressorClosed = closed(compressor);
    await expect(
      pipeline(Readable.from(failingSource()), compressor, new Writable({ write: (_c, _e, cb) => cb() })),
    ).rejects.toThrow("source read failed");
    await compressorClosed;
    expect(liveZstdWorkerThreads()).toBe(0);
  });

  it("stops reading its input while its output is not consumed", async () => {
    let pulled = 0;
    const source = new Readable({
      read() {
        pulled += BLOCK / 4;
        // Incompressible, so that frames are as large as blocks and held frames show in the count.
        this.push(randomBytes(BLOCK / 4));
      },
    });
    const compressor = createZstdCompressStream({ workers: 2, blockSize: BLOCK });
    source.pipe(compressor); // nobody reads the compressor
    // Wait until the pipe has stalled: nothing more pulled across several rounds of worker completions.
    let previous = -1;
    for (let stableRounds = 0; stableRounds < 5; ) {
      await sleep(100);
      stableRounds = pulled === previous ? stableRounds + 1 : 0;
      previous = pulled;
    }
    // 2 per worker in flight, one being filled, one pushed frame, plus the pipe's buffers: about 8.
    expect(pulled).toBeLessThanOrEqual(10 * BLOCK);
    expect(pulled).toBeGreaterThan(0);
    source.destroy();
    compressor.destroy();
    await closed(compressor);
    expect(liveZstdWorkerThreads()).toBe(0);
  });

  it("holds back input while its frames are unread, even when the workers are idle", async () => {
    const compressor = createZstdCompressStream({ workers: 2, blockSize: BLOCK });
    // Observe frames as they are pushed (nobody reads them), so the source can wait for each one.
    let framesPushed = 0;
    const push = compressor.push.bind(compressor);
    compressor.push = (chunk: unknown) => {
      if (chunk !== null) framesPushed++;
      return push(chunk);
    };
    let blocksPulled = 0;
    const source = new Readable({
      highWaterMark: 1,
      read() {
        // One block at a time and only after the previous one came out as a frame: compression is never
        // the bottleneck, so only the compressor's own output backpressure can stop the flow.
        const waitForFrame = async () => {
          while (framesPushed < blocksPulled && blocksPulled < 40) await sleep(5);
          blocksPulled++;
          this.push(randomBytes(BLOCK));
        };
        void waitForFrame();
      },
    });
    source.pipe(compressor);
    let previous = -1;
    for (let stableRounds = 0; stableRounds < 5; ) {
      await sleep(100);
      stableRounds = blocksPulled === previous ? stableRounds + 1 : 0;
      previous = blocksPulled;
    }
    expect(blocksPulled).toBeGreaterThan(0);
    expect(blocksPulled).toBeLessThanOrEqual(4);
    expect(compressor.readableLength).toBeLessThanOrEqual(2 * BLOCK);
    source.destroy();
    compressor.destroy();
    await closed(compressor);
  });

  it("rejects bad options with InputError", () => {
    expect(() => createZstdCompressStream({ level: 99 })).toThrow(InputError);
    expect(() => createZstdCompressStream({ workers: 0 })).toThrow(InputError);
    expect(() => createZstdCompressStream({ blockSize: 1.5 })).toThrow(InputError);
  });
});

describe("createZstdDecompressStream", () => {
  const input = sampleData(5 * BLOCK + 99);
  const frameOf = (data: Buffer) =>
    zstdCompressSync(data, { params: { [constants.ZSTD_c_checksumFlag]: 1 } });

  it("reads concatenated frames, byte by byte too", async () => {
    const parts = [input.subarray(0, 1000), input.subarray(1000, 1000), input.subarray(1000)];
    const stream = Buffer.concat(parts.map(frameOf));
    expect((await decompress(stream)).equals(input)).toBe(true);
    const small = Buffer.concat([
      frameOf(input.subarray(0, 3000)),
      frameOf(Buffer.alloc(0)),
      frameOf(input.subarray(3000, 5000)),
    ]);
    expect((await decompress(small, [1])).equals(input.subarray(0, 5000))).toBe(true);
  });

  it("skips skippable frames", async () => {
    const skippable = Buffer.concat([
      Buffer.from([0x5a, 0x2a, 0x4d, 0x18, 5, 0, 0, 0]),
      Buffer.from("hello"),
    ]);
    const stream = Buffer.concat([skippable, frameOf(input), skippable, frameOf(Buffer.from("tail"))]);
    const output = await decompress(stream, [3]);
    expect(output.equals(Buffer.concat([input, Buffer.from("tail")]))).toBe(true);
  });

  it("fails with IntegrityError on a corrupt byte", async () => {
    const stream = await compress(input, { workers: 2, blockSize: BLOCK });
    const corrupt = Buffer.from(stream);
    corrupt[Math.floor(corrupt.length / 2)]! ^= 0x55;
    await expect(decompress(corrupt)).rejects.toThrow(IntegrityError);
  });

  it("fails with IntegrityError on truncation, garbage, empty and non-zstd input", async () => {
    const stream = await compress(input, { workers: 2, blockSize: BLOCK });
    await expect(decompress(stream.subarray(0, stream.length - 1))).rejects.toThrow(/truncated/);
    await expect(decompress(stream.subarray(0, stream.length - 1000))).rejects.toThrow(IntegrityError);
    await expect(decompress(Buffer.concat([stream, Buffer.from("garbage!")]))).rejects.toThrow(
      /not a zstd frame at byte/,
    );
    await expect(decompress(Buffer.concat([stream, Buffer.from([0x28])]))).rejects.toThrow(/truncated/);
    await expect(decompress(Buffer.alloc(0))).rejects.toThrow(/empty/);
    await expect(decompress(Buffer.from("plain text, not zstd"))).rejects.toThrow(IntegrityError);
  });
});
