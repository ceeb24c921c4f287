/**
 * File blocks (src/compress/file-block.ts): whole blocks of a big file that the compressor reads itself, so the
 * packer can go on to the next files. The archive must come out byte for byte as if the packer had read them.
 */
import { createHash, randomBytes } from "node:crypto";
import { closeSync, fstatSync, openSync, readSync, truncateSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { CatalogEntry } from "../../src/archive/catalog.js";
import { type FileDigester, WorkerDigester } from "../../src/archive/file-digests.js";
import { ArchivePacker, type StreamPiece } from "../../src/archive/pack.js";
import { BlockPool } from "../../src/compress/block-pool.js";
import { type FileBlock, isFileBlock } from "../../src/compress/file-block.js";
import { createZstdCompressStream } from "../../src/compress/zstd-compress.js";
import { createZstdDecompressStream } from "../../src/compress/zstd-decompress.js";
import { resolveManifest } from "../../src/engine/backup.js";
import { readBody } from "../../src/extract/tar-reader.js";
import { streamSelection } from "../../src/manifest/select.js";
import { readFileBlock } from "../../src/workers/zstd-thread.js";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { openFileDescriptors, openFilesUnder } from "../helpers/open-files.js";
import { readTar } from "../helpers/read-tar.js";

const BLOCK = 64 * 1024;

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "lb-file-blocks-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Distinct bytes at every offset, so a block read from the wrong place shows. */
function patterned(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0; i + 4 <= size; i += 4) out.writeUInt32LE((i * 2654435761 + seed) >>> 0, i);
  return out;
}

/** A digester that keeps no pace of its own (for what the packer alone does); its digests are not looked at. */
const digestingNothing: FileDigester = {
  update: () => {},
  end: () => {},
  handOver: () => {},
  whenReady: () => undefined,
  later: () => () => {},
  drain: async () => {},
  close: async () => {},
};

/** A file block as a compressor sees it, counting how it was settled. */
function fileBlock(
  fd: number,
  position: number,
  settled: { filled: number[]; dropped: number },
  path = `fd ${fd}`,
): FileBlock {
  return {
    fd,
    path,
    position,
    length: BLOCK,
    filled: (_memory, bytesRead) => settled.filled.push(bytesRead),
    dropped: () => {
      settled.dropped++;
    },
  };
}

async function decompressAll(frames: Buffer[]): Promise<Buffer> {
  const parts: Buffer[] = [];
  await pipeline(Readable.from(frames), createZstdDecompressStream(), async (out: AsyncIterable<Buffer>) => {
    for await (const part of out) parts.push(part);
  });
  return Buffer.concat(parts);
}

