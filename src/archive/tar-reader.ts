/**
 * Streaming tar parser: pax ('x', 'g'), GNU long names ('L', 'K'), ustar prefix, base-256 numbers.
 *
 * Memory stays bounded whatever the archive holds: bodies are handed out as slices of the incoming chunks
 * (no copy), and only metadata (pax headers, long names) is ever buffered, each under a configurable limit.
 * Anything malformed is an IntegrityError naming the byte offset where it was found.
 */
import type { Readable } from "node:stream";
import { releaseHandedOver } from "../compress/release.js";
import { IntegrityError, LookerBackupError } from "../errors.js";
import {
  BLOCK_SIZE,
  Field,
  headerChecksum,
  paddingFor,
  signedHeaderChecksum,
  type TarEntryType,
  type TarHeader,
  TypeFlag,
} from "./tar-format.js";

export interface TarReadLimits {
  /** Largest pax 'x' or 'g' header body accepted, in bytes (default 1 MiB). */
  maxPaxHeaderBytes?: number;
  /** Longest member path or link target, in UTF-8 bytes (default 4096, Linux PATH_MAX). */
  maxPathBytes?: number;
  /** Most members accepted (default: no limit). */
  maxEntries?: number;
  /**
   * The consumer keeps no body part once it asks for the next one, so chunks that their producer handed over (our
   * zstd decompressor's frame outputs, see handOver) are freed as soon as they are consumed.
   */
  releaseConsumed?: boolean;
}

export interface TarReadEntry {
  header: TarHeader;
  /** Byte offset of the member's first header block (its pax or GNU header, if any) in the archive. */
  offset: number;
  /**
   * The member's data, as slices of the incoming buffers. Read it before asking for the next entry:
   * whatever is left unread then is skipped, and the iterable can no longer be used. With releaseConsumed,
   * a part is valid only until the next part (or entry) is asked for.
   */
  body: AsyncIterable<Buffer>;
}

const DEFAULT_LIMITS = {
  maxPaxHeaderBytes: 1024 * 1024,
  maxPathBytes: 4096,
  maxEntries: Infinity,
  releaseConsumed: false,
};
const INTEGRITY_HINT =
  "the archive is damaged, truncated or not a tar archive; compare its sha256 with the backup's";
const EMPTY = Buffer.alloc(0);
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Yields each member of a tar stream in order; see TarReadEntry for how bodies must be consumed. */
export async function* readTar(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array> | Readable,
  limits: TarReadLimits = {},
): AsyncGenerator<TarReadEntry, void, undefined> {
  const settings = { ...DEFAULT_LIMITS, ...definedOnly(limits) };
  const reader = new ChunkReader(iteratorOf(source), settings.releaseConsumed);
  const parser = new HeaderParser(reader, settings);
  let finished = false;
  try {
    let entries = 0;
    for (;;) {
      const member = await parser.next();
      if (member === undefined) break;
      entries += 1;
      if (entries > settings.maxEntries) {
        fail(`archive has more than ${settings.maxEntries} members`, member.offset);
      }
      const body = new BodyCursor(reader, member.header.size, member.header.path);
      yield { header: member.header, offset: member.offset, body };
      body.close();
      const rest = body.remaining + paddingFor(member.header.size);
      if (!reader.skipBuffered(rest)) await reader.skip(rest, member.header.path);
    }
    // Read to the end so upstream stages (decryption, decompression) see and verify all of their input.
    await reader.drain();
    finished = true;
  } finally {
    if (!finished) await reader.release();
  }
}

/** Collects a (small) body into one buffer, refusing more than maxBytes. */
export async function readBody(body: AsyncIterable<Buffer>, maxBytes: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  for await (const part of body) {
    total += part.length;
    if (total > maxBytes) throw new IntegrityError(`member body exceeds ${maxBytes} bytes`);
    // A copy: with releaseConsumed, a part is freed once the next one is asked for.
    parts.push(Buffer.from(part));
  }
  return Buffer.concat(parts, total);
}

