/**
 * The catalog: `meta/catalog.jsonl`, the last member of every archive, one JSON line per member before it.
 * Restore checks every extracted member against it, so a member that was altered, dropped or smuggled in is caught
 * even when the encryption layer was fine (e.g. an archive made by other tools with a forged catalog is refused).
 */
import { IntegrityError } from "../errors.js";
import { display } from "./display.js";
import type { TarEntryType, TarHeader } from "./tar-format.js";

export const CATALOG_PATH = "meta/catalog.jsonl";
export const BACKUP_META_PATH = "meta/backup.json";

export interface CatalogEntry {
  path: string;
  type: TarEntryType;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch, fractional. */
  mtime: number;
  /** Hex sha256 of the content; present for regular files (and hard links, with their target's digest). */
  sha256?: string;
  linkTarget?: string;
  /** Set when the file changed or vanished while it was read: the content is what was read. */
  warning?: string;
}

/**
 * One line of the catalog: the JSON of the entry, written field by field (the generic serialiser was twice as slow,
 * and a backup serialises every line twice: the catalog's size goes into its header first).
 */
export function catalogLine(entry: CatalogEntry): string {
  const { path, type, size, mode, uid, gid, mtime, linkTarget, sha256, warning } = entry;
  const head = `{"path":${JSON.stringify(path)},"type":"${type}","size":${size},"mode":${mode}`;
  let line = `${head},"uid":${uid},"gid":${gid},"mtime":${mtime}`;
  if (linkTarget !== undefined) line += `,"linkTarget":${JSON.stringify(linkTarget)}`;
  if (sha256 !== undefined) line += `,"sha256":"${sha256}"`;
  if (warning !== undefined) line += `,"warning":${JSON.stringify(warning)}`;
  return `${line}}\n`;
}

const TYPES: readonly TarEntryType[] = ["file", "directory", "symlink", "hardlink"];

/** Longest path or link target a catalog line may name, in UTF-8 bytes: the tar reader's limit for members. */
export const MAX_CATALOG_PATH_BYTES = 4096;
/**
 * Longest catalog line, in bytes. Our lines are ~250 bytes; a path and a link target at their limit, each
 * JSON-escaped at 6 bytes per byte (\u0001), and a warning still fit twice. One line is gathered and parsed whole,
 * so this bounds the memory and work a single line costs.
 */
export const MAX_CATALOG_LINE_BYTES = 128 * 1024;
/**
 * Most members restore and verify take from one archive, and most bytes of member paths (and link targets) in all.
 * Restore holds each member's path until the catalog, at the end, has matched it, and the catalog's entries until
 * the end: ~1 KB of heap per member. A Looker home has tens of thousands of files (the bench's largest 100k, with
 * paths of ~60 bytes); 1M members with 3.8 KB paths made restore run out of heap (exit 134, 4.4 GB RSS).
 */
export const MAX_ARCHIVE_MEMBERS = 1_000_000;
export const MAX_ARCHIVE_PATH_BYTES = 256 * 1024 * 1024;
export const LIMIT_HINT =
  "the archive is far larger than any Looker home, so it was not written by looker-backup from one; nothing was restored";
const CATALOG_HINT =
  "the archive's catalog is damaged or was not written by looker-backup; use another backup";

/** Parses and validates one catalog line; a malformed catalog is an integrity failure, never a guess. */
export function parseCatalogLine(line: string, lineNumber: number): CatalogEntry {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new IntegrityError(`catalog line ${lineNumber} is not valid JSON`);
  }
  const e = value as Partial<CatalogEntry>;
  const valid =
    typeof e === "object" &&
    e !== null &&
    typeof e.path === "string" &&
    TYPES.includes(e.type as TarEntryType) &&
    Number.isSafeInteger(e.size) &&
    Number.isInteger(e.mode) &&
    Number.isInteger(e.uid) &&
    Number.isInteger(e.gid) &&
    typeof e.mtime === "number" &&
    // A regular file's entry always carries its digest: without one, its content would go unchecked.
    (e.type === "file" ? typeof e.sha256 === "string" && /^[0-9a-f]{64}$/.test(e.sha256) : true) &&
    (e.sha256 === undefined || /^[0-9a-f]{64}$/.test(e.sha256)) &&
    (e.linkTarget === undefined || typeof e.linkTarget === "string");
  if (!valid) throw new IntegrityError(`catalog line ${lineNumber} does not describe a member`);
  for (const [what, text] of [
    ["path", e.path],
    ["link target", e.linkTarget],
  ] as const) {
    const bytes = text === undefined ? 0 : Buffer.byteLength(text);
    if (bytes > MAX_CATALOG_PATH_BYTES) {
      throw new IntegrityError(
        `catalog line ${lineNumber} names a ${what} of ${bytes} bytes, over the limit of ${MAX_CATALOG_PATH_BYTES}`,
        CATALOG_HINT,
      );
    }
  }
  return e as CatalogEntry;
}

