/**
 * Finds artifacts across workflow runs through GitHub's REST API: the newest backup (restore and drills run in
 * another workflow than the backup), every backup of an instance (`list --repo`, retention), and a repository's
 * artifacts by name (the drill history); and deletes artifacts (retention). @actions/artifact's `findBy` only looks
 * inside a run it is told about, so the runs are found here, with the ecosystem's client: @actions/github's Octokit
 * (proxy settings, GITHUB_API_URL), its `Link`-header pagination, plugin-retry for 5xx and dropped connections, and
 * plugin-throttling for GitHub's rate limits. Reading needs a token with `actions: read`, deleting `actions: write`.
 */
import { readFileSync } from "node:fs";
import { getOctokit } from "@actions/github";
import { retry } from "@octokit/plugin-retry";
import { type ThrottlingOptions, throttling } from "@octokit/plugin-throttling";
import { InputError, LookerBackupError } from "../errors.js";
import { ARCHIVE_SUFFIX, KEYFILE_SUFFIX, parseArchiveName } from "./archive-name.js";
import { ACCESS_HINT, normalizeDigest } from "./artifact-store.js";
import { rateLimitErrorOf } from "./rate-limit.js";

/** How the REST client retries; the defaults suit a job, tests shrink the waits. */
export interface ApiRetryOptions {
  /** Retries after a 5xx answer or a dropped connection (plugin-retry). Default 3. */
  readonly retries?: number;
  /**
   * Milliseconds per unit of waiting. plugin-retry waits (attempt)² units before a retry, plugin-throttling waits the
   * seconds GitHub asks for (retry-after, x-ratelimit-reset) in units. Default 1000: the units are seconds.
   */
  readonly unitMs?: number;
  /**
   * A rate limit that lifts within this many seconds is waited for (once); a later one fails at once, saying when it
   * resets: a job should not sit for up to an hour holding a runner. Default 60.
   */
  readonly maxRateLimitWaitSeconds?: number;
}

/** One repository on one GitHub API. */
export interface RepositoryRequest {
  readonly token: string;
  readonly owner: string;
  readonly repo: string;
  /** Default: GITHUB_API_URL, else https://api.github.com. */
  readonly apiUrl?: string;
  readonly retry?: ApiRetryOptions;
  /** Where the client says it waits for a rate limit. */
  readonly log?: (line: string) => void;
}

export interface FindBackupArtifactRequest extends RepositoryRequest {
  /** The backup workflow: file name (`backup.yml`) or numeric id. Without it, successful runs of any workflow. */
  readonly workflow?: string;
  /**
   * Only runs of this branch. Default: the repository's default branch (from the event payload when it describes
   * this repository, else from the API): a run dispatched on a feature branch is not the production backup.
   */
  readonly branch?: string;
  /** Look only in this run (then `workflow` and `branch` are ignored). */
  readonly runId?: number;
  /** Exactly this artifact name (e.g. to restore a named backup). */
  readonly artifactName?: string;
  /** Only archives of this instance (`<instance>-<UTC time>.tar.zst.age`). */
  readonly instance?: string;
  /** How many of the newest successful runs to search. Default 200. */
  readonly maxRuns?: number;
}

export interface FoundArtifact {
  readonly id: number;
  readonly name: string;
  readonly runId: number;
  readonly createdAt: Date;
  readonly size: number;
  /** sha256 hex the service recorded at upload, when it has one. */
  readonly digest?: string;
}

/** Kept for callers that name what they look for. */
export type FoundBackupArtifact = FoundArtifact;

/** What to check when GitHub refuses (401/403) to delete an artifact. */
export const WRITE_ACCESS_HINT =
  "deleting artifacts needs a token with `actions: write` on the repository (the backup job's `permissions: actions: " +
  "write`, or a token with write access to the repository's Actions)";

export interface ListBackupArtifactsRequest extends RepositoryRequest {
  /** Only archives of this instance. */
  readonly instance?: string;
  /** Only artifacts of runs of this workflow (file name or id), whatever their conclusion. */
  readonly workflow?: string;
  /** Only artifacts of runs of this branch. */
  readonly branch?: string;
  /** Looks at no more than this many of the repository's artifacts, newest first. Default 5000. */
  readonly maxArtifacts?: number;
}

