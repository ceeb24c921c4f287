/**
 * The backup pipeline, shared by the action, the CLI and the tests:
 * selection -> pax tar (hashing every file) -> zstd -> age -> store, with the ciphertext digest taken on the way
 * out. Nothing becomes visible in the store unless every stage succeeded; older archives are pruned only after.
 */
import { existsSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { CatalogEntry } from "../archive/catalog.js";
import { WorkerDigester } from "../archive/file-digests.js";
import { ArchivePacker, type ExtraMember, type PackProgress } from "../archive/pack.js";
import { readXattrIndex, type XattrMode } from "../archive/xattr-index.js";
import { BlockPool, createZstdCompressStream, DEFAULT_ZSTD_BLOCK_SIZE } from "../compress/zstd-compress.js";
import { createAgeEncryptStream } from "../crypto/age.js";
import { createSha256PassThrough } from "../crypto/digest.js";
import { SIGNATURE_NAMESPACE, type SigningKey } from "../crypto/ssh-keys.js";
import { signDigest } from "../crypto/sshsig.js";
import { DEFAULT_COMPRESSION_LEVEL } from "../defaults.js";
import { ExitCode, LookerBackupError } from "../errors.js";
import type { LookerStartOptions } from "../looker/start-config.js";
import { defaultManifest, MYSQL_BACKEND_MARKER } from "../manifest/default-manifest.js";
import type { Manifest } from "../manifest/rules.js";
import {
  type SelectedEntry,
  type SelectionMeasure,
  type SelectionSummary,
  streamSelection,
} from "../manifest/select.js";
import { applyUserManifest, type BackendChoice, loadUserManifest } from "../manifest/user-manifest.js";
import { untilAborted } from "../runtime/abort.js";
import { archiveName, signatureNameFor } from "../store/archive-name.js";
import { pruneRefusal, prunes } from "../store/retention.js";
import type { PendingObject, RetentionPolicy, Store, StoredObject } from "../store/store.js";
import { TOOL_VERSION } from "../version.js";
import { storeCatalogSidecar } from "./archive-catalog.js";

/**
 * What one backup is made of, field by field (like restic's archiver.Options): the selection already resolved by the
 * caller, and of the secrets only the ones the archive itself needs (the age passphrase, the signing key). Node
 * connections, the MySQL login and the CMK belong to the job around Looker and never reach this far.
 */
export interface BackupRequest {
  readonly home: string;
  readonly instance: string;
  readonly recipients: readonly string[];
  readonly passphrase?: string;
  /** What to read: resolved once per backup by the caller (resolveSelection), before Looker is touched. */
  readonly selection: ResolvedManifest;
  readonly compressionLevel?: number;
  readonly store: Store;
  readonly retention?: RetentionPolicy;
  /** Facts about the Looker side recorded in meta/backup.json (consistency mode, keystore-independent, backup_uid). */
  readonly lookerMeta?: Record<string, unknown>;
  readonly extraMembers?: () => Promise<readonly ExtraMember[]>;
  /** Home-relative directories read from a copy (see SelectOptions.substitutes). */
  readonly substitutes?: ReadonlyMap<string, string>;
  /**
   * Signs the archive (its ciphertext, as stored) in OpenSSH's SSHSIG format; the signature is stored as
   * `<archive>.sig` beside it, so a restore can tell this backup side's archives from ones anyone with the public
   * age recipient could make.
   */
  readonly signingKey?: SigningKey;
  /** Small files stored beside the archive (the encrypted key file), committed right after it. */
  readonly companions?: (archiveName: string) => readonly Companion[];
  /**
   * Called with the finished catalog before the archive is made visible; returning false discards it (the action's
   * skip-if-unchanged). Nothing is stored and older archives stay as they are.
   */
  readonly shouldCommit?: (catalog: readonly CatalogEntry[], archiveName: string) => Promise<boolean>;
  /**
   * The selection's bytes as the preflight measured them (BackupSelection.measured): the progress total until the
   * walk that is read has ended, which knows its own (files are read while the home is still listed).
   */
  readonly expectedBytes?: number;
  /** bytesTotal: the files' bytes (expectedBytes, then the walk's own sum) plus the extra members' once known. */
  readonly onProgress?: (progress: PackProgress & { bytesTotal?: number }) => void;
  /** Told each phase as it begins: "reading", then "storing" (a directory) or "uploading", then "pruning". */
  readonly onPhase?: (phase: string) => void;
  /** Extended attributes: archived where getfattr is installed (auto, the default), required, or skipped. */
  readonly xattrs?: XattrMode;
  readonly signal?: AbortSignal;
  readonly now?: () => Date;
}

export interface Companion {
  readonly name: string;
  readonly content: Buffer;
}

export interface BackupResult {
  /** The stored archive; undefined when shouldCommit declined it. */
  readonly archive: StoredObject | undefined;
  readonly archiveName: string;
  readonly catalog: readonly CatalogEntry[];
  readonly companions: StoredObject[];
  /**
   * The stored `<instance>-<time>.catalog.age` (archive/catalog-sidecar.ts); undefined when shouldCommit declined the
   * archive or the sidecar could not be stored (a warning then says so: the archive is complete without it).
   */
  readonly catalogSidecar: StoredObject | undefined;
  /** The stored `<archive>.sig`; undefined without a signing key or when shouldCommit declined the archive. */
  readonly signature: StoredObject | undefined;
  readonly sha256: string;
  readonly files: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly warnings: string[];
  /** What the user should know that is not a fault (extended attributes not read without getfattr). */
  readonly notices: string[];
  readonly selection: SelectionSummary;
  readonly pruned: string[];
  readonly startedAt: Date;
  readonly durationMs: number;
  readonly exitCode: ExitCode;
}

/** The effective manifest and the backend it was resolved for (the archive's meta names the backend). */
export interface ResolvedManifest {
  readonly manifest: Manifest;
  readonly mysqlBackend: boolean;
}

/** What a backup reads and from which backend: resolved once, before Looker is touched, and passed on as a value. */
export interface BackupSelection extends ResolvedManifest {
  /** The MySQL backend's connection file from Looker's start options (`-d F`); default looker/looker-db.yml. */
  readonly dbConfigFile?: string;
  /**
   * The selection as the preflight measured it, before Looker was touched (manifest/select.ts measureSelection): the
   * bytes the backup's progress counts against, and the exclusions its summary reports (the numbers plan gives).
   */
  readonly measured?: SelectionMeasure;
}

/** The user's say in the selection (the manifest input, extra SSL files, the backend). */
export interface SelectionSettings {
  readonly home: string;
  readonly manifestFile?: string;
  readonly sslFiles?: readonly string[];
  readonly backend?: BackendChoice;
}

/** Resolves the effective manifest: Looker's defaults for this backend, with the user's manifest laid over them. */
export async function resolveManifest(
  request: SelectionSettings & { sharedStorageDir?: string; dbConfigFile?: string },
): Promise<ResolvedManifest> {
  const user = request.manifestFile ? await loadUserManifest(request.manifestFile) : undefined;
  const choice = request.backend && request.backend !== "auto" ? request.backend : (user?.backend ?? "auto");
  const mysqlBackend =
    choice === "auto"
      ? request.dbConfigFile !== undefined || existsSync(join(request.home, MYSQL_BACKEND_MARKER))
      : choice === "mysql";
  const defaults = defaultManifest({
    mysqlBackend,
    sslFiles: request.sslFiles ?? [],
    ...(request.sharedStorageDir ? { sharedStorageDir: request.sharedStorageDir } : {}),
  });
  return { manifest: applyUserManifest(defaults, user), mysqlBackend };
}

/**
 * The selection of a backup from the user's settings and Looker's start options, which can make the backend MySQL
 * (`-d F`) or add a cluster's shared storage as a required path. The backup's preflight calls this once; everything
 * after it takes the result.
 */
export async function resolveSelection(
  settings: SelectionSettings,
  startOptions: LookerStartOptions | undefined,
): Promise<BackupSelection> {
  const sharedStorageDir = startOptions?.sharedStorageDir;
  const dbConfigFile = startOptions?.dbConfigFile;
  const resolved = await resolveManifest({
    home: settings.home,
    ...(settings.manifestFile ? { manifestFile: settings.manifestFile } : {}),
    ...(settings.sslFiles ? { sslFiles: settings.sslFiles } : {}),
    ...(settings.backend ? { backend: settings.backend } : {}),
    ...(sharedStorageDir ? { sharedStorageDir } : {}),
    ...(dbConfigFile ? { dbConfigFile } : {}),
  });
  return { ...resolved, ...(dbConfigFile ? { dbConfigFile } : {}) };
}

export async function runBackup(request: BackupRequest): Promise<BackupResult> {
  const now = request.now ?? (() => new Date());
  const startedAt = now();
  const { manifest, mysqlBackend } = request.selection;
  const xattrs = await readXattrIndex(xattrRoots(request, manifest), request.xattrs ?? "auto");
  const selection = streamSelection({ home: request.home, manifest, substitutes: request.substitutes });
  const listing = new ListingTotal(selection.batches);
  // The extra members (the MySQL dump) add their sizes to the progress total once they are known.
  let extraBytes = 0;
  const produceExtra = request.extraMembers;
  const extraMembers =
    produceExtra &&
    (async () => {
      const members = await produceExtra();
      extraBytes = members.reduce((sum, member) => sum + member.size, 0);
      return members;
    });
  const bytesTotal = () => {
    const files = listing.bytes ?? request.expectedBytes;
    return files === undefined ? undefined : files + extraBytes;
  };
  const name = archiveName(request.instance, startedAt);
  // The packer reads files straight into the compressor's blocks, which come back to the pool once compressed
  // and hashed. Shared memory lets the zstd threads and the digest thread read a block at the same time.
  const blocks = new BlockPool(DEFAULT_ZSTD_BLOCK_SIZE, { maxSpare: 4, shared: true });
  const meta = backupMeta(request, startedAt, manifest, mysqlBackend);
  const packer = new ArchivePacker({
    entries: listing.batches(),
    meta,
    extraMembers,
    onProgress: request.onProgress && ((p) => request.onProgress?.({ ...p, bytesTotal: bytesTotal() })),
    signal: request.signal,
    allocateChunk: () => blocks.take(),
    createDigester: (listener) => new WorkerDigester(listener, blocks),
    fileBlockSize: blocks.blockSize, // big files' whole blocks are read by the zstd threads (file-block.ts)
    xattrs: xattrs.index,
  });
  const pending = await request.store.create(name);
  request.onPhase?.("reading");
  // The ciphertext as it leaves for the store: its digest and size are what the user later checks a download by,
  // and its sha512 is what the signature signs.
  const measure = createSha256PassThrough({ sha512: request.signingKey !== undefined });
  try {
    const piping = pipeline(
      Readable.from(packer.stream(), { objectMode: true, highWaterMark: 1 }),
      createZstdCompressStream({
        level: request.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL,
        pool: blocks,
        fileBlocks: true,
      }),
      createAgeEncryptStream({
        recipients: [...request.recipients],
        passphrase: request.passphrase,
        releaseInput: true, // the zstd stream hands each frame over
      }),
      measure,
      pending.stream,
      { signal: request.signal },
    );
    await untilAborted(piping, request.signal);
  } catch (error) {
    await pending.abort();
    throw error;
  }
  const packed = packer.result();
  const commit = (await request.shouldCommit?.(packed.catalog, name)) ?? true;
  if (!commit) await pending.abort();
  if (commit) request.onPhase?.(request.store.kind === "artifact" ? "uploading" : "storing");
  const { archive, signature } = commit
    ? await commitSigned(
        request.store,
        pending,
        name,
        request.signingKey && signatureOf(request.signingKey, measure.sha512()),
      )
    : { archive: undefined, signature: undefined };
  const companions = commit ? await storeCompanions(request.store, request.companions?.(name) ?? []) : [];
  const sidecar = commit ? await sidecarAfter(request, name, meta, packed.catalog) : undefined;
  if (commit && request.retention && prunes(request.retention)) request.onPhase?.("pruning");
  const { pruned, refusal } =
    commit && request.retention
      ? await pruneAfter(request.store, request.instance, request.retention, now())
      : { pruned: [], refusal: undefined };
  const warnings = [
    ...(sidecar?.warning ? [sidecar.warning] : []),
    ...(refusal ? [refusal] : []),
    ...xattrs.warnings,
    ...selection.summary.skipped.map((s) => `${s.path}: ${s.reason}`),
    ...packed.warnings,
  ];
  return {
    archive,
    archiveName: name,
    catalog: packed.catalog,
    companions,
    catalogSidecar: sidecar?.stored,
    signature,
    sha256: measure.digest(),
    files: packed.catalog.length,
    bytesIn: packed.bytesIn,
    bytesOut: measure.bytes,
    warnings,
    notices: xattrs.notices,
    selection: selection.summary,
    pruned,
    startedAt,
    durationMs: now().getTime() - startedAt.getTime(),
    exitCode: warnings.length > 0 ? ExitCode.Warnings : ExitCode.Ok,
  };
}

/**
 * Where extended attributes are read: the home as the selection names it, the copies read in place of parts of it,
 * and the outside paths that exist (a missing optional one is no fault of getfattr's).
 */
function xattrRoots(request: BackupRequest, manifest: Manifest): string[] {
  const roots = [join(request.home, "."), ...(request.substitutes?.values() ?? [])];
  for (const outside of manifest.outside) if (existsSync(outside.path)) roots.push(outside.path);
  return roots;
}

/**
 * Stores the catalog sidecar once the archive is committed. The archive is complete without it (ls, find, diff and
 * show then read the archive itself), so a sidecar that cannot be stored is a warning, never a failed backup.
 */
async function sidecarAfter(
  request: BackupRequest,
  archiveName: string,
  meta: Record<string, unknown>,
  catalog: readonly CatalogEntry[],
): Promise<{ stored?: StoredObject; warning?: string }> {
  try {
    return { stored: await storeCatalogSidecar(request.store, archiveName, meta, catalog, request) };
  } catch (error) {
    return {
      warning: `${archiveName} was stored, but its catalog sidecar could not be: ${(error as Error).message} (ls, find, diff and show read the archive itself instead)`,
    };
  }
}

/** Prunes after a stored backup, unless the sanity check (retention.ts pruneRefusal) says it must not. */
async function pruneAfter(
  store: Store,
  instance: string,
  retention: RetentionPolicy,
  now: Date,
): Promise<{ pruned: string[]; refusal: string | undefined }> {
  if (!prunes(retention)) return { pruned: [], refusal: undefined };
  const refusal = pruneRefusal(await store.list(instance), retention);
  if (refusal !== undefined) return { pruned: [], refusal };
  return { pruned: await store.prune(instance, retention, now), refusal: undefined };
}

/** Passes the listing through, adding up the bytes of its files; the sum is known once the listing has ended. */
class ListingTotal {
  private sum = 0;
  private ended = false;

  constructor(private readonly source: AsyncIterable<readonly SelectedEntry[]>) {}

  async *batches(): AsyncGenerator<readonly SelectedEntry[]> {
    for await (const batch of this.source) {
      for (const entry of batch) if (entry.type === "file") this.sum += entry.stats.size;
      yield batch;
    }
    this.ended = true;
  }

  get bytes(): number | undefined {
    return this.ended ? this.sum : undefined;
  }
}

function signatureOf(key: SigningKey, sha512: Buffer): Buffer {
  return Buffer.from(signDigest(key, SIGNATURE_NAMESPACE, sha512), "utf8");
}

/**
 * Commits the archive and then its signature. The signature is written (not yet visible) before the archive is
 * committed, so a store that cannot take it fails the backup while nothing is visible; it becomes visible only after
 * the archive did, so no signature is ever stored for an archive that was not.
 */
async function commitSigned(
  store: Store,
  pending: PendingObject,
  name: string,
  signature: Buffer | undefined,
): Promise<{ archive: StoredObject; signature: StoredObject | undefined }> {
  let signing: PendingObject | undefined;
  try {
    if (signature) signing = await writePending(store, signatureNameFor(name), signature);
  } catch (error) {
    await pending.abort();
    throw error;
  }
  let archive: StoredObject;
  try {
    archive = await pending.commit();
  } catch (error) {
    await signing?.abort();
    throw error;
  }
  if (!signing) return { archive, signature: undefined };
  try {
    return { archive, signature: await signing.commit() };
  } catch (error) {
    await signing.abort();
    throw new LookerBackupError(
      `${name} was stored, but its signature ${signatureNameFor(name)} could not be: ${(error as Error).message}`,
      {
        cause: error,
        hint: "a restore that checks signatures refuses this archive; run the backup again",
      },
    );
  }
}

/** A store object with `content` written but not committed; aborted if the write fails. */
async function writePending(store: Store, name: string, content: Buffer): Promise<PendingObject> {
  const pending = await store.create(name);
  try {
    await new Promise<void>((resolve, reject) =>
      pending.stream.end(content, (e?: Error | null) => (e ? reject(e) : resolve())),
    );
    return pending;
  } catch (error) {
    await pending.abort();
    throw error;
  }
}

async function storeCompanions(store: Store, companions: readonly Companion[]): Promise<StoredObject[]> {
  const stored: StoredObject[] = [];
  for (const companion of companions) {
    const pending = await writePending(store, companion.name, companion.content);
    try {
      stored.push(await pending.commit());
    } catch (error) {
      await pending.abort();
      throw error;
    }
  }
  return stored;
}

function backupMeta(
  request: BackupRequest,
  startedAt: Date,
  manifest: Manifest,
  mysqlBackend: boolean,
): Record<string, unknown> {
  return {
    format: "looker-backup/1",
    tool: { name: "looker-backup", version: TOOL_VERSION },
    instance: request.instance,
    host: hostname(),
    home: request.home,
    startedAt: startedAt.toISOString(),
    backend: mysqlBackend ? "mysql" : "internal",
    consistency: "live",
    keystoreIndependent: false,
    ...request.lookerMeta,
    manifest: {
      rules: manifest.rules.map(({ id, action, pattern, required, reason }) => ({
        id,
        action,
        pattern,
        required,
        reason,
      })),
      outside: manifest.outside.map(({ id, path, required, reason }) => ({ id, path, required, reason })),
    },
  };
}