function iteratorOf(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncIterator<Uint8Array> {
  if (Symbol.asyncIterator in source) return source[Symbol.asyncIterator]();
  const iterator = source[Symbol.iterator]();
  return {
    next: async () => iterator.next(),
    return: async () => iterator.return?.() ?? { done: true, value: undefined },
  };
}

function definedOnly(limits: TarReadLimits): TarReadLimits {
  return Object.fromEntries(Object.entries(limits).filter(([, value]) => value !== undefined));
}

function fail(what: string, offset: number): never {
  throw new IntegrityError(`corrupt tar archive: ${what} at byte ${offset}`, INTEGRITY_HINT);
}

/** Pulls chunks from the source on demand and tracks how many archive bytes were consumed. */
class ChunkReader {
  /** Bytes consumed from the archive so far. */
  offset = 0;
  private chunk: Buffer = EMPTY;
  /** The chunk `chunk` is a view of, as the source gave it: freed once consumed when releasing. */
  private whole: Buffer = EMPTY;
  private ended = false;

  constructor(
    private readonly source: AsyncIterator<Uint8Array>,
    private readonly releaseConsumed: boolean,
  ) {}

  /**
   * `length` bytes if they are buffered already, else undefined (then use read). Why: a member takes several reads,
   * and each await of an async call is a round through the microtask queue; at 100k small files those were
   * ~1 us apiece.
   */
  readBuffered(length: number): Buffer | undefined {
    return this.chunk.length >= length ? this.take(length) : undefined;
  }

  /** Exactly `length` bytes, or fewer only if the source ends first. Sliced, not copied, when possible. */
  async read(length: number): Promise<Buffer> {
    if (!(await this.fill()) || this.chunk.length >= length) return this.take(length);
    const parts: Buffer[] = [];
    let collected = 0;
    while (collected < length && (await this.fill())) {
      const part = this.take(length - collected);
      // Copied: the next fill() may free the chunk this part is a view of.
      parts.push(this.releaseConsumed ? Buffer.from(part) : part);
      collected += part.length;
    }
    return Buffer.concat(parts, collected);
  }

  /** Up to `maxLength` bytes from the current chunk (a slice); throws if the source has ended. */
  async readSome(maxLength: number, member: string): Promise<Buffer> {
    if (!(await this.fill())) this.truncated(member);
    return this.take(maxLength);
  }

  /** Skips `length` bytes if they are buffered already; false (and nothing skipped) if not: then use skip. */
  skipBuffered(length: number): boolean {
    if (this.chunk.length < length) return false;
    this.take(length);
    return true;
  }

  async skip(length: number, member: string): Promise<void> {
    while (length > 0) {
      if (!(await this.fill())) this.truncated(member);
      length -= this.take(length).length;
    }
  }

  async drain(): Promise<void> {
    while (await this.fill()) this.take(this.chunk.length);
  }

  /** Stops the source early (an error, or the consumer left the loop): streams get destroyed. */
  async release(): Promise<void> {
    if (!this.ended) {
      this.ended = true;
      await this.source.return?.();
    }
  }

  truncated(member: string): never {
    fail(`unexpected end of archive inside member ${JSON.stringify(member)}`, this.offset);
  }

  /** Makes sure some bytes are buffered; false once the source is exhausted. */
  private async fill(): Promise<boolean> {
    while (this.chunk.length === 0) {
      if (this.releaseConsumed) {
        // Every view of it handed out is done with: parsed headers, copied metadata, body parts written.
        releaseHandedOver(this.whole);
        this.whole = EMPTY;
      }
      if (this.ended) return false;
      const next = await this.source.next();
      if (next.done) {
        this.ended = true;
        return false;
      }
      this.chunk = asBuffer(next.value);
      this.whole = this.chunk;
    }
    return true;
  }

  private take(length: number): Buffer {
    const part = length >= this.chunk.length ? this.chunk : this.chunk.subarray(0, length);
    this.chunk = part === this.chunk ? EMPTY : this.chunk.subarray(length);
    this.offset += part.length;
    return part;
  }
}

function asBuffer(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new LookerBackupError("tar reader needs a byte stream, got text or objects (is an encoding set?)");
}

/** One member's body, readable once, only while it is the current entry. */
class BodyCursor implements AsyncIterable<Buffer> {
  private open = true;
  private started = false;

  constructor(
    private readonly reader: ChunkReader,
    public remaining: number,
    private readonly member: string,
  ) {}

  close(): void {
    this.open = false;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    if (this.started) throw new LookerBackupError(`body of tar member ${this.member} was already read`);
    this.started = true;
    while (this.remaining > 0) {
      if (!this.open) {
        throw new LookerBackupError(`body of tar member ${this.member} read after moving to the next member`);
      }
      const part = await this.reader.readSome(this.remaining, this.member);
      this.remaining -= part.length;
      yield part;
    }
  }
}

/** pax keys we honour; everything else (atime, SCHILY.*, LIBARCHIVE.*) is ignored. */
type PaxKey = "path" | "linkpath" | "size" | "uid" | "gid" | "mtime" | "uname" | "gname";
const PAX_KEYS: ReadonlySet<string> = new Set<PaxKey>([
  "path",
  "linkpath",
  "size",
  "uid",
  "gid",
  "mtime",
  "uname",
  "gname",
]);

/** Reads header blocks, folding pax and GNU meta headers into the member they describe. */
class HeaderParser {
  private readonly globals = new Map<PaxKey, string>();

  constructor(
    private readonly reader: ChunkReader,
    private readonly limits: typeof DEFAULT_LIMITS,
  ) {}

  /** The next member, or undefined at the end-of-archive marker. */
  async next(): Promise<{ header: TarHeader; offset: number } | undefined> {
    const start = this.reader.offset;
    const local = new Map<PaxKey, string>();
    let sparse = false;
    let longName: string | undefined;
    let longLink: string | undefined;
    for (;;) {
      const offset = this.reader.offset;
      const block = await this.readHeaderBlock();
      if (block === undefined) {
        if (offset !== start) fail("end-of-archive marker right after an extended header", offset);
        return undefined;
      }
      const typeFlag = String.fromCharCode(block[Field.typeflag[0]]!);
      switch (typeFlag) {
        case TypeFlag.paxExtended: {
          const records = parsePaxRecords(
            await this.readMeta(block, this.limits.maxPaxHeaderBytes, "pax"),
            offset,
          );
          for (const [key, value] of records) {
            if (isPaxKey(key)) local.set(key, value);
            else sparse ||= key.startsWith("GNU.sparse.");
          }
          break;
        }
        case TypeFlag.paxGlobal:
          this.applyGlobals(
            parsePaxRecords(await this.readMeta(block, this.limits.maxPaxHeaderBytes, "pax"), offset),
          );
          break;
        case TypeFlag.gnuLongName:
          longName = cString(await this.readMeta(block, this.limits.maxPathBytes + 1, "long name"), offset);
          break;
        case TypeFlag.gnuLongLink:
          longLink = cString(await this.readMeta(block, this.limits.maxPathBytes + 1, "long link"), offset);
          break;
        default: {
          const header = this.buildHeader(block, typeFlag, { local, longName, longLink, sparse }, offset);
          return { header, offset: start };
        }
      }
    }
  }

  /** A checksummed header block; undefined at the end-of-archive marker. */
  private async readHeaderBlock(): Promise<Buffer | undefined> {
    const offset = this.reader.offset;
    const block = this.reader.readBuffered(BLOCK_SIZE) ?? (await this.reader.read(BLOCK_SIZE));
    if (block.length === 0) fail("archive ends without an end-of-archive marker", offset);
    if (block.length < BLOCK_SIZE) fail("archive ends inside a header block", offset);
    if (isZeroBlock(block)) {
      // Two zero blocks end the archive. A lone one right before the end is tolerated (as GNU tar does),
      // but data after a lone zero block means a damaged archive, not an end.
      const second = await this.reader.read(BLOCK_SIZE);
      if (isZeroBlock(second)) return undefined;
      fail("zero block followed by data", offset);
    }
    const stored = parseOctalText(block, Field.checksum);
    if (
      stored === undefined ||
      (stored !== headerChecksum(block) && stored !== signedHeaderChecksum(block))
    ) {
      fail("bad header checksum", offset);
    }
    return block;
  }

  /** The body of a meta header (pax records or a GNU long name), under a size limit. */
  private async readMeta(block: Buffer, maxBytes: number, what: string): Promise<Buffer> {
    const offset = this.reader.offset - BLOCK_SIZE;
    const size = parseNumber(block, Field.size, "size", offset);
    if (size > maxBytes) fail(`${what} header of ${size} bytes exceeds the limit of ${maxBytes}`, offset);
    const body = this.reader.readBuffered(size) ?? (await this.reader.read(size));
    if (body.length < size) this.reader.truncated(`${what} header`);
    const padding = paddingFor(size);
    if (!this.reader.skipBuffered(padding)) await this.reader.skip(padding, `${what} header`);
    return body;
  }

  private applyGlobals(records: Map<string, string>): void {
    for (const [key, value] of records) {
      if (!isPaxKey(key)) continue;
      // An empty value deletes the global (POSIX pax "keyword=" semantics).
      if (value === "") this.globals.delete(key);
      else this.globals.set(key, value);
    }
  }

  private buildHeader(
    block: Buffer,
    typeFlag: string,
    meta: { local: Map<PaxKey, string>; longName?: string; longLink?: string; sparse: boolean },
    offset: number,
  ): TarHeader {
    // An empty local value cancels the global one and falls back to the ustar field.
    const pax = (key: PaxKey): string | undefined => {
      const value = meta.local.has(key) ? meta.local.get(key) : this.globals.get(key);
      return value === "" ? undefined : value;
    };
    // The ustar name is only decoded when nothing overrides it (most of our members carry a pax path or none).
    let path = pax("path") ?? meta.longName ?? ustarPathOf(block, offset);
    const linkField = textField(block, Field.linkname, offset);
    const linkTarget = pax("linkpath") ?? meta.longLink ?? (linkField === "" ? undefined : linkField);
    let type = entryTypeOf(typeFlag, path);
    if (meta.sparse) type = "other";
    if (type === "directory" && !path.endsWith("/")) path = `${path}/`;
    this.checkPathLength(path, "path", offset);
    if (linkTarget !== undefined) this.checkPathLength(linkTarget, "link target", offset);

    const declaredSize =
      paxInteger(pax("size"), "size", offset) ?? parseNumber(block, Field.size, "size", offset);
    const header: TarHeader = {
      path,
      type,
      size: hasBody(type) ? declaredSize : 0,
      mode: parseNumber(block, Field.mode, "mode", offset) & 0o7777,
      uid: paxInteger(pax("uid"), "uid", offset) ?? parseNumber(block, Field.uid, "uid", offset),
      gid: paxInteger(pax("gid"), "gid", offset) ?? parseNumber(block, Field.gid, "gid", offset),
      mtime: paxTime(pax("mtime"), offset) ?? parseNumber(block, Field.mtime, "mtime", offset),
    };
    const uname = pax("uname") ?? textField(block, Field.uname, offset);
    const gname = pax("gname") ?? textField(block, Field.gname, offset);
    if (uname !== "") header.uname = uname;
    if (gname !== "") header.gname = gname;
    if (linkTarget !== undefined && (type === "symlink" || type === "hardlink"))
      header.linkTarget = linkTarget;
    return header;
  }

  private checkPathLength(text: string, what: string, offset: number): void {
    const bytes = Buffer.byteLength(text);
    if (bytes > this.limits.maxPathBytes) {
      fail(`${what} of ${bytes} bytes exceeds the limit of ${this.limits.maxPathBytes}`, offset);
    }
  }
}

/**
 * Types without data, whatever their size field says (POSIX; Go's archive/tar does the same). Some writers
 * put the directory size there; skipping it would be wrong.
 */
function hasBody(type: TarEntryType): boolean {
  return type === "file" || type === "other";
}

function entryTypeOf(typeFlag: string, path: string): TarEntryType {
  switch (typeFlag) {
    case TypeFlag.file:
    case TypeFlag.contiguous:
      return "file";
    case TypeFlag.oldFile:
      // Pre-POSIX tars marked directories only by the trailing slash.
      return path.endsWith("/") ? "directory" : "file";
    case TypeFlag.hardlink:
      return "hardlink";
    case TypeFlag.symlink:
      return "symlink";
    case TypeFlag.characterDevice:
      return "character-device";
    case TypeFlag.blockDevice:
      return "block-device";
    case TypeFlag.directory:
      return "directory";
    case TypeFlag.fifo:
      return "fifo";
    default:
      return "other";
  }
}

function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < block.length; i += 1) if (block[i] !== 0) return false;
  return true;
}

