import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSha256PassThrough, sha256File, sha256Hex } from "../../src/crypto/digest.js";

const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
let dir = "";

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "crypto-digest-"));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("sha256 helpers", () => {
  it("hashes buffers and strings (FIPS 180-2 vector)", () => {
    expect(sha256Hex("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(sha256Hex(Buffer.alloc(0))).toBe(EMPTY_SHA256);
  });

  it("hashes what flows through a PassThrough without changing it", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 7);
    const hasher = createSha256PassThrough();
    expect(() => hasher.digest()).toThrow(/before the stream ended/);
    const received: Buffer[] = [];
    const pieces = Array.from({ length: 50 }, (_, index) =>
      data.subarray(index * 65_536, (index + 1) * 65_536),
    );
    await pipeline(
      Readable.from(pieces.filter((piece) => piece.length > 0)),
      hasher,
      new Writable({
        write(chunk: Buffer, _encoding, callback) {
          received.push(chunk);
          callback();
        },
      }),
    );
    expect(Buffer.concat(received).equals(data)).toBe(true);
    expect(hasher.bytes).toBe(data.length);
    expect(hasher.digest()).toBe(sha256Hex(data));
  });

  it("hashes files like sha256sum does, empty ones included", async () => {
    const big = join(dir, "big.bin");
    const data = randomBytes(9 * 1024 * 1024 + 123);
    await writeFile(big, data);
    const { stdout } = await promisify(execFile)("sha256sum", [big]);
    expect(await sha256File(big)).toBe(stdout.split(" ")[0]);
    expect(await sha256File(big)).toBe(sha256Hex(data));
    const empty = join(dir, "empty.bin");
    await writeFile(empty, "");
    expect(await sha256File(empty)).toBe(EMPTY_SHA256);
    await expect(sha256File(join(dir, "missing"))).rejects.toThrow(/ENOENT/);
  });
});
