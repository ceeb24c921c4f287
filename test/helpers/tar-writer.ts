/**
 * Streaming tar writer: turns members (header + body) into the pax tar byte stream, ending with the
 * end-of-archive marker. Bodies pass through unchanged (no copy); only headers and padding are allocated.
 * Feed the result to Readable.from() or straight into a pipeline stage.
 */

import { encodeSparseMap, sparseDataSize } from "../../src/archive/sparse.js";
import {
  encodeEndOfArchive,
  encodeHeader,
  paddingFor,
  type TarHeader,
} from "../../src/archive/tar-format.js";
import { LookerBackupError } from "../../src/errors.js";

export interface TarWriteEntry {
  header: TarHeader;
  /** Exactly header.size bytes (a sparse file: its data segments, concatenated); omit for members without data. */
  body?: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;
}

/** The tar stream for `entries`, in order; throws if a body's length differs from its header's size. */
export async function* writeTar(
  entries: Iterable<TarWriteEntry> | AsyncIterable<TarWriteEntry>,
): AsyncGenerator<Buffer, void, undefined> {
  for await (const entry of entries) {
    yield* writeEntry(entry);
  }
  yield encodeEndOfArchive();
}

/** One member: its header block(s), body and padding (no end-of-archive marker). */
export async function* writeEntry(entry: TarWriteEntry): AsyncGenerator<Buffer, void, undefined> {
  const { header } = entry;
  yield encodeHeader(header);
  // A sparse file's map starts its body; it fills whole blocks, so the padding is the data's.
  if (header.sparse !== undefined) yield encodeSparseMap(header.sparse);
  const size = header.sparse === undefined ? header.size : sparseDataSize(header.sparse);
  let written = 0;
  for await (const part of bodyParts(entry.body)) {
    written += part.length;
    if (written > size) throw sizeMismatch(header, "more", size);
    if (part.length > 0) yield part;
  }
  if (written < size) throw sizeMismatch(header, "fewer", size);
  const padding = paddingFor(size);
  if (padding > 0) yield Buffer.alloc(padding);
}

async function* bodyParts(body: TarWriteEntry["body"]): AsyncGenerator<Buffer, void, undefined> {
  if (body === undefined) return;
  if (body instanceof Uint8Array) {
    yield asBuffer(body);
    return;
  }
  for await (const part of body) yield asBuffer(part);
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function sizeMismatch(header: TarHeader, direction: "more" | "fewer", size: number): LookerBackupError {
  return new LookerBackupError(
    `tar member ${JSON.stringify(header.path)} has ${direction} bytes than the ${size} its header declares`,
    {
      hint: "the file changed while it was being archived; retry, or stop the writer (Looker) during the backup",
    },
  );
}