/** A backup archive kept as an artifact, with the artifacts stored beside it in the same run. */
export interface BackupArtifact extends FoundArtifact {
  /** `artifact <id> of run <run id>`: where a person finds it (StoredObject's location). */
  readonly location: string;
  readonly instance: string;
  /** The branch of the run that uploaded it, when GitHub says. */
  readonly branch?: string;
  /**
   * Its companions, uploaded by the same run: `<archive>.<anything>` (the `.sig`, the catalog sidecar) and
   * `<instance>-<time>.keyfile.age`; `createdAt` is their upload time.
   */
  readonly companions: readonly FoundArtifact[];
}

export interface BackupArtifactListing {
  /** Newest first, by the time in the name (when the backup started), then by id. */
  readonly archives: BackupArtifact[];
  /**
   * True when the repository holds more artifacts than were looked at: the oldest backups may be missing (never the
   * newest: GitHub lists artifacts newest first).
   */
  readonly truncated: boolean;
}

interface RestArtifact {
  id: number;
  name: string;
  size_in_bytes: number;
  expired?: boolean;
  created_at?: string | null;
  digest?: string | null;
  workflow_run?: { id?: number | null; head_branch?: string | null } | null;
}

interface RestRun {
  id: number;
  created_at: string;
}

/** GitHub's largest page; fewer requests against the rate limit. */
const PAGE_SIZE = 100;
const DEFAULT_MAX_RUNS = 200;
const DEFAULT_MAX_ARTIFACTS = 2000;
/** 50 pages: a year of hourly backups with their companions, well within GITHUB_TOKEN's 1,000 requests an hour. */
const DEFAULT_MAX_LISTED_ARTIFACTS = 5000;
/**
 * How long before its artifacts a run may have started: GitHub ends a workflow run after 35 days ("Usage limits",
 * workflow run time). A `--workflow` filter stops reading runs that started this long before the oldest backup.
 */
const MAX_RUN_DURATION_MS = 35 * 86_400_000;
/** `<instance>-<UTC time>.tar.zst.age.<anything>`: what is stored beside an archive under its own name. */
const COMPANION_PATTERN = /^(.+-\d{8}T\d{6}Z\.tar\.zst\.age)\..+$/;

/** The newest matching backup artifact of the newest successful run that has one; InputError when there is none. */
export async function findNewestBackupArtifact(request: FindBackupArtifactRequest): Promise<FoundArtifact> {
  const api = new GitHubApi(request);
  const branch = request.runId === undefined ? (request.branch ?? (await api.defaultBranch())) : undefined;
  const runIds =
    request.runId === undefined
      ? api.successfulRunIds(request.workflow, branch, request.maxRuns)
      : single(request.runId);
  for await (const runId of runIds) {
    const newest = (await api.runArtifacts(runId))
      .filter((artifact) => !artifact.expired && matches(artifact.name, request))
      .sort((a, b) => backupTime(b) - backupTime(a) || b.id - a.id)[0];
    if (newest) return foundOf(newest, runId, new Date(backupTime(newest)));
  }
  throw new InputError(
    `no backup artifact ${describeWanted(request)} found in ${describeWhere(request, branch)}`,
    noneHint(request, branch),
  );
}

/**
 * The repository's unexpired artifacts whose names pass `wanted`, newest first by `timeOf(name)` (else upload time).
 * Looks at no more than `maxArtifacts` of them (default 2000), as the API lists them.
 */
export async function findRepositoryArtifacts(
  request: RepositoryRequest & {
    readonly wanted: (name: string) => boolean;
    readonly timeOf?: (name: string) => Date | undefined;
    readonly maxArtifacts?: number;
  },
): Promise<FoundArtifact[]> {
  const api = new GitHubApi(request);
  const found: FoundArtifact[] = [];
  for await (const artifact of api.repositoryArtifacts(request.maxArtifacts ?? DEFAULT_MAX_ARTIFACTS)) {
    const runId = artifact.workflow_run?.id;
    if (artifact.expired || typeof runId !== "number" || !request.wanted(artifact.name)) continue;
    const at = request.timeOf?.(artifact.name) ?? new Date(Date.parse(artifact.created_at ?? "") || 0);
    found.push(foundOf(artifact, runId, at));
  }
  return found.sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || b.id - a.id);
}

/**
 * Every unexpired backup archive in the repository (of one instance, workflow or branch when given) across all its
 * workflow runs, with its companions, newest first. One paged listing of the repository's artifacts (100 a request),
 * plus, with `workflow`, the workflow's runs back to the oldest backup found.
 */
