/**
 * Finds frame boundaries in a zstd stream (RFC 8878, section 3.1) without decompressing anything.
 *
 * Why: node:zlib's zstd decompressor stops after the first frame. The one-shot API silently drops later
 * frames, the stream API fails on them, and bytes after the end of a frame are ignored without an error.
 * A valid zstd stream is any concatenation of frames (our compressor writes one frame per block; `cat a.zst
 * b.zst` is valid too), so the decompress stream uses this scanner to give each frame its own decompressor,
 * to drop skippable frames, and to reject garbage and truncation at frame level.
 *
 * Only headers are read: magic, frame header descriptor, block headers (3 bytes each, one per <= 128 KiB of
 * compressed data); block contents, checksums and skippable payloads are stepped over.
 */
import { IntegrityError } from "../errors.js";

export type FrameEvent =
  /** A zstd frame begins; its bytes follow as `data` events, starting with the magic number. */
  | { readonly kind: "frame-start"; readonly offset: number }
  | { readonly kind: "data"; readonly bytes: Buffer }
  /** The frame's last byte (block or checksum) was the previous `data`. */
  | { readonly kind: "frame-end" };

const ZSTD_MAGIC = 0xfd2fb528;
const SKIPPABLE_MAGIC = 0x184d2a50; // 0x184D2A50 ... 0x184D2A5F
const SKIPPABLE_MASK = 0xfffffff0;
const MAGIC_SIZE = 4;
const BLOCK_HEADER_SIZE = 3;
const CHECKSUM_SIZE = 4;
const MAX_BLOCK_SIZE = 128 * 1024;
const BLOCK_TYPE_RLE = 1;
const BLOCK_TYPE_RESERVED = 3;

type Phase =
  | "magic" // 4 bytes, gathered (between frames)
  | "descriptor" // 1 byte, gathered
  | "header-rest" // window descriptor, dictionary id, content size: stepped over
  | "block-header" // 3 bytes, gathered
  | "block-body"
  | "checksum"
  | "skippable-size" // 4 bytes, gathered
  | "skippable-body";

const GATHERED: ReadonlySet<Phase> = new Set(["magic", "descriptor", "block-header", "skippable-size"]);

export class ZstdFrameScanner {
  private phase: Phase = "magic";
  /** Bytes of the current gathered field (magic, descriptor, block header, skippable size). */
  private readonly field = Buffer.alloc(4);
  private fieldLength = 0;
  /** Bytes still to read in the current phase. */
  private left = MAGIC_SIZE;
  private hasChecksum = false;
  private lastBlock = false;
  /** Stream offset of the next byte to scan, and of the current frame's first byte, for error messages. */
  private offset = 0;
  private frameOffset = 0;
  private framesSeen = 0;

  /**
   * Scans the next chunk. Returns what happened in it, in order; `data` events are views into `chunk`
   * (or a copy, for a magic number split across chunks). Throws IntegrityError on bytes that cannot be zstd.
   */
  scan(chunk: Buffer): FrameEvent[] {
    const events: FrameEvent[] = [];
    let position = 0;
    // Where the current run of frame bytes began in this chunk; -1 when not inside a zstd frame.
    let runStart = this.insideZstdFrame() ? 0 : -1;
    for (;;) {
      if (this.left > 0) {
        if (position === chunk.length) break;
        const take = Math.min(this.left, chunk.length - position);
        if (GATHERED.has(this.phase)) chunk.copy(this.field, this.fieldLength, position, position + take);
        this.fieldLength += take;
        this.left -= take;
        position += take;
        this.offset += take;
        if (this.left > 0) break;
      }
      const phaseBefore = this.phase;
      this.completePhase();
      if (phaseBefore === "magic" && this.phase === "descriptor") {
        events.push({ kind: "frame-start", offset: this.frameOffset });
        events.push({ kind: "data", bytes: Buffer.from(this.magicBytes()) });
        runStart = position;
      } else if (this.phase === "magic" && runStart >= 0) {
        if (position > runStart) events.push({ kind: "data", bytes: chunk.subarray(runStart, position) });
        events.push({ kind: "frame-end" });
        runStart = -1;
      }
    }
    if (runStart >= 0 && position > runStart) {
      events.push({ kind: "data", bytes: chunk.subarray(runStart, position) });
    }
    return events;
  }

