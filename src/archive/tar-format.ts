/**
 * POSIX pax tar: the types shared by the writer and the reader, and the low-level block encoding.
 *
 * Every member is a 512-byte ustar header ("ustar\0" magic, "00" version), optionally preceded by a pax 'x'
 * extended header when a value does not fit ustar (long or non-ASCII names, big sizes or ids, fractional
 * mtimes). GNU tar, bsdtar and every POSIX reader understand this; see DESIGN.md section 4.
 */
import { LookerBackupError } from "../errors.js";

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
 */
export function encodeHeader(header: TarHeader): Buffer {
  const member = normalizeForWriting(header);
  const paxValues = paxValuesFor(member);
  if (paxValues.size === 0) return encodeUstarBlock(member, NOTHING_OVERRIDDEN);
  // One allocation for pax header, records, padding and ustar block: this runs once per member, and at
  // 100,000 small files the separate buffers and their concatenation were a tenth of the packer's own time.
  let records = "";
  for (const [key, value] of paxValues) records += paxRecordText(key, value);
  const bodyLength = Buffer.byteLength(records);
  const bodyEnd = BLOCK_SIZE + bodyLength;
  const out = Buffer.alloc(bodyEnd + paddingFor(bodyLength) + BLOCK_SIZE);
  writeUstarBlock(
    out.subarray(0, BLOCK_SIZE),
    {
      path: paxHeaderName(member.path),
      type: "file",
      size: bodyLength,
      mode: 0o644,
      uid: 0,
      gid: 0,
      mtime: Math.max(0, Math.floor(member.mtime)),
    },
    NOTHING_OVERRIDDEN,
    TypeFlag.paxExtended,
  );
  out.write(records, BLOCK_SIZE, "utf8");
  writeUstarBlock(out.subarray(out.length - BLOCK_SIZE), member, new Set(paxValues.keys()));
  return out;
}

const NOTHING_OVERRIDDEN: ReadonlySet<string> = new Set();

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
  // Lone UTF-16 surrogates would silently become U+FFFD: the name read back would differ.
  if (
    !isWellFormed(header.path) ||
    (header.linkTarget !== undefined && !isWellFormed(header.linkTarget)) ||
    (header.uname !== undefined && !isWellFormed(header.uname)) ||
    (header.gname !== undefined && !isWellFormed(header.gname))
  )
    return "name is not valid unicode";
  if (header.type !== "file" && header.size !== 0)
    return `a ${header.type} has no body but size is ${header.size}`;
  if ((header.type === "symlink" || header.type === "hardlink") && !header.linkTarget)
    return "link without target";
  if (!isCount(header.size)) return `size ${header.size} is not a non-negative integer`;
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

/** The pax values a member needs, by key; empty when it fits ustar exactly. */
function paxValuesFor(header: TarHeader): Map<string, string> {
  const values = new Map<string, string>();
  if (splitUstarPath(header.path) === undefined) values.set("path", header.path);
  if (header.linkTarget !== undefined && !fitsUstarText(header.linkTarget, Field.linkname[1])) {
    values.set("linkpath", header.linkTarget);
  }
  if (header.size > maxOctal(Field.size[1])) values.set("size", String(header.size));
  if (header.uid > maxOctal(Field.uid[1])) values.set("uid", String(header.uid));
  if (header.gid > maxOctal(Field.gid[1])) values.set("gid", String(header.gid));
  if (!Number.isInteger(header.mtime) || header.mtime < 0 || header.mtime > maxOctal(Field.mtime[1])) {
    values.set("mtime", formatPaxTime(header.mtime));
  }
  // uname and gname are NUL-terminated in ustar, so 31 bytes at most.
  if (header.uname !== undefined && !fitsUstarText(header.uname, Field.uname[1] - 1)) {
    values.set("uname", header.uname);
  }
  if (header.gname !== undefined && !fitsUstarText(header.gname, Field.gname[1] - 1)) {
    values.set("gname", header.gname);
  }
  return values;
}

/** Printable ASCII only: anything else (UTF-8, newlines, control bytes) goes to pax, which is exact. */
function isPlainAscii(text: string): boolean {
  return /^[\x20-\x7e]*$/.test(text);
}

function fitsUstarText(text: string, width: number): boolean {
  return isPlainAscii(text) && text.length <= width;
}

