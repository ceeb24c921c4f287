import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, type WriteStream } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { finished } from "node:stream/promises";
import { CancelledError, InputError, LookerBackupError } from "../errors.js";
import { releaseHandedOver } from "../runtime/buffers.js";
import { catalogNameFor, keyfileNameFor, parseArchiveName, signatureNameFor } from "./archive-name.js";
import { namesToPrune } from "./retention.js";
import type { PendingObject, RetentionPolicy, Store, StoredObject } from "./store.js";

const PARTIAL_PREFIX = ".partial-";

/**
 * Frees each chunk whose producer handed it over (the encryptor's 1 MiB batches) as soon as it is on disk, not
 * at V8's next collection: dead batches piling up as external memory were ~20-30 MiB of a backup's peak RSS.
 */
function freeAfterWrite(stream: WriteStream): WriteStream {
  const write = stream._write.bind(stream);
  stream._write = (chunk: Buffer, encoding, callback) =>
    write(chunk, encoding, (error) => {
      releaseHandedOver(chunk);
      callback(error);
    });
  const writev = stream._writev?.bind(stream);
  if (writev !== undefined) {
    stream._writev = (chunks, callback) =>
      writev(chunks, (error) => {
        for (const { chunk } of chunks) releaseHandedOver(chunk as Buffer);
        callback(error);
      });
  }
  return stream;
}

/** A local or mounted directory: atomic writes (temp name, fsync, rename, fsync of the directory). */
export class DirStore implements Store {
  readonly kind = "dir";

  constructor(readonly directory: string) {}

  async create(name: string): Promise<PendingObject> {
    assertPlainName(name);
    await mkdir(this.directory, { recursive: true, mode: 0o700 });
    const finalPath = join(this.directory, name);
    const partialPath = join(this.directory, `${PARTIAL_PREFIX}${randomBytes(6).toString("hex")}-${name}`);
    // 0600: an archive is ciphertext, but its size and name are still nobody else's business.
    const stream = freeAfterWrite(
      createWriteStream(partialPath, { flags: "wx", mode: 0o600, highWaterMark: 1 << 20 }),
    );
    let settled = false;
    return {
      stream,
      commit: async () => {
        if (!stream.writableFinished) await finished(stream);
        await fsyncPath(partialPath);
        await rename(partialPath, finalPath);
        await fsyncPath(this.directory);
        settled = true;
        const info = await stat(finalPath);
        return { name, size: info.size, location: finalPath, createdAt: createdAtOf(name, info.mtime) };
      },
      abort: async () => {
        if (settled) return;
        settled = true;
        // A write still in flight fails with ERR_STREAM_DESTROYED once the stream is gone; the bytes are being
        // thrown away, so that error is expected and must not surface as an uncaught exception.
        stream.on("error", () => {});
        stream.destroy();
        await rm(partialPath, { force: true });
      },
    };
  }

  async list(instance?: string): Promise<StoredObject[]> {
    let names: string[];
    try {
      names = await readdir(this.directory);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw error;
    }
    const archives: StoredObject[] = [];
    for (const name of names) {
      const parsed = parseArchiveName(name);
      if (!parsed || (instance !== undefined && parsed.instance !== instance)) continue;
      const path = join(this.directory, name);
      const info = await stat(path);
      archives.push({ name, size: info.size, location: path, createdAt: parsed.createdAt });
    }
    return archives.sort(
      (a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.name < b.name ? 1 : -1),
    );
  }

  async open(name: string): Promise<Readable> {
    assertPlainName(name);
    const path = join(this.directory, name);
    try {
      await stat(path);
    } catch (error) {
      throw new InputError(
        `no archive ${name} in ${this.directory}`,
        "run `looker-backup list --out DIR`",
        error,
      );
    }
    return createReadStream(path, { highWaterMark: 1 << 20 });
  }

  /**
   * Removes what the policy does not keep, each archive with its key file and signature. `signal` stops it between
   * two archives (never within one, which would leave a signature or key file without its archive).
   */
  async prune(
    instance: string,
    policy: RetentionPolicy,
    now = new Date(),
    signal?: AbortSignal,
  ): Promise<string[]> {
    const doomed = namesToPrune(await this.list(instance), policy, now);
    for (const name of doomed) {
      if (signal?.aborted) throw new CancelledError();
      await rm(join(this.directory, name), { force: true });
      await rm(join(this.directory, keyfileNameFor(name)), { force: true });
      await rm(join(this.directory, signatureNameFor(name)), { force: true });
      const catalog = catalogNameFor(name);
      if (catalog !== undefined) await rm(join(this.directory, catalog), { force: true });
    }
    return doomed;
  }
}

function assertPlainName(name: string): void {
  if (name === "" || name.includes("/") || name.startsWith(".")) {
    throw new LookerBackupError(`refusing store object name '${name}'`);
  }
}

function createdAtOf(name: string, fallback: Date): Date {
  return parseArchiveName(name)?.createdAt ?? fallback;
}

async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
