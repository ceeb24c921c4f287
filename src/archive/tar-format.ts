/**
 * POSIX pax tar: the types shared by the writer and the reader, and the low-level block encoding.
 *
 * Every member is a 512-byte ustar header ("ustar\0" magic, "00" version), optionally preceded by a pax 'x'
 * extended header when a value does not fit ustar (long or non-ASCII names, big sizes or ids, fractional
 * mtimes). GNU tar, bsdtar and every POSIX reader understand this (the archive format in the README).
 */
import { LookerBackupError } from "../errors.js";
import type { Xattr } from "../runtime/attr-dump.js";
import { isByteName, isPlainName, nameByteLength, nameBytes, nameFromBytes } from "../runtime/byte-names.js";
import { type SparseMap, sparseMapProblem, sparseStandIn, sparseStoredSize } from "./sparse.js";

export type { SparseMap } from "./sparse.js";

export const BLOCK_SIZE = 512;

/** What a member is. The first four are what we write; the rest only ever come from foreign archives. */
export type TarEntryType =
  | "file"
  | "directory"
  | "symlink"
  | "hardlink"
  | "character-device"
  | "block-device"
  | "fifo"
  | "other";

export interface TarHeader {
  /** Archive path, "/"-separated, relative; directories end with "/". */
  path: string;
  type: TarEntryType;
  /** Body length in bytes; always 0 for everything but regular files. */
  size: number;
  /** Permission bits including setuid/setgid/sticky (0o7777); never the file-type bits. */
  mode: number;
  uid: number;
  gid: number;
  uname?: string;
  gname?: string;
  /** Seconds since the epoch, may be fractional (kept through a pax "mtime" record). */
  mtime: number;
  /** Symlink target (kept verbatim) or, for hard links, the archive path of the earlier member. */
  linkTarget?: string;
  /** Extended attributes, as pax SCHILY.xattr.<name> records (GNU tar --xattrs, bsdtar and star read them). */
  xattrs?: readonly Xattr[];
  /**
   * A sparse file (GNU tar's pax sparse format 1.0, see sparse.ts): `size` is its whole length, holes included, and
   * its body holds only the data segments the map lists, concatenated.
   */
  sparse?: SparseMap;
}

/** ustar field offsets and widths (POSIX.1-2001, "ustar Interchange Format"). */
export const Field = {
  name: [0, 100],
  mode: [100, 8],
  uid: [108, 8],
  gid: [116, 8],
  size: [124, 12],
  mtime: [136, 12],
  checksum: [148, 8],
  typeflag: [156, 1],
  linkname: [157, 100],
  magic: [257, 6],
  version: [263, 2],
  uname: [265, 32],
  gname: [297, 32],
  devmajor: [329, 8],
  devminor: [337, 8],
  prefix: [345, 155],
} as const satisfies Record<string, readonly [number, number]>;

export const TypeFlag = {
  file: "0",
  oldFile: "\0",
  contiguous: "7",
  hardlink: "1",
  symlink: "2",
  characterDevice: "3",
  blockDevice: "4",
  directory: "5",
  fifo: "6",
  paxExtended: "x",
  paxGlobal: "g",
  gnuLongName: "L",
  gnuLongLink: "K",
} as const;

const typeFlagOf: Record<Exclude<TarEntryType, "other">, string> = {
  file: TypeFlag.file,
  directory: TypeFlag.directory,
  symlink: TypeFlag.symlink,
  hardlink: TypeFlag.hardlink,
  "character-device": TypeFlag.characterDevice,
  "block-device": TypeFlag.blockDevice,
  fifo: TypeFlag.fifo,
};

/** Largest value an octal field of `width` bytes holds (width - 1 digits and a terminating NUL). */
export function maxOctal(width: number): number {
  return 8 ** (width - 1) - 1;
}

/** Bytes of zero padding that follow a body of `size` bytes to reach the next block. */
export function paddingFor(size: number): number {
  const remainder = size % BLOCK_SIZE;
  return remainder === 0 ? 0 : BLOCK_SIZE - remainder;
}