export async function listBackupArtifacts(
  request: ListBackupArtifactsRequest,
): Promise<BackupArtifactListing> {
  return new GitHubApi(request).backupArtifacts(request);
}

/**
 * Whether an artifact can still be downloaded: `GET /repos/{owner}/{repo}/actions/artifacts/{artifact_id}` answers
 * 404 once it was deleted and `expired: true` once its retention ran out. Rejects when GitHub cannot tell (rate
 * limit, permissions), so a caller relying on the artifact does not guess.
 */
export async function artifactStillExists(
  request: RepositoryRequest & { readonly artifactId: number },
): Promise<boolean> {
  const api = new GitHubApi(request);
  const artifact = await api.artifact(request.artifactId);
  return artifact !== undefined && !artifact.expired;
}

function foundOf(artifact: RestArtifact, runId: number, createdAt: Date): FoundArtifact {
  const digest = normalizeDigest(artifact.digest);
  return {
    id: artifact.id,
    name: artifact.name,
    runId,
    createdAt,
    size: artifact.size_in_bytes,
    ...(digest === undefined ? {} : { digest }),
  };
}

function matches(name: string, request: FindBackupArtifactRequest): boolean {
  if (request.artifactName !== undefined) return name === request.artifactName;
  const parsed = parseArchiveName(name);
  return parsed !== undefined && (request.instance === undefined || parsed.instance === request.instance);
}

/** The time in the archive name (when the backup started), else the artifact's upload time. */
function backupTime(artifact: RestArtifact): number {
  const uploadedAt = Date.parse(artifact.created_at ?? "");
  return parseArchiveName(artifact.name)?.createdAt.getTime() ?? (Number.isNaN(uploadedAt) ? 0 : uploadedAt);
}

export function artifactLocation(artifactId: number, runId: number): string {
  return `artifact ${artifactId} of run ${runId}`;
}

/**
 * The archive an artifact name accompanies: `<archive>.<anything>` (`.sig`, the catalog sidecar), or the key file
 * `<instance>-<time>.keyfile.age` of `<instance>-<time>.tar.zst.age`; undefined for anything else.
 */
export function companionOf(name: string): string | undefined {
  const beside = COMPANION_PATTERN.exec(name)?.[1];
  if (beside !== undefined) return parseArchiveName(beside) === undefined ? undefined : beside;
  if (!name.endsWith(KEYFILE_SUFFIX)) return undefined;
  const archive = name.slice(0, -KEYFILE_SUFFIX.length) + ARCHIVE_SUFFIX;
  return parseArchiveName(archive) === undefined ? undefined : archive;
}

async function* single(runId: number): AsyncGenerator<number> {
  yield runId;
}

type Octokit = ReturnType<typeof getOctokit>;

/** When the last mutating request of this process was let through (GitHub's advice is per client, not per call). */
let lastWriteAt = 0;
let writeQueue: Promise<unknown> = Promise.resolve();

/**
 * GitHub asks for at least a second between mutating requests ("Best practices for using the REST API"), as
 * plugin-throttling's own write limiter waits in real seconds; this one waits one unit (ApiRetryOptions.unitMs), so
 * that tests can shrink it like the other waits. It has the one method the plugin calls on its write group
 * (`key(id).schedule(options, task, ...args)`), one request at a time.
 */
function writePacer(unitMs: number): NonNullable<ThrottlingOptions["write"]> {
  const schedule = (
    _options: unknown,
    task: (...args: unknown[]) => Promise<unknown>,
    ...args: unknown[]
  ) => {
    const turn = writeQueue.then(async () => {
      const wait = lastWriteAt + unitMs - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      lastWriteAt = Date.now();
      return task(...args);
    });
    writeQueue = turn.catch(() => undefined);
    return turn;
  };
  return { key: () => ({ schedule }) } as unknown as NonNullable<ThrottlingOptions["write"]>;
}

export class GitHubApi {
  private readonly octokit: Octokit;