/**
 * Parses the catalog's JSON lines as the member's bytes arrive, a line at a time: at 100,000 files the catalog is
 * ~24 MB, and holding it whole (let alone as one string, split) came on top of everything else at the very end of a
 * restore, when memory is highest. Only a line cut between two parts is copied.
 */
export interface CatalogLimits {
  /** Most entries (default MAX_ARCHIVE_MEMBERS). */
  readonly maxEntries?: number;
  /** Most bytes of paths and link targets in all (default MAX_ARCHIVE_PATH_BYTES). */
  readonly maxPathBytes?: number;
}

export class CatalogParser {
  readonly entries = new Map<string, CatalogEntry>();
  private readonly maxEntries: number;
  private readonly maxPathBytes: number;
  private pathBytes = 0;
  /**
   * The start of a line cut between parts, as copies, joined once its end arrives: joining on every part was
   * quadratic (a 50 MB line took 22 s), and the line is refused once it is over MAX_CATALOG_LINE_BYTES.
   */
  private carry: Buffer[] = [];
  private carried = 0;
  private lineNumber = 0;

  /** @param onEntry told of each entry as it is parsed, in catalog order */
  constructor(
    private readonly onEntry?: (entry: CatalogEntry) => void,
    limits: CatalogLimits = {},
  ) {
    this.maxEntries = limits.maxEntries ?? MAX_ARCHIVE_MEMBERS;
    this.maxPathBytes = limits.maxPathBytes ?? MAX_ARCHIVE_PATH_BYTES;
  }

  push(part: Buffer): void {
    let start = 0;
    if (this.carried > 0) {
      const newline = part.indexOf(0x0a);
      if (newline < 0) {
        this.keep(part);
        return;
      }
      this.keep(part.subarray(0, newline));
      const line = Buffer.concat(this.carry, this.carried);
      this.carry = [];
      this.carried = 0;
      this.line(line, 0, line.length);
      start = newline + 1;
    }
    for (let newline = part.indexOf(0x0a, start); newline >= 0; newline = part.indexOf(0x0a, start)) {
      this.line(part, start, newline);
      start = newline + 1;
    }
    if (start < part.length) this.keep(part.subarray(start));
  }

  /** The entries, once the last part was pushed (a last line without its newline counts too). */
  end(): Map<string, CatalogEntry> {
    if (this.carried > 0) {
      const line = Buffer.concat(this.carry, this.carried);
      this.line(line, 0, line.length);
    }
    this.carry = [];
    this.carried = 0;
    return this.entries;
  }

  /** Carries part of a line over to the next part, as a copy: a part's memory may be freed once the next is read. */
  private keep(bytes: Buffer): void {
    this.tooLong(this.carried + bytes.length, this.lineNumber + 1);
    this.carry.push(Buffer.from(bytes));
    this.carried += bytes.length;
  }

  private tooLong(length: number, lineNumber: number): void {
    if (length > MAX_CATALOG_LINE_BYTES) {
      throw new IntegrityError(
        `catalog line ${lineNumber} is longer than the limit of ${MAX_CATALOG_LINE_BYTES} bytes`,
        CATALOG_HINT,
      );
    }
  }