/** The end-of-archive marker: two zero blocks. */
export function encodeEndOfArchive(): Buffer {
  return Buffer.alloc(2 * BLOCK_SIZE);
}

/**
 * The header block(s) for one member: a pax 'x' header first when some value does not fit ustar,
 * then the ustar header. The body (size bytes) and paddingFor(size) zero bytes must follow.
 *
 * A fresh copy of encodeHeaderView's output, for callers that keep the header.
 */
export function encodeHeader(header: TarHeader): Buffer {
  return Buffer.from(encodeHeaderView(header));
}

/** Reused by encodeHeaderView; grows for long pax records. */
let scratch = Buffer.alloc(4 * BLOCK_SIZE);

/**
 * encodeHeader into a buffer this module reuses: the view is valid only until the next call, so the caller copies
 * it at once (the packer writes it into its chunk).
 *
 * Runs once per member, so it is written for speed: no allocation for the blocks (a fresh 1.5 KiB per member cost
 * more than the encoding itself), the ustar path split worked out once, and each block's checksum summed from the
 * bytes as they are written rather than by a second pass over the 512 bytes. At 100,000 small files the general
 * version took ~7 us a member, most of the packer's own time.
 */
export function encodeHeaderView(header: TarHeader): Buffer {
  const member = normalizeForWriting(header);
  // A sparse member's ustar header names a stand-in and sizes the body as stored; its pax records say the rest.
  const stored = member.sparse === undefined ? member : sparseStandInHeader(member);
  const split = splitUstarPath(stored.path);
  const overridden = overriddenFields(stored, split);
  if (overridden === 0 && stored === member) {
    scratch.fill(0, 0, BLOCK_SIZE);
    writeUstarBlock(scratch, 0, member, split, 0, undefined);
    return scratch.subarray(0, BLOCK_SIZE);
  }
  const sparse = stored === member ? "" : sparseRecordsText(member);
  const records = sparse + paxRecordsText(stored, overridden);
  const bodyLength = nameByteLength(records);
  const ustarAt = BLOCK_SIZE + bodyLength + paddingFor(bodyLength);
  const length = ustarAt + BLOCK_SIZE;
  if (scratch.length < length) scratch = Buffer.alloc(length);
  scratch.fill(0, 0, length);
  const paxHeader: TarHeader = {
    path: paxHeaderName(member.path),
    type: "file",
    size: bodyLength,
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtime: Math.max(0, Math.floor(member.mtime)),
  };
  writeUstarBlock(scratch, 0, paxHeader, splitUstarPath(paxHeader.path), 0, TypeFlag.paxExtended);
  // A name that is not UTF-8 goes into the record as its raw bytes, as GNU tar --format=posix writes it.
  if (isPlainName(records)) scratch.write(records, BLOCK_SIZE, "utf8");
  else nameBytes(records).copy(scratch, BLOCK_SIZE);
  writeUstarBlock(scratch, ustarAt, stored, split, overridden, undefined);
  return scratch.subarray(0, length);
}

/** The ustar view of a sparse member: GNU tar's stand-in path, and the body's stored size (map and data). */
function sparseStandInHeader(header: TarHeader): TarHeader {
  return {
    ...header,
    path: sparseStandIn(header.path),
    size: sparseStoredSize(header.sparse!),
    sparse: undefined,
  };
}

/** The records that make a member sparse, as GNU tar writes them (format 1.0), first in the pax header. */
function sparseRecordsText(header: TarHeader): string {
  return (
    paxRecordText("GNU.sparse.major", "1") +
    paxRecordText("GNU.sparse.minor", "0") +
    paxRecordText("GNU.sparse.name", header.path) +
    paxRecordText("GNU.sparse.realsize", String(header.size))
  );
}