/** POSIX ustar joins prefix and name; the GNU magic ("ustar  ") uses that area for other things. */
function ustarPathOf(block: Buffer, offset: number): string {
  const name = textField(block, Field.name, offset);
  const isPosixUstar = hasBytes(block, Field.magic[0], POSIX_MAGIC);
  const prefix = isPosixUstar ? textField(block, Field.prefix, offset) : "";
  return prefix === "" ? name : `${prefix}/${name}`;
}

const POSIX_MAGIC = Buffer.from("ustar\0", "latin1");

function hasBytes(block: Buffer, at: number, expected: Buffer): boolean {
  for (let i = 0; i < expected.length; i++) if (block[at + i] !== expected[i]) return false;
  return true;
}

/** A NUL-terminated (or full-width) text field, decoded as strict UTF-8. */
function textField(block: Buffer, [start, width]: readonly [number, number], offset: number): string {
  // Most fields of most members are empty (link name, prefix, often user and group names): no view, no decoder.
  if (block[start] === 0) return "";
  return cString(block.subarray(start, start + width), offset);
}

function cString(bytes: Buffer, offset: number): string {
  const end = bytes.indexOf(0);
  return decodeUtf8(end === -1 ? bytes : bytes.subarray(0, end), offset);
}

function decodeUtf8(bytes: Uint8Array, offset: number): string {
  try {
    return utf8.decode(bytes);
  } catch {
    // Renaming silently (U+FFFD) would restore a different file name; refuse instead.
    return fail("name is not valid UTF-8", offset);
  }
}

