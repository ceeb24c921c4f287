/**
 * The age STREAM payload: 64 KiB plaintext chunks, each sealed with ChaCha20-Poly1305 under
 * HKDF(nonce, fileKey, "payload") with nonce = 11-byte big-endian chunk counter || last-chunk flag.
 *
 * Built for throughput: the key is a KeyObject (node re-imports a raw Buffer key on every createCipheriv, which
 * costs ~10 us, a third of the time to encrypt a 64 KiB chunk); full chunks are sealed/opened straight from the incoming buffer (only the tail that
 * does not fill a chunk is copied), and output is gathered into ~1 MiB buffers so the stream machinery sees
 * few large pushes rather than one per 64 KiB chunk.
 *
 * The last chunk is only known at end of input, so one complete chunk is always held back until more bytes
 * arrive (it is then not the last) or the input ends (it is the last, flagged 0x01).
 */
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from "node:crypto";
import { handOver, releaseWhole } from "../runtime/buffers.js";
import { AgeIntegrityError } from "./age-errors.js";
import { AEAD_NONCE_LENGTH, AEAD_TAG_LENGTH, hkdfSha256 } from "./primitives.js";

export const PAYLOAD_NONCE_LENGTH = 16;
export const PLAINTEXT_CHUNK_SIZE = 64 * 1024;
export const CIPHERTEXT_CHUNK_SIZE = PLAINTEXT_CHUNK_SIZE + AEAD_TAG_LENGTH;
const CHUNKS_PER_PUSH = 16;
const OUTPUT_BATCH_SIZE = CHUNKS_PER_PUSH * CIPHERTEXT_CHUNK_SIZE;
const LAST_CHUNK_FLAG = 0x01;
/** The counter is 11 bytes; 6 of them (2^48 chunks = 16 EiB) are more than any archive needs. */
const COUNTER_OFFSET = 5;
const COUNTER_BYTES = 6;
const MAX_CHUNKS = 2 ** 48;
const CORRUPT_HINT = "the archive is corrupted, truncated or was modified; restore from another copy";

export function payloadKey(fileKey: Uint8Array, nonce: Uint8Array): Buffer {
  return hkdfSha256(fileKey, nonce, "payload");
}

/** Gathers output into large buffers and hands each to `emit` when full (and the remainder on flush). */
class OutputBatcher {
  #buffer = Buffer.allocUnsafe(OUTPUT_BATCH_SIZE);
  #length = 0;
  readonly #emit: (data: Buffer) => void;

  constructor(emit: (data: Buffer) => void) {
    this.#emit = emit;
  }

