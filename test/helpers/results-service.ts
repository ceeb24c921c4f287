/**
 * A local stand-in for GitHub's Actions back end, so the real @actions/artifact and @actions/cache clients run
 * unmodified in tests (in-process after setting process.env, or in a child process given `env`):
 * - the Twirp JSON results service at ACTIONS_RESULTS_URL (`/twirp/github.actions.results.api.v1.ArtifactService/*`
 *   and `.../CacheService/*`, the v2 cache service),
 * - the few REST endpoints the cross-run lookup uses at GITHUB_API_URL (`/api/repos/...`: list workflow runs, list a
 *   run's artifacts, the artifact download redirect),
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
  /** The Twirp method (`CreateArtifact`) or the REST operation (`listWorkflowRuns`, `listRunArtifacts`, `downloadArtifact`). */
  readonly method: string;
  readonly body: Record<string, unknown>;
}

/** A reset drops the connection without a response (a network error to the client); a status answers with it. */
export type Fault = "reset" | { status: number; message?: string };

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
  /** A REST token with `actions: read`. */
  readonly token: string;
  /** A REST token the API knows but refuses with 403 (a GITHUB_TOKEN without `actions: read`). */
  readonly forbiddenToken: string;
  /** Every Twirp and REST call received, in order. */
  readonly calls: readonly ReceivedCall[];
  callsTo(method: string): ReceivedCall[];
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
  /** The next `times` calls of `method` (Twirp method or REST operation name) get `fault` instead of an answer. */
  failNext(method: string, fault: Fault, times?: number): void;
  stop(): Promise<void>;
}

interface Run {
  id: number;
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
  options: { owner?: string; repo?: string } = {},
): Promise<ResultsService> {
  const azurite = await startAzurite();
  try {
    await azurite.service.getContainerClient(CONTAINER).createIfNotExists();
    return await startHttp(azurite, options.owner ?? "acme", options.repo ?? "looker-ops");
  } catch (error) {
    await azurite.stop();
    throw error;
  }
}

