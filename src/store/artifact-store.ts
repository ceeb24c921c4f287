/**
 * The GitHub Actions artifact store, on the real @actions/artifact client.
 * Each object is one artifact holding one file as-is (`skipArchive`: no zip, no re-compression of ciphertext).
 * Uploads go through a private temp file because the client uploads files, not streams; downloads land in a private
 * temp dir and are checked against the sha256 the service recorded at upload before a single byte is handed on.
 *
 * Environment: the client reads ACTIONS_RUNTIME_TOKEN / ACTIONS_RESULTS_URL when called, but @actions/github (used
 * for `findBy`, i.e. other runs) fixes its API base URL from GITHUB_API_URL when first imported. On a runner both
 * are set before the process starts; a test that sets process.env must do so before importing this module.
 */

import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { mkdtemp, open, readdir, rm, stat } from "node:fs/promises";
import os from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { finished } from "node:stream/promises";
import {
  type Artifact,
  type ArtifactClient,
  DefaultArtifactClient,
  type FindOptions,
} from "@actions/artifact";
import { sha256File } from "../crypto/digest.js";
import { DEFAULT_RETENTION_DAYS } from "../defaults.js";
import { InputError, IntegrityError, LookerBackupError } from "../errors.js";
import { parseArchiveName } from "./archive-name.js";
import { rateLimitErrorOf } from "./rate-limit.js";
import type { PendingObject, Store, StoredObject } from "./store.js";

/** Another workflow run to read from (GitHub REST API; the token needs `actions: read`). */
export type ArtifactFindBy = NonNullable<FindOptions["findBy"]>;

export interface RetryOptions {
  /** Attempts in all, first included. Default 3. */
  readonly attempts?: number;
  /** Delay before the second attempt; doubles each time. Default 2000 ms. */
  readonly baseDelayMs?: number;
}

export interface ArtifactStoreOptions {
  /**
   * Days GitHub keeps each artifact; GitHub's retention is this store's pruning. Default 30; 0 means the
   * repository's own default (the client then sends no retention at all).
   */
  readonly retentionDays?: number;
  /** Read (list/open) the artifacts of another run instead of the current one; such a store cannot upload. */
  readonly findBy?: ArtifactFindBy;
  /** Where private temp dirs go. Default RUNNER_TEMP, else the OS temp dir. */
  readonly tempRoot?: string;
  readonly retry?: RetryOptions;
  /** The artifact client; the real DefaultArtifactClient unless a caller has its own. */
  readonly client?: ArtifactClient;
}

/** A stored artifact: `location` is `artifact <id>`; `digest` is the service's sha256 (hex) of the bytes. */
export interface ArtifactObject extends StoredObject {
  readonly artifactId: number;
  readonly digest: string | undefined;
}

export interface ArtifactPendingObject extends PendingObject {
  commit(): Promise<ArtifactObject>;
}

/** What to check when GitHub refuses (401/403/404) to show a run's artifacts. */
export const ACCESS_HINT =
  "the token needs `actions: read` on the repository (workflow `permissions: actions: read`, or a token with access to " +
  "the repository's Actions); also check the owner, repository, workflow and run id";

/**
 * Why this runner cannot upload artifacts, or undefined when it can: the client needs ACTIONS_RUNTIME_TOKEN and
 * ACTIONS_RESULTS_URL (set by the runner for each job), and refuses GitHub Enterprise Server, whose artifact service
 * it does not speak (the same host test as @actions/artifact's isGhes).
 */
export function artifactServiceUnavailable(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const server = env["GITHUB_SERVER_URL"] || "https://github.com";
  let host: string;
  try {
    host = new URL(server).hostname.toUpperCase();
  } catch {
    host = server.toUpperCase();
  }
  if (host !== "GITHUB.COM" && !host.endsWith(".GHE.COM") && !host.endsWith(".LOCALHOST")) {
    return `${host.toLowerCase()} is GitHub Enterprise Server, whose artifact service @actions/artifact does not support`;
  }
  if (!env["ACTIONS_RUNTIME_TOKEN"] || !env["ACTIONS_RESULTS_URL"]) {
    return "ACTIONS_RUNTIME_TOKEN or ACTIONS_RESULTS_URL is not set (not a GitHub Actions job step)";
  }
  return undefined;
}

