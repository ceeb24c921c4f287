/**
 * A local stand-in for GitHub's Actions back end, so the real @actions/artifact and @actions/cache clients run
 * unmodified in tests (in-process after setting process.env, or in a child process given `env`):
 * - the Twirp JSON results service at ACTIONS_RESULTS_URL (`/twirp/github.actions.results.api.v1.ArtifactService/*`
 *   and `.../CacheService/*`, the v2 cache service),
 * - the REST endpoints the cross-run lookups and the artifact store's retention use at GITHUB_API_URL
 *   (`/api/repos/...`: get a repository, list workflow runs with their `branch` and `status` filters, list a run's
 *   and a repository's artifacts, get, download and delete an artifact: docs.github.com/en/rest/actions/artifacts and
 *   .../actions/workflow-runs), paginated with `Link` headers, counted against a rate limit and answering with
 *   GitHub's `x-ratelimit-*` headers (docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api and
 *   .../rate-limits-for-the-rest-api), for any number of repositories, with tokens of three permissions (none,
 *   `actions: read`, `actions: write`),
 * - blobs in a real Azurite server, reached through real SAS URLs signed with Azurite's development account key.
 * Everything listens on 127.0.0.1 with kernel-picked ports. Requests are recorded so tests can assert what a client
 * sent (e.g. the retention's expires_at), and faults can be injected per method.
 */