  private line(bytes: Buffer, start: number, end: number): void {
    this.lineNumber++;
    if (end === start) return;
    this.tooLong(end - start, this.lineNumber);
    const entry = parseCatalogLine(bytes.toString("utf8", start, end), this.lineNumber);
    if (this.entries.has(entry.path)) throw new IntegrityError(`catalog lists ${display(entry.path)} twice`);
    if (this.entries.size >= this.maxEntries) {
      throw new IntegrityError(
        `the catalog lists more than ${this.maxEntries} members, the limit`,
        LIMIT_HINT,
      );
    }
    this.pathBytes += Buffer.byteLength(entry.path) + Buffer.byteLength(entry.linkTarget ?? "");
    if (this.pathBytes > this.maxPathBytes) {
      throw new IntegrityError(
        `the catalog's paths exceed the limit of ${this.maxPathBytes} bytes in all (at line ${this.lineNumber})`,
        LIMIT_HINT,
      );
    }
    this.entries.set(entry.path, entry);
    this.onEntry?.(entry);
  }
}

/** What restore actually saw for one member, compared field by field with the catalog. */
export interface ObservedMember {
  path: string;
  type: TarEntryType;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  sha256?: string;
  linkTarget?: string;
}

/** What the catalog records of a member, from its header: the write side's entry and the read side's observation. */
export function memberFieldsOf(header: TarHeader): ObservedMember {
  const member: ObservedMember = {
    path: header.path,
    type: header.type,
    size: header.size,
    mode: header.mode,
    uid: header.uid,
    gid: header.gid,
    mtime: header.mtime,
  };
  if (header.linkTarget !== undefined) member.linkTarget = header.linkTarget;
  return member;
}

/**
 * Checks the members against the catalog. The first `matchedInOrder` catalog entries (in catalog order) were
 * already matched by members no longer in `observed` (see InOrderCheck in extract.ts).
 */
export function compareWithCatalog(
  catalog: Map<string, CatalogEntry>,
  observed: readonly ObservedMember[],
  matchedInOrder = 0,
): void {
  const seen = new Set<string>();
  for (const member of observed) {
    seen.add(member.path);
    const expected = catalog.get(member.path);
    if (!expected)
      throw new IntegrityError(`member ${display(member.path)} is not in the catalog`, TAMPER_HINT);
    const mismatch = firstMismatch(expected, member);
    if (mismatch) {
      throw new IntegrityError(
        `member ${display(member.path)} does not match the catalog: ${mismatch}`,
        TAMPER_HINT,
      );
    }
  }
  let index = 0;
  for (const path of catalog.keys()) {
    if (index++ < matchedInOrder) continue;
    if (!seen.has(path))
      throw new IntegrityError(
        `catalog lists ${display(path)} but the archive has no such member`,
        TAMPER_HINT,
      );
  }
}

/** True when the member is exactly what the catalog says. */
export function matchesCatalog(expected: CatalogEntry, member: ObservedMember): boolean {
  return firstMismatch(expected, member) === undefined;
}

/** Seconds: one microsecond (see firstMismatch). */
const MTIME_TOLERANCE = 1e-6;

const TAMPER_HINT = "the archive was altered or damaged after it was written; restore an older backup";

function firstMismatch(expected: CatalogEntry, actual: ObservedMember): string | undefined {
  if (expected.type !== actual.type) return `type ${actual.type}, catalog says ${expected.type}`;
  if (expected.size !== actual.size) return `size ${actual.size}, catalog says ${expected.size}`;
  if (expected.mode !== actual.mode)
    return `mode ${actual.mode.toString(8)}, catalog says ${expected.mode.toString(8)}`;
  if (expected.uid !== actual.uid || expected.gid !== actual.gid)
    return `owner ${actual.uid}:${actual.gid}, catalog says ${expected.uid}:${expected.gid}`;
  // Ours are the same number twice (the backup writes both from one lstat). Another writer's pax time may carry
  // nanoseconds its catalog rounds differently: to the microsecond is what restore can set (libuv) and so compares.
  if (!(Math.abs(expected.mtime - actual.mtime) < MTIME_TOLERANCE))
    return `mtime ${actual.mtime}, catalog says ${expected.mtime}`;
  if (expected.sha256 !== undefined && expected.sha256 !== actual.sha256) return "sha256 differs";
  if ((expected.linkTarget ?? "") !== (actual.linkTarget ?? "")) return "link target differs";
  return undefined;
}
