import { createHash, randomBytes } from "node:crypto";
import { readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BigFileWriter } from "../../src/extract/big-file-writer.js";
import { handOver } from "../../src/runtime/buffers.js";
import { fileHeader, freshDirectoryPerTest } from "../helpers/file-writers.js";

const work = freshDirectoryPerTest("big-file-writer-");

/** A chunk as our decompressor hands it out: its own ArrayBuffer (with slack after it), given up. */
function handedOverChunk(bytes: Buffer): Buffer {
  const chunk = Buffer.from(new ArrayBuffer(bytes.length + 64), 0, bytes.length);
  bytes.copy(chunk);
  handOver(chunk);
  return chunk;
}

/** Whether this process (any of its threads) holds a descriptor open on `path`. */
function isOpen(path: string): boolean {
  return readdirSync("/proc/self/fd").some((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === path;
    } catch {
      return false; // closed meanwhile (readdir's own descriptor)
    }
  });
}

describe("big-file writer", () => {
  it("writes and hashes each file in order, moving handed-over chunks and copying views, then sets mode and mtime", async () => {
    const writer = new BigFileWriter();
    try {
      const content = randomBytes(9 << 20);
      const backing = Buffer.from(content); // views into it are copied: it stays whole
      const parts = [
        backing.subarray(0, 100), // a file's share of a chunk
        handedOverChunk(content.subarray(100, (4 << 20) + 100)),
        handedOverChunk(content.subarray((4 << 20) + 100, (8 << 20) + 100)),
        backing.subarray((8 << 20) + 100), // the rest, a view
      ];
      const path = join(work.path, "big.db");
      const file = writer.open(path);
      for (const part of parts) await file.add(part);
      const digest = await file.finish(fileHeader(content.length, 0o640, 1_700_000_000.5), false);
      expect(digest).toBe(createHash("sha256").update(content).digest("hex"));
      expect(readFileSync(path).equals(content)).toBe(true);
      const stats = statSync(path);
      expect(stats.mode & 0o7777).toBe(0o640);
      expect(stats.mtimeMs).toBeCloseTo(1_700_000_000_500, 0);
      expect(parts[1]!.byteLength).toBe(0); // moved to the thread, not copied
      expect(backing.equals(content)).toBe(true); // copied, untouched
    } finally {
      await writer.close();
    }
  });

  it("keeps several files apart and waits when the thread lags, without losing a part", async () => {
    const writer = new BigFileWriter();
    try {
      const contents = [randomBytes(3 << 20), randomBytes(5 << 20)];
      const files = contents.map((_, i) => writer.open(join(work.path, `f${i}`)));
      // Interleaved, 20 parts of 256 KiB at a time: more than the thread may lag behind by.
      for (let offset = 0; offset < 5 << 20; offset += 256 << 10) {
        for (const [i, content] of contents.entries()) {
          if (offset < content.length) await files[i]!.add(content.subarray(offset, offset + (256 << 10)));
        }
      }
      const digests = await Promise.all(files.map((f) => f.finish(fileHeader(0, 0o600, 1), false)));
      expect(digests).toEqual(contents.map((c) => createHash("sha256").update(c).digest("hex")));
      for (const [i, content] of contents.entries())
        expect(readFileSync(join(work.path, `f${i}`)).equals(content)).toBe(true);
    } finally {
      await writer.close();
    }
  });

  it("reports a file it cannot create as the system error it is, taking its parts without hanging", async () => {
    const writer = new BigFileWriter();
    try {
      const path = join(work.path, "exists");
      writeFileSync(path, "already here"); // staging is fresh: a second member of one path is refused
      const file = writer.open(path);
      for (let i = 0; i < 10; i++) await file.add(Buffer.alloc(1 << 20));
      await expect(file.finish(fileHeader(10 << 20, 0o600, 1), false)).rejects.toMatchObject({
        code: "EEXIST",
      });
      expect(readFileSync(path, "utf8")).toBe("already here");
    } finally {
      await writer.close();
    }
  });

  it("closes an abandoned file once the writes handed over before are done", async () => {
    const writer = new BigFileWriter();
    try {
      const path = join(work.path, "abandoned");
      const file = writer.open(path);
      await file.add(Buffer.alloc(2 << 20, 7));
      // A file finished after another proves the thread has handled every message before (they go in order).
      const finishAnother = async (name: string) => {
        const other = writer.open(join(work.path, name));
        await other.add(Buffer.from("x"));
        await other.finish(fileHeader(1, 0o600, 1), false);
      };
      await finishAnother("before");
      expect(isOpen(path)).toBe(true); // the thread holds it while the restore goes on
      file.abandon();
      await finishAnother("after");
      expect(isOpen(path)).toBe(false);
      expect(statSync(path).size).toBe(2 << 20);
    } finally {
      await writer.close();
    }
  });
});