async function startHttp(azurite: Azurite, owner: string, repo: string): Promise<ResultsService> {
  const token = `ghs_${randomUUID().replaceAll("-", "")}`;
  const forbiddenToken = `ghs_${randomUUID().replaceAll("-", "")}`;
  const runs: Run[] = [];
  const artifacts: StoredArtifact[] = [];
  const cacheEntries: CacheEntry[] = [];
  const calls: ReceivedCall[] = [];
  const faults = new Map<string, Fault[]>();
  const workflowIds = new Map<string, number>();
  let nextRunId = 7_000_000_001;
  let nextArtifactId = 900_001;
  let nextCacheId = 501;
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
    const run: Run = {
      id: nextRunId++,
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

  const restArtifact = (a: StoredArtifact, apiUrl: string) => ({
    id: a.id,
    node_id: `MDg6QXJ0aWZhY3Q${a.id}`,
    name: a.name,
    size_in_bytes: a.size,
    url: `${apiUrl}/repos/${owner}/${repo}/actions/artifacts/${a.id}`,
    archive_download_url: `${apiUrl}/repos/${owner}/${repo}/actions/artifacts/${a.id}/zip`,
    expired: a.expiresAt !== undefined && Date.parse(a.expiresAt) < Date.now(),
    created_at: a.createdAt.toISOString(),
    updated_at: a.createdAt.toISOString(),
    expires_at: a.expiresAt ?? null,
    digest: a.digest ?? null,
    workflow_run: { id: a.run.id, head_branch: "main" },
  });

  const restRun = (r: Run) => ({
    id: r.id,
    name: r.workflowFile.replace(/\.ya?ml$/, ""),
    path: `.github/workflows/${r.workflowFile}`,
    workflow_id: r.workflowId,
    run_number: r.id - 7_000_000_000,
    run_attempt: 1,
    event: "workflow_dispatch",
    head_branch: "main",
    status: r.status,
    conclusion: r.conclusion,
    created_at: r.createdAt.toISOString(),
    updated_at: r.createdAt.toISOString(),
  });

  const runMatchesStatus = (r: Run, status: string | null) => {
    if (status === null) return true;
    if (status === "completed" || status === "in_progress") return r.status === status;
    return r.conclusion === status;
  };

  const handleRest = (
    req: http.IncomingMessage,
    url: URL,
    apiUrl: string,
  ): { status: number; body?: unknown; location?: string } => {
    const authorization = /^(?:token|Bearer) (.+)$/i.exec(req.headers.authorization ?? "")?.[1];
    if (authorization === forbiddenToken) {
      throw new ServiceError(403, "forbidden", "Resource not accessible by integration");
    }
    if (authorization !== token) throw new ServiceError(401, "unauthenticated", "Bad credentials");
    const route = url.pathname.slice(API_PREFIX.length);
    const repoMatch = /^\/repos\/([^/]+)\/([^/]+)(\/.*)$/.exec(route);
    if (!repoMatch || repoMatch[1] !== owner || repoMatch[2] !== repo)
      throw new ServiceError(404, "not_found", "Not Found");
    const rest = repoMatch[3]!;
    const page = Math.max(1, Number(url.searchParams.get("page") ?? 1));
    const perPage = Math.min(100, Math.max(1, Number(url.searchParams.get("per_page") ?? 30)));
    const paginate = <T>(items: T[]) => items.slice((page - 1) * perPage, page * perPage);

    let match = /^\/actions\/(?:workflows\/([^/]+)\/)?runs$/.exec(rest);
    if (match) {
      const workflow = match[1] === undefined ? undefined : decodeURIComponent(match[1]);
      if (
        workflow !== undefined &&
        !runs.some((r) => r.workflowFile === workflow || String(r.workflowId) === workflow)
      ) {
        throw new ServiceError(404, "not_found", "Not Found");
      }
      const listed = runs
        .filter(
          (r) => workflow === undefined || r.workflowFile === workflow || String(r.workflowId) === workflow,
        )
        .filter((r) => runMatchesStatus(r, url.searchParams.get("status")))
        .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || b.id - a.id);
      return {
        status: 200,
        body: { total_count: listed.length, workflow_runs: paginate(listed).map(restRun) },
      };
    }
    match = /^\/actions\/runs\/(\d+)\/artifacts$/.exec(rest);
    if (match) {
      const runId = Number(match[1]);
      if (!runs.some((r) => r.id === runId)) throw new ServiceError(404, "not_found", "Not Found");
      const name = url.searchParams.get("name");
      const listed = artifacts
        .filter((a) => a.run.id === runId && a.finalized && (name === null || a.name === name))
        .sort((a, b) => b.id - a.id);
      return {
        status: 200,
        body: { total_count: listed.length, artifacts: paginate(listed).map((a) => restArtifact(a, apiUrl)) },
      };
    }
    match = /^\/actions\/artifacts\/(\d+)\/zip$/.exec(rest);
    if (match) {
      const artifact = artifacts.find((a) => a.id === Number(match?.[1]) && a.finalized);
      if (!artifact) throw new ServiceError(404, "not_found", "Not Found");
      return { status: 302, location: signedUrl(artifact.blobName, "r", artifact.name) };
    }
    throw new ServiceError(404, "not_found", "Not Found");
  };

  const restOperationOf = (pathname: string) => {
    if (/\/runs$/.test(pathname)) return "listWorkflowRuns";
    if (/\/artifacts$/.test(pathname)) return "listRunArtifacts";
    if (/\/zip$/.test(pathname)) return "downloadArtifact";
    return "rest";
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
    if (url.pathname.startsWith(`${API_PREFIX}/`) && req.method === "GET") {
      const operation = restOperationOf(url.pathname);
      calls.push({ service: "rest", method: operation, body: Object.fromEntries(url.searchParams) });
      const fault = takeFault(operation);
      if (fault === "reset") return void req.socket.destroy();
      if (fault) return sendJson(res, fault.status, { message: fault.message ?? "injected fault" });
      try {
        const answer = handleRest(req, url, apiUrl);
        if (answer.location !== undefined) {
          res.writeHead(answer.status, { location: answer.location, "content-length": "0" });
          return void res.end();
        }
        return sendJson(res, answer.status, answer.body);
      } catch (error) {
        if (error instanceof ServiceError) {
          return sendJson(res, error.status, {
            message: error.message,
            documentation_url: "https://docs.github.com/rest",
          });
        }
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
    token,
    forbiddenToken,
    calls,
    callsTo: (method) => calls.filter((c) => c.method === method),
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
    failNext: (method, fault, times = 1) => {
      faults.set(method, [...(faults.get(method) ?? []), ...Array.from({ length: times }, () => fault)]);
    },
    stop: async () => {
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

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body ?? {});
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}