  constructor(private readonly request: RepositoryRequest) {
    if (!request.token) {
      throw new InputError(
        "a github token is needed to find artifacts made by other workflow runs",
        "pass github-token (e.g. secrets.GITHUB_TOKEN) and grant `permissions: actions: read`",
      );
    }
    const unitMs = request.retry?.unitMs ?? 1000;
    const maxWait = request.retry?.maxRateLimitWaitSeconds ?? 60;
    const log = request.log ?? (() => {});
    // One wait per request, and only a short one: retrying at once after a rate limit only extends it (GitHub's
    // REST docs, "Rate limits for the REST API": wait for x-ratelimit-reset, or retry-after for a secondary limit).
    const onLimit =
      (kind: string) =>
      (retryAfter: number, options: { method: string; url: string }, _: unknown, retryCount: number) => {
        if (retryCount > 0 || retryAfter > maxWait) return false;
        log(`github api ${kind} rate limit on ${options.method} ${options.url}; waiting ${retryAfter} s`);
        return true;
      };
    this.octokit = getOctokit(
      request.token,
      {
        baseUrl: (request.apiUrl ?? process.env["GITHUB_API_URL"] ?? "https://api.github.com").replace(
          /\/+$/,
          "",
        ),
        userAgent: "looker-backup",
        log: { debug: () => {}, info: () => {}, warn: log, error: log },
        retry: {
          retries: request.retry?.retries ?? 3,
          retryAfterBaseValue: unitMs,
          // plugin-retry's own list, plus 429: a rate limit is plugin-throttling's to wait for (or not).
          doNotRetry: [400, 401, 403, 404, 410, 422, 429, 451],
        },
        throttle: {
          retryAfterBaseValue: unitMs,
          onRateLimit: onLimit("primary"),
          onSecondaryRateLimit: onLimit("secondary"),
          write: writePacer(unitMs),
        },
      },
      retry,
      throttling,
    );
  }

  /** The repository's default branch: from the event payload when it is about this repository, else the API. */
  async defaultBranch(): Promise<string> {
    const fromEvent = eventDefaultBranch(this.request.owner, this.request.repo);
    if (fromEvent !== undefined) return fromEvent;
    const { data } = await this.call("GET /repos/{owner}/{repo}", () =>
      this.octokit.rest.repos.get({ owner: this.request.owner, repo: this.request.repo }),
    );
    return data.default_branch;
  }

  /** Ids of successful runs (of one workflow when given, of one branch when given), newest first. */
  async *successfulRunIds(
    workflow: string | undefined,
    branch: string | undefined,
    maxRuns = DEFAULT_MAX_RUNS,
  ): AsyncGenerator<number> {
    for await (const run of this.runs(workflow, branch, "success", maxRuns)) yield run.id;
  }

  /** Runs (of one workflow, branch and conclusion when given), newest first. */
  async *runs(
    workflow: string | undefined,
    branch: string | undefined,
    status: "success" | undefined,
    maxRuns: number,
  ): AsyncGenerator<RestRun> {
    const common = {
      owner: this.request.owner,
      repo: this.request.repo,
      per_page: PAGE_SIZE,
      ...(status === undefined ? {} : { status }),
      ...(branch === undefined ? {} : { branch }),
    };
    const pages =
      workflow === undefined
        ? this.octokit.paginate.iterator(this.octokit.rest.actions.listWorkflowRunsForRepo, common)
        : this.octokit.paginate.iterator(this.octokit.rest.actions.listWorkflowRuns, {
            ...common,
            workflow_id: workflow,
          });
    const what =
      workflow === undefined
        ? "GET /repos/{owner}/{repo}/actions/runs"
        : "GET /repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs";
    let seen = 0;
    for await (const page of this.pages(what, pages)) {
      for (const run of page) {
        if (seen++ >= maxRuns) return;
        yield run;
      }
    }
  }

  async runArtifacts(runId: number): Promise<RestArtifact[]> {
    const all: RestArtifact[] = [];
    const pages = this.octokit.paginate.iterator(this.octokit.rest.actions.listWorkflowRunArtifacts, {
      owner: this.request.owner,
      repo: this.request.repo,
      run_id: runId,
      per_page: PAGE_SIZE,
    });
    for await (const page of this.pages("GET /repos/{owner}/{repo}/actions/runs/{run_id}/artifacts", pages)) {
      all.push(...page);
    }
    return all;
  }