  /** Call at end of input: throws IntegrityError if the stream is empty or stops inside a frame. */
  finish(): void {
    if (this.phase === "magic" && this.fieldLength === 0) {
      if (this.offset === 0) {
        throw new IntegrityError(
          "zstd stream is empty",
          "the archive is truncated to 0 bytes; use another copy",
        );
      }
      return;
    }
    const where =
      this.phase === "magic"
        ? `after ${this.fieldLength} stray byte(s) at byte ${this.offset - this.fieldLength}`
        : `inside the frame starting at byte ${this.frameOffset}`;
    throw new IntegrityError(
      `zstd stream is truncated: it ends ${where} (stream length ${this.offset})`,
      "the archive was cut short in storage or transfer; use another copy or backup",
    );
  }

  /** Number of complete zstd frames seen so far (skippable frames not counted). */
  get frames(): number {
    return this.framesSeen;
  }

  private insideZstdFrame(): boolean {
    return this.phase !== "magic" && this.phase !== "skippable-size" && this.phase !== "skippable-body";
  }

  private magicBytes(): Buffer {
    return this.field.subarray(0, MAGIC_SIZE);
  }

  /** The current phase has all its bytes: decide what comes next. */
  private completePhase(): void {
    switch (this.phase) {
      case "magic":
        this.onMagic(this.field.readUInt32LE(0));
        break;
      case "descriptor":
        this.onDescriptor(this.field[0]!);
        break;
      case "header-rest":
        this.enter("block-header", BLOCK_HEADER_SIZE);
        break;
      case "block-header":
        this.onBlockHeader(this.field.readUIntLE(0, BLOCK_HEADER_SIZE));
        break;
      case "block-body":
        if (!this.lastBlock) this.enter("block-header", BLOCK_HEADER_SIZE);
        else if (this.hasChecksum) this.enter("checksum", CHECKSUM_SIZE);
        else this.endFrame(true);
        break;
      case "checksum":
        this.endFrame(true);
        break;
      case "skippable-size":
        this.enter("skippable-body", this.field.readUInt32LE(0));
        break;
      case "skippable-body":
        this.endFrame(false);
        break;
    }
  }

  private onMagic(magic: number): void {
    this.frameOffset = this.offset - MAGIC_SIZE;
    if (magic === ZSTD_MAGIC) {
      this.enter("descriptor", 1);
    } else if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC) {
      this.enter("skippable-size", 4);
    } else {
      throw this.corrupt(
        `not a zstd frame at byte ${this.frameOffset} (magic 0x${magic.toString(16).padStart(8, "0")})`,
      );
    }
  }

  private onDescriptor(descriptor: number): void {
    const contentSizeFlag = descriptor >> 6;
    const singleSegment = (descriptor >> 5) & 1;
    const reserved = (descriptor >> 3) & 1;
    const dictionaryIdFlag = descriptor & 3;
    if (reserved !== 0)
      throw this.corrupt(`reserved bit set in the frame header at byte ${this.frameOffset}`);
    this.hasChecksum = ((descriptor >> 2) & 1) === 1;
    const windowDescriptorSize = singleSegment ? 0 : 1;
    const dictionaryIdSize = [0, 1, 2, 4][dictionaryIdFlag]!;
    const contentSizeSize = [singleSegment, 2, 4, 8][contentSizeFlag]!;
    this.enter("header-rest", windowDescriptorSize + dictionaryIdSize + contentSizeSize);
  }

  private onBlockHeader(header: number): void {
    this.lastBlock = (header & 1) === 1;
    const blockType = (header >> 1) & 3;
    const blockSize = header >>> 3;
    if (blockType === BLOCK_TYPE_RESERVED || blockSize > MAX_BLOCK_SIZE) {
      throw this.corrupt(
        `invalid block header at byte ${this.offset - BLOCK_HEADER_SIZE} (frame at byte ${this.frameOffset})`,
      );
    }
    // An RLE block stores its one repeated byte; Block_Size is the regenerated size.
    this.enter("block-body", blockType === BLOCK_TYPE_RLE ? 1 : blockSize);
  }

  private endFrame(zstdFrame: boolean): void {
    if (zstdFrame) this.framesSeen++;
    this.enter("magic", MAGIC_SIZE);
  }

  private enter(phase: Phase, length: number): void {
    this.phase = phase;
    this.left = length;
    this.fieldLength = 0;
  }

  private corrupt(message: string): IntegrityError {
    return new IntegrityError(
      `zstd stream is corrupt: ${message}`,
      "the archive was damaged in storage or transfer, or is not a .zst file; use another copy or backup",
    );
  }
}

/** Largest compressed size of a frame of `contentSize` bytes (zstd adds very little): what a whole frame may take. */
export function wholeFrameBound(contentSize: number): number {
  return contentSize + (contentSize >> 7) + 65536;
}
