/**
 * The catalog: `meta/catalog.jsonl`, the last member of every archive, one JSON line per member before it.
 * Restore checks every extracted member against it, so a member that was altered, dropped or smuggled in is caught
 * even when the encryption layer was fine (e.g. an archive made by other tools with a forged catalog is refused).
 */
import { IntegrityError } from "../errors.js";
import type { TarEntryType } from "./tar-format.js";

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

export function catalogLine(entry: CatalogEntry): string {
  return `${JSON.stringify(entry)}\n`;
}

const TYPES: readonly TarEntryType[] = ["file", "directory", "symlink", "hardlink"];

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
    (e.sha256 === undefined || /^[0-9a-f]{64}$/.test(e.sha256)) &&
    (e.linkTarget === undefined || typeof e.linkTarget === "string");
  if (!valid) throw new IntegrityError(`catalog line ${lineNumber} does not describe a member`);
  return e as CatalogEntry;
}

/**
 * The catalog's JSON lines, parsed a line at a time from the member's bytes: at 100,000 files, decoding the whole
 * member to one string and splitting it held ~50 MB more at the end of a restore, when memory is highest.
 */
export function parseCatalog(content: Buffer): Map<string, CatalogEntry> {
  const entries = new Map<string, CatalogEntry>();
  let lineNumber = 0;
  for (let start = 0; start < content.length; ) {
    const newline = content.indexOf(0x0a, start);
    const end = newline < 0 ? content.length : newline;
    lineNumber++;
    if (end > start) {
      const entry = parseCatalogLine(content.toString("utf8", start, end), lineNumber);
      if (entries.has(entry.path)) throw new IntegrityError(`catalog lists ${entry.path} twice`);
      entries.set(entry.path, entry);
    }
    start = end + 1;
  }
  return entries;
}

/** What restore actually saw for one member, compared field by field with the catalog. */
export interface ObservedMember {
  path: string;
  type: TarEntryType;
  size: number;
  mode: number;
  sha256?: string;
  linkTarget?: string;
}

export function compareWithCatalog(
  catalog: Map<string, CatalogEntry>,
  observed: readonly ObservedMember[],
): void {
  const seen = new Set<string>();
  for (const member of observed) {
    seen.add(member.path);
    const expected = catalog.get(member.path);
    if (!expected) throw new IntegrityError(`member ${member.path} is not in the catalog`, TAMPER_HINT);
    const mismatch = firstMismatch(expected, member);
    if (mismatch) {
      throw new IntegrityError(`member ${member.path} does not match the catalog: ${mismatch}`, TAMPER_HINT);
    }
  }
  for (const path of catalog.keys()) {
    if (!seen.has(path))
      throw new IntegrityError(`catalog lists ${path} but the archive has no such member`, TAMPER_HINT);
  }
}

const TAMPER_HINT = "the archive was altered or damaged after it was written; restore an older backup";

function firstMismatch(expected: CatalogEntry, actual: ObservedMember): string | undefined {
  if (expected.type !== actual.type) return `type ${actual.type}, catalog says ${expected.type}`;
  if (expected.size !== actual.size) return `size ${actual.size}, catalog says ${expected.size}`;
  if (expected.mode !== actual.mode)
    return `mode ${actual.mode.toString(8)}, catalog says ${expected.mode.toString(8)}`;
  if (expected.sha256 !== undefined && expected.sha256 !== actual.sha256) return "sha256 differs";
  if ((expected.linkTarget ?? "") !== (actual.linkTarget ?? "")) return "link target differs";
  return undefined;
}
