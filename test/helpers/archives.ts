/**
 * Builds archives by hand for restore tests: any member list (including hostile ones), properly compressed and
 * encrypted, so the tests exercise restore's own checks rather than the decryption layer.
 */
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { BACKUP_META_PATH, CATALOG_PATH, type CatalogEntry, catalogLine } from "../../src/archive/catalog.js";
import { encodeEndOfArchive, encodeHeader, type TarHeader } from "../../src/archive/tar-format.js";
import { createZstdCompressStream } from "../../src/compress/zstd-compress.js";
import { createAgeEncryptStream } from "../../src/crypto/age.js";
import { writeEntry, writeTar } from "./tar-writer.js";

export interface RawMember {
  header: Partial<TarHeader> & Pick<TarHeader, "path">;
  body?: Buffer;
}

function fullHeader(member: RawMember): TarHeader {
  const size = member.body?.length ?? 0;
  return { type: "file", mode: 0o644, uid: 0, gid: 0, mtime: 1_700_000_000, size, ...member.header };
}

export interface BuildOptions {
  catalog?: boolean;
  catalogLines?: (lines: string[]) => string[];
  /** Outside paths backup.json records (`manifest.outside`), as a backup with those paths selected would. */
  outside?: string[];
}

/**
 * Members in order; with `catalog: true` a backup.json first and a matching catalog last, as looker-backup writes.
 * `catalogLines` may reorder or change the catalog's lines (to test verification against other writers' order).
 */
export async function buildTar(members: RawMember[], options: BuildOptions = {}): Promise<Buffer> {
  const all: RawMember[] = [...members];
  if (options.catalog) {
    const meta: Record<string, unknown> = { format: "looker-backup/1" };
    if (options.outside) {
      const outside = options.outside.map((path, i) => ({
        id: `outside-${i}`,
        path,
        required: true,
        reason: "test",
      }));
      meta.manifest = { rules: [], outside };
    }
    all.unshift({
      header: { path: BACKUP_META_PATH, mode: 0o600 },
      body: Buffer.from(`${JSON.stringify(meta)}\n`),
    });
    const digests = new Map<string, string>();
    const lines = all.map((m) => {
      const h = fullHeader(m);
      let sha256: string | undefined;
      if (h.type === "file") {
        sha256 = createHash("sha256")
          .update(m.body ?? Buffer.alloc(0))
          .digest("hex");
        digests.set(h.path, sha256);
      }
      if (h.type === "hardlink" && h.linkTarget) sha256 = digests.get(h.linkTarget);
      return catalogLineOf(h, sha256);
    });
    const written = options.catalogLines?.(lines) ?? lines;
    all.push({ header: { path: CATALOG_PATH, mode: 0o600 }, body: Buffer.from(written.join("")) });
  }
  return buffer(Readable.from(writeTar(all.map((m) => ({ header: fullHeader(m), body: m.body })))));
}

function catalogLineOf(h: TarHeader, sha256: string | undefined): string {
  const entry: CatalogEntry = {
    path: h.path,
    type: h.type,
    size: h.size,
    mode: h.mode,
    uid: h.uid,
    gid: h.gid,
    mtime: h.mtime,
  };
  if (sha256 !== undefined) entry.sha256 = sha256;
  if (h.linkTarget !== undefined) entry.linkTarget = h.linkTarget;
  return catalogLine(entry);
}

/**
 * A valid archive's tar stream around one regular file of `size` zero bytes (a multiple of 512), without the
 * zeros themselves: `head` (backup.json and the file's header) comes before them, `tail` (the catalog and the end
 * marker) after. Lets a test compress gigabytes of zeros however it likes without ever holding them.
 */
export async function zeroFileTar(path: string, size: number): Promise<{ head: Buffer; tail: Buffer }> {
  if (size % 512 !== 0) throw new Error("size must be a multiple of 512");
  const meta: RawMember = {
    header: { path: BACKUP_META_PATH, mode: 0o600 },
    body: Buffer.from(`${JSON.stringify({ format: "looker-backup/1" })}\n`),
  };
  const file = fullHeader({ header: { path, size } });
  const zeros = Buffer.alloc(Math.min(size, 16 << 20));
  const digest = createHash("sha256");
  for (let left = size; left > 0; left -= zeros.length)
    digest.update(zeros.subarray(0, Math.min(left, zeros.length)));
  const lines = [
    catalogLineOf(fullHeader(meta), createHash("sha256").update(meta.body!).digest("hex")),
    catalogLineOf(file, digest.digest("hex")),
  ];
  const catalog: RawMember = {
    header: { path: CATALOG_PATH, mode: 0o600 },
    body: Buffer.from(lines.join("")),
  };
  const entry = (m: RawMember) => buffer(Readable.from(writeEntry({ header: fullHeader(m), body: m.body })));
  return {
    head: Buffer.concat([await entry(meta), encodeHeader(file)]),
    tail: Buffer.concat([await entry(catalog), encodeEndOfArchive()]),
  };
}

/** Encrypts a zstd stream made by the caller (any frames, in any sizes), as a backup's archive. */
export async function encryptZstd(frames: Iterable<Buffer>, recipient: string): Promise<Buffer> {
  return buffer(Readable.from(frames).pipe(createAgeEncryptStream({ recipients: [recipient] })));
}

export async function encryptTar(tar: Buffer, recipient: string): Promise<Buffer> {
  const source = Readable.from([tar]);
  return buffer(
    source
      .pipe(createZstdCompressStream({ level: 3 }))
      .pipe(createAgeEncryptStream({ recipients: [recipient] })),
  );
}

export async function writeArchive(
  path: string,
  members: RawMember[],
  recipient: string,
  options: BuildOptions = {},
) {
  await writeFile(path, await encryptTar(await buildTar(members, options), recipient));
}