/** Checks what a writer could get wrong and gives directories their trailing slash. */
function normalizeForWriting(header: TarHeader): TarHeader {
  // Runs once per member: plain checks, no per-call arrays or closures (a tenth of the packer's allocations).
  const problem = writingProblem(header);
  if (problem !== undefined) {
    throw new LookerBackupError(`cannot encode tar member ${JSON.stringify(header.path)}: ${problem}`);
  }
  const mode = header.mode & 0o7777;
  const needsSlash = header.type === "directory" && !header.path.endsWith("/");
  if (!needsSlash && mode === header.mode) return header;
  return { ...header, path: needsSlash ? `${header.path}/` : header.path, mode };
}

function writingProblem(header: TarHeader): string | undefined {
  if (header.type === "other") return "type 'other' cannot be written";
  if (header.path === "" || header.path.includes("\0")) return "empty path or NUL byte in path";
  if (header.linkTarget?.includes("\0")) return "NUL byte in link target";
  // Names are bytes (runtime/byte-names.ts); any other lone UTF-16 surrogate would silently become U+FFFD.
  if (
    !isByteName(header.path) ||
    (header.linkTarget !== undefined && !isByteName(header.linkTarget)) ||
    (header.uname !== undefined && !isWellFormed(header.uname)) ||
    (header.gname !== undefined && !isWellFormed(header.gname))
  )
    return "name is not valid unicode";
  if (header.type !== "file" && header.size !== 0)
    return `a ${header.type} has no body but size is ${header.size}`;
  if ((header.type === "symlink" || header.type === "hardlink") && !header.linkTarget)
    return "link without target";
  if (!isCount(header.size)) return `size ${header.size} is not a non-negative integer`;
  if (header.sparse !== undefined) {
    if (header.type !== "file") return `a ${header.type} cannot be sparse`;
    const problem = sparseMapProblem(header.sparse, header.size);
    if (problem !== undefined) return problem;
  }
  if (!isCount(header.uid)) return `uid ${header.uid} is not a non-negative integer`;
  if (!isCount(header.gid)) return `gid ${header.gid} is not a non-negative integer`;
  if (!isCount(header.mode)) return `mode ${header.mode} is not a non-negative integer`;
  // Far beyond any real clock, and beyond what a pax decimal without exponent can spell.
  if (!(Math.abs(header.mtime) < 1e15)) return `mtime ${header.mtime} is out of range`;
  return undefined;
}

function isCount(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}

/** The pax keyword prefix of an extended attribute (Schily's star; GNU tar --xattrs uses it too). */
export const XATTR_PREFIX = "SCHILY.xattr.";

/**
 * An attribute name as a pax keyword: "=" ends a keyword, so GNU tar writes "%" and "=" as %25 and %3D
 * (xattr_encode_keyword in its xheader.c); xattrName reverses it.
 */
export function xattrKeyword(name: string): string {
  return /[%=]/.test(name) ? name.replace(/%/g, "%25").replace(/=/g, "%3D") : name;
}

export function xattrName(keyword: string): string {
  return keyword.includes("%") ? keyword.replace(/%3D/g, "=").replace(/%25/g, "%") : keyword;
}

/** Values that go to pax records instead of (or as well as) the ustar block, one bit each, in record order. */
const Pax = {
  path: 1,
  linkpath: 2,
  size: 4,
  uid: 8,
  gid: 16,
  mtime: 32,
  uname: 64,
  gname: 128,
  xattrs: 256,
} as const;

const MAX_SIZE = maxOctal(Field.size[1]);
const MAX_ID = maxOctal(Field.uid[1]);
const MAX_MTIME = maxOctal(Field.mtime[1]);

