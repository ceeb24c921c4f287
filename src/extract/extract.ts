/**
 * Reads a decrypted, decompressed archive stream member by member, refusing unsafe members before anything is
 * written, and hands each safe member to a sink: the staging sink writes it to disk, the verify sink only hashes it.
 * At the end every member is checked against the catalog (the last member), so a restore either reproduces exactly
 * what was backed up or fails.
 */
import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import {
  BACKUP_META_PATH,
  CATALOG_PATH,
  type CatalogEntry,
  type CatalogLimits,
  CatalogParser,
  compareWithCatalog,
  LIMIT_HINT,
  MAX_ARCHIVE_MEMBERS,
  MAX_ARCHIVE_PATH_BYTES,
  matchesCatalog,
  memberFieldsOf,
  type ObservedMember,
} from "../archive/catalog.js";
import { display } from "../archive/display.js";
import { MAX_ARCHIVE_HOLE_BYTES, SparseContent, sparseDataSize } from "../archive/sparse.js";
import type { TarHeader } from "../archive/tar-format.js";
import { sha256Hex } from "../crypto/digest.js";
import { IntegrityError } from "../errors.js";
import { LinkTracker, refuse } from "./member-safety.js";
import { type DroppedModes, ModePolicy, outsidePathsOf, placementProblem } from "./restore-policy.js";
import { NEEDS_INPUT, readBody, type TarBody, type TarReadEntry, TarReader } from "./tar-reader.js";

export interface MemberSink {
  /**
   * Receives a safe member; gives the sha256 of a regular file's body, at once when it can (see NEEDS_INPUT), or
   * a promise of it, or a LaterDigest. The body is consumed when the result (or the promise) is there. A body part
   * must not be kept once the next one is asked for (with releaseConsumed, its memory is freed then).
   * A hard link is handed over only once every file before it is finished (its LaterDigest settled).
   */
  member(
    header: TarHeader,
    body: TarBody,
  ): string | undefined | LaterDigest | Promise<string | undefined | LaterDigest>;
  /**
   * False for a member the sink only reads and hashes, not writes (a partial restore, member-selection.ts): the mode
   * rule is then not applied to it, nor reported as dropped. Asked just before member(); absent: every member is
   * written.
   */
  writes?(header: TarHeader): boolean;
}

/**
 * The digest of a file whose body the sink has taken in full but is still writing (on a writer thread): the reader
 * goes on to the next members meanwhile, so that several files are written at once, and the digest joins the
 * file's catalog check when it comes (always before the catalog is compared).
 */
export class LaterDigest {
  constructor(readonly digest: Promise<string>) {}
}

/**
 * Files taken in and still being written. Bounded, so that a failure (a full disk) stops the reading soon and the
 * writers' backlogs stay what they are; the first failure is what the restore fails with.
 */
class FilesBeingWritten {
  private readonly writing = new Set<Promise<void>>();
  private failed = false;
  private failure: unknown;

  constructor(private readonly limit: number) {}

  /** Tracks a later digest; waits while `limit` files are being written. */
  async add(later: LaterDigest, onDigest: (sha256: string) => void): Promise<void> {
    const done: Promise<void> = later.digest
      .then(onDigest, (error: unknown) => {
        if (!this.failed) {
          this.failed = true;
          this.failure = error;
        }
      })
      .finally(() => this.writing.delete(done));
    this.writing.add(done);
    while (this.writing.size >= this.limit) await Promise.race(this.writing);
    this.check();
  }

  /** Throws the first failure of a file written so far. */
  check(): void {
    if (this.failed) throw this.failure;
  }

  /** Waits until every file is written; throws the first failure. */
  async settled(): Promise<void> {
    while (this.writing.size > 0) await Promise.race(this.writing);
    this.check();
  }
}

/** Files being written at once: two writer threads' worth with one queued on each (see StagingSink). */
const MAX_FILES_BEING_WRITTEN = 4;

export interface ExtractProgress {
  bytes: number;
  members: number;
}

export interface ExtractOutcome {
  readonly meta: Record<string, unknown>;
  readonly catalog: Map<string, CatalogEntry>;
  readonly members: number;
  readonly bytes: number;
  /** Members whose setuid/setgid/sticky/world-writable bits were not written (see restore-policy.ts). */
  readonly droppedModes: DroppedModes;
}

const MAX_META_BYTES = 1 << 20;
/** 512 MiB of catalog is some five million members: far beyond any Looker home, small enough to hold. */
const MAX_CATALOG_BYTES = 512 << 20;

export interface ExtractOptions {
  /** The plaintext's chunks are handed over and freed once parsed and written (see TarReadLimits). */
  readonly releaseConsumed?: boolean;
  /** Write setuid, setgid, sticky and world-writable bits as the archive has them (dropped by default). */
  readonly keepPrivilegedModes?: boolean;
  /** Lower limits than the defaults (MAX_ARCHIVE_MEMBERS and friends), for tests. */
  readonly limits?: { readonly members?: number; readonly pathBytes?: number; readonly treePaths?: number };
}

