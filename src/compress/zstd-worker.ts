import { readFileBlock } from "./file-block.js";

/**
 * The code each zstd worker thread runs, kept as a string for `new Worker(source, { eval: true })`.
 *
 * Why a string and not a file: vitest runs the TypeScript sources and esbuild bundles each entry into one
 * dist/*.js, so a separate worker file would have to be found at two different places. An eval'd CommonJS
 * script that only requires node builtins works from both without any path logic.
 *
 * Protocol (one message per block, answered in the order received):
 *   in:  { id, input: ArrayBuffer (transferred) or SharedArrayBuffer, length, read? }
 *                                                                -> compress input[0, length) as one frame;
 *                                                                   with read: { fd, position }, first fill
 *                                                                   input[0, length) from that file (file-block.ts)
 *   out: { id, input, frame: ArrayBuffer, frameLength, bytesRead } -> the frame is frame[0, frameLength);
 *                                                                   both buffers transferred, input for reuse;
 *                                                                   bytesRead: of the file, when read was given
 *        { id, input, error: string, readFailed? }               -> compression failed, or (readFailed) the
 *                                                                   read of the file before it
 * workerData: { level }.
 *
 * Memory: zlib writes into an output chunk we size to hold the whole frame, and that chunk's ArrayBuffer is
 * transferred as is (no copy). Copying left two garbage buffers per block in each worker isolate, which V8
 * collects only after ~64 MiB of them: the process peaked at ~320 MiB RSS instead of ~170 MiB.
 */
export const ZSTD_WORKER_SOURCE = `
"use strict";
const { parentPort, workerData } = require("node:worker_threads");
const { zstdCompressSync, constants } = require("node:zlib");
const { readSync } = require("node:fs");
const readFileBlock = ${readFileBlock.toString()};

const params = {
  [constants.ZSTD_c_compressionLevel]: workerData.level,
  [constants.ZSTD_c_checksumFlag]: 1,
  [constants.ZSTD_c_contentSizeFlag]: 1,
};

// Larger than ZSTD_compressBound(length), so the frame always fits in one output chunk.
function outputChunkSize(length) {
  return length + (length >> 7) + 65536;
}

// A plain input buffer goes back to its owner; shared memory cannot be transferred (and need not be).
function lent(input) {
  return input instanceof SharedArrayBuffer ? [] : [input];
}

parentPort.on("message", ({ id, input, length, read }) => {
  let frame;
  let frameLength;
  let bytesRead;
  let readFailed = false;
  try {
    if (read) {
      readFailed = true;
      bytesRead = readFileBlock(readSync, read.fd, new Uint8Array(input, 0, length), read.position, length);
      readFailed = false;
    }
    const chunkSize = outputChunkSize(length);
    const output = zstdCompressSync(Buffer.from(input, 0, length), { params, pledgedSrcSize: length, chunkSize });
    frameLength = output.byteLength;
    // Transfer zlib's own chunk only when it is that (never a shared pool slab); otherwise copy.
    frame =
      output.byteOffset === 0 && output.buffer.byteLength === chunkSize
        ? output.buffer
        : output.buffer.slice(output.byteOffset, output.byteOffset + frameLength);
  } catch (error) {
    parentPort.postMessage({ id, input, error: String((error && error.message) || error), readFailed }, lent(input));
    return;
  }
  parentPort.postMessage({ id, input, frame, frameLength, bytesRead }, [...lent(input), frame]);
});
`;