/**
 * An octal field (leading spaces, trailing NULs or spaces allowed); undefined when not octal. A byte loop rather
 * than string + regular expressions: six fields per member made the regex version ~2% of a 20k-file restore.
 */
function parseOctalText(block: Buffer, [start, width]: readonly [number, number]): number | undefined {
  let end = start + width;
  while (end > start && (block[end - 1] === 0 || block[end - 1] === 0x20)) end -= 1;
  let position = start;
  while (position < end && block[position] === 0x20) position += 1;
  let value = 0;
  for (; position < end; position += 1) {
    const digit = block[position]! - 0x30;
    if (digit < 0 || digit > 7) return undefined;
    value = value * 8 + digit;
  }
  return Number.isSafeInteger(value) ? value : undefined;
}

/** A numeric field in octal or GNU base-256 (high bit set; 0xff lead byte = negative two's complement). */
function parseNumber(block: Buffer, field: readonly [number, number], name: string, offset: number): number {
  const [start, width] = field;
  const lead = block[start]!;
  if ((lead & 0x80) === 0) {
    const value = parseOctalText(block, field);
    if (value === undefined) fail(`invalid ${name} field`, offset);
    return value;
  }
  let value = BigInt(lead & 0x7f);
  for (let i = start + 1; i < start + width; i += 1) value = (value << 8n) | BigInt(block[i]!);
  if (lead === 0xff) value -= 1n << BigInt(8 * width - 1);
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
    fail(`${name} field out of range`, offset);
  }
  const result = Number(value);
  if (result < 0 && name !== "mtime") fail(`negative ${name} field`, offset);
  return result;
}

