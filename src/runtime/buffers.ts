/** Freeing buffers that a stream stage was handed and is done with. */

/**
 * Frees a buffer that is its whole ArrayBuffer now rather than at the next garbage collection. Dead buffers are
 * external memory to V8, which collects them only after tens of MiB have piled up: in a restore that was a full
 * mark-compact every ~50 ms (~0.3 s of the main thread for 512 MB) and most of the peak RSS.
 * Transferring the ArrayBuffer to a 0-byte one detaches and releases it. Views into part of a larger buffer are
 * left alone; that includes node's shared small-buffer pool, whose slices never cover the whole pool.
 */
export function releaseWhole(buffer: Uint8Array): void {
  const owned = buffer.buffer;
  if (owned.byteLength > 0 && buffer.byteOffset === 0 && buffer.byteLength === owned.byteLength)
    detach(owned);
}

/**
 * Whether a view may be a slice of node's shared small-buffer pool, which must never be freed. Such a slice is
 * always part of an ArrayBuffer of Buffer.poolSize bytes. Note the pool's size is no constant: node 24 raised it
 * from 8 to 64 KiB, and a size test against the old value had quietly stopped freeing the 64 KiB age chunks.
 */
function mayBePoolSlice(view: Uint8Array): boolean {
  return view.buffer.byteLength <= Buffer.poolSize && view.byteLength < view.buffer.byteLength;
}

/**
 * ArrayBuffers whose producer gave them up, each with the chunk as it was handed over (see handOver and
 * takeOwnership). Weak: a buffer never released is still collected.
 */
const handedOver = new WeakMap<ArrayBufferLike, Uint8Array>();

/**
 * Marks a chunk's whole ArrayBuffer as given up by its producer, which keeps no view of it: the consumer that sees
 * it last may free it with releaseHandedOver, including bytes outside the chunk's own view. Only a chunk that
 * starts its own (non-pooled) ArrayBuffer is marked.
 */
export function handOver(chunk: Uint8Array): void {
  if (chunk.byteOffset === 0 && !mayBePoolSlice(chunk)) handedOver.set(chunk.buffer, chunk);
}

/**
 * The ArrayBuffer under a chunk its producer handed over, if `chunk` is that very chunk (not a part of it): the
 * caller then owns all of it and may move it to another thread; releaseHandedOver will not touch it any more. Bytes
 * beyond the chunk's view are the producer's slack (zlib's unused output space). Undefined otherwise.
 */
export function takeOwnership(chunk: Uint8Array): ArrayBuffer | undefined {
  if (handedOver.get(chunk.buffer) !== chunk) return undefined;
  handedOver.delete(chunk.buffer);
  return chunk.buffer as ArrayBuffer;
}

/** Frees the chunk's ArrayBuffer now if its producer handed it over; otherwise leaves it to the collector. */
export function releaseHandedOver(chunk: Uint8Array): void {
  if (handedOver.delete(chunk.buffer)) detach(chunk.buffer);
}

/** Frees an ArrayBuffer's memory now (never shared memory, which other threads may still read). */
function detach(buffer: ArrayBufferLike): void {
  // transfer is ES2024 (node >= 21); the lib we compile against predates it, hence the optional type.
  const owned = buffer as ArrayBuffer & { transfer?: (length: number) => ArrayBuffer };
  if (owned instanceof ArrayBuffer) owned.transfer?.(0);
}
