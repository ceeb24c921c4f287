/** Freeing buffers that a stream stage was handed and is done with. */

/**
 * Frees a buffer that is its whole ArrayBuffer now rather than at the next garbage collection. Dead buffers are
 * external memory to V8, which collects them only after tens of MiB have piled up: in a restore that was a full
 * mark-compact every ~50 ms (~0.3 s of the main thread for 512 MB) and most of the peak RSS.
 * Transferring the ArrayBuffer to a 0-byte one detaches and releases it. Views into node's shared small-buffer
 * pool, or into part of a larger buffer, are left alone.
 */
export function releaseWhole(buffer: Uint8Array): void {
  const owned = buffer.buffer as ArrayBuffer & { transfer?: (length: number) => ArrayBuffer };
  if (
    owned instanceof ArrayBuffer &&
    buffer.byteOffset === 0 &&
    buffer.byteLength === owned.byteLength &&
    owned.byteLength > Buffer.poolSize
  )
    owned.transfer?.(0);
}
