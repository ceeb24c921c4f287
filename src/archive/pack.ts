/**
 * Turns a selection into a pax tar stream: `meta/backup.json` first, then the selected paths, then any extra
 * members (the MySQL dump), then `meta/catalog.jsonl` last. Every file is hashed while it is read, in one pass, and
 * a file that changes or vanishes while it is read becomes a warning rather than a silent inconsistency.
 */
import { createHash } from "node:crypto";
import type { Stats } from "node:fs";
import { type FileHandle, open, readlink } from "node:fs/promises";
import { InputError } from "../errors.js";
import type { SelectedEntry } from "../manifest/select.js";
import { BACKUP_META_PATH, CATALOG_PATH, type CatalogEntry, catalogLine } from "./catalog.js";
import { encodeEndOfArchive, encodeHeader, paddingFor, type TarHeader } from "./tar-format.js";

/** A member produced by the caller rather than read from disk (e.g. a database dump spooled during the backup). */
export interface ExtraMember {
  readonly path: string;
  readonly size: number;
  readonly mode: number;
  readonly mtime: number;
  readonly body: () => AsyncIterable<Buffer>;
}

export interface PackProgress {
  bytesRead: number;
  members: number;
}

export interface PackOptions {
  readonly entries: readonly SelectedEntry[];
  readonly meta: Record<string, unknown>;
  readonly extraMembers?: () => Promise<readonly ExtraMember[]>;
  readonly onProgress?: (progress: PackProgress) => void;
  readonly signal?: AbortSignal;
}

export interface PackResult {
  readonly catalog: CatalogEntry[];
  readonly warnings: string[];
  readonly bytesIn: number;
}

/** Files at most this big are read whole with one call; bigger ones stream in chunks of this size. */
const CHUNK_SIZE = 1 << 20;
/** Small files are read ahead concurrently: per-file syscalls, not bandwidth, dominate a LookML tree. */
const READ_AHEAD = 16;
const ZEROS = Buffer.alloc(512);

export class ArchivePacker {
  readonly catalog: CatalogEntry[] = [];
  readonly warnings: string[] = [];
  private bytesIn = 0;
  private readonly hardLinks = new Map<string, string>();

  constructor(private readonly options: PackOptions) {}

  result(): PackResult {
    return { catalog: this.catalog, warnings: this.warnings, bytesIn: this.bytesIn };
  }

  async *stream(): AsyncGenerator<Buffer> {
    const { entries, meta } = this.options;
    yield* this.bufferMember(BACKUP_META_PATH, Buffer.from(`${JSON.stringify(meta, null, 2)}\n`), 0o600);
    const reads = new ReadAhead(entries, READ_AHEAD);
    for (let i = 0; i < entries.length; i++) {
      this.options.signal?.throwIfAborted();
      yield* this.member(entries[i]!, reads.take(i));
    }
    for (const extra of (await this.options.extraMembers?.()) ?? []) yield* this.extraMember(extra);
    yield* this.catalogMember();
    yield encodeEndOfArchive();
  }

  private async *member(
    entry: SelectedEntry,
    prefetched: Promise<SmallRead> | undefined,
  ): AsyncGenerator<Buffer> {
    const { stats, archivePath } = entry;
    if (entry.type === "directory") {
      yield this.header(headerOf(archivePath, "directory", stats));
    } else if (entry.type === "symlink") {
      const target = await readlink(entry.sourcePath).catch((e: Error) => this.vanished(entry, e));
      if (target !== undefined)
        yield this.header({ ...headerOf(archivePath, "symlink", stats), linkTarget: target });
    } else {
      const firstPath = this.hardLinkTarget(entry);
      if (firstPath !== undefined) {
        const first = this.catalog.find((c) => c.path === firstPath);
        yield this.header(
          { ...headerOf(archivePath, "hardlink", stats), linkTarget: firstPath },
          first?.sha256,
        );
      } else {
        yield* this.fileMember(entry, prefetched);
      }
    }
    this.options.onProgress?.({ bytesRead: this.bytesIn, members: this.catalog.length });
  }