export async function extractMembers(
  plaintext: AsyncIterable<Buffer> | Readable,
  sink: MemberSink,
  onProgress?: (progress: ExtractProgress) => void,
  options: ExtractOptions = {},
): Promise<ExtractOutcome> {
  const maxMembers = options.limits?.members ?? MAX_ARCHIVE_MEMBERS;
  const maxPathBytes = options.limits?.pathBytes ?? MAX_ARCHIVE_PATH_BYTES;
  const tracker = new LinkTracker(undefined, options.limits?.treePaths);
  let members = 0;
  let pathBytes = 0;
  let holeBytes = 0;
  const modes = new ModePolicy(options.keepPrivilegedModes ?? false);
  let outsidePaths: string[] | undefined;
  const observed: (ObservedMember | undefined)[] = [];
  // Digests by path, for hard links: built at the first hard link only, as most archives have none and at
  // 100,000 files the map was ~10 MB held to the end.
  let fileDigests: Map<string, string> | undefined;
  const inOrder = new InOrderCheck(observed);
  let meta: Record<string, unknown> | undefined;
  let catalog: Map<string, CatalogEntry> | undefined;
  let bytes = 0;
  const tar = new TarReader(plaintext, { releaseConsumed: options.releaseConsumed });
  const writing = new FilesBeingWritten(MAX_FILES_BEING_WRITTEN);
  let finished = false;
  try {
    for (let entry = await nextEntry(tar); entry !== undefined; entry = await nextEntry(tar)) {
      const { header, body } = entry;
      if (catalog !== undefined) {
        throw new IntegrityError(
          `member ${display(header.path)} follows the catalog, which must be the last member`,
        );
      }
      // Each member's path is held until the catalog has matched it (see InOrderCheck): bound them all. The catalog
      // itself is one more member, and its own limits are the same (see CatalogParser).
      if (++members > maxMembers + 1) {
        throw new IntegrityError(`the archive has more than ${maxMembers} members, the limit`, LIMIT_HINT);
      }
      pathBytes += Buffer.byteLength(header.path) + Buffer.byteLength(header.linkTarget ?? "");
      if (pathBytes > maxPathBytes) {
        throw new IntegrityError(
          `the archive's member paths exceed the limit of ${maxPathBytes} bytes in all (at member ${members})`,
          LIMIT_HINT,
        );
      }
      if (header.sparse !== undefined) {
        // Holes cost no bytes of archive but are hashed as zeros (see MAX_ARCHIVE_HOLE_BYTES): bound them all.
        holeBytes += header.size - sparseDataSize(header.sparse);
        if (holeBytes > MAX_ARCHIVE_HOLE_BYTES) {
          throw new IntegrityError(
            `the archive's sparse files hold more than ${MAX_ARCHIVE_HOLE_BYTES} bytes of holes, the limit (at member ${display(header.path)})`,
            LIMIT_HINT,
          );
        }
      }
      tracker.admit(header);
      // backup.json decides what else may be placed (its outside paths): every member must come after it.
      if (members === 1 && header.path !== BACKUP_META_PATH) {
        refuse(header.path, `the first member must be ${BACKUP_META_PATH}, as looker-backup writes it`);
      }
      const problem = placementProblem(header, outsidePaths);
      if (problem !== undefined) refuse(header.path, problem);
      writing.check();
      if (header.path === CATALOG_PATH) {
        // Every file's digest is in before the catalog is matched against the members.
        await writing.settled();
        catalog = await parseCatalogBody(body, header.size, (listed) => inOrder.offer(listed), {
          maxEntries: maxMembers,
          maxPathBytes,
        });
        continue;
      }
      let sha256: string | undefined;
      let later: LaterDigest | undefined;
      if (header.path === BACKUP_META_PATH) {
        const content = await readBody(body, MAX_META_BYTES);
        meta = parseMeta(content);
        outsidePaths = outsidePathsOf(meta);
        sha256 = sha256Hex(content);
      } else {
        // A hard link's target must be on disk, and its digest known, before the link is made.
        if (header.type === "hardlink") await writing.settled();
        // The sink writes the mode restore allows; the catalog is compared with the archive's own header below.
        const written = sink.writes?.(header) ?? true;
        let digest = sink.member(written ? modes.apply(header, display) : header, body);
        if (digest instanceof Promise) digest = await digest;
        if (digest instanceof LaterDigest) later = digest;
        else sha256 = digest;
      }
      if (header.type === "file" && sha256 !== undefined) fileDigests?.set(header.path, sha256);
      if (header.type === "hardlink" && header.linkTarget !== undefined) {
        fileDigests ??= digestsByPath(observed);
        sha256 = fileDigests.get(header.linkTarget);
      }
      const member = observation(header, sha256);
      observed.push(member);
      if (later !== undefined) {
        await writing.add(later, (digest) => {
          member.sha256 = digest;
          fileDigests?.set(member.path, digest);
        });
      }
      bytes += header.size;
      onProgress?.({ bytes, members: observed.length });
    }
    await tar.finish();
    await writing.settled();
    finished = true;
  } finally {
    if (!finished) await tar.release();
  }
  if (meta === undefined) throw new IntegrityError(`the archive has no ${BACKUP_META_PATH}`, NOT_OURS_HINT);
  if (catalog === undefined) {
    throw new IntegrityError(
      `the archive has no ${CATALOG_PATH}: it is truncated or not a looker-backup archive`,
      NOT_OURS_HINT,
    );
  }
  compareWithCatalog(catalog, inOrder.rest(), inOrder.matched);
  return { meta, catalog, members: observed.length, bytes, droppedModes: modes.dropped() };
}