  /** The repository's artifacts as GitHub lists them (newest first), at most `maxArtifacts`; `limit.hit` says when more were left. */
  async *repositoryArtifacts(
    maxArtifacts: number,
    limit: { hit: boolean } = { hit: false },
  ): AsyncGenerator<RestArtifact> {
    const pages = this.octokit.paginate.iterator(this.octokit.rest.actions.listArtifactsForRepo, {
      owner: this.request.owner,
      repo: this.request.repo,
      per_page: PAGE_SIZE,
    });
    let seen = 0;
    for await (const page of this.pages("GET /repos/{owner}/{repo}/actions/artifacts", pages)) {
      for (const artifact of page) {
        if (seen++ >= maxArtifacts) {
          limit.hit = true;
          return;
        }
        yield artifact;
      }
    }
  }

  /** See listBackupArtifacts. */
  async backupArtifacts(request: ListBackupArtifactsRequest): Promise<BackupArtifactListing> {
    const limit = { hit: false };
    const archives: RestArtifact[] = [];
    const companions = new Map<string, FoundArtifact[]>();
    for await (const artifact of this.repositoryArtifacts(
      request.maxArtifacts ?? DEFAULT_MAX_LISTED_ARTIFACTS,
      limit,
    )) {
      const runId = artifact.workflow_run?.id;
      if (artifact.expired || typeof runId !== "number") continue;
      if (request.branch !== undefined && artifact.workflow_run?.head_branch !== request.branch) continue;
      const parsed = parseArchiveName(artifact.name);
      if (parsed !== undefined) {
        if (request.instance === undefined || parsed.instance === request.instance) archives.push(artifact);
        continue;
      }
      const archive = companionOf(artifact.name);
      if (archive === undefined) continue;
      const key = `${runId}/${archive}`;
      const uploadedAt = new Date(Date.parse(artifact.created_at ?? "") || 0);
      companions.set(key, [...(companions.get(key) ?? []), foundOf(artifact, runId, uploadedAt)]);
    }
    const runs =
      request.workflow === undefined
        ? undefined
        : await this.runsHolding(request.workflow, request.branch, archives);
    const listed: BackupArtifact[] = [];
    for (const artifact of archives) {
      const runId = artifact.workflow_run?.id as number;
      if (runs !== undefined && !runs.has(runId)) continue;
      const branch = artifact.workflow_run?.head_branch;
      listed.push({
        ...foundOf(artifact, runId, new Date(backupTime(artifact))),
        location: artifactLocation(artifact.id, runId),
        instance: parseArchiveName(artifact.name)?.instance as string,
        ...(branch ? { branch } : {}),
        companions: (companions.get(`${runId}/${artifact.name}`) ?? []).sort((a, b) => a.id - b.id),
      });
    }
    listed.sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || b.id - a.id);
    return { archives: listed, truncated: limit.hit };
  }

  /**
   * Which of the artifacts' runs belong to the workflow: its runs (any conclusion), newest first, until every run
   * holding one of them was seen, or the runs started too long before the oldest of them to hold any.
   */
  private async runsHolding(
    workflow: string,
    branch: string | undefined,
    artifacts: readonly RestArtifact[],
  ): Promise<Set<number>> {
    const wanted = new Set(artifacts.map((artifact) => artifact.workflow_run?.id as number));
    const found = new Set<number>();
    if (wanted.size === 0) return found;
    const oldest = Math.min(...artifacts.map((artifact) => Date.parse(artifact.created_at ?? "") || 0));
    for await (const run of this.runs(workflow, branch, undefined, Number.POSITIVE_INFINITY)) {
      if (wanted.has(run.id)) found.add(run.id);
      if (found.size === wanted.size || Date.parse(run.created_at) < oldest - MAX_RUN_DURATION_MS) break;
    }
    return found;
  }

  /**
   * Deletes an artifact (`DELETE /repos/{owner}/{repo}/actions/artifacts/{artifact_id}`, 204); false when GitHub
   * has no such artifact any more (404: deleted meanwhile). A 401/403 that is not a rate limit is an InputError with
   * the `actions: write` hint.
   */
  async deleteArtifact(artifactId: number): Promise<boolean> {
    const what = "DELETE /repos/{owner}/{repo}/actions/artifacts/{artifact_id}";
    try {
      await this.octokit.rest.actions.deleteArtifact({
        owner: this.request.owner,
        repo: this.request.repo,
        artifact_id: artifactId,
      });
      return true;
    } catch (error) {
      if ((error as OctokitError | undefined)?.status === 404) return false;
      throw apiError(error, what, this.request, WRITE_ACCESS_HINT);
    }
  }

  /** One artifact by id; undefined when GitHub has none (deleted). */
  async artifact(artifactId: number): Promise<RestArtifact | undefined> {
    try {
      const { data } = await this.octokit.rest.actions.getArtifact({
        owner: this.request.owner,
        repo: this.request.repo,
        artifact_id: artifactId,
      });
      return data;
    } catch (error) {
      if ((error as OctokitError | undefined)?.status === 404) return undefined;
      throw apiError(error, "GET /repos/{owner}/{repo}/actions/artifacts/{artifact_id}", this.request);
    }
  }

  /** The items of each page, with the client's errors turned into ours. */
  private async *pages<T>(what: string, pages: AsyncIterable<{ data: T[] }>): AsyncGenerator<T[]> {
    const iterator = pages[Symbol.asyncIterator]();
    for (;;) {
      const next = await this.call(what, () => iterator.next());
      if (next.done) return;
      yield next.value.data;
    }
  }

  private async call<T>(what: string, operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      throw apiError(error, what, this.request);
    }
  }
}

