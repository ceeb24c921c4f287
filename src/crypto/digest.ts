/**
 * SHA-256 helpers: of a buffer, of whatever flows through a stream, and of a file read in large blocks
 * (small reads, not hashing, are what makes file digests slow).
 */
import { createHash, type Hash, hash } from "node:crypto";
import { open } from "node:fs/promises";
import { PassThrough, type TransformCallback } from "node:stream";

const FILE_READ_SIZE = 4 * 1024 * 1024;

/** One call, no Hash object: restore and the digest thread run it once per small file. */
export function sha256Hex(data: Uint8Array | string): string {
  return hash("sha256", data, "hex");
}

/** A PassThrough that hashes the bytes flowing through it; `digest()` is available once it has ended. */
export class Sha256PassThrough extends PassThrough {
  readonly #hash: Hash = createHash("sha256");
  #hex: string | undefined;
  #bytes = 0;

  override _transform(chunk: Buffer, encoding: BufferEncoding, callback: TransformCallback): void {
    this.#hash.update(chunk);
    this.#bytes += chunk.length;
    super._transform(chunk, encoding, callback);
  }

  override _flush(callback: TransformCallback): void {
    this.#hex = this.#hash.digest("hex");
    callback();
  }

  /** The lower-case hex sha256 of everything that passed; throws if the stream has not ended yet. */
  digest(): string {
    if (this.#hex === undefined) throw new Error("sha256 digest requested before the stream ended");
    return this.#hex;
  }

  /** How many bytes have passed so far. */
  get bytes(): number {
    return this.#bytes;
  }
}

export function createSha256PassThrough(): Sha256PassThrough {
  return new Sha256PassThrough();
}

/** The lower-case hex sha256 of a file's contents. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  const handle = await open(path, "r");
  try {
    // One reused buffer is safe: update() consumes the bytes before the next read overwrites them.
    const buffer = Buffer.allocUnsafe(FILE_READ_SIZE);
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
  return hash.digest("hex");
}
