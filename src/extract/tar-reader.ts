/**
 * Streaming tar parser: pax ('x', 'g'), GNU long names ('L', 'K'), ustar prefix, base-256 numbers.
 *
 * Memory stays bounded whatever the archive holds: bodies are handed out as slices of the incoming chunks
 * (no copy), and only metadata (pax headers, long names) is ever buffered, each under a configurable limit.
 * Anything malformed is an IntegrityError naming the byte offset where it was found.
 */
import type { Readable } from "node:stream";
import { display } from "../archive/display.js";
import { MAX_SPARSE_SEGMENTS, SparseMapParser, sparseDataSize } from "../archive/sparse.js";
import {
  BLOCK_SIZE,
  Field,
  headerChecksum,
  paddingFor,
  signedHeaderChecksum,
  type TarEntryType,
  type TarHeader,
  TypeFlag,
  XATTR_PREFIX,
  xattrName,
} from "../archive/tar-format.js";
import { IntegrityError, LookerBackupError } from "../errors.js";
import type { Xattr } from "../runtime/attr-dump.js";
import { releaseHandedOver } from "../runtime/buffers.js";
import { nameByteLength, nameBytes, nameFromBytes } from "../runtime/byte-names.js";

export interface TarReadLimits {
  /** Largest pax 'x' or 'g' header body accepted, in bytes (default 1 MiB). */
  maxPaxHeaderBytes?: number;
  /**
   * Most bytes of header blocks and meta headers (pax, GNU long names) before one member, the member's own header
   * included (default 4 MiB: a pax header, a global one and two long names at their limits fit several times).
   */
  maxHeaderChainBytes?: number;
  /** Longest member path or link target, in UTF-8 bytes (default 4096, Linux PATH_MAX). */
  maxPathBytes?: number;
  /** Most members accepted (default: no limit). */
  maxEntries?: number;
  /** Most segments in the map of a sparse file (default MAX_SPARSE_SEGMENTS: the map is held whole). */
  maxSparseSegments?: number;
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
  body: TarBody;
}

/** A member's body: read it part by part, or, when it has arrived whole already, take it in one slice. */
export interface TarBody extends AsyncIterable<Buffer> {
  /** The whole body as one slice if every byte of it is buffered already (no await); else undefined. */
  takeBuffered(): Buffer | undefined;
}

/**
 * What the non-waiting calls return when the bytes they need have not arrived yet (nothing of the member was
 * handed out; complete meta headers before it may have been read and are remembered): then make the waiting call. Why both: at 100,000 small members, each await was a round through the microtask queue
 * and a few allocations, and the restore's main thread spent about a third of its time on them.
 */
export const NEEDS_INPUT: unique symbol = Symbol("needs input");

const DEFAULT_LIMITS = {
  maxPaxHeaderBytes: 1024 * 1024,
  maxHeaderChainBytes: 4 * 1024 * 1024,
  maxPathBytes: 4096,
  maxEntries: Infinity,
  maxSparseSegments: MAX_SPARSE_SEGMENTS,
  releaseConsumed: false,
};
const INTEGRITY_HINT =
  "the archive is damaged, truncated or not a tar archive; compare its sha256 with the backup's";
const EMPTY = Buffer.alloc(0);

/**
 * The members of a tar stream, pulled one at a time: nextBuffered() without waiting while the stream's bytes are
 * at hand (nearly always), next() when they are not.
 */
export class TarReader {
  private readonly limits: typeof DEFAULT_LIMITS;
  private readonly reader: ChunkReader;
  private readonly parser: HeaderParser;
  private entries = 0;
  /** The current member's body: whatever of it (and its padding) is left unread is skipped before the next. */
  private body: BodyCursor | undefined;

