/**
 * Restore and verify. Restore is staged: everything is decrypted, checked and written into a private directory
 * beside the target, verified against the catalog, and only then moved into place: the rootfs files and the MySQL
 * dumps first (placement.ts), the home last; a failure anywhere up to the home swap undoes the placed files. Any
 * failure removes the staging directory and leaves the target, the rootfs and the dumps' directory as they were.
 */
import { ReadStream } from "node:fs";
import { rm } from "node:fs/promises";
import { resolve } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createZstdDecompressStream } from "../compress/zstd-decompress.js";
import { createAgeDecryptStream } from "../crypto/age.js";
import { CancelledError, InputError, LookerBackupError } from "../errors.js";
import {
  type ExtractOptions,
  type ExtractOutcome,
  type ExtractProgress,
  extractMembers,
  type MemberSink,
  VerifySink,
} from "../extract/extract.js";
import { MemberSelection, type RestoredCount, SelectingSink } from "../extract/member-selection.js";
import { droppedModesWarning } from "../extract/restore-policy.js";
import { StagingSink } from "../extract/staging-sink.js";
import { untilAborted } from "../runtime/abort.js";
import { DigestCheck, type SignedDigest } from "./authenticity.js";
import { Placement, stagedRoot } from "./placement.js";
import { lockTarget } from "./restore-lock.js";
import { inspectTarget, makeStaging, removeStaleStaging, swapIntoPlace } from "./target-swap.js";

export interface DecryptionKeys {
  readonly identities: readonly string[];
  readonly passphrase?: string;
}

/** What the archive's checked signature covers (authenticity.ts): the bytes read must hash to it. */
export interface ReadOptions extends ExtractOptions {
  readonly signed?: SignedDigest;
  /** SIGINT/SIGTERM: stops reading at once; the caller's clean-up (staging) runs as on any failure. */
  readonly signal?: AbortSignal;
}

/** What restoreArchive and restoreInto share: the archive, its keys, and how it is read into staging. */
export interface StagingRequest {
  readonly source: Readable;
  readonly keys: DecryptionKeys;
  /**
   * Partial restore (member-selection.ts): only the members these patterns select are written, the whole archive is
   * still read and checked.
   */
  readonly include?: readonly string[];
  readonly exclude?: readonly string[];
  /** Write setuid, setgid, sticky and world-writable bits as archived (by default they are dropped, with a warning). */
  readonly keepPrivilegedModes?: boolean;
  /** Set the extended attributes the archive holds (the default); false leaves them out. */
  readonly xattrs?: boolean;
  /** The digest the archive's checked signature covers; the restore fails before placing anything if it differs. */
  readonly signed?: SignedDigest;
  readonly onProgress?: (progress: ExtractProgress) => void;
  /** Told each phase as it begins: "reading" the archive (once the target was checked), then "placing". */
  readonly onPhase?: (phase: string) => void;
  /** Cancels the restore: exit 130, staging removed, the target untouched. */
  readonly signal?: AbortSignal;
  readonly now?: () => Date;
}

export interface RestoreRequest extends StagingRequest {
  /** The home; a partial restore goes into a new or empty one only (the swap would remove the rest of a home). */
  readonly target: string;
  /** Where `rootfs/` members go (e.g. `/` on a rebuilt host); they are not restored when absent. */
  readonly rootfs?: string;
  /** Where `mysql/` dumps go; default: `<target>.mysql` beside the target, when the archive has any. */
  readonly mysqlDir?: string;
  readonly force?: boolean;
}

export interface RestoreResult {
  readonly target: string;
  readonly previousContent?: string;
  /** Members and bytes read and checked against the catalog: the whole archive, for a partial restore too. */
  readonly members: number;
  readonly bytes: number;
  /** What was written (a partial restore writes the selected members and their parent directories only). */
  readonly restored: RestoredCount;
  readonly meta: Record<string, unknown>;
  readonly rootfsFiles: string[];
  /** The archive's files from outside the home that were not placed because no --rootfs was given. */
  readonly rootfsSkipped: string[];
  readonly mysqlDumps: string[];
  /** Dropped mode bits, leftovers that could not be removed after success: nothing that failed the restore. */
  readonly warnings: string[];
}

