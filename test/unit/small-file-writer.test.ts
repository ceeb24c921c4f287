import { randomBytes } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SMALL_FILE_MAX, SmallFileWriter } from "../../src/extract/small-file-writer.js";
import { fileHeader, freshDirectoryPerTest } from "../helpers/file-writers.js";

const work = freshDirectoryPerTest("small-file-writer-");

async function queue(
  writer: SmallFileWriter,
  path: string,
  body: Buffer,
  mode = 0o640,
  mtime = 1_700_000_000.25,
) {
  const { target, offset } = await writer.reserve(body.length);
  body.copy(target, offset);
  writer.add(path, fileHeader(body.length, mode, mtime), offset);
}

describe("small file writer", () => {
  it("gives every file its exact mode, whatever the umask takes away (group-writable, setuid, none)", async () => {
    const modes = [0o644, 0o600, 0o755, 0o664, 0o666, 0o4755, 0o2750, 0o1777, 0o000, 0o777];
    const previous = process.umask(0o027); // stricter than the usual 022: it takes bits from half of these
    const writer = new SmallFileWriter(false);
    try {
      for (const mode of modes)
        await queue(writer, join(work.path, mode.toString(8)), Buffer.from("x"), mode);
      await writer.drain();
      for (const mode of modes) expect(statSync(join(work.path, mode.toString(8))).mode & 0o7777).toBe(mode);
    } finally {
      process.umask(previous);
      await writer.close();
    }
  });

  it("writes every queued file with its bytes, mode and mtime, across many batches, once drained", async () => {
    const writer = new SmallFileWriter(false);
    try {
      // More than one batch by bytes (1 MiB) and by count (1024 files), and a file of the largest batched size.
      const bodies = [
        randomBytes(SMALL_FILE_MAX),
        Buffer.alloc(0),
        ...Array.from({ length: 3000 }, (_, i) => randomBytes(i % 2000)),
      ];
      for (const [i, body] of bodies.entries())
        await queue(writer, join(work.path, `f${i}`), body, 0o600 | (i % 2 ? 0o44 : 0));
      await writer.drain();
      for (const [i, body] of bodies.entries()) {
        const path = join(work.path, `f${i}`);
        expect(readFileSync(path).equals(body), path).toBe(true);
        const stats = statSync(path);
        expect(stats.mode & 0o7777).toBe(0o600 | (i % 2 ? 0o44 : 0));
        expect(stats.mtimeMs).toBeCloseTo(1_700_000_000_250, 0);
      }
    } finally {
      await writer.close();
    }
  });

  it("reports the thread's failure as the system error, and writes nothing after it", async () => {
    const writer = new SmallFileWriter(false);
    try {
      writeFileSync(join(work.path, "taken"), "already here");
      await queue(writer, join(work.path, "before"), Buffer.from("a"));
      await queue(writer, join(work.path, "taken"), Buffer.from("b"));
      await queue(writer, join(work.path, "after"), Buffer.from("c"));
      const failure = await writer.drain().then(
        () => undefined,
        (error: NodeJS.ErrnoException) => error,
      );
      expect(failure?.code).toBe("EEXIST");
      expect(failure?.message).toMatch(/EEXIST/);
      expect(readFileSync(join(work.path, "taken"), "utf8")).toBe("already here");
      expect(() => statSync(join(work.path, "after"))).toThrow();
      await expect(writer.reserve(1)).rejects.toBe(failure);
    } finally {
      await writer.close();
    }
  });

  it("drains at once when nothing was queued, and refuses work once closed", async () => {
    const writer = new SmallFileWriter(false);
    await writer.drain();
    await writer.close();
    await expect(writer.reserve(1)).rejects.toThrow(/file writer was closed/);
  });
});