/** Which values of the member need a pax record (Pax bits); 0 when it fits ustar exactly. */
function overriddenFields(header: TarHeader, split: UstarPath | undefined): number {
  let fields = 0;
  if (split === undefined) fields |= Pax.path;
  if (header.linkTarget !== undefined && !fitsUstarText(header.linkTarget, Field.linkname[1])) {
    fields |= Pax.linkpath;
  }
  if (header.size > MAX_SIZE) fields |= Pax.size;
  if (header.uid > MAX_ID) fields |= Pax.uid;
  if (header.gid > MAX_ID) fields |= Pax.gid;
  if (!Number.isInteger(header.mtime) || header.mtime < 0 || header.mtime > MAX_MTIME) {
    fields |= Pax.mtime;
  }
  // uname and gname are NUL-terminated in ustar, so 31 bytes at most.
  if (header.uname !== undefined && !fitsUstarText(header.uname, Field.uname[1] - 1)) fields |= Pax.uname;
  if (header.gname !== undefined && !fitsUstarText(header.gname, Field.gname[1] - 1)) fields |= Pax.gname;
  if (header.xattrs !== undefined && header.xattrs.length > 0) fields |= Pax.xattrs;
  return fields;
}

/** The pax records of the overridden fields, in a fixed order. */
function paxRecordsText(header: TarHeader, fields: number): string {
  let records = "";
  if (fields & Pax.path) records += paxRecordText("path", header.path);
  if (fields & Pax.linkpath) records += paxRecordText("linkpath", header.linkTarget!);
  if (fields & Pax.size) records += paxRecordText("size", String(header.size));
  if (fields & Pax.uid) records += paxRecordText("uid", String(header.uid));
  if (fields & Pax.gid) records += paxRecordText("gid", String(header.gid));
  if (fields & Pax.mtime) records += paxRecordText("mtime", formatPaxTime(header.mtime));
  if (fields & Pax.uname) records += paxRecordText("uname", header.uname!);
  if (fields & Pax.gname) records += paxRecordText("gname", header.gname!);
  if (fields & Pax.xattrs) {
    // The value's raw bytes, as GNU tar writes them: held as a byte name so the records' bytes come out exact.
    for (const [name, value] of header.xattrs!)
      records += paxRecordText(`${XATTR_PREFIX}${xattrKeyword(name)}`, nameFromBytes(value));
  }
  return records;
}

/** Printable ASCII only: anything else (UTF-8, newlines, control bytes) goes to pax, which is exact. */
function isPlainAscii(text: string): boolean {
  return /^[\x20-\x7e]*$/.test(text);
}

function fitsUstarText(text: string, width: number): boolean {
  return isPlainAscii(text) && text.length <= width;
}

interface UstarPath {
  readonly prefix: string;
  readonly name: string;
}

/** ustar keeps paths up to 255 bytes as prefix (<= 155) "/" name (<= 100); undefined when impossible. */
export function splitUstarPath(path: string): UstarPath | undefined {
  if (!isPlainAscii(path)) return undefined;
  if (path.length <= Field.name[1]) return { prefix: "", name: path };
  // A directory's trailing "/" belongs to the name part, so search for the split before it.
  const searchEnd = path.endsWith("/") ? path.length - 2 : path.length - 1;
  for (let slash = path.lastIndexOf("/", searchEnd); slash > 0; slash = path.lastIndexOf("/", slash - 1)) {
    const prefix = path.slice(0, slash);
    const name = path.slice(slash + 1);
    if (name.length > Field.name[1]) return undefined;
    if (prefix.length <= Field.prefix[1] && name.length > 0) return { prefix, name };
  }
  return undefined;
}

/** One "<length> <key>=<value>\n" record; the length counts its own digits. */
export function paxRecord(key: string, value: string): Buffer {
  return nameBytes(paxRecordText(key, value));
}

function paxRecordText(key: string, value: string): string {
  const payload = nameByteLength(` ${key}=${value}\n`);
  let digits = String(payload).length;
  if (String(payload + digits).length !== digits) digits += 1;
  return `${payload + digits} ${key}=${value}\n`;
}

/** No lone UTF-16 surrogates (String.prototype.isWellFormed, ES2024; the lib we compile against predates it). */
function isWellFormed(text: string): boolean {
  return (text as string & { isWellFormed(): boolean }).isWellFormed();
}