describe("a compressor given file blocks", () => {
  for (const workers of [1, 2]) {
    it(`reads them where they stand in the stream (${workers} thread(s)): the output is the bytes in order`, async () => {
      const content = patterned(9 * BLOCK + 300, workers);
      const path = join(work, `blocks-${workers}.bin`);
      await writeFile(path, content);
      const fd = openSync(path, "r");
      const settled = { filled: [] as number[], dropped: 0 };
      try {
        // Written bytes in odd pieces up to a block boundary, then blocks the file gives, and so on.
        const pieces: (Buffer | FileBlock)[] = [
          content.subarray(0, 1000),
          content.subarray(1000, 2 * BLOCK),
          fileBlock(fd, 2 * BLOCK, settled),
          fileBlock(fd, 3 * BLOCK, settled),
          content.subarray(4 * BLOCK, 5 * BLOCK),
          fileBlock(fd, 5 * BLOCK, settled),
          fileBlock(fd, 6 * BLOCK, settled),
          fileBlock(fd, 7 * BLOCK, settled),
          content.subarray(8 * BLOCK),
        ];
        const frames: Buffer[] = [];
        await pipeline(
          Readable.from(pieces, { objectMode: true }),
          createZstdCompressStream({ blockSize: BLOCK, workers, fileBlocks: true }),
          async (out: AsyncIterable<Buffer>) => {
            for await (const frame of out) frames.push(frame);
          },
        );
        expect((await decompressAll(frames)).equals(content)).toBe(true);
        expect(settled).toEqual({ filled: [BLOCK, BLOCK, BLOCK, BLOCK, BLOCK], dropped: 0 });
      } finally {
        closeSync(fd);
      }
    });
  }

  it("zero-fills what a shrunk file no longer has, and says how much it read", async () => {
    const path = join(work, "shrunk.bin");
    await writeFile(path, patterned(BLOCK + 100, 7));
    const fd = openSync(path, "r");
    const settled = { filled: [] as number[], dropped: 0 };
    try {
      const frames: Buffer[] = [];
      await pipeline(
        Readable.from([fileBlock(fd, 0, settled), fileBlock(fd, BLOCK, settled)], { objectMode: true }),
        createZstdCompressStream({ blockSize: BLOCK, workers: 2, fileBlocks: true }),
        async (out: AsyncIterable<Buffer>) => {
          for await (const frame of out) frames.push(frame);
        },
      );
      const expected = Buffer.concat([patterned(BLOCK + 100, 7), Buffer.alloc(BLOCK - 100)]);
      expect((await decompressAll(frames)).equals(expected)).toBe(true);
      expect(settled.filled.sort((a, b) => a - b)).toEqual([100, BLOCK]);
    } finally {
      closeSync(fd);
    }
  });

  for (const workers of [1, 2]) {
    it(`names the file when a block cannot be read (${workers} thread(s))`, async () => {
      const fd = openSync(work, "r"); // a directory: reading it fails with EISDIR, as a failing disk fails with EIO
      const settled = { filled: [] as number[], dropped: 0 };
      try {
        const run = pipeline(
          Readable.from(
            [Buffer.alloc(BLOCK), fileBlock(fd, 0, settled, "/home/looker/looker/.db/looker.data")],
            {
              objectMode: true,
            },
          ),
          createZstdCompressStream({ blockSize: BLOCK, workers, fileBlocks: true }),
          new Writable({ write: (_chunk, _encoding, done) => done() }),
        );
        await expect(run).rejects.toThrow(/^cannot read \/home\/looker\/looker\/\.db\/looker\.data: EISDIR/);
        expect(settled).toEqual({ filled: [], dropped: 1 });
      } finally {
        closeSync(fd);
      }
    });
  }

  it("refuses a file block that does not start a block, and lets it go", async () => {
    const settled = { filled: [] as number[], dropped: 0 };
    const run = pipeline(
      Readable.from([Buffer.alloc(10), fileBlock(0, 0, settled)], { objectMode: true }),
      createZstdCompressStream({ blockSize: BLOCK, workers: 1, fileBlocks: true }),
      new Writable({ write: (_chunk, _encoding, done) => done() }),
    );
    await expect(run).rejects.toThrow(/must be a whole block at a block boundary/);
    expect(settled).toEqual({ filled: [], dropped: 1 });
  });

  it("settles every block once, filled or dropped, when the stream fails midway", async () => {
    const path = join(work, "many-blocks.bin");
    await writeFile(path, patterned(40 * BLOCK, 3));
    const fd = openSync(path, "r");
    const settled = { filled: [] as number[], dropped: 0 };
    try {
      async function* source(): AsyncGenerator<FileBlock> {
        for (let i = 0; i < 40; i++) yield fileBlock(fd, i * BLOCK, settled);
        throw new Error("the source failed");
      }
      const compressor = createZstdCompressStream({ blockSize: BLOCK, workers: 2, fileBlocks: true });
      const run = pipeline(Readable.from(source(), { objectMode: true }), compressor, async (out) => {
        for await (const _ of out) await sleep(1); // a slow reader: blocks are still queued at the failure
      });
      await expect(run).rejects.toThrow("the source failed");
      await vi.waitFor(() => expect(settled.filled.length + settled.dropped).toBe(40));
      expect(settled.dropped).toBeGreaterThan(0);
    } finally {
      closeSync(fd);
    }
  });

  it("reads no further ahead than its reader takes frames", async () => {
    const path = join(work, "unread.bin");
    const content = randomBytes(30 * BLOCK); // incompressible: each frame is a block's size
    await writeFile(path, content);
    const fd = openSync(path, "r");
    const settled = { filled: [] as number[], dropped: 0 };
    try {
      const compressor = createZstdCompressStream({ blockSize: BLOCK, workers: 2, fileBlocks: true });
      for (let i = 0; i < 30; i++) compressor.write(fileBlock(fd, i * BLOCK, settled));
      compressor.end();
      await sleep(300); // let the threads do what they may while nothing reads
      // Started only while the unread frames fit a frame's bound and the high-water mark (two such frames do: the
      // third pushed stops it), and less than 2 per thread past the next frame to push: blocks 0 to 6, of 30.
      expect(settled.filled.length).toBeLessThanOrEqual(7);
      const frames: Buffer[] = [];
      for await (const frame of compressor) frames.push(frame as Buffer);
      expect(settled.filled).toHaveLength(30);
      expect((await decompressAll(frames)).equals(content)).toBe(true);
    } finally {
      closeSync(fd);
    }
  });
});

