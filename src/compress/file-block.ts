/**
 * A block of the backup's stream that is a stretch of one open file, read by the zstd thread that compresses it.
 *
 * Why: a home is a few big files (the internal database, the jars) and tens of thousands of small ones. Reading a
 * big file's blocks costs the packer's thread little, but it then waited for the zstd threads, which had the
 * whole big-file phase to themselves; then the small files kept the packer busy while the zstd threads waited.
 * With a big file's whole blocks left to the compressor, the packer lists them without reading (a few bytes each)
 * and goes on to the small files while the zstd threads are still on the big ones. The two phases overlap.
 */
import { LookerBackupError } from "../errors.js";
import type { BlockMemory } from "./block-pool.js";

export interface FileBlock {
  /** Open for reading by whoever made the block, and kept open until `filled` or `dropped` was called. */
  readonly fd: number;
  /** The file's path, for a message if it cannot be read. */
  readonly path: string;
  readonly position: number;
  /** Always one whole block of the compressor's block size. */
  readonly length: number;
  /**
   * The block was read and compressed: `memory[0, length)` holds what went into the frame, zeros after
   * `bytesRead` when the file ended early (it shrank). The memory goes back to the pool when this returns, unless
   * the callee retained it.
   */
  filled(memory: BlockMemory, bytesRead: number): void;
  /** The block will not be read: the stream failed or was destroyed first. */
  dropped(): void;
}

/** A block's read failed in the thread compressing it, said as a read of the file: a failing disk must name it. */
export function fileReadFailed(path: string, detail: string, cause?: unknown): LookerBackupError {
  return new LookerBackupError(`cannot read ${path}: ${detail}`, {
    hint: "check the disk and the file; the previous archives are left as they were",
    cause,
  });
}

export function isFileBlock(chunk: unknown): chunk is FileBlock {
  return typeof chunk === "object" && chunk !== null && !Buffer.isBuffer(chunk) && "fd" in chunk;
}