/**
 * Decimal seconds without exponent notation. The shortest round-trip form comes first, so a time taken
 * in milliseconds (1700000000.123) is written as such and not as its binary expansion (…0.122999907).
 */
export function formatPaxTime(seconds: number): string {
  const shortest = String(seconds);
  if (!shortest.includes("e")) return shortest;
  return seconds.toFixed(9).replace(/\.?0+$/, "");
}

/** A readable ASCII stand-in for readers that ignore pax (the real name is in the pax record). */
function ustarFallback(text: string, width: number): string {
  const ascii = isPlainAscii(text) ? text : text.replace(/[^\x20-\x7e]/g, "_");
  return ascii.length <= width ? ascii : ascii.slice(ascii.length - width);
}

function paxHeaderName(path: string): string {
  const end = path.endsWith("/") ? path.length - 1 : path.length;
  const base = path.slice(path.lastIndexOf("/", end - 1) + 1, end);
  return ustarFallback(`PaxHeaders/${base}`, Field.name[1]);
}

/** What every ustar block adds to its checksum besides its fields: the checksum field as spaces, magic, version. */
const FIXED_CHECKSUM = 8 * 0x20 + byteSum("ustar\0") + byteSum("00");

/**
 * Fills the zeroed 512 bytes at `at` with the ustar header and its checksum. Numeric fields whose value lives in a
 * pax record (`overridden`, Pax bits) get a fallback; a path that does not split gets a readable stand-in.
 */
function writeUstarBlock(
  out: Buffer,
  at: number,
  header: TarHeader,
  split: UstarPath | undefined,
  overridden: number,
  typeFlag: string | undefined,
): void {
  let sum = FIXED_CHECKSUM;
  if (split) {
    sum += putText(out, at + Field.name[0], Field.name[1], split.name);
    sum += putText(out, at + Field.prefix[0], Field.prefix[1], split.prefix);
  } else {
    const fallback = ustarFallback(header.path.replace(/\/$/, ""), Field.name[1] - 1);
    sum += putText(out, at, Field.name[1], header.path.endsWith("/") ? `${fallback}/` : fallback);
  }
  sum += putOctal(out, at, Field.mode, header.mode);
  sum += putOctal(out, at, Field.uid, overridden & Pax.uid ? 0 : header.uid);
  sum += putOctal(out, at, Field.gid, overridden & Pax.gid ? 0 : header.gid);
  sum += putOctal(out, at, Field.size, overridden & Pax.size ? 0 : header.size);
  sum += putOctal(
    out,
    at,
    Field.mtime,
    overridden & Pax.mtime ? ustarTimeFallback(header.mtime) : header.mtime,
  );
  const flag = (typeFlag ?? typeFlagOf[header.type as Exclude<TarEntryType, "other">]).charCodeAt(0);
  out[at + Field.typeflag[0]] = flag;
  sum += flag;
  if (header.linkTarget !== undefined) {
    sum += putText(
      out,
      at + Field.linkname[0],
      Field.linkname[1],
      ustarFallback(header.linkTarget, Field.linkname[1]),
    );
  }
  out.write("ustar\0", at + Field.magic[0], "latin1");
  out.write("00", at + Field.version[0], "latin1");
  if (header.uname !== undefined) {
    sum += putText(out, at + Field.uname[0], Field.uname[1], ustarFallback(header.uname, Field.uname[1] - 1));
  }
  if (header.gname !== undefined) {
    sum += putText(out, at + Field.gname[0], Field.gname[1], ustarFallback(header.gname, Field.gname[1] - 1));
  }
  if (header.type === "character-device" || header.type === "block-device") {
    sum += putOctal(out, at, Field.devmajor, 0);
    sum += putOctal(out, at, Field.devminor, 0);
  }
  const checksumAt = at + Field.checksum[0];
  putOctalDigits(out, checksumAt, 6, sum);
  out[checksumAt + 6] = 0;
  out[checksumAt + 7] = 0x20;
}

