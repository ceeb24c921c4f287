/**
 * An archive's catalog and backup.json, for ls, find, diff, show and verify: from the catalog sidecar beside it when
 * there is one (a small file, read in moments), else from the archive itself, read to its end with every member
 * verified (the catalog is its last member). And the sidecar itself, stored after a backup.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { CatalogEntry } from "../archive/catalog.js";
import {
  describeDifference,
  type SidecarContent,
  SidecarParser,
  sidecarDifference,
  sidecarText,
} from "../archive/catalog-sidecar.js";
import { createAgeDecryptStream, createAgeEncryptStream } from "../crypto/age.js";
import { CancelledError } from "../errors.js";
import type { ExtractProgress } from "../extract/extract.js";
import { untilAborted } from "../runtime/abort.js";
import { catalogNameFor } from "../store/archive-name.js";
import type { Store, StoredObject } from "../store/store.js";
import { type DecryptionKeys, verifyArchive } from "./restore.js";

/** What an archive lists, and where that was read. */
export interface ArchiveCatalog {
  readonly source: "sidecar" | "archive";
  readonly meta: Record<string, unknown>;
  /** Every member, meta/backup.json included, in the archive's order. */
  readonly catalog: ReadonlyMap<string, CatalogEntry>;
}

export interface CatalogRead extends ArchiveCatalog {
  /** The sidecar beside the archive, when there is one (read or not). */
  readonly sidecar: string | undefined;
  /** The sidecar could not be read, or disagrees with the archive. */
  readonly warnings: string[];
}

export interface CatalogReadOptions {
  /** Read the archive even when a sidecar is there, and compare the two. */
  readonly fromArchive?: boolean;
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: ExtractProgress) => void;
  /** Told before each read: of the sidecar (its path), or of the archive (with the sidecar's path, if any). */
  readonly onReading?: (source: ArchiveCatalog["source"], sidecar: string | undefined) => void;
}

/**
 * Writes `<instance>-<time>.catalog.age` to the store, encrypted to the archive's recipients (or passphrase), and
 * commits it. Streamed: the catalog of a large home is tens of MB as text.
 */
export async function storeCatalogSidecar(
  store: Store,
  archiveName: string,
  meta: Record<string, unknown>,
  catalog: readonly CatalogEntry[],
  encryption: { readonly recipients: readonly string[]; readonly passphrase?: string | undefined },
): Promise<StoredObject> {
  const name = catalogNameFor(archiveName);
  if (name === undefined) throw new Error(`${archiveName} is not an archive name`);
  const pending = await store.create(name);
  try {
    await pipeline(
      Readable.from(sidecarText(archiveName, meta, catalog)),
      createAgeEncryptStream({ recipients: [...encryption.recipients], passphrase: encryption.passphrase }),
      pending.stream,
    );
    return await pending.commit();
  } catch (error) {
    await pending.abort();
    throw error;
  }
}

/** The sidecar stored beside an archive file, when there is one. */
export async function sidecarBeside(archive: string): Promise<string | undefined> {
  const name = catalogNameFor(basename(archive));
  if (name === undefined) return undefined;
  const path = join(dirname(archive), name);
  const info = await stat(path).catch(() => undefined);
  return info?.isFile() ? path : undefined;
}

/** Decrypts and parses a sidecar; a damaged or foreign one is an IntegrityError. */
export async function readCatalogSidecar(
  path: string,
  keys: DecryptionKeys,
  signal?: AbortSignal,
): Promise<SidecarContent> {
  const parser = new SidecarParser();
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      try {
        parser.push(chunk);
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
  });
  try {
    await untilAborted(
      pipeline(
        createReadStream(path),
        createAgeDecryptStream({ identities: [...keys.identities], passphrase: keys.passphrase }),
        sink,
        signal ? { signal } : {},
      ),
      signal,
    );
  } catch (error) {
    if (signal?.aborted) throw new CancelledError();
    throw error;
  }
  return parser.end();
}

/** Reads the archive to its end, verifying every member as verify does, for its catalog and backup.json. */
export async function readCatalogFromArchive(
  archive: string,
  keys: DecryptionKeys,
  options: Pick<CatalogReadOptions, "signal" | "onProgress"> = {},
): Promise<ArchiveCatalog> {
  const outcome = await verifyArchive(
    createReadStream(archive, { highWaterMark: 1 << 20 }),
    keys,
    options.onProgress,
    options.signal ? { signal: options.signal } : {},
  );
  return { source: "archive", meta: outcome.meta, catalog: outcome.catalog };
}

/**
 * The catalog of an archive: the sidecar's when there is one and it reads, else the archive's own. Reading the
 * archive while a sidecar is there (fromArchive) compares the two, and a disagreement is a warning.
 */
export async function readArchiveCatalog(
  archive: string,
  keys: DecryptionKeys,
  options: CatalogReadOptions = {},
): Promise<CatalogRead> {
  const sidecar = await sidecarBeside(archive);
  const warnings: string[] = [];
  if (sidecar !== undefined && !options.fromArchive) {
    try {
      options.onReading?.("sidecar", sidecar);
      const content = await readCatalogSidecar(sidecar, keys, options.signal);
      return { source: "sidecar", meta: content.header.backup, catalog: content.catalog, sidecar, warnings };
    } catch (error) {
      if (error instanceof CancelledError) throw error;
      warnings.push(
        `the catalog sidecar ${sidecar} cannot be read (${(error as Error).message}); the archive itself was read`,
      );
    }
  }
  options.onReading?.("archive", sidecar);
  const read = await readCatalogFromArchive(archive, keys, options);
  if (sidecar !== undefined && options.fromArchive) {
    const disagreement = await checkSidecar(sidecar, read, keys, options.signal);
    if (disagreement !== undefined) warnings.push(disagreement);
  }
  return { ...read, sidecar, warnings };
}

/**
 * The warning for a sidecar that cannot be read or says something else than the archive (already read and verified),
 * or undefined when it agrees. The archive wins: restore and verify use only its own catalog.
 */
export async function checkSidecar(
  sidecar: string,
  archive: Pick<ArchiveCatalog, "meta" | "catalog">,
  keys: DecryptionKeys,
  signal?: AbortSignal,
): Promise<string | undefined> {
  let content: SidecarContent;
  try {
    content = await readCatalogSidecar(sidecar, keys, signal);
  } catch (error) {
    if (error instanceof CancelledError) throw error;
    return `the catalog sidecar ${sidecar} cannot be read (${(error as Error).message}); the archive's own catalog is the one that counts`;
  }
  const difference = sidecarDifference(archive, content);
  if (difference === undefined) return undefined;
  return (
    `the catalog sidecar ${sidecar} disagrees with the archive: ${describeDifference(difference)}; the archive wins ` +
    "(its own catalog is verified and is what restore uses): the sidecar was altered or belongs to another archive, " +
    "so delete it (ls, find, diff and show then read the archive)"
  );
}