/** Decrypts and decompresses, then runs every member through the sink with the safety checks and the catalog. */
export async function readArchive(
  source: Readable,
  keys: DecryptionKeys,
  sink: MemberSink,
  onProgress?: (progress: ExtractProgress) => void,
  { signed, signal, ...options }: ReadOptions = {},
): Promise<ExtractOutcome> {
  if (signal?.aborted) throw new CancelledError();
  const plaintext = new PassThrough({ highWaterMark: 1 << 20 });
  const decrypt = createAgeDecryptStream({
    identities: [...keys.identities],
    passphrase: keys.passphrase,
    // A file read stream allocates each chunk afresh and keeps none; other sources may reuse theirs.
    releaseInput: source instanceof ReadStream,
  });
  // The decryptor hands over each output batch; the decompressor copies it into a frame and frees it.
  const decompress = createZstdDecompressStream({ releaseInput: true });
  // With a checked signature, the bytes go through its digest on their way to the decryptor.
  const stages = signed
    ? [new DigestCheck(signed, "the archive"), decrypt, decompress]
    : [decrypt, decompress];
  // With the signal, an abort destroys every stage: the extractor sees its input fail and stops at once.
  const decoding = pipeline([source, ...stages, plaintext], signal ? { signal } : {});
  // The extractor sees upstream failures as a destroyed `plaintext`; the pipeline's own rejection is awaited below.
  decoding.catch(() => undefined);
  try {
    // Nothing else holds the decompressor's outputs: each is freed as soon as the tar reader is past it.
    const outcome = await untilAborted(
      extractMembers(plaintext, sink, onProgress, { ...options, releaseConsumed: true }),
      signal,
    );
    await untilAborted(decoding, signal);
    return outcome;
  } catch (error) {
    plaintext.destroy();
    source.destroy();
    if (signal?.aborted) throw new CancelledError();
    throw await rootCause(decoding, error);
  }
}

/**
 * Reads the archive into `staging` (see StagingSink), owners, modes and times included. Its writer threads have
 * stopped when this returns or throws, so the caller may move or remove the staging directory at once.
 */
export async function extractToStaging(
  source: Readable,
  keys: DecryptionKeys,
  staging: string,
  onProgress?: (progress: ExtractProgress) => void,
  options: Pick<ReadOptions, "keepPrivilegedModes" | "signed" | "signal"> & {
    readonly xattrs?: boolean;
    /** Writes only the members it selects; the others are read and hashed all the same (see SelectingSink). */
    readonly selection?: MemberSelection;
  } = {},
): Promise<ExtractOutcome & { readonly warnings: string[]; readonly restored?: RestoredCount }> {
  const { xattrs, selection, ...readOptions } = options;
  const sink = new StagingSink(staging, { xattrs: xattrs ?? true });
  const selecting = selection && new SelectingSink(sink, selection);
  try {
    const outcome = await readArchive(source, keys, selecting ?? sink, onProgress, readOptions);
    const warnings = await sink.applyMetadata();
    return { ...outcome, warnings, ...(selecting ? { restored: selecting.restored } : {}) };
  } finally {
    await sink.close();
  }
}

/**
 * When decryption or decompression failed, the tar reader only saw its input end early; the upstream error is the
 * true cause (e.g. "no identity matched"). A typed error from the extractor itself is already the cause.
 */
async function rootCause(decoding: Promise<void>, error: unknown): Promise<unknown> {
  if (error instanceof LookerBackupError) return error;
  const upstream = await decoding.then(
    () => undefined,
    (e: unknown) => e,
  );
  return upstream instanceof LookerBackupError ? upstream : error;
}

/** Runs every check restore runs (the mode rule included: `droppedModes` is what restore would drop). */
export async function verifyArchive(
  source: Readable,
  keys: DecryptionKeys,
  onProgress?: (p: ExtractProgress) => void,
  options: Pick<ReadOptions, "keepPrivilegedModes" | "signed" | "signal"> = {},
) {
  return readArchive(source, keys, new VerifySink(), onProgress, options);
}

/**
 * Reads the archive into `staging`, every member checked against the catalog, and the selection's patterns checked
 * against what it held; adds the restore's warnings (dropped modes, attributes) to `warnings`. When this returns,
 * the restore may start placing; a cancel before then leaves everything outside `staging` as it was.
 */