/** Whole seconds clamped into the ustar field, for readers that ignore the pax mtime. */
function ustarTimeFallback(seconds: number): number {
  return Math.min(Math.max(0, Math.floor(seconds)), MAX_MTIME);
}

/** Writes at most `width` characters of ASCII text; returns the sum of the bytes written. */
function putText(out: Buffer, at: number, width: number, text: string): number {
  const length = Math.min(text.length, width);
  let sum = 0;
  for (let i = 0; i < length; i++) {
    const byte = text.charCodeAt(i) & 0xff;
    out[at + i] = byte;
    sum += byte;
  }
  return sum;
}

/** A zero-padded octal field and its NUL at the block at `at`; returns the sum of the bytes written. */
function putOctal(
  out: Buffer,
  at: number,
  [offset, width]: readonly [number, number],
  value: number,
): number {
  return putOctalDigits(out, at + offset, width - 1, value);
}

/** `digits` octal digits of value, zero-padded, at offset (the value always fits, see maxOctal); returns their sum. */
function putOctalDigits(out: Buffer, offset: number, digits: number, value: number): number {
  let sum = 0;
  let rest = value;
  let i = offset + digits - 1;
  // Small values (all but huge sizes and far-future times) take integer arithmetic; the rest exact float division.
  for (; i >= offset && rest > 0x7fffffff; i--) {
    const digit = rest % 8;
    out[i] = 0x30 + digit;
    sum += 0x30 + digit;
    rest = Math.floor(rest / 8);
  }
  for (; i >= offset; i--) {
    const digit = rest & 7;
    out[i] = 0x30 + digit;
    sum += 0x30 + digit;
    rest >>>= 3;
  }
  return sum;
}

function byteSum(text: string): number {
  let sum = 0;
  for (let i = 0; i < text.length; i++) sum += text.charCodeAt(i);
  return sum;
}

/** Unsigned sum of the block with the checksum field counted as eight spaces. */
export function headerChecksum(block: Buffer): number {
  if (block.byteOffset % 4 === 0 && block.length >= BLOCK_SIZE) return alignedHeaderChecksum(block);
  let sum = 8 * 0x20;
  const [start, width] = Field.checksum;
  for (let i = 0; i < start; i++) sum += block[i]!;
  for (let i = start + width; i < BLOCK_SIZE; i++) sum += block[i]!;
  return sum;
}

/** The historic signed-char variant some old writers used; readers accept either. */
export function signedHeaderChecksum(block: Buffer): number {
  let sum = 8 * 0x20;
  const [start, width] = Field.checksum;
  for (let i = 0; i < BLOCK_SIZE; i++) {
    if (i >= start && i < start + width) continue;
    const byte = block[i]!;
    sum += byte > 127 ? byte - 256 : byte;
  }
  return sum;
}

/** The checksum field's bytes, 148-155, are 32-bit words 37 and 38. */
const CHECKSUM_WORDS = [Field.checksum[0] / 4, Field.checksum[0] / 4 + 1] as const;

/**
 * headerChecksum four bytes at a time, for a block on a 4-byte boundary (every block of our own archives is).
 * Two 16-bit lanes each add up two bytes of every word; 126 words cannot overflow a lane (126 * 2 * 255 < 65536).
 * The reader checks two blocks per member, and the byte loop was a tenth of reading 100k small files.
 */
function alignedHeaderChecksum(block: Buffer): number {
  const words = new Uint32Array(block.buffer, block.byteOffset, BLOCK_SIZE / 4);
  let lanes = 0;
  for (let i = 0; i < words.length; i++) {
    if (i === CHECKSUM_WORDS[0] || i === CHECKSUM_WORDS[1]) continue;
    const word = words[i]!;
    lanes += (word & 0x00ff00ff) + ((word >>> 8) & 0x00ff00ff);
  }
  return 8 * 0x20 + (lanes & 0xffff) + (lanes >>> 16);
}