import { createHash, randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { BlobSASPermissions, generateBlobSASQueryParameters, SASProtocol } from "@azure/storage-blob";
import { type Azurite, startAzurite } from "./azurite.js";

const ARTIFACT_SERVICE = "github.actions.results.api.v1.ArtifactService";
const CACHE_SERVICE = "github.actions.results.api.v1.CacheService";
const CONTAINER = "actions-results";
const API_PREFIX = "/api";
const SAS_LIFETIME_MS = 60 * 60 * 1000;

export interface RunOptions {
  /** Workflow file name (`backup.yml`); runs of the same file share a workflow id. Default `backup.yml`. */
  workflow?: string;
  /** The run's `head_branch`. Default the repository's default branch. */
  branch?: string;
  /** The triggering event. Default `workflow_dispatch`. */
  event?: string;
  /** `owner/name` of a repository added with addRepository. Default the service's own repository. */
  repository?: string;
  /** `success` (default), `failure`, ...; `null` leaves the run in progress. */
  conclusion?: string | null;
  createdAt?: Date;
}

export interface RunHandle {
  readonly runId: number;
  readonly workflowId: number;
  readonly runBackendId: string;
  readonly jobBackendId: string;
  /** An ACTIONS_RUNTIME_TOKEN whose scp claim names this run and job. */
  readonly runtimeToken: string;
  /** The service's env with ACTIONS_RUNTIME_TOKEN and GITHUB_RUN_ID of this run. */
  readonly env: Record<string, string>;
}

export interface ReceivedCall {
  /** `ArtifactService`, `CacheService` or `rest`. */
  readonly service: string;
  /**
   * The Twirp method (`CreateArtifact`) or the REST operation (`listWorkflowRuns`, `listRunArtifacts`,
   * `listRepoArtifacts`, `getArtifact`, `downloadArtifact`, `deleteArtifact`).
   */
  readonly method: string;
  readonly body: Record<string, unknown>;
}

/**
 * A reset drops the connection without a response (a network error to the client); a status answers with it, with
 * these headers added (on REST, over the usual rate-limit headers).
 */
export type Fault = "reset" | { status: number; message?: string; headers?: Record<string, string> };

/** GITHUB_TOKEN's primary limit: 1,000 REST requests per hour per repository (GitHub's REST rate-limit docs). */
export const REST_RATE_LIMIT = 1000;

/**
 * A used-up primary rate limit as GitHub answers it: 403 (or 429) with `x-ratelimit-remaining: 0` and the reset time in
 * UTC epoch seconds in `x-ratelimit-reset` ("Exceeding the primary rate limit").
 */
export function primaryRateLimitFault(resetAt: Date, status: 403 | 429 = 403): Fault {
  return {
    status,
    message: "API rate limit exceeded for installation ID 4242.",
    headers: {
      "x-ratelimit-limit": String(REST_RATE_LIMIT),
      "x-ratelimit-remaining": "0",
      "x-ratelimit-used": String(REST_RATE_LIMIT),
      "x-ratelimit-reset": String(Math.ceil(resetAt.getTime() / 1000)),
      "x-ratelimit-resource": "core",
    },
  };
}

/**
 * A secondary rate limit as GitHub answers it: 403 (or 429) whose message says so, with `retry-after` in seconds when
 * GitHub sends one; the primary limit's headers still show requests left ("Exceeding the secondary rate limits").
 */
export function secondaryRateLimitFault(
  retryAfterSeconds: number | undefined,
  status: 403 | 429 = 403,
): Fault {
  return {
    status,
    message:
      "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 0000:1111:2222:3333:4444.",
    headers: retryAfterSeconds === undefined ? {} : { "retry-after": String(retryAfterSeconds) },
  };
}

export interface ArtifactRecord {
  readonly id: number;
  readonly runId: number;
  readonly name: string;
  readonly blobName: string;
  readonly createdAt: Date;
  readonly expiresAt: string | undefined;
  readonly finalized: boolean;
  readonly size: number;
  /** `sha256:<hex>` as the client reported it at finalize (or as seeded). */
  readonly digest: string | undefined;
}

export interface ResultsService {
  /** Everything a client needs: ACTIONS_RESULTS_URL, ACTIONS_RUNTIME_TOKEN, ACTIONS_CACHE_SERVICE_V2, GITHUB_*. */
  readonly env: Record<string, string>;
  readonly currentRun: RunHandle;
  readonly owner: string;
  readonly repo: string;
  /** The service repository's default branch (`main` unless started with another). */
  readonly defaultBranch: string;
  /**
   * A REST token with `actions: read` (on every repository of the service, like a token of an org-wide app): it
   * lists and downloads, and deleting an artifact with it is refused with 403, as a GITHUB_TOKEN without
   * `actions: write` is.
   */
  readonly token: string;
  /** A REST token with `actions: write` (which includes read): it may also delete artifacts. */
  readonly writeToken: string;
  /** A REST token the API knows but refuses with 403 (a GITHUB_TOKEN without `actions: read`). */
  readonly forbiddenToken: string;
  /** Every Twirp and REST call received, in order. */
  readonly calls: readonly ReceivedCall[];
  callsTo(method: string): ReceivedCall[];
  /** Another repository (`owner/name`) the REST API knows, whose runs addRun can create. */
  addRepository(fullName: string, options?: { defaultBranch?: string }): void;
  /** A completed (by default successful) run of a workflow, for cross-run lookups. */
  addRun(options?: RunOptions): RunHandle;
  /** Stores bytes as a finalized artifact of a run directly (no client), with the digest the service would record. */
  seedArtifact(
    runId: number,
    name: string,
    bytes: Buffer,
    options?: { createdAt?: Date },
  ): Promise<ArtifactRecord>;
  /** Artifacts (finalized or not) known to the service, oldest first. */
  artifacts(): ArtifactRecord[];
  /** The unsigned blob URL of the newest artifact called `name` (in `runId` when given). */
  blobUrlOf(name: string, runId?: number): string;
  /** The stored bytes of the newest artifact called `name`. */
  readBlob(name: string, runId?: number): Promise<Buffer>;
  /** Overwrites the stored bytes of the newest artifact called `name`, keeping its recorded digest. */
  tamper(name: string, bytes: Buffer, runId?: number): Promise<void>;
  /** Lets the retention of the newest artifact called `name` run out: the REST API then reports it `expired`. */
  expire(name: string, runId?: number): void;
  /** The next `times` calls of `method` (Twirp method or REST operation name) get `fault` instead of an answer. */
  failNext(method: string, fault: Fault, times?: number): void;
  stop(): Promise<void>;
}

interface Repository {
  id: number;
  owner: string;
  name: string;
  defaultBranch: string;
}

interface Run {
  id: number;
  repository: Repository;
  branch: string;
  event: string;
  workflowId: number;
  workflowFile: string;
  backendId: string;
  jobBackendId: string;
  token: string;
  status: "completed" | "in_progress";
  conclusion: string | null;
  createdAt: Date;
}

interface StoredArtifact {
  id: number;
  run: Run;
  jobBackendId: string;
  name: string;
  blobName: string;
  createdAt: Date;
  expiresAt: string | undefined;
  finalized: boolean;
  size: number;
  digest: string | undefined;
}

interface CacheEntry {
  id: number;
  key: string;
  version: string;
  blobName: string;
  finalized: boolean;
  size: number;
  createdAt: Date;
}

class ServiceError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const TWIRP_CODES: Record<number, string> = {
  400: "invalid_argument",
  401: "unauthenticated",
  403: "permission_denied",
  404: "not_found",
  409: "already_exists",
  429: "resource_exhausted",
  500: "internal",
  502: "unavailable",
  503: "unavailable",
};

export async function startResultsService(
  options: { owner?: string; repo?: string; defaultBranch?: string } = {},
): Promise<ResultsService> {
  const azurite = await startAzurite();
  try {
    await azurite.service.getContainerClient(CONTAINER).createIfNotExists();
    return await startHttp(
      azurite,
      options.owner ?? "acme",
      options.repo ?? "looker-ops",
      options.defaultBranch ?? "main",
    );
  } catch (error) {
    await azurite.stop();
    throw error;
  }
}

async function startHttp(
  azurite: Azurite,
  owner: string,
  repo: string,
  defaultBranch: string,
): Promise<ResultsService> {
  const token = `ghs_${randomUUID().replaceAll("-", "")}`;
  const writeToken = `ghs_${randomUUID().replaceAll("-", "")}`;
  const forbiddenToken = `ghs_${randomUUID().replaceAll("-", "")}`;
  const runs: Run[] = [];
  const artifacts: StoredArtifact[] = [];
  const cacheEntries: CacheEntry[] = [];
  const calls: ReceivedCall[] = [];
  const faults = new Map<string, Fault[]>();
  /** Blob deletions of deleted artifacts, awaited before Azurite stops. */
  const deletedBlobs: Promise<unknown>[] = [];
  const workflowIds = new Map<string, number>();
  let nextRunId = 7_000_000_001;
  let nextArtifactId = 900_001;
  let nextCacheId = 501;
  const repositories = new Map<string, Repository>();
  const addRepository = (fullName: string, branch = "main"): Repository => {
    const [repoOwner, repoName, ...extra] = fullName.split("/");
    if (!repoOwner || !repoName || extra.length > 0)
      throw new Error(`results service: bad repository ${fullName}`);
    const repository = {
      id: 80_000_001 + repositories.size,
      owner: repoOwner,
      name: repoName,
      defaultBranch: branch,
    };
    repositories.set(fullName.toLowerCase(), repository);
    return repository;
  };
  const mainRepository = addRepository(`${owner}/${repo}`, defaultBranch);
  // The primary rate limit, per token and hour as GitHub counts it.
  const rateWindows = new Map<string, { resetAt: number; used: number }>();
  const container = azurite.service.getContainerClient(CONTAINER);

  const workflowIdOf = (file: string) => {
    let id = workflowIds.get(file);
    if (id === undefined) {
      id = 61_000_000 + workflowIds.size + 1;
      workflowIds.set(file, id);
    }
    return id;
  };

  const signedUrl = (blobName: string, permissions: string, downloadName?: string) => {
    const sas = generateBlobSASQueryParameters(
      {
        containerName: CONTAINER,
        blobName,
        permissions: BlobSASPermissions.parse(permissions),
        expiresOn: new Date(Date.now() + SAS_LIFETIME_MS),
        protocol: SASProtocol.HttpsAndHttp,
        // Like the real service: the download names the file, which the client uses for raw (non-zip) artifacts.
        contentDisposition:
          downloadName === undefined
            ? undefined
            : `attachment; filename="${downloadName}"; filename*=UTF-8''${encodeURIComponent(downloadName)}`,
      },
      azurite.credential,
    ).toString();
    return `${blobUrl(blobName)}?${sas}`;
  };
  const blobUrl = (blobName: string) =>
    `${azurite.blobEndpoint}/${CONTAINER}/${blobName.split("/").map(encodeURIComponent).join("/")}`;

  // ---- runs and artifacts -------------------------------------------------------------------------------------

  const handleOf = (run: Run, env: Record<string, string>): RunHandle => ({
    runId: run.id,
    workflowId: run.workflowId,
    runBackendId: run.backendId,
    jobBackendId: run.jobBackendId,
    runtimeToken: run.token,
    env: { ...env, ACTIONS_RUNTIME_TOKEN: run.token, GITHUB_RUN_ID: String(run.id) },
  });

  const createRun = (opts: RunOptions): Run => {
    const workflowFile = opts.workflow ?? "backup.yml";
    const backendId = randomUUID();
    const jobBackendId = randomUUID();
    const conclusion = opts.conclusion === undefined ? "success" : opts.conclusion;
    const repository =
      opts.repository === undefined ? mainRepository : repositories.get(opts.repository.toLowerCase());
    if (!repository) throw new Error(`results service: no repository ${opts.repository}`);
    const run: Run = {
      id: nextRunId++,
      repository,
      branch: opts.branch ?? repository.defaultBranch,
      event: opts.event ?? "workflow_dispatch",
      workflowId: workflowIdOf(workflowFile),
      workflowFile,
      backendId,
      jobBackendId,
      token: runtimeToken(backendId, jobBackendId),
      status: conclusion === null ? "in_progress" : "completed",
      conclusion,
      createdAt: opts.createdAt ?? new Date(),
    };
    runs.push(run);
    return run;
  };

  const newestArtifact = (name: string, runId?: number): StoredArtifact => {
    const found = artifacts
      .filter((a) => a.name === name && (runId === undefined || a.run.id === runId))
      .sort((a, b) => b.id - a.id)[0];
    if (!found)
      throw new Error(`results service: no artifact named ${name}${runId ? ` in run ${runId}` : ""}`);
    return found;
  };

  const runOfToken = (authorization: string | undefined): Run => {
    const bearer = /^Bearer (.+)$/i.exec(authorization ?? "")?.[1];
    const run = runs.find((r) => r.token === bearer);
    if (!run) throw new ServiceError(401, "unauthenticated", "invalid or missing runtime token");
    return run;
  };

  const checkRunScope = (run: Run, body: Record<string, unknown>) => {
    if (body["workflow_run_backend_id"] !== run.backendId) {
      throw new ServiceError(403, "permission_denied", "the token's scope does not cover this workflow run");
    }
  };

  // ---- Twirp: ArtifactService ------------------------------------------------------------------------------------

  const artifactService: Record<string, (body: Record<string, unknown>, run: Run) => Promise<unknown>> = {
    CreateArtifact: async (body, run) => {
      checkRunScope(run, body);
      const name = requireString(body, "name");
      if (artifacts.some((a) => a.run === run && a.name === name && a.finalized)) {
        throw new ServiceError(
          409,
          "already_exists",
          `an artifact with this name already exists on the workflow run`,
        );
      }
      // An unfinalized upload of the same name is replaced: that is what a client retry after a failure sends.
      removeWhere(artifacts, (a) => a.run === run && a.name === name && !a.finalized);
      const id = nextArtifactId++;
      const artifact: StoredArtifact = {
        id,
        run,
        jobBackendId: requireString(body, "workflow_job_run_backend_id"),
        name,
        blobName: `artifacts/${run.backendId}/${id}/${name}`,
        createdAt: new Date(),
        expiresAt: typeof body["expires_at"] === "string" ? body["expires_at"] : undefined,
        finalized: false,
        size: 0,
        digest: undefined,
      };
      artifacts.push(artifact);
      return { ok: true, signed_upload_url: signedUrl(artifact.blobName, "cw") };
    },
    FinalizeArtifact: async (body, run) => {
      checkRunScope(run, body);
      const name = requireString(body, "name");
      const artifact = artifacts.find((a) => a.run === run && a.name === name && !a.finalized);
      if (!artifact) throw new ServiceError(404, "not_found", `no pending artifact named ${name}`);
      const properties = await container.getBlobClient(artifact.blobName).getProperties();
      const size = Number(body["size"] ?? 0);
      if (properties.contentLength !== size) {
        throw new ServiceError(
          400,
          "invalid_argument",
          `size ${size} does not match the uploaded ${properties.contentLength}`,
        );
      }
      artifact.finalized = true;
      artifact.size = size;
      artifact.digest = typeof body["hash"] === "string" ? body["hash"] : undefined;
      return { ok: true, artifact_id: String(artifact.id) };
    },
    ListArtifacts: async (body, run) => {
      checkRunScope(run, body);
      const nameFilter = body["name_filter"];
      const idFilter = body["id_filter"];
      const listed = artifacts.filter(
        (a) =>
          a.run === run &&
          a.finalized &&
          (nameFilter === undefined || a.name === nameFilter) &&
          (idFilter === undefined || String(a.id) === String(idFilter)),
      );
      return {
        artifacts: listed.map((a) => ({
          workflow_run_backend_id: a.run.backendId,
          workflow_job_run_backend_id: a.jobBackendId,
          database_id: String(a.id),
          name: a.name,
          size: String(a.size),
          created_at: a.createdAt.toISOString(),
          ...(a.digest === undefined ? {} : { digest: a.digest }),
        })),
      };
    },
    GetSignedArtifactURL: async (body, run) => {
      checkRunScope(run, body);
      const name = requireString(body, "name");
      const artifact = artifacts.find((a) => a.run === run && a.name === name && a.finalized);
      if (!artifact) throw new ServiceError(404, "not_found", `no artifact named ${name}`);
      return { signed_url: signedUrl(artifact.blobName, "r", artifact.name) };
    },
    DeleteArtifact: async (body, run) => {
      checkRunScope(run, body);
      const name = requireString(body, "name");
      const artifact = artifacts.find((a) => a.run === run && a.name === name && a.finalized);
      if (!artifact) throw new ServiceError(404, "not_found", `no artifact named ${name}`);
      removeWhere(artifacts, (a) => a === artifact);
      await container.getBlobClient(artifact.blobName).deleteIfExists();
      return { ok: true, artifact_id: String(artifact.id) };
    },
  };

  // ---- Twirp: CacheService (v2) --------------------------------------------------------------------------------

  const cacheService: Record<string, (body: Record<string, unknown>, run: Run) => Promise<unknown>> = {
    CreateCacheEntry: async (body) => {
      const key = requireString(body, "key");
      const version = requireString(body, "version");
      if (cacheEntries.some((e) => e.key === key && e.version === version && e.finalized)) {
        throw new ServiceError(
          409,
          "already_exists",
          "cache entry with the same key, version, and scope already exists",
        );
      }
      removeWhere(cacheEntries, (e) => e.key === key && e.version === version && !e.finalized);
      const id = nextCacheId++;
      const entry: CacheEntry = {
        id,
        key,
        version,
        blobName: `caches/${id}/cache.tzst`,
        finalized: false,
        size: 0,
        createdAt: new Date(),
      };
      cacheEntries.push(entry);
      return { ok: true, signed_upload_url: signedUrl(entry.blobName, "cw") };
    },
    FinalizeCacheEntryUpload: async (body) => {
      const key = requireString(body, "key");
      const version = requireString(body, "version");
      const entry = cacheEntries.find((e) => e.key === key && e.version === version && !e.finalized);
      if (!entry) throw new ServiceError(404, "not_found", `no pending cache entry for key ${key}`);
      const properties = await container.getBlobClient(entry.blobName).getProperties();
      entry.finalized = true;
      entry.size = properties.contentLength ?? 0;
      return { ok: true, entry_id: String(entry.id) };
    },
    GetCacheEntryDownloadURL: async (body) => {
      const key = requireString(body, "key");
      const version = requireString(body, "version");
      const restoreKeys = Array.isArray(body["restore_keys"]) ? (body["restore_keys"] as string[]) : [];
      const usable = cacheEntries
        .filter((e) => e.finalized && e.version === version)
        .sort((a, b) => b.id - a.id);
      // Same matching as GitHub: the exact primary key first, then each restore key as a prefix, newest first.
      const match =
        usable.find((e) => e.key === key) ??
        restoreKeys
          .map((prefix) => usable.find((e) => e.key.startsWith(prefix)))
          .find((e) => e !== undefined);
      if (!match) return { ok: false };
      return { ok: true, signed_download_url: signedUrl(match.blobName, "r"), matched_key: match.key };
    },
  };

  // ---- REST (GITHUB_API_URL) --------------------------------------------------------------------------------------

  const repoUrl = (r: Repository, apiUrl: string) => `${apiUrl}/repos/${r.owner}/${r.name}`;

  const restArtifact = (a: StoredArtifact, apiUrl: string) => ({
    id: a.id,
    node_id: `MDg6QXJ0aWZhY3Q${a.id}`,
    name: a.name,
    size_in_bytes: a.size,
    url: `${repoUrl(a.run.repository, apiUrl)}/actions/artifacts/${a.id}`,
    archive_download_url: `${repoUrl(a.run.repository, apiUrl)}/actions/artifacts/${a.id}/zip`,
    expired: a.expiresAt !== undefined && Date.parse(a.expiresAt) < Date.now(),
    created_at: a.createdAt.toISOString(),
    updated_at: a.createdAt.toISOString(),
    expires_at: a.expiresAt ?? null,
    digest: a.digest ?? null,
    workflow_run: {
      id: a.run.id,
      repository_id: a.run.repository.id,
      head_repository_id: a.run.repository.id,
      head_branch: a.run.branch,
    },
  });

  const restRun = (r: Run) => ({
    id: r.id,
    name: r.workflowFile.replace(/\.ya?ml$/, ""),
    path: `.github/workflows/${r.workflowFile}`,
    workflow_id: r.workflowId,
    run_number: r.id - 7_000_000_000,
    run_attempt: 1,
    event: r.event,
    head_branch: r.branch,
    status: r.status,
    conclusion: r.conclusion,
    created_at: r.createdAt.toISOString(),
    updated_at: r.createdAt.toISOString(),
  });

  const restRepository = (r: Repository, apiUrl: string) => ({
    id: r.id,
    node_id: `R_kgDO${r.id}`,
    name: r.name,
    full_name: `${r.owner}/${r.name}`,
    owner: { login: r.owner, type: "Organization" },
    private: true,
    url: repoUrl(r, apiUrl),
    default_branch: r.defaultBranch,
  });

  const runMatchesStatus = (r: Run, status: string | null) => {
    if (status === null) return true;
    if (status === "completed" || status === "in_progress") return r.status === status;
    return r.conclusion === status;
  };

  /**
   * One page of a list, and its `Link` header as GitHub sends it: absolute URLs of the same query with another
   * `page`, `prev`/`first` left out on the first page and `next`/`last` on the last ("Using pagination in the REST
   * API"). per_page is capped at 100 as GitHub caps it.
   */
  const paginate = <T>(items: T[], url: URL, apiUrl: string): { page: T[]; link: string | undefined } => {
    const page = Math.max(1, Math.trunc(Number(url.searchParams.get("page") ?? 1)) || 1);
    const perPage = Math.min(
      100,
      Math.max(1, Math.trunc(Number(url.searchParams.get("per_page") ?? 30)) || 30),
    );
    const last = Math.max(1, Math.ceil(items.length / perPage));
    const pageUrl = (n: number) => {
      const target = new URL(`${apiUrl}${url.pathname.slice(API_PREFIX.length)}`);
      for (const [key, value] of url.searchParams) if (key !== "page") target.searchParams.set(key, value);
      target.searchParams.set("page", String(n));
      return target.toString();
    };
    const links: string[] = [];
    if (page > 1) links.push(`<${pageUrl(Math.min(page - 1, last))}>; rel="prev"`);
    if (page < last) links.push(`<${pageUrl(page + 1)}>; rel="next"`, `<${pageUrl(last)}>; rel="last"`);
    if (page > 1) links.push(`<${pageUrl(1)}>; rel="first"`);
    return {
      page: items.slice((page - 1) * perPage, page * perPage),
      link: links.length === 0 ? undefined : links.join(", "),
    };
  };

  type RestAnswer = { status: number; body?: unknown; location?: string; link?: string | undefined };

  const handleRest = (method: string, url: URL, apiUrl: string, bearer: string): RestAnswer => {
    const route = url.pathname.slice(API_PREFIX.length);
    const repoMatch = /^\/repos\/([^/]+)\/([^/]+)(\/.*)?$/.exec(route);
    // Owner and repository names are case-insensitive on GitHub.
    const repository = repoMatch
      ? repositories.get(
          `${decodeURIComponent(repoMatch[1]!)}/${decodeURIComponent(repoMatch[2]!)}`.toLowerCase(),
        )
      : undefined;
    if (!repoMatch || !repository) throw new ServiceError(404, "not_found", "Not Found");
    const rest = repoMatch[3] ?? "";
    const runsOfRepo = runs.filter((r) => r.repository === repository);

    if (method === "DELETE") return deleteRest(rest, repository, bearer);
    if (rest === "") return { status: 200, body: restRepository(repository, apiUrl) };

    let match = /^\/actions\/(?:workflows\/([^/]+)\/)?runs$/.exec(rest);
    if (match) {
      const workflow = match[1] === undefined ? undefined : decodeURIComponent(match[1]);
      const ofWorkflow = (r: Run) =>
        workflow === undefined || r.workflowFile === workflow || String(r.workflowId) === workflow;
      if (workflow !== undefined && !runsOfRepo.some(ofWorkflow)) {
        throw new ServiceError(404, "not_found", "Not Found");
      }
      const branch = url.searchParams.get("branch");
      const listed = runsOfRepo
        .filter(ofWorkflow)
        .filter((r) => branch === null || r.branch === branch)
        .filter((r) => runMatchesStatus(r, url.searchParams.get("status")))
        .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || b.id - a.id);
      const { page, link } = paginate(listed, url, apiUrl);
      return { status: 200, link, body: { total_count: listed.length, workflow_runs: page.map(restRun) } };
    }
    match = /^\/actions\/runs\/(\d+)\/artifacts$/.exec(rest);
    if (match) {
      const runId = Number(match[1]);
      if (!runsOfRepo.some((r) => r.id === runId)) throw new ServiceError(404, "not_found", "Not Found");
      return artifactList(
        artifacts.filter((a) => a.run.id === runId),
        url,
        apiUrl,
      );
    }
    if (rest === "/actions/artifacts") {
      return artifactList(
        artifacts.filter((a) => a.run.repository === repository),
        url,
        apiUrl,
      );
    }
    // "Get an artifact": an expired one is still described (expired: true) until it is deleted.
    match = /^\/actions\/artifacts\/(\d+)$/.exec(rest);
    if (match) {
      const artifact = artifacts.find(
        (a) => a.id === Number(match?.[1]) && a.finalized && a.run.repository === repository,
      );
      if (!artifact) throw new ServiceError(404, "not_found", "Not Found");
      return { status: 200, body: restArtifact(artifact, apiUrl) };
    }
    match = /^\/actions\/artifacts\/(\d+)\/zip$/.exec(rest);
    if (match) {
      const artifact = artifacts.find(
        (a) => a.id === Number(match?.[1]) && a.finalized && a.run.repository === repository,
      );
      if (!artifact) throw new ServiceError(404, "not_found", "Not Found");
      return { status: 302, location: signedUrl(artifact.blobName, "r", artifact.name) };
    }
    throw new ServiceError(404, "not_found", "Not Found");
  };

  /**
   * "Delete an artifact" (https://docs.github.com/en/rest/actions/artifacts#delete-an-artifact):
   * `DELETE /repos/{owner}/{repo}/actions/artifacts/{artifact_id}` answers 204 without a body; a token without
   * `actions: write` gets 403 "Resource not accessible by integration", an unknown id (or one of another repository)
   * 404. The artifact and its blob are gone afterwards, from every listing.
   */
  const deleteRest = (rest: string, repository: Repository, bearer: string): RestAnswer => {
    const match = /^\/actions\/artifacts\/(\d+)$/.exec(rest);
    if (!match) throw new ServiceError(404, "not_found", "Not Found");
    if (bearer !== writeToken)
      throw new ServiceError(403, "forbidden", "Resource not accessible by integration");
    const artifact = artifacts.find((a) => a.id === Number(match[1]) && a.run.repository === repository);
    if (!artifact) throw new ServiceError(404, "not_found", "Not Found");
    removeWhere(artifacts, (a) => a === artifact);
    deletedBlobs.push(container.getBlobClient(artifact.blobName).deleteIfExists());
    return { status: 204 };
  };

  /** Finalized artifacts, newest first, optionally of one exact `name`. */
  const artifactList = (candidates: StoredArtifact[], url: URL, apiUrl: string): RestAnswer => {
    const name = url.searchParams.get("name");
    const listed = candidates
      .filter((a) => a.finalized && (name === null || a.name === name))
      .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || b.id - a.id);
    const { page, link } = paginate(listed, url, apiUrl);
    return {
      status: 200,
      link,
      body: { total_count: listed.length, artifacts: page.map((a) => restArtifact(a, apiUrl)) },
    };
  };

  const restOperationOf = (method: string, pathname: string) => {
    if (method === "DELETE") return /\/actions\/artifacts\/\d+$/.test(pathname) ? "deleteArtifact" : "rest";
    if (/\/runs$/.test(pathname)) return "listWorkflowRuns";
    if (/\/runs\/\d+\/artifacts$/.test(pathname)) return "listRunArtifacts";
    if (/\/actions\/artifacts$/.test(pathname)) return "listRepoArtifacts";
    if (/\/zip$/.test(pathname)) return "downloadArtifact";
    if (/\/actions\/artifacts\/\d+$/.test(pathname)) return "getArtifact";
    if (/^\/api\/repos\/[^/]+\/[^/]+$/.test(pathname)) return "getRepository";
    return "rest";
  };

  /**
   * The token's primary rate limit for this request, as GitHub reports it on every answer; `exceeded` once the hour's
   * requests are used up (then GitHub answers 403 with x-ratelimit-remaining 0 until x-ratelimit-reset).
   */
  const countRequest = (bearer: string): { headers: Record<string, string>; exceeded: boolean } => {
    const now = Date.now();
    let window = rateWindows.get(bearer);
    if (!window || window.resetAt <= now) {
      window = { resetAt: now + 60 * 60 * 1000, used: 0 };
      rateWindows.set(bearer, window);
    }
    const exceeded = window.used >= REST_RATE_LIMIT;
    if (!exceeded) window.used++;
    return {
      exceeded,
      headers: {
        "x-ratelimit-limit": String(REST_RATE_LIMIT),
        "x-ratelimit-remaining": String(REST_RATE_LIMIT - window.used),
        "x-ratelimit-used": String(window.used),
        "x-ratelimit-reset": String(Math.ceil(window.resetAt / 1000)),
        "x-ratelimit-resource": "core",
      },
    };
  };

  // ---- HTTP plumbing -------------------------------------------------------------------------------------------

  const takeFault = (method: string): Fault | undefined => {
    const queue = faults.get(method);
    const fault = queue?.shift();
    if (queue && queue.length === 0) faults.delete(method);
    return fault;
  };

  let apiUrl = "";
  const server = http.createServer((req, res) => {
    void handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { code: "internal", msg: String(error) });
      else res.destroy();
    });
  });

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const raw = await readBody(req);
    const twirp = /^\/twirp\/([\w.]+)\/(\w+)$/.exec(url.pathname);
    if (twirp && req.method === "POST") {
      const [, service, method] = twirp as unknown as [string, string, string];
      const body = parseJson(raw);
      calls.push({ service: service.split(".").pop() ?? service, method, body });
      const fault = takeFault(method);
      if (fault === "reset") return void req.socket.destroy();
      if (fault)
        return sendJson(res, fault.status, {
          code: TWIRP_CODES[fault.status] ?? "unknown",
          msg: fault.message ?? "injected fault",
        });
      const handlers =
        service === ARTIFACT_SERVICE ? artifactService : service === CACHE_SERVICE ? cacheService : undefined;
      const handler = handlers?.[method];
      if (!handler)
        return sendJson(res, 404, { code: "bad_route", msg: `no handler for ${service}/${method}` });
      try {
        const run = runOfToken(req.headers.authorization);
        return sendJson(res, 200, await handler(body, run));
      } catch (error) {
        if (error instanceof ServiceError)
          return sendJson(res, error.status, { code: error.code, msg: error.message });
        throw error;
      }
    }
    if (url.pathname.startsWith(`${API_PREFIX}/`) && (req.method === "GET" || req.method === "DELETE")) {
      const operation = restOperationOf(req.method, url.pathname);
      const deleted = /\/actions\/artifacts\/(\d+)$/.exec(url.pathname)?.[1];
      calls.push({
        service: "rest",
        method: operation,
        body: {
          ...Object.fromEntries(url.searchParams),
          ...(operation === "deleteArtifact" && deleted ? { artifact_id: Number(deleted) } : {}),
        },
      });
      const fault = takeFault(operation);
      if (fault === "reset") return void req.socket.destroy();
      const bearer = /^(?:token|Bearer) (.+)$/i.exec(req.headers.authorization ?? "")?.[1];
      const restError = (status: number, message: string, headers: Record<string, string> = {}) =>
        sendJson(res, status, { message, documentation_url: "https://docs.github.com/rest" }, { ...headers });
      // Unauthenticated requests have their own limit on GitHub; here they are simply refused before counting.
      if (bearer !== token && bearer !== writeToken && bearer !== forbiddenToken) {
        return restError(401, "Bad credentials");
      }
      const rate = countRequest(bearer);
      if (fault)
        return restError(fault.status, fault.message ?? "injected fault", {
          ...rate.headers,
          ...fault.headers,
        });
      if (rate.exceeded) {
        return restError(403, "API rate limit exceeded for installation ID 4242.", rate.headers);
      }
      if (bearer === forbiddenToken)
        return restError(403, "Resource not accessible by integration", rate.headers);
      try {
        const answer = handleRest(req.method, url, apiUrl, bearer);
        if (answer.status === 204) {
          res.writeHead(204, rate.headers);
          return void res.end();
        }
        if (answer.location !== undefined) {
          res.writeHead(answer.status, { ...rate.headers, location: answer.location, "content-length": "0" });
          return void res.end();
        }
        return sendJson(res, answer.status, answer.body, {
          ...rate.headers,
          ...(answer.link === undefined ? {} : { link: answer.link }),
        });
      } catch (error) {
        if (error instanceof ServiceError) return restError(error.status, error.message, rate.headers);
        throw error;
      }
    }
    sendJson(res, 404, { message: `no route for ${req.method} ${url.pathname}` });
  };

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0 }, () => resolve());
  });
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  apiUrl = `${origin}${API_PREFIX}`;

  const baseEnv: Record<string, string> = {
    ACTIONS_RESULTS_URL: `${origin}/`,
    ACTIONS_CACHE_SERVICE_V2: "true",
    GITHUB_API_URL: apiUrl,
    // The clients refuse GHES hosts; github.com is never contacted (every URL they use comes from the vars above).
    GITHUB_SERVER_URL: "https://github.com",
    GITHUB_REPOSITORY: `${owner}/${repo}`,
    GITHUB_REPOSITORY_OWNER: owner,
    GITHUB_TOKEN: token,
    GITHUB_ACTIONS: "true",
    NO_PROXY: "127.0.0.1,localhost",
    no_proxy: "127.0.0.1,localhost",
  };
  const current = createRun({ workflow: "backup.yml", conclusion: null });
  const currentRun = handleOf(current, baseEnv);
  const env = {
    ...currentRun.env,
    GITHUB_WORKFLOW_REF: `${owner}/${repo}/.github/workflows/backup.yml@refs/heads/main`,
  };

  const toRecord = (a: StoredArtifact): ArtifactRecord => ({
    id: a.id,
    runId: a.run.id,
    name: a.name,
    blobName: a.blobName,
    createdAt: a.createdAt,
    expiresAt: a.expiresAt,
    finalized: a.finalized,
    size: a.size,
    digest: a.digest,
  });

  return {
    env,
    currentRun,
    owner,
    repo,
    defaultBranch,
    token,
    writeToken,
    forbiddenToken,
    calls,
    callsTo: (method) => calls.filter((c) => c.method === method),
    addRepository: (fullName, opts = {}) => void addRepository(fullName, opts.defaultBranch),
    addRun: (opts = {}) => handleOf(createRun(opts), baseEnv),
    seedArtifact: async (runId, name, bytes, opts = {}) => {
      const run = runs.find((r) => r.id === runId);
      if (!run) throw new Error(`results service: no run ${runId}`);
      const id = nextArtifactId++;
      const artifact: StoredArtifact = {
        id,
        run,
        jobBackendId: run.jobBackendId,
        name,
        blobName: `artifacts/${run.backendId}/${id}/${name}`,
        createdAt: opts.createdAt ?? new Date(),
        expiresAt: undefined,
        finalized: true,
        size: bytes.length,
        digest: `sha256:${createHash("sha256").update(bytes).digest("hex")}`,
      };
      await container.getBlockBlobClient(artifact.blobName).upload(bytes, bytes.length);
      artifacts.push(artifact);
      return toRecord(artifact);
    },
    artifacts: () => artifacts.map(toRecord),
    blobUrlOf: (name, runId) => blobUrl(newestArtifact(name, runId).blobName),
    readBlob: (name, runId) =>
      container.getBlobClient(newestArtifact(name, runId).blobName).downloadToBuffer(),
    tamper: async (name, bytes, runId) => {
      await container.getBlockBlobClient(newestArtifact(name, runId).blobName).upload(bytes, bytes.length);
    },
    expire: (name, runId) => {
      newestArtifact(name, runId).expiresAt = new Date(Date.now() - 1000).toISOString();
    },
    failNext: (method, fault, times = 1) => {
      faults.set(method, [...(faults.get(method) ?? []), ...Array.from({ length: times }, () => fault)]);
    },
    stop: async () => {
      await Promise.allSettled(deletedBlobs);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await azurite.stop();
    },
  };
}

