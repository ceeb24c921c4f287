/**
 * The catalog sidecar's format: what `<instance>-<time>.catalog.age`, stored beside an archive, holds once decrypted,
 * so that ls, find, diff and show need not read a whole archive. Plain text, for `age -d` and a person to read:
 *
 *   line 1:  {"format":"looker-backup-catalog/1","archive":"<archive file name>","backup":{<meta/backup.json>}}
 *   then:    the archive's meta/catalog.jsonl, line for line
 *
 * It is a copy for convenience: the archive's own catalog is the truth, and verify compares the two.
 */
import { IntegrityError } from "../errors.js";
import { type CatalogEntry, type CatalogLimits, CatalogParser, catalogLine } from "./catalog.js";
import { display } from "./display.js";

export const SIDECAR_FORMAT = "looker-backup-catalog/1";

export interface SidecarHeader {
  readonly format: typeof SIDECAR_FORMAT;
  /** The archive's file name when the sidecar was written. */
  readonly archive: string;
  /** meta/backup.json, as the archive holds it. */
  readonly backup: Record<string, unknown>;
}

export interface SidecarContent {
  readonly header: SidecarHeader;
  readonly catalog: Map<string, CatalogEntry>;
}

/** The sidecar's text in chunks of about this many bytes: a catalog of 100,000 files is ~25 MB, never held whole. */
const CHUNK_BYTES = 64 * 1024;
/** backup.json is at most 1 MiB in an archive (extract.ts); its one-line form is shorter still. */
const MAX_HEADER_BYTES = 2 << 20;
const SIDECAR_HINT =
  "the sidecar is damaged or was not written by looker-backup; delete it (ls, find, diff and show then read the archive itself)";

/** The sidecar's plaintext: the header line, then the catalog's lines. */
export function* sidecarText(
  archive: string,
  backup: Record<string, unknown>,
  catalog: Iterable<CatalogEntry>,
): Generator<Buffer> {
  const header: SidecarHeader = { format: SIDECAR_FORMAT, archive, backup };
  let chunk = `${JSON.stringify(header)}\n`;
  for (const entry of catalog) {
    chunk += catalogLine(entry);
    if (chunk.length >= CHUNK_BYTES) {
      yield Buffer.from(chunk, "utf8");
      chunk = "";
    }
  }
  if (chunk !== "") yield Buffer.from(chunk, "utf8");
}

/** Parses a sidecar's plaintext as it arrives, with the catalog's own limits (CatalogParser). */
export class SidecarParser {
  private header: SidecarHeader | undefined;
  private headerParts: Buffer[] = [];
  private headerBytes = 0;
  private readonly catalog: CatalogParser;

  constructor(limits: CatalogLimits = {}) {
    // The catalog's lines are numbered as the sidecar's: the header is line 1.
    this.catalog = new CatalogParser(undefined, limits);
    this.catalog.push(Buffer.from("\n"));
  }

  push(part: Buffer): void {
    if (this.header !== undefined) {
      this.catalog.push(part);
      return;
    }
    const newline = part.indexOf(0x0a);
    const head = newline < 0 ? part : part.subarray(0, newline);
    this.headerBytes += head.length;
    if (this.headerBytes > MAX_HEADER_BYTES) {
      throw new IntegrityError(
        `the catalog sidecar's first line is longer than ${MAX_HEADER_BYTES} bytes`,
        SIDECAR_HINT,
      );
    }
    this.headerParts.push(Buffer.from(head));
    if (newline < 0) return;
    this.header = parseHeader(Buffer.concat(this.headerParts).toString("utf8"));
    this.headerParts = [];
    if (newline + 1 < part.length) this.catalog.push(part.subarray(newline + 1));
  }

  end(): SidecarContent {
    if (this.header === undefined) {
      throw new IntegrityError("the catalog sidecar is empty or has no header line", SIDECAR_HINT);
    }
    return { header: this.header, catalog: this.catalog.end() };
  }
}

function parseHeader(line: string): SidecarHeader {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new IntegrityError("the catalog sidecar's first line is not JSON", SIDECAR_HINT);
  }
  const header = value as Partial<SidecarHeader> | null;
  if (typeof header !== "object" || header === null || header.format !== SIDECAR_FORMAT) {
    throw new IntegrityError(`the file is not a catalog sidecar of format ${SIDECAR_FORMAT}`, SIDECAR_HINT);
  }
  if (
    typeof header.archive !== "string" ||
    typeof header.backup !== "object" ||
    header.backup === null ||
    Array.isArray(header.backup)
  ) {
    throw new IntegrityError(
      "the catalog sidecar's first line lacks the archive or its backup.json",
      SIDECAR_HINT,
    );
  }
  return header as SidecarHeader;
}

/** How a sidecar differs from the archive it sits beside. */
export interface SidecarDifference {
  /** backup.json differs. */
  readonly backup: boolean;
  /** Paths listed differently (only in one, or with other fields), in the archive's order, then the sidecar's. */
  readonly paths: number;
  /** The first few of those paths, as messages quote them. */
  readonly firstPaths: readonly string[];
}

const FIRST_PATHS = 5;

/** Undefined when the sidecar says what the archive says; otherwise what differs. */
export function sidecarDifference(
  archive: { readonly meta: Record<string, unknown>; readonly catalog: ReadonlyMap<string, CatalogEntry> },
  sidecar: SidecarContent,
): SidecarDifference | undefined {
  // Both were parsed from JSON one writer made from the same object: equal content serialises equally.
  const backup = JSON.stringify(archive.meta) !== JSON.stringify(sidecar.header.backup);
  const differing: string[] = [];
  let paths = 0;
  const note = (path: string) => {
    paths++;
    if (differing.length < FIRST_PATHS) differing.push(display(path));
  };
  for (const [path, entry] of archive.catalog) {
    const other = sidecar.catalog.get(path);
    if (other === undefined || catalogLine(other) !== catalogLine(entry)) note(path);
  }
  for (const path of sidecar.catalog.keys()) if (!archive.catalog.has(path)) note(path);
  return backup || paths > 0 ? { backup, paths, firstPaths: differing } : undefined;
}

/** "backup.json and 3 paths differ (first: a, b, c)". */
export function describeDifference(difference: SidecarDifference): string {
  const parts = [
    ...(difference.backup ? ["backup.json"] : []),
    ...(difference.paths > 0 ? [`${difference.paths} path${difference.paths === 1 ? "" : "s"}`] : []),
  ];
  const verb = parts.length === 1 && (difference.backup || difference.paths === 1) ? "differs" : "differ";
  const first = difference.firstPaths.length > 0 ? ` (first: ${difference.firstPaths.join(", ")})` : "";
  return `${parts.join(" and ")} ${verb}${first}`;
}
