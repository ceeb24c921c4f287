/**
 * Writes safe members into a private staging directory, then applies ownership, modes and times once every byte is
 * in place (a directory made read-only too early would stop its own contents from being written).
 */
import { createHash } from "node:crypto";
import { chmod, lchown, link, lutimes, mkdir, open, symlink, utimes } from "node:fs/promises";
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
    await this.ensureDir(dirname(path));
    switch (header.type) {
      case "directory":
        await this.ensureDir(path);
        this.directories.push({ path, header });
        return undefined;
      case "symlink":
        await symlink(header.linkTarget!, path);
        this.files.push({ path, header });
        return undefined;
      case "hardlink":
        await link(this.pathOf(header.linkTarget!), path);
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
    for (const { path, header } of this.files) await this.apply(path, header);
    const deepestFirst = [...this.directories].sort((a, b) => b.path.length - a.path.length);
    for (const { path, header } of deepestFirst) await this.apply(path, header);
  }

  private async apply(path: string, header: TarHeader): Promise<void> {
    if (this.canChown) await lchown(path, header.uid, header.gid);
    if (header.type === "symlink") {
      await lutimes(path, header.mtime, header.mtime);
      return;
    }
    // chmod after chown: chown clears setuid/setgid bits.
    await chmod(path, header.mode);
    await utimes(path, header.mtime, header.mtime);
  }

  private async ensureDir(path: string): Promise<void> {
    if (this.createdDirs.has(path)) return;
    await mkdir(path, { recursive: true, mode: 0o700 });
    this.createdDirs.add(path);
  }
}

async function writeFile(path: string, body: AsyncIterable<Buffer>): Promise<string> {
  const hash = createHash("sha256");
  // 'wx': staging is fresh and private, so an existing file here means the archive tried to write twice.
  const handle = await open(path, "wx", 0o600);
  try {
    let batch: Buffer[] = [];
    let batched = 0;
    for await (const chunk of body) {
      hash.update(chunk);
      batch.push(chunk);
      batched += chunk.length;
      if (batched >= WRITE_BATCH) {
        await handle.writev(batch);
        batch = [];
        batched = 0;
      }
    }
    if (batch.length > 0) await handle.writev(batch);
  } finally {
    await handle.close();
  }
  return hash.digest("hex");
}