export async function stageVerified(
  request: StagingRequest,
  staging: string,
  selection: MemberSelection,
  warnings: string[],
): Promise<{ readonly outcome: ExtractOutcome; readonly restored: RestoredCount }> {
  request.onPhase?.("reading");
  const outcome = await extractToStaging(request.source, request.keys, staging, request.onProgress, {
    keepPrivilegedModes: request.keepPrivilegedModes ?? false,
    xattrs: request.xattrs ?? true,
    // A full restore keeps its sink as it was: every member written, nothing to decide per member.
    ...(selection.partial ? { selection } : {}),
    ...(request.signed ? { signed: request.signed } : {}),
    ...(request.signal ? { signal: request.signal } : {}),
  });
  // The whole archive matched its catalog; an include that matched nothing fails here, before any placing.
  const restored = outcome.restored ?? {
    members: outcome.members,
    bytes: outcome.bytes,
    selected: outcome.members,
  };
  if (selection.partial) warnings.push(...selection.check(restored.selected));
  // Past this point the restore is placed as one unit; a cancel before it leaves the target as it was.
  if (request.signal?.aborted) throw new CancelledError();
  const dropped = droppedModesWarning(outcome.droppedModes, "dropped");
  if (dropped !== undefined) warnings.push(dropped);
  warnings.push(...outcome.warnings);
  request.onPhase?.("placing");
  return { outcome, restored };
}

export async function restoreArchive(request: RestoreRequest): Promise<RestoreResult> {
  const target = resolve(request.target);
  const now = request.now ?? (() => new Date());
  const selection = new MemberSelection(request);
  const lock = await lockTarget(target);
  const warnings: string[] = [];
  try {
    // Holding the lock, nothing else restores this target: a staging directory here is an interrupted restore's.
    for (const stale of await removeStaleStaging(target)) {
      warnings.push(`removed ${stale}, the staging directory of an interrupted restore of this target`);
    }
    const targetState = await inspectTarget(target);
    if (targetState === "non-empty" && selection.partial) {
      // --force would not help: the swap puts the staged home in the target's place, and a partial one would
      // take every file that is not selected away from a running home.
      throw new InputError(
        `target ${target} is not empty, and a partial restore (--include/--exclude) does not replace a home: everything not selected would be gone from it`,
        "add the selected members to it with --into DIR instead of --target (existing paths are kept unless --force), or restore into a new or empty directory",
      );
    }
    if (targetState === "non-empty" && !request.force) {
      throw new InputError(
        `target ${target} is not empty`,
        "restore into an empty or new directory, or pass --force to keep the current content as <target>.pre-restore-<time>",
      );
    }
    const { staging, inside } = await makeStaging(target, targetState);
    let succeeded = false;
    try {
      const { outcome, restored } = await stageVerified(request, staging, selection, warnings);
      // Every check runs before anything outside the staging directory changes (see placement.ts).
      request.onPhase?.("placing");
      const stagedHome = await stagedRoot(staging, "home", { create: true });
      const placement = new Placement();
      try {
        if (request.rootfs)
          await placement.planRootfs(await stagedRoot(staging, "rootfs"), resolve(request.rootfs));
        await placement.planMysql(await stagedRoot(staging, "mysql"), request.mysqlDir ?? `${target}.mysql`);
        await placement.prepare();
        await placement.commit();
        const previousContent = await swapIntoPlace(stagedHome, target, targetState, now(), inside);
        succeeded = true;
        warnings.push(...(await placement.finish()));
        return {
          target,
          ...(previousContent === undefined ? {} : { previousContent }),
          members: outcome.members,
          bytes: outcome.bytes,
          restored,
          meta: outcome.meta,
          rootfsFiles: placement.placed("rootfs"),
          rootfsSkipped: request.rootfs
            ? []
            : outsideFiles(outcome.catalog).filter((path) => selection.selects(`rootfs${path}`)),
          mysqlDumps: placement.placed("mysql"),
          warnings,
        };
      } catch (error) {
        if (!succeeded) await placement.rollBack();
        throw error;
      }
    } finally {
      // After success the restore is complete and a leftover staging directory only untidy: a warning. After a
      // failure, that failure is what the caller must see, not a second one from the clean-up.
      await rm(staging, { recursive: true, force: true }).catch((error: Error) => {
        warnings.push(`could not remove the staging directory ${staging}: ${error.message}`);
      });
    }
  } finally {
    await lock.release(warnings);
  }
}

/** The archive's files and symlinks from outside the home, as absolute paths. */
function outsideFiles(catalog: ReadonlyMap<string, { readonly type: string }>): string[] {
  const files: string[] = [];
  for (const [path, entry] of catalog) {
    if (path.startsWith("rootfs/") && entry.type !== "directory")
      files.push(`/${path.slice("rootfs/".length)}`);
  }
  return files;
}
