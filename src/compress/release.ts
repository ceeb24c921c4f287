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

/** ArrayBuffers whose producer gave them up (see handOver). Weak: a buffer never released is still collected. */
const handedOver = new WeakSet<ArrayBufferLike>();

/**
 * Marks a chunk's whole ArrayBuffer as given up by its producer, which keeps no view of it: the consumer that sees
 * it last may free it with releaseHandedOver, including bytes outside the chunk's own view. Only a chunk that
 * starts its own (non-pooled) ArrayBuffer is marked.
 */
export function handOver(chunk: Uint8Array): void {
  // Small buffers can be slices of node's shared pool (Buffer.poolSize), which must never be freed.
  if (chunk.byteOffset === 0 && chunk.buffer.byteLength > Buffer.poolSize) handedOver.add(chunk.buffer);
}

/** Frees the chunk's ArrayBuffer now if its producer handed it over; otherwise leaves it to the collector. */
export function releaseHandedOver(chunk: Uint8Array): void {
  const owned = chunk.buffer as ArrayBuffer & { transfer?: (length: number) => ArrayBuffer };
  if (handedOver.delete(owned) && owned instanceof ArrayBuffer) owned.transfer?.(0);
}
