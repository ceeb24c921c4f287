/**
 * Restore and verify. Restore is staged: everything is decrypted, checked and written into a private directory
 * beside the target, verified against the catalog, and only then moved into place. Any failure before the move
 * removes the staging directory and leaves the target exactly as it was.
 */
import { ReadStream } from "node:fs";
import { cp, mkdir, mkdtemp, readdir, rename, rm, rmdir, stat } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import {
  type ExtractOutcome,
  type ExtractProgress,
  extractMembers,
  type MemberSink,
  VerifySink,
} from "../archive/extract.js";
import { StagingSink } from "../archive/staging-sink.js";
import { createZstdDecompressStream } from "../compress/zstd.js";
import { createAgeDecryptStream } from "../crypto/age.js";
import { InputError, LookerBackupError } from "../errors.js";

export interface DecryptionKeys {
  readonly identities: readonly string[];
  readonly passphrase?: string;
}

export interface RestoreRequest {
  readonly source: Readable;
  readonly keys: DecryptionKeys;
  readonly target: string;
  /** Where `rootfs/` members go (e.g. `/` on a rebuilt host); they are not restored when absent. */
  readonly rootfs?: string;
  /** Where `mysql/` dumps go; default: `<target>.mysql` beside the target, when the archive has any. */
  readonly mysqlDir?: string;
  readonly force?: boolean;
  readonly onProgress?: (progress: ExtractProgress) => void;
  readonly now?: () => Date;
}

export interface RestoreResult {
  readonly target: string;
  readonly previousContent?: string;
  readonly members: number;
  readonly bytes: number;
  readonly meta: Record<string, unknown>;
  readonly rootfsFiles: string[];
  readonly mysqlDumps: string[];
}

/** Decrypts and decompresses, then runs every member through the sink with the safety checks and the catalog. */
export async function readArchive(
  source: Readable,
  keys: DecryptionKeys,
  sink: MemberSink,
  onProgress?: (progress: ExtractProgress) => void,
): Promise<ExtractOutcome> {
  const plaintext = new PassThrough({ highWaterMark: 1 << 20 });
  const decoding = pipeline(
    source,
    createAgeDecryptStream({
      identities: [...keys.identities],
      passphrase: keys.passphrase,
      // A file read stream allocates each chunk afresh and keeps none; other sources may reuse theirs.
      releaseInput: source instanceof ReadStream,
    }),
    // The decryptor hands over each output batch; the decompressor copies it into a frame and frees it.
    createZstdDecompressStream({ releaseInput: true }),
    plaintext,
  );
  // The extractor sees upstream failures as a destroyed `plaintext`; the pipeline's own rejection is awaited below.
  decoding.catch(() => undefined);
  try {
    // Nothing else holds the decompressor's outputs: each is freed as soon as the tar reader is past it.
    const outcome = await extractMembers(plaintext, sink, onProgress, { releaseConsumed: true });
    await decoding;
    return outcome;
  } catch (error) {
    plaintext.destroy();
    source.destroy();
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
): Promise<ExtractOutcome> {
  const sink = new StagingSink(staging);
  try {
    const outcome = await readArchive(source, keys, sink, onProgress);
    await sink.applyMetadata();
    return outcome;
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

export async function verifyArchive(
  source: Readable,
  keys: DecryptionKeys,
  onProgress?: (p: ExtractProgress) => void,
) {
  return readArchive(source, keys, new VerifySink(), onProgress);
}

export async function restoreArchive(request: RestoreRequest): Promise<RestoreResult> {
  const target = resolve(request.target);
  const now = request.now ?? (() => new Date());
  const targetState = await inspectTarget(target);
  if (targetState === "non-empty" && !request.force) {
    throw new InputError(
      `target ${target} is not empty`,
      "restore into an empty or new directory, or pass --force to keep the current content as <target>.pre-restore-<time>",
    );
  }
  await mkdir(dirname(target), { recursive: true });
  const staging = await mkdtemp(join(dirname(target), `.${basename(target)}.restore-`));
  try {
    const outcome = await extractToStaging(request.source, request.keys, staging, request.onProgress);
    const stagedHome = join(staging, "home");
    await mkdir(stagedHome, { recursive: true });
    const rootfsFiles = request.rootfs
      ? await placeRootfs(join(staging, "rootfs"), resolve(request.rootfs))
      : [];
    const mysqlDumps = await placeMysqlDumps(join(staging, "mysql"), request.mysqlDir ?? `${target}.mysql`);
    const previousContent = await swapIntoPlace(stagedHome, target, targetState, now());
    return {
      target,
      ...(previousContent === undefined ? {} : { previousContent }),
      members: outcome.members,
      bytes: outcome.bytes,
      meta: outcome.meta,
      rootfsFiles,
      mysqlDumps,
    };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

type TargetState = "missing" | "empty" | "non-empty";

async function inspectTarget(target: string): Promise<TargetState> {
  try {
    const info = await stat(target);
    if (!info.isDirectory()) {
      throw new InputError(
        `target ${target} exists and is not a directory`,
        "choose a directory as --target",
      );
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return "missing";
    throw error;
  }
  return (await readdir(target)).length === 0 ? "empty" : "non-empty";
}

/** Two renames on one filesystem; if the second fails, the first is undone so the target is as it was. */
async function swapIntoPlace(
  staged: string,
  target: string,
  state: TargetState,
  at: Date,
): Promise<string | undefined> {
  if (state === "missing") {
    await rename(staged, target);
    return undefined;
  }
  if (state === "empty") {
    await rmdir(target);
    await rename(staged, target);
    return undefined;
  }
  const kept = `${target}.pre-restore-${at
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}Z$/, "Z")}`;
  await rename(target, kept);
  try {
    await rename(staged, target);
  } catch (error) {
    await rename(kept, target);
    throw error;
  }
  return kept;
}

/** Files from outside the home go back to their absolute paths under `rootfs`; each replaces what is there. */
async function placeRootfs(stagedRootfs: string, rootfs: string): Promise<string[]> {
  const placed: string[] = [];
  const entries = await readdir(stagedRootfs, { recursive: true, withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    if (entry.isDirectory()) continue;
    const source = join(entry.parentPath, entry.name);
    const relative = source.slice(stagedRootfs.length + 1);
    const destination = join(rootfs, relative);
    await mkdir(dirname(destination), { recursive: true });
    await moveAcrossFilesystems(source, destination);
    placed.push(destination);
  }
  return placed;
}

async function placeMysqlDumps(stagedMysql: string, mysqlDir: string): Promise<string[]> {
  const names = await readdir(stagedMysql).catch(() => [] as string[]);
  if (names.length === 0) return [];
  await mkdir(mysqlDir, { recursive: true, mode: 0o700 });
  const placed: string[] = [];
  for (const name of names) {
    const destination = join(mysqlDir, name);
    await moveAcrossFilesystems(join(stagedMysql, name), destination);
    placed.push(destination);
  }
  return placed;
}

/** rename() when on one filesystem; otherwise copy beside the destination first, then rename, so it is atomic there. */
async function moveAcrossFilesystems(source: string, destination: string): Promise<void> {
  try {
    await rename(source, destination);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EXDEV") throw error;
    const temporary = `${destination}.restore-tmp`;
    await cp(source, temporary, { preserveTimestamps: true, verbatimSymlinks: true });
    await rename(temporary, destination);
  }
}