  /** The second and later names of a hard-linked file become link members, as GNU tar does. */
  private hardLinkTarget(entry: SelectedEntry): string | undefined {
    if (entry.stats.nlink < 2) return undefined;
    const key = `${entry.stats.dev}:${entry.stats.ino}`;
    const first = this.hardLinks.get(key);
    if (first === undefined) this.hardLinks.set(key, entry.archivePath);
    return first;
  }

  private async *fileMember(
    entry: SelectedEntry,
    prefetched: Promise<SmallRead> | undefined,
  ): AsyncGenerator<Buffer> {
    const read = prefetched ? await prefetched : undefined;
    if (read?.kind === "error") {
      this.vanished(entry, read.error);
      return;
    }
    if (read?.kind === "whole") {
      const { stats, content, changed } = read;
      const hash = createHash("sha256").update(content).digest("hex");
      yield this.header(headerOf(entry.archivePath, "file", stats, content.length), hash, changed);
      yield content;
      yield padding(content.length);
      this.bytesIn += content.length;
      return;
    }
    let handle: FileHandle;
    try {
      handle = await open(entry.sourcePath, "r");
    } catch (error) {
      this.vanished(entry, error as Error);
      return;
    }
    try {
      yield* this.streamFile(entry, handle);
    } finally {
      await handle.close();
    }
  }

  private async *streamFile(entry: SelectedEntry, handle: FileHandle): AsyncGenerator<Buffer> {
    const before = await handle.stat();
    const size = before.size;
    const hash = createHash("sha256");
    // The header must carry the size before the body: we commit to the size seen at open and read exactly that.
    const catalogEntry = this.catalogEntryFor(headerOf(entry.archivePath, "file", before, size));
    yield encodeHeader(headerOf(entry.archivePath, "file", before, size));
    let offset = 0;
    while (offset < size) {
      this.options.signal?.throwIfAborted();
      const want = Math.min(CHUNK_SIZE, size - offset);
      const chunk = Buffer.allocUnsafe(want);
      const { bytesRead } = await handle.read(chunk, 0, want, offset);
      if (bytesRead === 0) break;
      const data = bytesRead === want ? chunk : chunk.subarray(0, bytesRead);
      hash.update(data);
      offset += bytesRead;
      this.bytesIn += bytesRead;
      yield data;
    }
    if (offset < size) {
      // The file shrank under us: pad with zeros so the archive stays well-formed, and say so.
      const filler = Buffer.alloc(size - offset);
      hash.update(filler);
      yield filler;
    }
    yield padding(size);
    const after = await handle.stat();
    const changed = offset < size || changedWhileRead(before, after);
    catalogEntry.sha256 = hash.digest("hex");
    if (changed) this.warn(catalogEntry, `${entry.archivePath} changed while it was read`);
  }

  private async *bufferMember(path: string, content: Buffer, mode: number): AsyncGenerator<Buffer> {
    const now = Date.now() / 1000;
    const header: TarHeader = { path, type: "file", size: content.length, mode, uid: 0, gid: 0, mtime: now };
    yield this.header(header, createHash("sha256").update(content).digest("hex"));
    yield content;
    yield padding(content.length);
  }

  private async *extraMember(extra: ExtraMember): AsyncGenerator<Buffer> {
    const header: TarHeader = {
      path: extra.path,
      type: "file",
      size: extra.size,
      mode: extra.mode,
      uid: 0,
      gid: 0,
      mtime: extra.mtime,
    };
    const catalogEntry = this.catalogEntryFor(header);
    yield encodeHeader(header);
    const hash = createHash("sha256");
    let written = 0;
    for await (const chunk of extra.body()) {
      hash.update(chunk);
      written += chunk.length;
      yield chunk;
    }
    if (written !== extra.size) {
      throw new InputError(`${extra.path}: expected ${extra.size} bytes, the producer gave ${written}`);
    }
    yield padding(extra.size);
    this.bytesIn += written;
    catalogEntry.sha256 = hash.digest("hex");
  }

  private async *catalogMember(): AsyncGenerator<Buffer> {
    const content = Buffer.from(this.catalog.map(catalogLine).join(""));
    const now = Date.now() / 1000;
    yield encodeHeader({
      path: CATALOG_PATH,
      type: "file",
      size: content.length,
      mode: 0o600,
      uid: 0,
      gid: 0,
      mtime: now,
    });
    yield content;
    yield padding(content.length);
  }