/** "<length> <key>=<value>\n" records; later keys win. */
function parsePaxRecords(body: Buffer, offset: number): Map<string, string> {
  const records = new Map<string, string>();
  let position = 0;
  while (position < body.length) {
    const space = body.indexOf(0x20, position);
    const length = recordLength(body, position, space);
    if (length === undefined) fail("malformed pax record length", offset);
    const end = position + length;
    if (end > body.length || end <= space + 1 || body[end - 1] !== 0x0a) fail("malformed pax record", offset);
    const record = body.subarray(space + 1, end - 1);
    const equals = record.indexOf(0x3d);
    if (equals <= 0) fail("pax record without key", offset);
    records.set(
      decodeUtf8(record.subarray(0, equals), offset),
      decodeUtf8(record.subarray(equals + 1), offset),
    );
    position = end;
  }
  return records;
}

/** The decimal length before a pax record's space: 1-9 digits, no leading zero; undefined otherwise. */
function recordLength(body: Buffer, start: number, space: number): number | undefined {
  if (space === -1 || space === start || space - start > 9 || body[start] === 0x30) return undefined;
  let length = 0;
  for (let i = start; i < space; i++) {
    const digit = body[i]! - 0x30;
    if (digit < 0 || digit > 9) return undefined;
    length = length * 10 + digit;
  }
  return length;
}

function isPaxKey(key: string): key is PaxKey {
  return PAX_KEYS.has(key);
}

function paxInteger(value: string | undefined, name: string, offset: number): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(number)) fail(`invalid pax ${name} ${value}`, offset);
  return number;
}

function paxTime(value: string | undefined, offset: number): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?[0-9]{1,15}(\.[0-9]+)?$/.test(value)) fail(`invalid pax mtime ${value}`, offset);
  return Number(value);
}
