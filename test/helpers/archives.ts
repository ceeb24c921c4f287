/**
 * Builds archives by hand for restore tests: any member list (including hostile ones), properly compressed and
 * encrypted, so the tests exercise restore's own checks rather than the decryption layer.
 */
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { BACKUP_META_PATH, CATALOG_PATH, type CatalogEntry, catalogLine } from "../../src/archive/catalog.js";
import type { TarHeader } from "../../src/archive/tar-format.js";
import { writeTar } from "../../src/archive/tar-writer.js";
import { createZstdCompressStream } from "../../src/compress/zstd.js";
import { createAgeEncryptStream } from "../../src/crypto/age.js";

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
      const entry: CatalogEntry = {
        path: h.path,
        type: h.type,
        size: h.size,
        mode: h.mode,
        uid: h.uid,
        gid: h.gid,
        mtime: h.mtime,
      };
      if (h.type === "file") {
        entry.sha256 = createHash("sha256")
          .update(m.body ?? Buffer.alloc(0))
          .digest("hex");
        digests.set(h.path, entry.sha256);
      }
      if (h.type === "hardlink" && h.linkTarget) entry.sha256 = digests.get(h.linkTarget);
      if (h.linkTarget !== undefined) entry.linkTarget = h.linkTarget;
      return catalogLine(entry);
    });
    const written = options.catalogLines?.(lines) ?? lines;
    all.push({ header: { path: CATALOG_PATH, mode: 0o600 }, body: Buffer.from(written.join("")) });
  }
  return buffer(Readable.from(writeTar(all.map((m) => ({ header: fullHeader(m), body: m.body })))));
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