export class ArtifactStore implements Store {
  readonly kind = "artifact";
  /** The most recent successful upload of this store (the pipeline's outputs: id, name, size, digest). */
  lastUpload: ArtifactObject | undefined;
  private readonly uploads = new Map<string, ArtifactObject>();
  private readonly client: ArtifactClient;
  private readonly retentionDays: number;

  constructor(private readonly options: ArtifactStoreOptions = {}) {
    this.client = options.client ?? new DefaultArtifactClient();
    this.retentionDays = options.retentionDays ?? DEFAULT_RETENTION_DAYS;
    if (!Number.isInteger(this.retentionDays) || this.retentionDays < 0 || this.retentionDays > 400) {
      throw new InputError(
        `retention-days: ${this.retentionDays} is not a whole number of days from 0 (the repository's default) to 400`,
        "GitHub keeps artifacts 1-90 days in public repositories, up to 400 in private ones (the repository's limit caps it)",
      );
    }
  }

  async create(name: string): Promise<ArtifactPendingObject> {
    assertPlainName(name);
    const findBy = this.options.findBy;
    if (findBy) {
      throw new LookerBackupError(
        `refusing to upload ${name}: this artifact store reads run ${findBy.workflowRunId} of ${findBy.repositoryOwner}/${findBy.repositoryName}`,
      );
    }
    // The client names a skipArchive artifact after the file, so the file must carry the final name; the private
    // 0700 dir (mkdtemp) keeps concurrent backups and other users apart.
    const dir = await mkdtemp(join(this.tempRoot(), "looker-backup-upload-"));
    const path = join(dir, name);
    const stream = createWriteStream(path, { flags: "wx", mode: 0o600, highWaterMark: 1 << 20 });
    let settled = false;
    const removeTemp = () => rm(dir, { recursive: true, force: true });
    // The file exists (0600) once create() resolves, and a file that cannot be made fails here, not mid-backup.
    await once(stream, "open").catch(async (error: unknown) => {
      await removeTemp();
      throw error;
    });
    return {
      stream,
      commit: async () => {
        if (settled) throw new LookerBackupError(`artifact ${name} was already committed or aborted`);
        settled = true;
        try {
          if (!stream.writableFinished) await finished(stream);
          const size = (await stat(path)).size;
          const upload = await withRetry(
            `upload of artifact ${name}`,
            () =>
              this.client.uploadArtifact(name, [path], dir, {
                ...(this.retentionDays > 0 ? { retentionDays: this.retentionDays } : {}),
                skipArchive: true,
              }),
            this.options.retry,
          );
          if (upload.id === undefined)
            throw new LookerBackupError(`artifact service returned no id for ${name}`);
          const stored: ArtifactObject = {
            name,
            size,
            location: `artifact ${upload.id}`,
            createdAt: parseArchiveName(name)?.createdAt ?? new Date(),
            artifactId: upload.id,
            digest: normalizeDigest(upload.digest),
          };
          this.lastUpload = stored;
          this.uploads.set(name, stored);
          return stored;
        } finally {
          await removeTemp();
        }
      },
      abort: async () => {
        if (settled) return;
        settled = true;
        // A write still in flight fails with ERR_STREAM_DESTROYED once the stream is gone; the bytes are being
        // thrown away, so that error is expected and must not surface as an uncaught exception.
        stream.on("error", () => {});
        stream.destroy();
        await removeTemp();
      },
    };
  }

  /** The artifact id of an object this store uploaded (the action's `artifact-id` output), else undefined. */
  artifactIdOf(name: string): number | undefined {
    return this.uploads.get(name)?.artifactId;
  }

  async list(instance?: string): Promise<ArtifactObject[]> {
    const { artifacts } = await withRetry(
      "listing artifacts",
      () => this.client.listArtifacts({ latest: true, ...this.findOptions() }),
      this.options.retry,
    );
    const archives: ArtifactObject[] = [];
    for (const artifact of artifacts) {
      const parsed = parseArchiveName(artifact.name);
      if (!parsed || (instance !== undefined && parsed.instance !== instance)) continue;
      archives.push({ ...objectOf(artifact), createdAt: parsed.createdAt });
    }
    return archives.sort(
      (a, b) => b.createdAt.getTime() - a.createdAt.getTime() || b.artifactId - a.artifactId,
    );
  }

