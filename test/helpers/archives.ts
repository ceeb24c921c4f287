/**
 * Builds archives by hand for restore tests: any member list (including hostile ones), properly compressed and
 * encrypted, so the tests exercise restore's own checks rather than the decryption layer.
 */
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { BACKUP_META_PATH, CATALOG_PATH, type CatalogEntry, catalogLine } from "../../src/archive/catalog.js";
import { SparseContent, sparseStandIn } from "../../src/archive/sparse.js";
import {
  encodeEndOfArchive,
  encodeHeader,
  Field,
  headerChecksum,
  paddingFor,
  paxRecord,
  type TarHeader,
} from "../../src/archive/tar-format.js";
import { createZstdCompressStream } from "../../src/compress/zstd-compress.js";
import { createAgeEncryptStream } from "../../src/crypto/age.js";
import { writeEntry } from "./tar-writer.js";

export interface RawMember {
  header: Partial<TarHeader> & Pick<TarHeader, "path">;
  /** The body as the tar reader yields it (a sparse file: its data segments, concatenated). */
  body?: Buffer;
  /** The member's bytes as they stand in the tar, for what our writer refuses to write; the catalog lists `header`. */
  raw?: Buffer;
}

function fullHeader(member: RawMember): TarHeader {
  const size = member.header.sparse === undefined ? (member.body?.length ?? 0) : 0;
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
        sha256 = contentDigest(h, m.body ?? Buffer.alloc(0));
        digests.set(h.path, sha256);
      }
      if (h.type === "hardlink" && h.linkTarget) sha256 = digests.get(h.linkTarget);
      return catalogLineOf(h, sha256);
    });
    const written = options.catalogLines?.(lines) ?? lines;
    all.push({ header: { path: CATALOG_PATH, mode: 0o600 }, body: Buffer.from(written.join("")) });
  }
  const parts: Buffer[] = [];
  for (const m of all) {
    if (m.raw !== undefined) parts.push(m.raw);
    else parts.push(await buffer(Readable.from(writeEntry({ header: fullHeader(m), body: m.body }))));
  }
  return Buffer.concat([...parts, encodeEndOfArchive()]);
}

/** The sha256 the catalog lists: of the file's content, a sparse file's holes included. */
function contentDigest(header: TarHeader, body: Buffer): string {
  if (header.sparse === undefined) return createHash("sha256").update(body).digest("hex");
  const content = new SparseContent(header.sparse, header.size);
  content.add(body);
  return content.digest();
}

/**
 * A sparse member (GNU tar's pax format 1.0) as it stands in the tar, with whatever map and sizes it is given,
 * sound or not: its pax header with the GNU.sparse records, the stand-in ustar header declaring `storedSize`
 * (default: the map's blocks and the data), the map text zero-padded to a block, the data, the padding.
 */
export function rawSparseMember(options: {
  path: string;
  realSize: number | string;
  mapText: string;
  data?: Buffer;
  storedSize?: number;
}): Buffer {
  const data = options.data ?? Buffer.alloc(0);
  const map = Buffer.from(options.mapText, "latin1");
  const mapBlocks = Buffer.concat([map, Buffer.alloc(paddingFor(map.length))]);
  const storedSize = options.storedSize ?? mapBlocks.length + data.length;
  const records = Buffer.concat([
    paxRecord("GNU.sparse.major", "1"),
    paxRecord("GNU.sparse.minor", "0"),
    paxRecord("GNU.sparse.name", options.path),
    paxRecord("GNU.sparse.realsize", String(options.realSize)),
  ]);
  const base = { type: "file" as const, mode: 0o644, uid: 0, gid: 0, mtime: 1_700_000_000 };
  const pax = Buffer.from(encodeHeader({ ...base, path: "PaxHeaders/sparse", size: records.length }));
  pax.write("x", Field.typeflag[0], "latin1");
  pax.write(`${headerChecksum(pax).toString(8).padStart(6, "0")}\0 `, Field.checksum[0], "latin1");
  return Buffer.concat([
    pax,
    records,
    Buffer.alloc(paddingFor(records.length)),
    encodeHeader({ ...base, path: sparseStandIn(options.path), size: storedSize }),
    mapBlocks,
    data,
    Buffer.alloc(paddingFor(storedSize)),
  ]);
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
