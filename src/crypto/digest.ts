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

/**
 * A PassThrough that hashes the bytes flowing through it; `digest()` is available once it has ended. With
 * `sha512`, the same pass also takes the sha512 an OpenSSH signature signs (sshsig.ts), so signing never reads the
 * archive a second time.
 */
export class Sha256PassThrough extends PassThrough {
  readonly #hash: Hash = createHash("sha256");
  readonly #hash512: Hash | undefined;
  #hex: string | undefined;
  #sha512: Buffer | undefined;
  #bytes = 0;

  constructor(options: { sha512?: boolean } = {}) {
    super();
    this.#hash512 = options.sha512 ? createHash("sha512") : undefined;
  }

  override _transform(chunk: Buffer, encoding: BufferEncoding, callback: TransformCallback): void {
    this.#hash.update(chunk);
    this.#hash512?.update(chunk);
    this.#bytes += chunk.length;
    super._transform(chunk, encoding, callback);
  }

  override _flush(callback: TransformCallback): void {
    this.#hex = this.#hash.digest("hex");
    this.#sha512 = this.#hash512?.digest();
    callback();
  }

  /** The raw sha512 of everything that passed; throws unless asked for and the stream has ended. */
  sha512(): Buffer {
    if (this.#sha512 === undefined) throw new Error("sha512 digest requested before the stream ended");
    return this.#sha512;
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

export function createSha256PassThrough(options: { sha512?: boolean } = {}): Sha256PassThrough {
  return new Sha256PassThrough(options);
}

/** A file's digest with `algorithm`, read in large blocks. */
export async function fileDigest(path: string, algorithm: "sha256" | "sha512"): Promise<Buffer> {
  const hash = createHash(algorithm);
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
  return hash.digest();
}

/** The lower-case hex sha256 of a file's contents. */
export async function sha256File(path: string): Promise<string> {
  return (await fileDigest(path, "sha256")).toString("hex");
}