  /**
   * Downloads the artifact named `name` (the newest one of that name) and returns its bytes only once their sha256
   * matches what the service recorded at upload: an altered artifact is an IntegrityError before anything is read.
   */
  async open(name: string): Promise<Readable> {
    assertPlainName(name);
    const artifact = await this.find(name);
    const expected = normalizeDigest(artifact.digest);
    if (expected === undefined) {
      throw new IntegrityError(
        `artifact ${name} (id ${artifact.id}) has no recorded sha256 digest, so it cannot be verified`,
        "restore from a backup uploaded by looker-backup (it records a digest), or download it by hand and check it",
      );
    }
    const dir = await mkdtemp(join(this.tempRoot(), "looker-backup-download-"));
    try {
      const result = await withRetry(
        `download of artifact ${name}`,
        () =>
          this.client.downloadArtifact(artifact.id, {
            path: dir,
            skipDecompress: true,
            expectedHash: `sha256:${expected}`,
            ...this.findOptions(),
          }),
        this.options.retry,
      );
      const file = await theDownloadedFile(dir, name);
      const actual = await sha256File(file);
      if (result.digestMismatch || actual !== expected) {
        throw new IntegrityError(
          `artifact ${name} (id ${artifact.id}) was altered after upload: its sha256 is ${actual}, the artifact service recorded ${expected}`,
          "do not restore from it; restore an earlier backup and find out who can write to this repository's artifacts",
        );
      }
      // Open, then delete: the open descriptor keeps the verified bytes readable and nothing lingers on disk.
      const handle = await open(file, "r");
      await rm(dir, { recursive: true, force: true });
      return handle.createReadStream({ highWaterMark: 1 << 20 });
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  /** Whether an artifact named `name` exists (in the run this store reads), e.g. an archive's key file. */
  async has(name: string): Promise<boolean> {
    assertPlainName(name);
    try {
      await this.find(name);
      return true;
    } catch (error) {
      if (error instanceof InputError && isArtifactNotFound(error.cause)) return false;
      throw error;
    }
  }

  /**
   * GitHub deletes artifacts when their retention-days pass. The keep- rules reach across workflow runs, which this
   * store (one run, on the runner's token) cannot: the backup action applies them after the backup through the REST
   * API with github-token (artifact-prune.ts).
   */
  async prune(): Promise<string[]> {
    return [];
  }

  private async find(name: string): Promise<Artifact> {
    try {
      const { artifact } = await withRetry(
        `lookup of artifact ${name}`,
        () => this.client.getArtifact(name, this.findOptions()),
        this.options.retry,
      );
      return artifact;
    } catch (error) {
      if (isArtifactNotFound(error)) {
        throw new InputError(
          `no artifact named ${name} in ${this.describeRun()}`,
          "list the run's backups with `looker-backup list`, or check the run id and that the artifact has not expired",
          error,
        );
      }
      throw error;
    }
  }

  private findOptions(): FindOptions {
    return this.options.findBy ? { findBy: this.options.findBy } : {};
  }

  private describeRun(): string {
    const findBy = this.options.findBy;
    return findBy
      ? `run ${findBy.workflowRunId} of ${findBy.repositoryOwner}/${findBy.repositoryName}`
      : "the current workflow run";
  }

  private tempRoot(): string {
    return this.options.tempRoot ?? (process.env["RUNNER_TEMP"] || os.tmpdir());
  }
}

function objectOf(artifact: Artifact): ArtifactObject {
  return {
    name: artifact.name,
    size: artifact.size,
    location: `artifact ${artifact.id}`,
    createdAt: artifact.createdAt ?? new Date(0),
    artifactId: artifact.id,
    digest: normalizeDigest(artifact.digest),
  };
}

/** `sha256:<hex>` (the service's form) or bare hex (the upload's) -> lower-case hex; anything else -> undefined. */
export function normalizeDigest(digest: string | undefined | null): string | undefined {
  if (!digest) return undefined;
  const hex = digest.startsWith("sha256:") ? digest.slice("sha256:".length) : digest;
  return /^[0-9a-fA-F]{64}$/.test(hex) ? hex.toLowerCase() : undefined;
}

// ---- retries -----------------------------------------------------------------------------------------------------

const TRANSIENT_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
]);
// The artifact client wraps its errors in plain Errors, keeping only the text: "Unable to make request: ECONNRESET"
// (a NetworkError) or "Failed request: (503) ..." after its own retries.
const TRANSIENT_MESSAGE =
  /Unable to make request: E[A-Z]+|Failed request: \((?:5\d\d|429)\)|Upload progress stalled|socket hang up/i;