/** An unsigned JWT (the clients only decode it) whose scp claim carries the run and job backend ids. */
export function runtimeToken(runBackendId: string, jobBackendId: string): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const header = encode({ alg: "none", typ: "JWT" });
  const payload = encode({
    scp: `Actions.GenericRead:00000000-0000-0000-0000-000000000000 Actions.Results:${runBackendId}:${jobBackendId}`,
    iss: "looker-backup-tests",
    exp: Math.floor(Date.now() / 1000) + 6 * 60 * 60,
  });
  return `${header}.${payload}.${Buffer.from("unsigned").toString("base64url")}`;
}

function requireString(body: Record<string, unknown>, field: string): string {
  const value = body[field];
  if (typeof value !== "string" || value === "") {
    throw new ServiceError(400, "invalid_argument", `${field} is required`);
  }
  return value;
}

function removeWhere<T>(items: T[], predicate: (item: T) => boolean): void {
  for (let i = items.length - 1; i >= 0; i--) if (predicate(items[i]!)) items.splice(i, 1);
}

function parseJson(raw: string): Record<string, unknown> {
  if (raw === "") return {};
  const parsed: unknown = JSON.parse(raw);
  return typeof parsed === "object" && parsed !== null ? (parsed as Record<string, unknown>) : {};
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function sendJson(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body ?? {});
  res.writeHead(status, {
    ...headers,
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}