  /** Room for `size` more bytes, emitting the current batch first if needed; returns the write offset. */
  reserve(size: number): { target: Buffer; offset: number } {
    if (this.#length + size > this.#buffer.length) this.flush();
    return { target: this.#buffer, offset: this.#length };
  }

  commit(size: number): void {
    this.#length += size;
  }

  flush(): void {
    if (this.#length === 0) return;
    const batch = this.#buffer.subarray(0, this.#length);
    handOver(batch); // ours no more: the last consumer may free it (see releaseHandedOver)
    this.#emit(batch);
    this.#buffer = Buffer.allocUnsafe(OUTPUT_BATCH_SIZE);
    this.#length = 0;
  }
}

/**
 * Splits an input stream into fixed-size units, always holding back the latest complete unit so the caller can
 * decide "last or not" once it knows whether more input follows.
 */
abstract class ChunkedProcessor {
  readonly #unitSize: number;
  readonly #assembly: Buffer;
  #tailLength = 0;
  #counter = 0;
  readonly #nonce = Buffer.alloc(AEAD_NONCE_LENGTH);
  protected readonly output: OutputBatcher;

  constructor(unitSize: number, emit: (data: Buffer) => void) {
    this.#unitSize = unitSize;
    this.#assembly = Buffer.allocUnsafe(unitSize);
    this.output = new OutputBatcher(emit);
  }

  /** Processes what can be processed now; keeps at most one unit back. */
  write(data: Buffer): void {
    const unit = this.#unitSize;
    let offset = 0;
    if (this.#tailLength > 0 && data.length > 0) {
      if (this.#tailLength < unit) {
        const taken = data.copy(
          this.#assembly,
          this.#tailLength,
          0,
          Math.min(data.length, unit - this.#tailLength),
        );
        this.#tailLength += taken;
        offset = taken;
      }
      if (this.#tailLength === unit && offset < data.length) {
        this.#processUnit(this.#assembly, false);
        this.#tailLength = 0;
      }
    }
    // Full units with more data after them are certainly not last: process them in place, no copy.
    while (data.length - offset > unit) {
      this.#processUnit(data.subarray(offset, offset + unit), false);
      offset += unit;
    }
    if (offset < data.length) {
      // Copy, not keep a view: the producer may reuse its buffer after the write callback.
      this.#tailLength = data.copy(this.#assembly, 0, offset);
    }
  }

  /** Processes the held-back tail as the last chunk and flushes all output. */
  end(): void {
    this.processLast(this.#assembly.subarray(0, this.#tailLength), this.#counter);
    this.output.flush();
  }

  protected get chunkIndex(): number {
    return this.#counter;
  }

  /** The AEAD nonce of the current chunk. */
  protected nextNonce(last: boolean): Buffer {
    if (this.#counter >= MAX_CHUNKS)
      throw new AgeIntegrityError("payload", "age payload has too many chunks");
    this.#nonce.writeUIntBE(this.#counter, COUNTER_OFFSET, COUNTER_BYTES);
    this.#nonce[AEAD_NONCE_LENGTH - 1] = last ? LAST_CHUNK_FLAG : 0;
    return this.#nonce;
  }

  #processUnit(unit: Buffer, last: boolean): void {
    this.processChunk(unit, last);
    this.#counter++;
  }

  protected finishLast(tail: Buffer): void {
    this.#processUnit(tail, true);
  }

  /** Seals or opens one chunk into `this.output`. */
  protected abstract processChunk(chunk: Buffer, last: boolean): void;
  /** Handles the end of input with the held-back bytes; `chunksDone` chunks were processed before. */
  protected abstract processLast(tail: Buffer, chunksDone: number): void;
}

/** Encrypts plaintext into STREAM chunks. Empty input yields one empty final chunk, as age writes it. */
export class PayloadEncryptor extends ChunkedProcessor {
  readonly #key: KeyObject;

  constructor(key: Buffer, emit: (data: Buffer) => void) {
    super(PLAINTEXT_CHUNK_SIZE, emit);
    this.#key = createSecretKey(key);
  }

  protected processChunk(chunk: Buffer, last: boolean): void {
    const cipher = createCipheriv("chacha20-poly1305", this.#key, this.nextNonce(last), {
      authTagLength: AEAD_TAG_LENGTH,
    });
    const sealed = cipher.update(chunk);
    cipher.final();
    const { target, offset } = this.output.reserve(sealed.length + AEAD_TAG_LENGTH);
    sealed.copy(target, offset);
    cipher.getAuthTag().copy(target, offset + sealed.length);
    this.output.commit(sealed.length + AEAD_TAG_LENGTH);
    releaseWhole(sealed); // dead once batched; see releaseWhole
  }

  protected processLast(tail: Buffer): void {
    this.finishLast(tail);
  }
}

/**
 * Decrypts STREAM chunks, strictly: every chunk must authenticate with its position and last flag, so
 * truncation at a chunk boundary, reordering, trailing data and a missing final chunk all fail.
 */
export class PayloadDecryptor extends ChunkedProcessor {
  readonly #key: KeyObject;

  constructor(key: Buffer, emit: (data: Buffer) => void) {
    super(CIPHERTEXT_CHUNK_SIZE, emit);
    this.#key = createSecretKey(key);
  }

  protected processChunk(chunk: Buffer, last: boolean): void {
    const opened = this.#open(chunk, last);
    if (opened.plaintext !== undefined) {
      this.#release(opened.plaintext);
      return;
    }
    // A full-size chunk may be a final one followed by more data, or a non-final one where the input ends: the other
    // flag tells those from corruption, and what authenticates is released before the error, as age does.
    const other = chunk.length === CIPHERTEXT_CHUNK_SIZE ? this.#open(chunk, !last).plaintext : undefined;
    if (other !== undefined) {
      this.#release(other);
      throw this.#failure(
        last
          ? `age payload is truncated: it ends after chunk ${this.chunkIndex} without a final chunk`
          : `age payload has data after its final chunk ${this.chunkIndex}`,
      );
    }
    const which = last ? "final chunk" : `chunk ${this.chunkIndex}`;
    throw this.#failure(`age payload ${which} failed authentication`, opened.error);
  }

  /** The plaintext of a chunk if it authenticates at this position with this last flag, else the error. */
  #open(chunk: Buffer, last: boolean): { plaintext?: Buffer; error?: unknown } {
    const decipher = createDecipheriv("chacha20-poly1305", this.#key, this.nextNonce(last), {
      authTagLength: AEAD_TAG_LENGTH,
    });
    const bodyLength = chunk.length - AEAD_TAG_LENGTH;
    decipher.setAuthTag(chunk.subarray(bodyLength));
    const plaintext = decipher.update(chunk.subarray(0, bodyLength));
    try {
      decipher.final();
    } catch (error) {
      return { error };
    }
    return { plaintext };
  }

  /** Committed only after the tag checked out: unauthenticated plaintext never leaves this class. */
  #release(plaintext: Buffer): void {
    const { target, offset } = this.output.reserve(plaintext.length);
    plaintext.copy(target, offset);
    this.output.commit(plaintext.length);
    releaseWhole(plaintext); // dead once batched; see releaseWhole
  }

  protected processLast(tail: Buffer, chunksDone: number): void {
    if (tail.length === 0 && chunksDone === 0) {
      throw this.#failure("age payload is missing: the input ends after the header");
    }
    if (tail.length < AEAD_TAG_LENGTH) {
      throw this.#failure("age payload is truncated: the final chunk is incomplete");
    }
    if (tail.length === AEAD_TAG_LENGTH && chunksDone > 0) {
      // age never writes an empty final chunk after full ones; accepting it would allow two encodings.
      throw this.#failure("age payload ends with an empty final chunk");
    }
    this.finishLast(tail);
  }

  /**
   * The error for a payload that stops authenticating. What did authenticate before it is handed over first, as age
   * does (and the conformance vectors expect): every released byte was checked, only the rest is withheld.
   */
  #failure(message: string, cause?: unknown): AgeIntegrityError {
    this.output.flush();
    return new AgeIntegrityError("payload", message, CORRUPT_HINT, cause);
  }
}
