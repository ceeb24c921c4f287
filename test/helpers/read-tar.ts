/** The members of a tar stream as an async generator, over TarReader (what tests read archives with). */
import type { Readable } from "node:stream";
import { type TarReadEntry, TarReader, type TarReadLimits } from "../../src/extract/tar-reader.js";

/** Yields each member of a tar stream in order; see TarReadEntry for how bodies must be consumed. */
export async function* readTar(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array> | Readable,
  limits: TarReadLimits = {},
): AsyncGenerator<TarReadEntry, void, undefined> {
  const tar = new TarReader(source, limits);
  let finished = false;
  try {
    for (let entry = await tar.next(); entry !== undefined; entry = await tar.next()) yield entry;
    await tar.finish();
    finished = true;
  } finally {
    if (!finished) await tar.release();
  }
}