  private header(header: TarHeader, sha256?: string, changed = false): Buffer {
    const entry = this.catalogEntryFor(header);
    if (sha256 !== undefined) entry.sha256 = sha256;
    if (changed) this.warn(entry, `${header.path} changed while it was read`);
    return encodeHeader(header);
  }

  private catalogEntryFor(header: TarHeader): CatalogEntry {
    const entry: CatalogEntry = {
      path: header.path,
      type: header.type,
      size: header.size,
      mode: header.mode,
      uid: header.uid,
      gid: header.gid,
      mtime: header.mtime,
    };
    if (header.linkTarget !== undefined) entry.linkTarget = header.linkTarget;
    this.catalog.push(entry);
    return entry;
  }

  private warn(entry: CatalogEntry, message: string): void {
    entry.warning = message;
    this.warnings.push(message);
  }

  /** A path that disappears between selection and reading is normal on a live host; an unreadable required one is not. */
  private vanished(entry: SelectedEntry, error: Error): undefined {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") {
      this.warnings.push(`${entry.archivePath} vanished before it could be read`);
      return undefined;
    }
    const message = `cannot read ${entry.sourcePath}: ${error.message}`;
    if (entry.required) throw new InputError(message, "run the backup as root or as the looker user");
    this.warnings.push(message);
    return undefined;
  }
}

function headerOf(path: string, type: TarHeader["type"], stats: Stats, size = 0): TarHeader {
  return {
    path,
    type,
    size: type === "file" ? size : 0,
    mode: stats.mode & 0o7777,
    uid: stats.uid,
    gid: stats.gid,
    // Node keeps times as doubles (sub-microsecond); pax carries the shortest exact decimal of that double.
    mtime: stats.mtimeMs / 1000,
  };
}

function changedWhileRead(before: Stats, after: Stats): boolean {
  return before.size !== after.size || before.mtimeMs !== after.mtimeMs;
}

function padding(size: number): Buffer {
  const n = paddingFor(size);
  return n === 0 ? EMPTY : ZEROS.subarray(0, n);
}
const EMPTY = Buffer.alloc(0);

type SmallRead =
  | { kind: "whole"; stats: Stats; content: Buffer; changed: boolean }
  | { kind: "large" }
  | { kind: "error"; error: Error };

/**
 * Reads small regular files a few entries ahead of the writer, so that open/read/close round trips overlap with
 * compression instead of stalling it. Memory stays bounded: at most READ_AHEAD files of at most CHUNK_SIZE each.
 */
class ReadAhead {
  private readonly pending = new Map<number, Promise<SmallRead>>();
  private next = 0;

  constructor(
    private readonly entries: readonly SelectedEntry[],
    private readonly depth: number,
  ) {}

  take(index: number): Promise<SmallRead> | undefined {
    while (this.next < this.entries.length && this.next <= index + this.depth) this.start(this.next++);
    const read = this.pending.get(index);
    this.pending.delete(index);
    return read;
  }

  private start(index: number): void {
    const entry = this.entries[index]!;
    if (entry.type !== "file" || entry.stats.size > CHUNK_SIZE || entry.stats.nlink > 1) return;
    const read = readSmallFile(entry.sourcePath);
    read.catch(() => undefined); // consumed later by take(); avoid an unhandled rejection meanwhile
    this.pending.set(index, read);
  }
}

async function readSmallFile(path: string): Promise<SmallRead> {
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (error) {
    return { kind: "error", error: error as Error };
  }
  try {
    const stats = await handle.stat();
    if (stats.size > CHUNK_SIZE) return { kind: "large" };
    // One byte more than expected tells us the file grew while we looked.
    const buffer = Buffer.allocUnsafe(stats.size + 1);
    let filled = 0;
    while (filled < buffer.length) {
      const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    const after = await handle.stat();
    const content = buffer.subarray(0, Math.min(filled, stats.size));
    const changed = filled !== stats.size || changedWhileRead(stats, after);
    return { kind: "whole", stats, content, changed };
  } catch (error) {
    return { kind: "error", error: error as Error };
  } finally {
    await handle.close();
  }
}
