import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { type FileDigester, InlineDigester, WorkerDigester } from "../../src/archive/file-digests.js";
import { BlockPool } from "../../src/compress/block-pool.js";

const BLOCK = 64 * 1024;

/**
 * Lays files end to end over pool blocks, as the packer does, telling the digester where each piece lies and
 * handing over each block when it is full. Returns the expected digests.
 */
function feed(digester: FileDigester, pool: BlockPool, sizes: readonly number[]): Map<number, string> {
  const expected = new Map<number, string>();
  let block = pool.take();
  let filled = 0;
  sizes.forEach((size, fileId) => {
    const content = randomBytes(size);
    expected.set(fileId, createHash("sha256").update(content).digest("hex"));
    for (let offset = 0; offset < size; ) {
      const n = Math.min(size - offset, BLOCK - filled);
      content.copy(block, filled, offset, offset + n);
      digester.update(fileId, block, filled, filled + n);
      filled += n;
      offset += n;
      if (filled === BLOCK) {
        digester.handOver(block);
        pool.give(block.buffer); // downstream is done with it at once; the digester still holds it
        block = pool.take();
        filled = 0;
      }
    }
    digester.end(fileId);
  });
  return expected;
}

describe("file digests", () => {
  const sizes = [0, 1, 100, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17, 5, 0, 2 * BLOCK];

  it("the digest thread reports the sha256 of files spanning several shared blocks", async () => {
    const pool = new BlockPool(BLOCK, { shared: true });
    const got = new Map<number, string>();
    const digester = new WorkerDigester((id, sha) => got.set(id, sha), pool);
    try {
      const expected = feed(digester, pool, sizes);
      await digester.drain();
      expect(got).toEqual(expected);
    } finally {
      await digester.close();
    }
  });

  it("an archive within its first block is hashed at drain, with the same digests", async () => {
    const pool = new BlockPool(BLOCK, { shared: true });
    const got = new Map<number, string>();
    const digester = new WorkerDigester((id, sha) => got.set(id, sha), pool);
    const expected = feed(digester, pool, [0, 10, 1000]);
    await digester.drain();
    expect(got).toEqual(expected);
    await digester.close();
  });

  it("hashing inline gives the same digests", async () => {
    const pool = new BlockPool(BLOCK);
    const got = new Map<number, string>();
    const expected = feed(new InlineDigester((id, sha) => got.set(id, sha)), pool, sizes);
    expect(got).toEqual(expected);
  });

  it("a block read by the digest thread goes back to the pool only when both holders gave it back", () => {
    const pool = new BlockPool(BLOCK, { shared: true });
    const block = pool.take();
    pool.retain(block.buffer);
    pool.give(block.buffer);
    expect(pool.take().buffer).not.toBe(block.buffer);
    pool.give(block.buffer);
    expect(pool.take().buffer).toBe(block.buffer);
  });

  it("refuses plain memory, which another thread could only see as a copy", () => {
    expect(() => new WorkerDigester(() => undefined, new BlockPool(BLOCK))).toThrow(/shared/);
  });
});