/** `repository.default_branch` of the triggering event (GITHUB_EVENT_PATH) when that event is about owner/repo. */
function eventDefaultBranch(owner: string, repo: string): string | undefined {
  const path = process.env["GITHUB_EVENT_PATH"];
  if (!path) return undefined;
  try {
    const event = JSON.parse(readFileSync(path, "utf8")) as {
      repository?: { full_name?: unknown; default_branch?: unknown };
    };
    const repository = event.repository;
    if (
      typeof repository?.full_name !== "string" ||
      repository.full_name.toLowerCase() !== `${owner}/${repo}`.toLowerCase() ||
      typeof repository.default_branch !== "string" ||
      repository.default_branch === ""
    ) {
      return undefined;
    }
    return repository.default_branch;
  } catch {
    // An unreadable payload costs one API call, nothing more.
    return undefined;
  }
}

interface OctokitError {
  status?: unknown;
  message?: unknown;
}

/**
 * What a failed request means for the user. A rate limit (403 or 429 with x-ratelimit-remaining 0, or a secondary
 * limit's message, as GitHub's REST docs describe them) is said to be one, with when it lifts: it is not a permission
 * problem. Other 401/403/404 are the caller's to fix; what is left already went through plugin-retry.
 */
function apiError(error: unknown, what: string, request: RepositoryRequest, accessHint = ACCESS_HINT): Error {
  if (error instanceof LookerBackupError) return error;
  const { status, message } = (error ?? {}) as OctokitError;
  if (typeof status !== "number") {
    return new LookerBackupError(`github api request ${what} failed: ${String(message ?? error)}`, {
      cause: error,
    });
  }
  const text = String(message ?? "").replace(/ - https:\/\/docs\.github\.com\S*$/, "");
  const answered = `github api answered ${status} to ${what} for ${request.owner}/${request.repo}: ${text}`;
  const limited = rateLimitErrorOf(error, answered);
  if (limited) return limited;
  if (status === 401) {
    return new InputError(
      `${answered} (the token was rejected)`,
      "pass a valid github-token (e.g. secrets.GITHUB_TOKEN)",
      error,
    );
  }
  if (status === 403 || status === 404) return new InputError(answered, accessHint, error);
  return new LookerBackupError(answered, {
    cause: error,
    hint:
      status >= 500
        ? "GitHub's API did not answer after retries; re-run the job, and check https://www.githubstatus.com"
        : undefined,
  });
}

function describeWanted(request: FindBackupArtifactRequest): string {
  if (request.artifactName !== undefined) return `named ${request.artifactName}`;
  return request.instance === undefined ? "(any instance)" : `of instance ${request.instance}`;
}

function describeWhere(request: FindBackupArtifactRequest, branch: string | undefined): string {
  const repo = `${request.owner}/${request.repo}`;
  if (request.runId !== undefined) return `run ${request.runId} of ${repo}`;
  const runs =
    request.workflow === undefined
      ? "successful workflow runs"
      : `successful runs of workflow ${request.workflow}`;
  return `${runs} on branch ${branch} of ${repo}`;
}

function noneHint(request: FindBackupArtifactRequest, branch: string | undefined): string {
  return request.runId === undefined
    ? `check the instance and workflow names, that a backup run on branch ${branch} succeeded within the artifact ` +
        "retention period (the branch input picks another branch)"
    : "check the run id and that its artifacts have not expired";
}
