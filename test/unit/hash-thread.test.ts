import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { HashThread, InlineFileHash } from "../../src/archive/hash-thread.js";

describe("hash thread", () => {
  it("gives each file the sha256 of its parts, parts being views into larger buffers", async () => {
    const thread = new HashThread();
    try {
      const backing = randomBytes(3 << 20);
      const files = [
        [backing.subarray(0, 1000), backing.subarray(5000, 2 << 20)],
        [],
        [backing.subarray(17, 18), backing.subarray(1 << 20, 3 << 20), backing.subarray(3, 99)],
      ];
      const hashes = files.map(() => thread.open());
      files.forEach((parts, i) => {
        for (const part of parts) hashes[i]!.update(part);
      });
      const digests = await Promise.all(hashes.map((hash) => hash.digest()));
      const expected = files.map((parts) => {
        const inline = new InlineFileHash();
        for (const part of parts) inline.update(part);
        return inline.digest();
      });
      expect(digests).toEqual(await Promise.all(expected));
      expect(digests[1]).toBe(createHash("sha256").digest("hex"));
      // The caller's buffer is untouched (the thread got a copy).
      expect(backing.length).toBe(3 << 20);
    } finally {
      await thread.close();
    }
  });

  it("fails a digest asked for after it was closed, instead of waiting forever", async () => {
    const thread = new HashThread();
    const hash = thread.open();
    hash.update(Buffer.from("x"));
    await thread.close();
    await expect(hash.digest()).rejects.toThrow(/hash thread/);
  });
});
