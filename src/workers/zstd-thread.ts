/**
 * The zstd thread: compresses one block into one standard frame per message (compress/zstd-engines.ts runs a pool of
 * them). One message per block, answered in the order received (see ZstdJob and ZstdReply).
 *
 * Memory: zlib writes into an output chunk we size to hold the whole frame, and that chunk's ArrayBuffer is
 * transferred as is (no copy). Copying left two garbage buffers per block in each worker isolate, which V8
 * collects only after ~64 MiB of them: the process peaked at ~320 MiB RSS instead of ~170 MiB.
 */
import type { MessagePort } from "node:worker_threads";
import type { ThreadRequire } from "./thread.js";

/** The thread's workerData. */
export interface ZstdThreadData {
  readonly level: number;
}

/**
 * Compress input[0, length) as one frame; with `read`, first fill input[0, length) from that file (see
 * compress/file-block.ts). A plain ArrayBuffer is transferred and comes back in the reply; shared memory is lent.
 */
export interface ZstdJob {
  readonly id: number;
  readonly input: ArrayBuffer | SharedArrayBuffer;
  readonly length: number;
  readonly read?: { readonly fd: number; readonly position: number } | undefined;
}

/**
 * The frame is frame[0, frameLength), transferred; bytesRead: of the file, when the job had `read`. An error is
 * the compression's, or (readFailed) the read's before it.
 */
export type ZstdReply =
  | {
      id: number;
      input: ArrayBuffer | SharedArrayBuffer;
      frame: ArrayBuffer;
      frameLength: number;
      bytesRead?: number | undefined;
    }
  | { id: number; input: ArrayBuffer | SharedArrayBuffer; error: string; readFailed: boolean };

/**
 * zlib writes its output in chunks of this size; one chunk larger than ZSTD_compressBound(length) holds the whole
 * frame, so there is one output allocation per block and no concatenation. Pages of the chunk that the frame does
 * not fill are not written, so they mostly cost address space. Self-contained: the thread takes it as a helper.
 */
export function outputChunkSize(length: number): number {
  return length + (length >> 7) + 65536;
}

/**
 * Reads `length` bytes at `position` into view[0, length) and zero-fills what the file no longer has; returns the
 * bytes read. Self-contained: the thread takes it as a helper (the inline engine calls it on the main thread).
 */
export function readFileBlock(
  readSync: (fd: number, view: Uint8Array, offset: number, length: number, position: number) => number,
  fd: number,
  view: Uint8Array,
  position: number,
  length: number,
): number {
  let done = 0;
  while (done < length) {
    const bytesRead = readSync(fd, view, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  view.fill(0, done, length);
  return done;
}

/** The thread's code (see runtime/eval-worker.ts: threadSource). */
export function zstdThread(
  port: MessagePort,
  data: ZstdThreadData,
  require: ThreadRequire,
  fillBlock: typeof readFileBlock,
  chunkSizeFor: typeof outputChunkSize,
): void {
  const { zstdCompressSync, constants } = require("node:zlib");
  const { readSync } = require("node:fs");
  const params = {
    [constants.ZSTD_c_compressionLevel]: data.level,
    [constants.ZSTD_c_checksumFlag]: 1,
    [constants.ZSTD_c_contentSizeFlag]: 1,
  };
  // A plain input buffer goes back to its owner; shared memory cannot be transferred (and need not be).
  const lent = (input: ArrayBuffer | SharedArrayBuffer): ArrayBuffer[] =>
    input instanceof SharedArrayBuffer ? [] : [input];
  port.on("message", ({ id, input, length, read }: ZstdJob) => {
    let frame: ArrayBuffer;
    let frameLength: number;
    let bytesRead: number | undefined;
    let readFailed = false;
    try {
      if (read) {
        readFailed = true;
        bytesRead = fillBlock(readSync, read.fd, new Uint8Array(input, 0, length), read.position, length);
        readFailed = false;
      }
      const chunkSize = chunkSizeFor(length);
      const output = zstdCompressSync(Buffer.from(input, 0, length), {
        params,
        pledgedSrcSize: length,
        chunkSize,
      });
      frameLength = output.byteLength;
      // Transfer zlib's own chunk only when it is that (never a shared pool slab); otherwise copy.
      frame =
        output.byteOffset === 0 && output.buffer.byteLength === chunkSize
          ? (output.buffer as ArrayBuffer)
          : (output.buffer.slice(output.byteOffset, output.byteOffset + frameLength) as ArrayBuffer);
    } catch (error) {
      const reply: ZstdReply = { id, input, error: String((error as Error)?.message || error), readFailed };
      port.postMessage(reply, lent(input));
      return;
    }
    const reply: ZstdReply = { id, input, frame, frameLength, bytesRead };
    port.postMessage(reply, [...lent(input), frame]);
  });
}