/** Network failures and 5xx/429/408 answers are worth another try; anything else (4xx, bad input) is not. */
export function isTransientError(error: unknown, depth = 0): boolean {
  if (!(error instanceof Error) || depth > 5) return false;
  if (error instanceof LookerBackupError) return false;
  const code = (error as Error & { code?: unknown }).code;
  if (typeof code === "string" && TRANSIENT_CODES.has(code)) return true;
  const httpStatus = httpStatusOf(error);
  if (httpStatus !== undefined) return httpStatus >= 500 || httpStatus === 429 || httpStatus === 408;
  if (TRANSIENT_MESSAGE.test(error.message)) return true;
  return isTransientError(error.cause, depth + 1);
}

/**
 * Runs `operation` up to `attempts` times, backing off exponentially, while it fails transiently. A permanent
 * failure, or the last transient one, becomes a LookerBackupError saying what failed, with the cause attached.
 * LookerBackupErrors (already classified: bad input, integrity) pass through untouched.
 */
export async function withRetry<T>(
  what: string,
  operation: () => Promise<T>,
  options: RetryOptions = {},
): Promise<T> {
  const attempts = Math.max(1, options.attempts ?? 3);
  const baseDelayMs = options.baseDelayMs ?? 2000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation();
    } catch (error) {
      if (error instanceof LookerBackupError || isArtifactNotFound(error)) throw error;
      // Checked before the permission statuses: a rate limit is a 403 too, and waiting, not access, fixes it.
      const limited = rateLimitErrorOf(error, `${what} failed: ${firstLine(error)}`);
      if (limited) throw limited;
      const status = httpStatusOf(error);
      if (status === 401 || status === 403 || status === 404) {
        throw new InputError(`${what} failed: ${firstLine(error)}`, ACCESS_HINT, error);
      }
      const transient = isTransientError(error);
      if (!transient || attempt >= attempts) {
        throw new LookerBackupError(
          `${what} failed${transient ? ` after ${attempt} attempts` : ""}: ${firstLine(error)}`,
          {
            cause: error,
            hint: transient
              ? "GitHub's artifact service did not answer; re-run the job, and check https://www.githubstatus.com"
              : undefined,
          },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, baseDelayMs * 2 ** (attempt - 1)));
    }
  }
}

/** The HTTP status an error carries (octokit's `status`, Azure's `statusCode`), if any. */
function httpStatusOf(error: unknown): number | undefined {
  if (!(error instanceof Error)) return undefined;
  const { statusCode, status } = error as Error & { statusCode?: unknown; status?: unknown };
  const value = typeof statusCode === "number" ? statusCode : typeof status === "number" ? status : undefined;
  return value !== undefined && value > 0 ? value : undefined;
}

function isArtifactNotFound(error: unknown): boolean {
  return error instanceof Error && error.name === "ArtifactNotFoundError";
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split("\n", 1)[0] ?? message;
}

// ---- files -------------------------------------------------------------------------------------------------------

function assertPlainName(name: string): void {
  if (name === "" || name.includes("/") || name.includes("\\") || name.startsWith(".")) {
    throw new LookerBackupError(`refusing artifact name '${name}'`);
  }
}

/** The client names a raw download after the service's Content-Disposition; accept any single regular file. */
async function theDownloadedFile(dir: string, name: string): Promise<string> {
  const entries = await readdir(dir, { withFileTypes: true });
  const files = entries.filter((entry) => entry.isFile());
  if (files.length !== 1 || entries.length !== 1) {
    throw new IntegrityError(
      `download of artifact ${name} produced ${entries.length} entries instead of one file`,
      "the artifact is not a single-file looker-backup upload; check its name",
    );
  }
  return join(dir, files[0]!.name);
}