  constructor(
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array> | Readable,
    limits: TarReadLimits = {},
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...definedOnly(limits) };
    this.reader = new ChunkReader(iteratorOf(source), this.limits.releaseConsumed);
    this.parser = new HeaderParser(this.reader, this.limits);
  }

  /** The next member, undefined at the end-of-archive marker, or NEEDS_INPUT: call next(). */
  nextBuffered(): TarReadEntry | undefined | typeof NEEDS_INPUT {
    if (!this.leaveBody()) return NEEDS_INPUT;
    const member = this.parser.nextBuffered();
    return member === NEEDS_INPUT || member === undefined ? member : this.enter(member);
  }

  /** The next member, or undefined at the end-of-archive marker. */
  async next(): Promise<TarReadEntry | undefined> {
    const body = this.body;
    if (body !== undefined && !this.leaveBody()) {
      await this.reader.skip(this.unread(body), body.member);
      this.body = undefined;
    }
    const member = await this.parser.next();
    return member === undefined ? undefined : this.enter(member);
  }

  /** Reads on after the end marker, so upstream stages (decryption, decompression) see and verify all their input. */
  finish(): Promise<void> {
    return this.reader.drain();
  }

  /** Stops the source early (an error, or the consumer left the loop): streams get destroyed. */
  release(): Promise<void> {
    return this.reader.release();
  }

  private enter(member: ParsedMember): TarReadEntry {
    this.entries += 1;
    if (this.entries > this.limits.maxEntries) {
      fail(`archive has more than ${this.limits.maxEntries} members`, member.offset);
    }
    this.body = new BodyCursor(this.reader, member.bodySize, member.header.path);
    return { header: member.header, offset: member.offset, body: this.body };
  }

  /** Closes the current body and skips what is left of it if that is buffered; false if it is not. */
  private leaveBody(): boolean {
    const body = this.body;
    if (body === undefined) return true;
    body.close();
    if (!this.reader.skipBuffered(this.unread(body))) return false;
    this.body = undefined;
    return true;
  }

  private unread(body: BodyCursor): number {
    return body.remaining + paddingFor(body.size);
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
  /** The rest of a source chunk whose start ensure() copied onto the end of `chunk`; read after `chunk`. */
  private pending: Buffer = EMPTY;
  private pendingWhole: Buffer = EMPTY;
  private ended = false;

  constructor(
    private readonly source: AsyncIterator<Uint8Array>,
    private readonly releaseConsumed: boolean,
  ) {}

  /** Bytes that can be read now without waiting. */
  get buffered(): number {
    return this.chunk.length;
  }

  /** Every byte of the archive is buffered: the source has ended, so a read may come up short. */
  get exhausted(): boolean {
    return this.ended && this.pending.length === 0;
  }

  /** `length` bytes if they are buffered already, else undefined (nothing consumed; ensure() makes them so). */
  readBuffered(length: number): Buffer | undefined {
    return this.chunk.length >= length ? this.take(length) : undefined;
  }

  /** Where reading stands, to go back to if a parse finds its bytes incomplete (see HeaderParser.nextBuffered). */
  mark(): ReaderMark {
    return { chunk: this.chunk, offset: this.offset };
  }

  reset(mark: ReaderMark): void {
    this.chunk = mark.chunk;
    this.offset = mark.offset;
  }

  /**
   * Makes `length` bytes readable without waiting, unless the source ends first: a header group that straddles
   * two source chunks is copied into one buffer (its bytes and a little more of the next chunk, never all of it).
   */
  async ensure(length: number): Promise<void> {
    while (this.chunk.length < length) {
      if (this.pending.length === 0 && !(await this.pull())) return;
      if (this.chunk.length === 0) {
        this.takePending();
        continue;
      }
      // At least doubling what is joined, so a header that arrives in many small chunks is copied O(its size) times.
      const wanted = Math.max(length - this.chunk.length, MIN_JOIN, this.chunk.length);
      const taken = Math.min(this.pending.length, wanted);
      const joined = Buffer.concat([this.chunk, this.pending.subarray(0, taken)]);
      this.replaceWhole(joined, joined);
      this.pending = this.pending.subarray(taken);
      if (this.pending.length === 0) this.dropPending();
    }
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

  take(length: number): Buffer {
    const part = length >= this.chunk.length ? this.chunk : this.chunk.subarray(0, length);
    this.chunk = part === this.chunk ? EMPTY : this.chunk.subarray(length);
    this.offset += part.length;
    return part;
  }

  /** Makes sure some bytes are buffered; false once the source is exhausted. */
  private async fill(): Promise<boolean> {
    while (this.chunk.length === 0) {
      if (this.pending.length === 0 && !(await this.pull())) {
        this.replaceWhole(EMPTY, EMPTY);
        return false;
      }
      this.takePending();
    }
    return true;
  }

  /** Reads on from the pending chunk, uncopied. */
  private takePending(): void {
    this.replaceWhole(this.pending, this.pendingWhole);
    this.pending = EMPTY;
    this.pendingWhole = EMPTY;
  }

  /** Takes the source's next chunk as `pending`; false once the source has ended. */
  private async pull(): Promise<boolean> {
    if (this.ended) return false;
    const next = await this.source.next();
    if (next.done) {
      this.ended = true;
      return false;
    }
    this.pending = asBuffer(next.value);
    this.pendingWhole = this.pending;
    return true;
  }

  /** Reads from `chunk` (a view of `whole`) from now on; the old chunk's bytes are done with. */
  private replaceWhole(chunk: Buffer, whole: Buffer): void {
    // Every view of the old one handed out is done with: parsed headers, copied metadata, body parts written.
    if (this.releaseConsumed && whole !== this.whole) releaseHandedOver(this.whole);
    this.chunk = chunk;
    this.whole = whole;
  }

  private dropPending(): void {
    if (this.releaseConsumed) releaseHandedOver(this.pendingWhole);
    this.pending = EMPTY;
    this.pendingWhole = EMPTY;
  }
}

interface ReaderMark {
  readonly chunk: Buffer;
  readonly offset: number;
}

/** A straddling header group takes at least this much of the next chunk, so the next few need no copy either. */
const MIN_JOIN = 64 * 1024;

function asBuffer(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new LookerBackupError("tar reader needs a byte stream, got text or objects (is an encoding set?)");
}

/** One member's body, readable once, only while it is the current entry. */
class BodyCursor implements TarBody {
  private open = true;
  private started = false;
  /** Body bytes not read yet. */
  remaining: number;

  constructor(
    private readonly reader: ChunkReader,
    readonly size: number,
    readonly member: string,
  ) {
    this.remaining = size;
  }

  close(): void {
    this.open = false;
  }

  takeBuffered(): Buffer | undefined {
    if (this.started || !this.open || this.reader.buffered < this.remaining) return undefined;
    this.started = true;
    this.remaining = 0;
    return this.reader.take(this.size);
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

interface ParsedMember {
  readonly header: TarHeader;
  /** Byte offset of the member's first header block. */
  readonly offset: number;
  /** The body's bytes as the consumer reads them: header.size, but for a sparse file only its data (after its map). */
  readonly bodySize: number;
}

/** Thrown inside a parse attempt whose bytes have not all arrived; never leaves HeaderParser. */
const INCOMPLETE = Symbol("incomplete header");
/** A meta header was read whole: the member's own header follows. */
const MORE_HEADERS = Symbol("more headers");

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

/** The meta headers read so far for the member that follows them. */
interface HeaderChain {
  /** Byte offset of the chain's first header block. */
  readonly start: number;
  readonly local: Map<PaxKey, string>;
  /** The GNU.sparse.* records, if any (see sparseFormatOf). */
  sparse?: Map<string, string>;
  /** SCHILY.xattr.* records of this member's pax header. */
  xattrs?: Xattr[];
  longName?: string;
  longLink?: string;
}

/**
 * Reads header blocks, folding pax and GNU meta headers into the member they describe. Each header (block and
 * meta body) is parsed once: the chain's state is kept between parse attempts, so a chain spread over many source
 * chunks is not re-copied and re-parsed from its start for each chunk (that was quadratic: 64 MB of pax headers
 * before one member took 113 s), and its length is capped by maxHeaderChainBytes.
 */
class HeaderParser {
  private readonly globals = new Map<PaxKey, string>();
  /** The chain of the member being parsed, once its first header is consumed. */
  private chain: HeaderChain | undefined;
  /** Bytes from where the last incomplete attempt started that it needed. */
  private needed = 0;
  private attemptStart = 0;

  constructor(
    private readonly reader: ChunkReader,
    private readonly limits: typeof DEFAULT_LIMITS,
  ) {}

  /** The next member, or undefined at the end-of-archive marker. */
  async next(): Promise<ParsedMember | undefined> {
    for (;;) {
      const member = this.nextBuffered();
      if (member !== NEEDS_INPUT) return member;
      await this.reader.ensure(this.needed);
    }
  }

  /**
   * The next member if all its header blocks are buffered; otherwise NEEDS_INPUT, with `needed` set to how many
   * bytes the header being read wanted. The meta headers before it that are complete are consumed and kept in
   * `chain`: call again (or next()) and parsing goes on from there.
   */
  nextBuffered(): ParsedMember | undefined | typeof NEEDS_INPUT {
    for (;;) {
      const mark = this.reader.mark();
      this.attemptStart = mark.offset;
      let step: ParsedMember | undefined | typeof MORE_HEADERS;
      try {
        step = this.parseHeader();
      } catch (error) {
        if (error !== INCOMPLETE) throw error;
        this.reader.reset(mark);
        return NEEDS_INPUT;
      }
      if (step !== MORE_HEADERS) {
        this.chain = undefined;
        return step;
      }
    }
  }

  /** One header block and its meta body; MORE_HEADERS after a meta header (its values are in the chain). */
  private parseHeader(): ParsedMember | undefined | typeof MORE_HEADERS {
    const offset = this.reader.offset;
    const block = this.readHeaderBlock();
    if (block === undefined) {
      if (this.chain !== undefined) fail("end-of-archive marker right after an extended header", offset);
      return undefined;
    }
    const typeFlag = String.fromCharCode(block[Field.typeflag[0]]!);
    const isMeta =
      typeFlag === TypeFlag.paxExtended ||
      typeFlag === TypeFlag.paxGlobal ||
      typeFlag === TypeFlag.gnuLongName ||
      typeFlag === TypeFlag.gnuLongLink;
    if (isMeta) {
      const metaBytes = this.metaSize(block, typeFlag, offset);
      const chainStart = this.chain?.start ?? offset;
      const chainBytes = offset - chainStart + BLOCK_SIZE + metaBytes + paddingFor(metaBytes) + BLOCK_SIZE;
      if (chainBytes > this.limits.maxHeaderChainBytes) {
        fail(
          `headers before one member (pax, GNU long names) exceed the limit of ${this.limits.maxHeaderChainBytes} bytes`,
          chainStart,
        );
      }
    }
    switch (typeFlag) {
      case TypeFlag.paxExtended: {
        const records = parsePaxRecords(this.readMeta(block, this.limits.maxPaxHeaderBytes, "pax"), offset);
        const chain = this.chainFrom(offset);
        for (const [key, value] of records) {
          if (isPaxKey(key)) chain.local.set(key, value);
          else if (key.startsWith(XATTR_PREFIX)) {
            // Values are bytes: the record's value was read as a byte name, which gives them back exactly.
            chain.xattrs ??= [];
            chain.xattrs.push([xattrName(key.slice(XATTR_PREFIX.length)), nameBytes(value)]);
          } else if (key.startsWith("GNU.sparse.")) {
            chain.sparse ??= new Map();
            chain.sparse.set(key, value);
          }
        }
        return MORE_HEADERS;
      }
      case TypeFlag.paxGlobal:
        this.applyGlobals(
          parsePaxRecords(this.readMeta(block, this.limits.maxPaxHeaderBytes, "pax"), offset),
        );
        this.chainFrom(offset);
        return MORE_HEADERS;
      case TypeFlag.gnuLongName: {
        const longName = cString(this.readMeta(block, this.limits.maxPathBytes + 1, "long name"));
        this.chainFrom(offset).longName = longName;
        return MORE_HEADERS;
      }
      case TypeFlag.gnuLongLink: {
        const longLink = cString(this.readMeta(block, this.limits.maxPathBytes + 1, "long link"));
        this.chainFrom(offset).longLink = longLink;
        return MORE_HEADERS;
      }
      default: {
        const chain = this.chain ?? { start: offset, local: new Map<PaxKey, string>() };
        const header = this.buildHeader(block, typeFlag, chain, offset);
        const bodySize =
          chain.sparse && header.type === "file"
            ? this.readSparseMap(header, chain.sparse, offset)
            : header.size;
        return { header, offset: chain.start, bodySize };
      }
    }
  }

  /** The current chain, started at `offset` by the meta header just read whole if there was none. */
  private chainFrom(offset: number): HeaderChain {
    this.chain ??= { start: offset, local: new Map() };
    return this.chain;
  }

  /** A meta header's declared body size, checked against its own limit before anything is read. */
  private metaSize(block: Buffer, typeFlag: string, offset: number): number {
    const pax = typeFlag === TypeFlag.paxExtended || typeFlag === TypeFlag.paxGlobal;
    const what = pax ? "pax" : typeFlag === TypeFlag.gnuLongName ? "long name" : "long link";
    const maxBytes = pax ? this.limits.maxPaxHeaderBytes : this.limits.maxPathBytes + 1;
    const size = parseNumber(block, Field.size, "size", offset);
    if (size > maxBytes) fail(`${what} header of ${size} bytes exceeds the limit of ${maxBytes}`, offset);
    return size;
  }

  /**
   * `length` bytes, or fewer once the archive has ended (the callers say what is missing). Throws INCOMPLETE when
   * they have not arrived yet, noting how many bytes from the attempt's start would do.
   */
  private read(length: number): Buffer {
    const bytes = this.reader.readBuffered(length);
    if (bytes !== undefined) return bytes;
    if (this.reader.exhausted) return this.reader.take(length);
    this.needed = this.reader.offset - this.attemptStart + length;
    throw INCOMPLETE;
  }

  /** A checksummed header block; undefined at the end-of-archive marker. */
  private readHeaderBlock(): Buffer | undefined {
    const offset = this.reader.offset;
    const block = this.read(BLOCK_SIZE);
    if (block.length === 0) fail("archive ends without an end-of-archive marker", offset);
    if (block.length < BLOCK_SIZE) fail("archive ends inside a header block", offset);
    if (isZeroBlock(block)) {
      // Two zero blocks end the archive. A lone one right before the end is tolerated (as GNU tar does),
      // but data after a lone zero block means a damaged archive, not an end.
      const second = this.read(BLOCK_SIZE);
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
  private readMeta(block: Buffer, maxBytes: number, what: string): Buffer {
    const offset = this.reader.offset - BLOCK_SIZE;
    const size = parseNumber(block, Field.size, "size", offset);
    if (size > maxBytes) fail(`${what} header of ${size} bytes exceeds the limit of ${maxBytes}`, offset);
    const body = this.read(size);
    const padding = paddingFor(size);
    if (body.length < size || this.read(padding).length < padding) this.reader.truncated(`${what} header`);
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

  private buildHeader(block: Buffer, typeFlag: string, meta: HeaderChain, offset: number): TarHeader {
    // An empty local value cancels the global one and falls back to the ustar field.
    const pax = (key: PaxKey): string | undefined => {
      const value = meta.local.has(key) ? meta.local.get(key) : this.globals.get(key);
      return value === "" ? undefined : value;
    };
    const sparse = meta.sparse === undefined ? undefined : sparseFormatOf(meta.sparse);
    // A sparse file's real name is GNU.sparse.name, whatever the order of its records (as GNU tar reads it): its
    // path, pax or ustar, is a stand-in. The ustar name is only decoded when nothing overrides it.
    let path =
      (sparse === "1.0" ? nonEmpty(meta.sparse!.get("GNU.sparse.name")) : undefined) ??
      pax("path") ??
      meta.longName ??
      ustarPathOf(block);
    const linkField = textField(block, Field.linkname);
    const linkTarget = pax("linkpath") ?? meta.longLink ?? (linkField === "" ? undefined : linkField);
    let type = entryTypeOf(typeFlag, path);
    // Older sparse formats (0.0, 0.1), or sparse records on anything but a file: not something we can restore.
    if (sparse !== undefined && (sparse !== "1.0" || type !== "file")) type = "other";
    if (type === "directory" && !path.endsWith("/")) path = `${path}/`;
    this.checkPathLength(path, "path", offset);
    if (linkTarget !== undefined) this.checkPathLength(linkTarget, "link target", offset);

    const declaredSize =
      paxInteger(pax("size"), "size", offset) ?? parseNumber(block, Field.size, "size", offset);
    // Readers disagree on a symlink's data: GNU tar skips the declared bytes, we (and POSIX) read the next header
    // there. An archive that reads as two different trees must not pass verify.
    if (type === "symlink" && declaredSize > 0) {
      fail(`symlink ${display(path)} declares ${declaredSize} bytes of data; a symlink has none`, offset);
    }
    const header: TarHeader = {
      path,
      type,
      size: hasBody(type) ? declaredSize : 0,
      mode: parseNumber(block, Field.mode, "mode", offset) & 0o7777,
      uid: paxInteger(pax("uid"), "uid", offset) ?? parseNumber(block, Field.uid, "uid", offset),
      gid: paxInteger(pax("gid"), "gid", offset) ?? parseNumber(block, Field.gid, "gid", offset),
      mtime: paxTime(pax("mtime"), offset) ?? parseNumber(block, Field.mtime, "mtime", offset),
    };
    const uname = pax("uname") ?? textField(block, Field.uname);
    const gname = pax("gname") ?? textField(block, Field.gname);
    if (uname !== "") header.uname = uname;
    if (gname !== "") header.gname = gname;
    if (linkTarget !== undefined && (type === "symlink" || type === "hardlink"))
      header.linkTarget = linkTarget;
    if (meta.xattrs !== undefined) header.xattrs = meta.xattrs;
    return header;
  }

  /**
   * Reads a sparse file's map from the start of its body (see sparse.ts), block by block as the bytes are at hand
   * (a retry after INCOMPLETE parses it again from its start); turns `header` into the sparse file's: its real
   * size and map. Returns the bytes of data that follow the map.
   */
  private readSparseMap(header: TarHeader, records: Map<string, string>, offset: number): number {
    const what = `sparse file ${display(header.path)}`;
    const realSize = paxInteger(
      nonEmpty(records.get("GNU.sparse.realsize") ?? records.get("GNU.sparse.size")),
      "GNU.sparse.realsize",
      offset,
    );
    if (realSize === undefined) fail(`${what} without GNU.sparse.realsize`, offset);
    const stored = header.size;
    const parser = new SparseMapParser(realSize, this.limits.maxSparseSegments, (problem) =>
      fail(`${what}: ${problem}`, offset),
    );
    let mapBytes = 0;
    for (let complete = false; !complete; ) {
      if (mapBytes + BLOCK_SIZE > stored)
        fail(`${what}: its map runs past the member's ${stored} bytes`, offset);
      const block = this.read(BLOCK_SIZE);
      if (block.length < BLOCK_SIZE) this.reader.truncated(header.path);
      mapBytes += BLOCK_SIZE;
      complete = parser.block(block);
    }
    const sparse = { segments: parser.segments };
    const listed = sparseDataSize(sparse);
    if (listed !== stored - mapBytes) {
      fail(`${what}: its map lists ${listed} bytes of data, the member holds ${stored - mapBytes}`, offset);
    }
    header.size = realSize;
    header.sparse = sparse;
    return listed;
  }

  private checkPathLength(text: string, what: string, offset: number): void {
    const bytes = nameByteLength(text);
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
function ustarPathOf(block: Buffer): string {
  const name = textField(block, Field.name);
  const isPosixUstar = hasBytes(block, Field.magic[0], POSIX_MAGIC);
  const prefix = isPosixUstar ? textField(block, Field.prefix) : "";
  return prefix === "" ? name : `${prefix}/${name}`;
}

const POSIX_MAGIC = Buffer.from("ustar\0", "latin1");

function hasBytes(block: Buffer, at: number, expected: Buffer): boolean {
  for (let i = 0; i < expected.length; i++) if (block[at + i] !== expected[i]) return false;
  return true;
}

/** A NUL-terminated (or full-width) text field; names are bytes, so stray bytes are kept (runtime/byte-names.ts). */
function textField(block: Buffer, [start, width]: readonly [number, number]): string {
  // Most fields of most members are empty (link name, prefix, often user and group names): no view, no decoder.
  if (block[start] === 0) return "";
  return cString(block.subarray(start, start + width));
}

function cString(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  return nameFromBytes(end === -1 ? bytes : bytes.subarray(0, end));
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
    records.set(nameFromBytes(record.subarray(0, equals)), nameFromBytes(record.subarray(equals + 1)));
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

/**
 * "1.0" for GNU tar's sparse format 1.0, the one we read; "unsupported" for the older ones (0.0 and 0.1 keep the map
 * in pax records) and anything else.
 */
function sparseFormatOf(records: Map<string, string>): "1.0" | "unsupported" {
  return records.get("GNU.sparse.major") === "1" && records.get("GNU.sparse.minor") === "0"
    ? "1.0"
    : "unsupported";
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === "" ? undefined : value;
}

function isPaxKey(key: string): key is PaxKey {
  return PAX_KEYS.has(key);
}

function paxInteger(value: string | undefined, name: string, offset: number): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(number))
    fail(`invalid pax ${name} ${display(value)}`, offset);
  return number;
}

function paxTime(value: string | undefined, offset: number): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?[0-9]{1,15}(\.[0-9]+)?$/.test(value)) fail(`invalid pax mtime ${display(value)}`, offset);
  return Number(value);
}