/** ustar keeps paths up to 255 bytes as prefix (<= 155) "/" name (<= 100); undefined when impossible. */
export function splitUstarPath(path: string): { prefix: string; name: string } | undefined {
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
  return Buffer.from(paxRecordText(key, value), "utf8");
}

function paxRecordText(key: string, value: string): string {
  const payload = Buffer.byteLength(` ${key}=${value}\n`);
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
  const ascii = text.replace(/[^\x20-\x7e]/g, "_");
  return ascii.length <= width ? ascii : ascii.slice(ascii.length - width);
}

function paxHeaderName(path: string): string {
  const base = path.replace(/\/$/, "").split("/").pop() ?? "";
  return ustarFallback(`PaxHeaders/${base}`, Field.name[1]);
}

/** The ustar block; numeric fields whose value lives in a pax record (`overridden`) get a fallback. */
function encodeUstarBlock(header: TarHeader, overridden: ReadonlySet<string>, typeFlag?: string): Buffer {
  const block = Buffer.alloc(BLOCK_SIZE);
  writeUstarBlock(block, header, overridden, typeFlag);
  return block;
}

/** Fills a zeroed 512-byte block with the ustar header. */
function writeUstarBlock(
  block: Buffer,
  header: TarHeader,
  overridden: ReadonlySet<string>,
  typeFlag?: string,
): void {
  const split = splitUstarPath(header.path);
  if (split) {
    writeText(block, Field.name, split.name);
    writeText(block, Field.prefix, split.prefix);
  } else {
    const fallback = ustarFallback(header.path.replace(/\/$/, ""), Field.name[1] - 1);
    writeText(block, Field.name, header.path.endsWith("/") ? `${fallback}/` : fallback);
  }
  writeOctal(block, Field.mode, header.mode);
  writeOctal(block, Field.uid, overridden.has("uid") ? 0 : header.uid);
  writeOctal(block, Field.gid, overridden.has("gid") ? 0 : header.gid);
  writeOctal(block, Field.size, overridden.has("size") ? 0 : header.size);
  writeOctal(block, Field.mtime, overridden.has("mtime") ? ustarTimeFallback(header.mtime) : header.mtime);
  block.write(
    typeFlag ?? typeFlagOf[header.type as Exclude<TarEntryType, "other">],
    Field.typeflag[0],
    "latin1",
  );
  if (header.linkTarget !== undefined) {
    writeText(block, Field.linkname, ustarFallback(header.linkTarget, Field.linkname[1]));
  }
  block.write("ustar\0", Field.magic[0], "latin1");
  block.write("00", Field.version[0], "latin1");
  if (header.uname !== undefined)
    writeText(block, Field.uname, ustarFallback(header.uname, Field.uname[1] - 1));
  if (header.gname !== undefined)
    writeText(block, Field.gname, ustarFallback(header.gname, Field.gname[1] - 1));
  if (header.type === "character-device" || header.type === "block-device") {
    writeOctal(block, Field.devmajor, 0);
    writeOctal(block, Field.devminor, 0);
  }
  writeChecksum(block);
}

/** Whole seconds clamped into the ustar field, for readers that ignore the pax mtime. */
function ustarTimeFallback(seconds: number): number {
  return Math.min(Math.max(0, Math.floor(seconds)), maxOctal(Field.mtime[1]));
}

function writeText(block: Buffer, [offset, width]: readonly [number, number], text: string): void {
  block.write(text, offset, width, "latin1");
}

/** Zero-padded octal digits and a NUL, written byte by byte (no strings: this runs ~6 times per member). */
function writeOctal(block: Buffer, [offset, width]: readonly [number, number], value: number): void {
  writeOctalDigits(block, offset, width - 1, value);
  block[offset + width - 1] = 0;
}

/** `digits` octal digits of value, zero-padded, at offset; the value always fits (see maxOctal). */
function writeOctalDigits(block: Buffer, offset: number, digits: number, value: number): void {
  let rest = value;
  for (let i = offset + digits - 1; i >= offset; i--) {
    block[i] = 0x30 + (rest % 8);
    rest = Math.floor(rest / 8);
  }
}

/** Unsigned sum of the block with the checksum field counted as eight spaces. */
export function headerChecksum(block: Buffer): number {
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

function writeChecksum(block: Buffer): void {
  const [offset] = Field.checksum;
  writeOctalDigits(block, offset, 6, headerChecksum(block));
  block[offset + 6] = 0;
  block[offset + 7] = 0x20;
}