/** The next member; it waits only when the stream's bytes are not at hand (see NEEDS_INPUT). */
function nextEntry(tar: TarReader): TarReadEntry | undefined | Promise<TarReadEntry | undefined> {
  const entry = tar.nextBuffered();
  return entry === NEEDS_INPUT ? tar.next() : entry;
}

async function parseCatalogBody(
  body: AsyncIterable<Buffer>,
  size: number,
  onEntry: (entry: CatalogEntry) => void,
  limits: CatalogLimits,
): Promise<Map<string, CatalogEntry>> {
  if (size > MAX_CATALOG_BYTES) throw new IntegrityError(`member body exceeds ${MAX_CATALOG_BYTES} bytes`);
  const parser = new CatalogParser(onEntry, limits);
  for await (const part of body) parser.push(part);
  return parser.end();
}

function digestsByPath(observed: readonly (ObservedMember | undefined)[]): Map<string, string> {
  const digests = new Map<string, string>();
  for (const member of observed) {
    if (member?.type === "file" && member.sha256 !== undefined) digests.set(member.path, member.sha256);
  }
  return digests;
}

/**
 * Our archives list members in the order they are stored, so most members are checked as the catalog is parsed
 * and let go at once: at 100,000 files, every observation held next to the parsed catalog was ~25 MB more at the
 * very end of a restore. Matching stops at the first member that is out of order or differs in any way;
 * compareWithCatalog then checks the rest, as it checks everything, and reports the error.
 */
class InOrderCheck {
  matched = 0;
  private stopped = false;

  constructor(private readonly observed: (ObservedMember | undefined)[]) {}

  offer(entry: CatalogEntry): void {
    if (this.stopped) return;
    const member = this.observed[this.matched];
    if (member === undefined || member.path !== entry.path || !matchesCatalog(entry, member)) {
      this.stopped = true;
      return;
    }
    this.observed[this.matched] = undefined;
    this.matched++;
  }

  /** The members not matched in order, for compareWithCatalog. */
  rest(): ObservedMember[] {
    return this.observed.slice(this.matched) as ObservedMember[];
  }
}

const NOT_OURS_HINT =
  "restore from a complete archive written by looker-backup (or one with the same layout)";

function parseMeta(content: Buffer): Record<string, unknown> {
  try {
    const value = JSON.parse(content.toString("utf8")) as unknown;
    if (typeof value === "object" && value !== null && !Array.isArray(value))
      return value as Record<string, unknown>;
  } catch {
    // fall through to the integrity error below
  }
  throw new IntegrityError(`${BACKUP_META_PATH} is not a JSON object`, NOT_OURS_HINT);
}

function observation(header: TarHeader, sha256: string | undefined): ObservedMember {
  const member = memberFieldsOf(header);
  if (sha256 !== undefined) member.sha256 = sha256;
  return member;
}

/** Hashes bodies without writing anything: `verify`. */
export class VerifySink implements MemberSink {
  member(header: TarHeader, body: TarBody): string | undefined | Promise<string> {
    if (header.type !== "file") return undefined;
    if (header.sparse !== undefined) return hashSparse(header, body);
    const whole = body.takeBuffered();
    return whole !== undefined ? sha256Hex(whole) : hashParts(body);
  }
}

/** A sparse file's digest is of its whole content, holes as zeros, as the catalog lists it. */
async function hashSparse(header: TarHeader, body: AsyncIterable<Buffer>): Promise<string> {
  const content = new SparseContent(header.sparse!, header.size);
  for await (const part of body) content.add(part);
  return content.digest();
}

async function hashParts(body: AsyncIterable<Buffer>): Promise<string> {
  const digest = createHash("sha256");
  for await (const part of body) digest.update(part);
  return digest.digest("hex");
}