describe("the packer with file blocks", () => {
  let home: string;
  let manifest: Awaited<ReturnType<typeof resolveManifest>>["manifest"];

  beforeAll(async () => {
    home = join(work, "home");
    await generateLookerHome({ root: home, seed: 11, sizeBytes: 256 << 10, smallFiles: 30 });
    // Sizes around the block size, and big files between small ones (their heads start mid-chunk).
    const sizes = [BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17, 16 * BLOCK, 5 * BLOCK];
    await Promise.all(
      sizes.map((size, i) => writeFile(join(home, `looker/big-${i}.bin`), patterned(size, 100 + i))),
    );
    ({ manifest } = await resolveManifest({ home }));
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  /**
   * Packs the home into plain tar bytes. File blocks are read as a compressor with two threads may: late (after
   * the packer went on, past the rest of the file) and out of order (the later of each pair first).
   * `beforeFill` runs before each one is read (the test's chance to change the file).
   */
  async function pack(options: {
    fileBlocks: boolean;
    /** Read every block only once the packer has gone as far as it can (past the rest of its file, at least). */
    allLate?: boolean;
    beforeFill?: (block: FileBlock) => void;
    /** Default: the digest thread. */
    digester?: FileDigester;
  }) {
    const pool = new BlockPool(BLOCK, { shared: true });
    const packer = new ArchivePacker({
      entries: streamSelection({ home, manifest }).batches,
      meta: { test: true },
      allocateChunk: () => pool.take(),
      createDigester: (listener) => options.digester ?? new WorkerDigester(listener, pool),
      fileBlockSize: options.fileBlocks ? BLOCK : undefined,
    });
    const parts: Buffer[] = [];
    let fileBlocks = 0;
    let unread: { block: FileBlock; part: number }[] = [];
    const readLate = () => {
      const batch = unread.reverse();
      unread = [];
      for (const { block, part } of batch) {
        options.beforeFill?.(block);
        const memory = pool.take();
        const bytesRead = readFileBlock(readSync, block.fd, memory, block.position, block.length);
        parts[part] = Buffer.from(memory);
        block.filled(memory.buffer, bytesRead);
        pool.give(memory.buffer);
      }
    };
    for await (const piece of packer.stream() as AsyncIterable<StreamPiece>) {
      if (!isFileBlock(piece)) {
        parts.push(Buffer.from(piece)); // a copy: the pool reuses the chunk
        if (pool.isWholeBlock(piece)) pool.give(piece.buffer);
        continue;
      }
      fileBlocks++;
      if (unread.length === 0) setImmediate(readLate); // once the packer has gone on as far as it can
      unread.push({ block: piece, part: parts.push(Buffer.alloc(0)) - 1 });
      if (unread.length === 2 && !options.allLate) readLate();
    }
    return { tar: Buffer.concat(parts), fileBlocks, ...packer.result() };
  }

  async function membersOf(tar: Buffer): Promise<Map<string, Buffer>> {
    const members = new Map<string, Buffer>();
    for await (const entry of readTar(Readable.from([tar]))) {
      members.set(entry.header.path, await readBody(entry.body, 64 << 20));
    }
    return members;
  }

  function sha256(bytes: Buffer): string {
    return createHash("sha256").update(bytes).digest("hex");
  }

  it("makes the very archive the packer makes reading every byte itself, and closes every file", async () => {
    vi.useFakeTimers({ toFake: ["Date"] }); // the meta members carry the time they are written
    vi.setSystemTime(new Date("2026-11-26T05:00:00Z"));
    const descriptors = openFileDescriptors();
    const withBlocks = await pack({ fileBlocks: true });
    const without = await pack({ fileBlocks: false });
    expect(withBlocks.fileBlocks).toBeGreaterThan(20);
    expect(without.fileBlocks).toBe(0);
    expect(withBlocks.tar.equals(without.tar)).toBe(true);
    expect(withBlocks.warnings).toEqual([]);
    await vi.waitFor(() => expect(openFileDescriptors()).toBe(descriptors)); // digest threads settle too
    const members = await membersOf(withBlocks.tar);
    const files = withBlocks.catalog.filter((entry: CatalogEntry) => entry.type === "file");
    for (const entry of files) expect(entry.sha256, entry.path).toBe(sha256(members.get(entry.path)!));
  });

  it("a big file that shrinks before its blocks are read: zeros in their place, a warning, a digest of what was archived", async () => {
    const victim = join(home, "looker/big-4.bin"); // 16 blocks: a head, 15 file blocks and a tail
    const original = patterned(16 * BLOCK, 104);
    let firstBlockAt: number | undefined;
    try {
      const result = await pack({
        fileBlocks: true,
        allLate: true, // the packer has read the head and the tail whole before any block is read
        beforeFill: (block) => {
          if (firstBlockAt !== undefined || fstatSync(block.fd).size !== 16 * BLOCK) return;
          firstBlockAt = block.position % BLOCK; // blocks follow the head, which is less than one
          truncateSync(victim, firstBlockAt + 10);
        },
      });
      expect(firstBlockAt).toBeDefined();
      const headAndBlocks = firstBlockAt! + 15 * BLOCK;
      const expected = Buffer.concat([
        original.subarray(0, firstBlockAt! + 10),
        Buffer.alloc(15 * BLOCK - 10),
        original.subarray(headAndBlocks),
      ]);
      const body = (await membersOf(result.tar)).get("home/looker/big-4.bin")!;
      expect(body.equals(expected)).toBe(true);
      expect(result.warnings).toEqual(["home/looker/big-4.bin changed while it was read"]);
      const entry = result.catalog.find((e) => e.path === "home/looker/big-4.bin")!;
      expect(entry.sha256).toBe(sha256(expected));
      expect(entry.warning).toBe("home/looker/big-4.bin changed while it was read");
    } finally {
      await writeFile(victim, original);
    }
  });

  it("keeps at most 64 files open for blocks not read yet, however many big files come in a row", async () => {
    const many = join(home, "looker/many");
    await mkdir(many);
    try {
      // 100 files of two blocks: each holds at least one whole chunk, whatever its offset in the stream.
      await Promise.all(
        Array.from({ length: 100 }, (_, i) => writeFile(join(many, `f${i}.bin`), patterned(2 * BLOCK, i))),
      );
      let mostOpen = 0;
      const result = await pack({
        fileBlocks: true,
        allLate: true, // nothing is read while the packer can go on: only its own bound may stop it
        beforeFill: () => {
          mostOpen = Math.max(mostOpen, openFilesUnder(home));
        },
        digester: digestingNothing, // the digest thread's backpressure would stop it first
      });
      expect(result.fileBlocks).toBeGreaterThanOrEqual(100);
      expect(mostOpen).toBe(64);
      expect(result.warnings).toEqual([]);
    } finally {
      await rm(many, { recursive: true, force: true });
    }
  });

  it("closes the files of blocks still out when the stream is abandoned, once they are let go", async () => {
    const descriptors = openFileDescriptors();
    const pool = new BlockPool(BLOCK, { shared: true });
    const packer = new ArchivePacker({
      entries: streamSelection({ home, manifest }).batches,
      meta: {},
      allocateChunk: () => pool.take(),
      createDigester: (listener) => new WorkerDigester(listener, pool),
      fileBlockSize: BLOCK,
    });
    const held: FileBlock[] = [];
    for await (const piece of packer.stream()) {
      if (isFileBlock(piece)) held.push(piece);
      if (held.length === 3) break; // abandons the stream: the generator's clean-up runs
    }
    expect(openFileDescriptors()).toBeGreaterThan(descriptors); // the blocks' file is still open for them
    for (const block of held) block.dropped();
    await vi.waitFor(() => expect(openFileDescriptors()).toBe(descriptors));
  });
});
