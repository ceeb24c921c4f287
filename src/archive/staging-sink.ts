/**
 * Writes safe members into a private staging directory, then applies ownership, modes and times once every byte is
 * in place (a directory made read-only too early would stop its own contents from being written).
 *
 * Speed: every filesystem call here is synchronous. Restores write into the page cache, where open, write,
 * chmod and friends take microseconds; routed through the libuv thread pool each costs several times that
 * in CPU (thread hand-offs), and on a 2-core runner that CPU is taken from decryption and decompression.
 * Writes are still gathered into ~1 MiB writev calls, since decompressors hand out small chunks.
 */
import { createHash } from "node:crypto";
import {
  chmodSync,
  closeSync,
  lchownSync,
  linkSync,
  lutimesSync,
  mkdirSync,
  openSync,
  symlinkSync,
  utimesSync,
  writevSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { IntegrityError } from "../errors.js";
import type { MemberSink } from "./extract.js";
import type { TarHeader } from "./tar-format.js";

interface PendingMetadata {
  readonly path: string;
  readonly header: TarHeader;
}

/** Writes are batched to this size: decompressors hand out small chunks, the disk wants big ones. */
const WRITE_BATCH = 1 << 20;
/** writev takes at most IOV_MAX (1024 on Linux) buffers per call. */
const MAX_IOVECS = 1024;
/** Metadata calls between yields to the event loop (keeps timers and signals responsive on huge trees). */
const METADATA_SLICE = 4096;

export class StagingSink implements MemberSink {
  private readonly files: PendingMetadata[] = [];
  private readonly directories: PendingMetadata[] = [];
  private readonly createdDirs = new Set<string>();
  private readonly canChown = process.getuid?.() === 0;

  constructor(private readonly root: string) {}

  /** Where an archive path lands in staging: `home/x` -> `<root>/home/x`. */
  pathOf(archivePath: string): string {
    return join(this.root, archivePath);
  }

  async member(header: TarHeader, body: AsyncIterable<Buffer>): Promise<string | undefined> {
    const path = this.pathOf(header.path);
    this.ensureDir(dirname(path));
    switch (header.type) {
      case "directory":
        this.ensureDir(path);
        this.directories.push({ path, header });
        return undefined;
      case "symlink":
        symlinkSync(header.linkTarget!, path);
        this.files.push({ path, header });
        return undefined;
      case "hardlink":
        linkSync(this.pathOf(header.linkTarget!), path);
        return undefined;
      case "file": {
        const digest = await writeFile(path, body);
        this.files.push({ path, header });
        return digest;
      }
      default:
        throw new IntegrityError(`refusing member ${header.path}: unsupported type ${header.type}`);
    }
  }

  /** Owners, modes and times, files first, then directories deepest first (their mtimes change as files land). */
  async applyMetadata(): Promise<void> {
    const deepestFirst = [...this.directories].sort((a, b) => b.path.length - a.path.length);
    let done = 0;
    for (const { path, header } of [...this.files, ...deepestFirst]) {
      this.apply(path, header);
      if (++done % METADATA_SLICE === 0) await new Promise((resolve) => setImmediate(resolve));
    }
  }

  private apply(path: string, header: TarHeader): void {
    if (this.canChown) lchownSync(path, header.uid, header.gid);
    if (header.type === "symlink") {
      lutimesSync(path, header.mtime, header.mtime);
      return;
    }
    // chmod after chown: chown clears setuid/setgid bits.
    chmodSync(path, header.mode);
    utimesSync(path, header.mtime, header.mtime);
  }

  private ensureDir(path: string): void {
    if (this.createdDirs.has(path)) return;
    mkdirSync(path, { recursive: true, mode: 0o700 });
    this.createdDirs.add(path);
  }
}

async function writeFile(path: string, body: AsyncIterable<Buffer>): Promise<string> {
  const hash = createHash("sha256");
  // 'wx': staging is fresh and private, so an existing file here means the archive tried to write twice.
  const fd = openSync(path, "wx", 0o600);
  try {
    let batch: Buffer[] = [];
    let batched = 0;
    for await (const chunk of body) {
      hash.update(chunk);
      batch.push(chunk);
      batched += chunk.length;
      if (batched >= WRITE_BATCH || batch.length === MAX_IOVECS) {
        writeAll(fd, batch, batched);
        batch = [];
        batched = 0;
      }
    }
    if (batch.length > 0) writeAll(fd, batch, batched);
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}

/** writev until every byte is written (a short write is legal, if rare on regular files). */
function writeAll(fd: number, buffers: Buffer[], total: number): void {
  let written = writevSync(fd, buffers);
  while (written < total) {
    const rest = Buffer.concat(buffers).subarray(written);
    written += writevSync(fd, [rest]);
  }
}
