/**
 * Finds the newest backup artifact across workflow runs (restore and drills run in another workflow than the
 * backup). Plain fetch against GITHUB_API_URL, read at call time: @actions/artifact's `findBy` only looks inside a
 * run it is told about, and @actions/github is not a dependency of ours (only of @actions/artifact).
 * Needs a token with `actions: read`.
 */
import { InputError, LookerBackupError } from "../errors.js";
import { parseArchiveName } from "./archive-name.js";
import { ACCESS_HINT, normalizeDigest, type RetryOptions, withRetry } from "./artifact-store.js";

export interface FindBackupArtifactRequest {
  readonly token: string;
  readonly owner: string;
  readonly repo: string;
  /** The backup workflow: file name (`backup.yml`) or numeric id. Without it, successful runs of any workflow. */
  readonly workflow?: string;
  /** Look only in this run (then `workflow` is ignored). */
  readonly runId?: number;
  /** Exactly this artifact name (e.g. to restore a named backup). */
  readonly artifactName?: string;
  /** Only archives of this instance (`<instance>-<UTC time>.tar.zst.age`). */
  readonly instance?: string;
  /** Default: GITHUB_API_URL, else https://api.github.com. */
  readonly apiUrl?: string;
  /** How many of the newest successful runs to search. Default 200. */
  readonly maxRuns?: number;
  readonly retry?: RetryOptions;
}

export interface FoundBackupArtifact {
  readonly id: number;
  readonly name: string;
  readonly runId: number;
  readonly createdAt: Date;
  readonly size: number;
  /** sha256 hex the service recorded at upload, when it has one. */
  readonly digest?: string;
}

interface RestRun {
  id: number;
  created_at: string;
}

interface RestArtifact {
  id: number;
  name: string;
  size_in_bytes: number;
  expired?: boolean;
  created_at?: string | null;
  digest?: string | null;
}

const PAGE_SIZE = 100;
const DEFAULT_MAX_RUNS = 200;
/** The newest matching backup artifact of the newest successful run that has one; InputError when there is none. */
export async function findNewestBackupArtifact(
  request: FindBackupArtifactRequest,
): Promise<FoundBackupArtifact> {
  if (!request.token) {
    throw new InputError(
      "a github token is needed to find backups made by other workflow runs",
      "pass github-token (e.g. secrets.GITHUB_TOKEN) and grant `permissions: actions: read`",
    );
  }
  const api = new GitHubApi(request);
  const runIds =
    request.runId === undefined
      ? api.successfulRunIds(request.workflow, request.maxRuns)
      : single(request.runId);
  for await (const runId of runIds) {
    const newest = (await api.runArtifacts(runId))
      .filter((artifact) => !artifact.expired && matches(artifact.name, request))
      .sort((a, b) => backupTime(b) - backupTime(a) || b.id - a.id)[0];
    if (newest) {
      const digest = normalizeDigest(newest.digest);
      return {
        id: newest.id,
        name: newest.name,
        runId,
        createdAt: new Date(backupTime(newest)),
        size: newest.size_in_bytes,
        ...(digest === undefined ? {} : { digest }),
      };
    }
  }
  throw new InputError(
    `no backup artifact ${describeWanted(request)} found in ${describeWhere(request)}`,
    noneHint(request),
  );
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

async function* single(runId: number): AsyncGenerator<number> {
  yield runId;
}

class GitHubApi {
  private readonly base: string;

  constructor(private readonly request: FindBackupArtifactRequest) {
    this.base = (request.apiUrl ?? process.env["GITHUB_API_URL"] ?? "https://api.github.com").replace(
      /\/+$/,
      "",
    );
  }

  /** Ids of successful runs, newest first (of one workflow when given). */
  async *successfulRunIds(workflow: string | undefined, maxRuns = DEFAULT_MAX_RUNS): AsyncGenerator<number> {
    const path =
      workflow === undefined
        ? this.repoPath("/actions/runs")
        : this.repoPath(`/actions/workflows/${encodeURIComponent(workflow)}/runs`);
    let seen = 0;
    for (let page = 1; seen < maxRuns; page++) {
      const body = await this.get<{ workflow_runs?: RestRun[] }>(path, {
        status: "success",
        per_page: PAGE_SIZE,
        page,
      });
      const runs = [...(body.workflow_runs ?? [])].sort(
        (a, b) => Date.parse(b.created_at) - Date.parse(a.created_at),
      );
      for (const run of runs) {
        if (seen++ >= maxRuns) return;
        yield run.id;
      }
      if (runs.length < PAGE_SIZE) return;
    }
  }

  async runArtifacts(runId: number): Promise<RestArtifact[]> {
    const path = this.repoPath(`/actions/runs/${runId}/artifacts`);
    const all: RestArtifact[] = [];
    for (let page = 1; ; page++) {
      const body = await this.get<{ artifacts?: RestArtifact[] }>(path, { per_page: PAGE_SIZE, page });
      const artifacts = body.artifacts ?? [];
      all.push(...artifacts);
      if (artifacts.length < PAGE_SIZE) return all;
    }
  }

  private repoPath(suffix: string): string {
    return `/repos/${encodeURIComponent(this.request.owner)}/${encodeURIComponent(this.request.repo)}${suffix}`;
  }

  private async get<T>(path: string, query: Record<string, string | number>): Promise<T> {
    const url = new URL(this.base + path);
    for (const [key, value] of Object.entries(query)) url.searchParams.set(key, String(value));
    return withRetry(
      `GET ${path}`,
      async () => {
        const response = await fetch(url, {
          headers: {
            accept: "application/vnd.github+json",
            authorization: `Bearer ${this.request.token}`,
            "x-github-api-version": "2022-11-28",
            "user-agent": "looker-backup",
          },
        });
        if (response.ok) return (await response.json()) as T;
        throw await apiError(response, path);
      },
      this.request.retry,
    );
  }
}

/** 401/403/404 are the caller's to fix (InputError, not retried); 5xx/429 stay plain errors that withRetry retries. */
async function apiError(response: Response, path: string): Promise<Error> {
  const message = await response.text().then(
    (text) => {
      try {
        return String((JSON.parse(text) as { message?: unknown }).message ?? text);
      } catch {
        return text;
      }
    },
    () => "",
  );
  const what = `github api answered ${response.status} to GET ${path}${message ? `: ${message}` : ""}`;
  if (response.status === 401) {
    return new InputError(
      `${what} (the token was rejected)`,
      "pass a valid github-token (e.g. secrets.GITHUB_TOKEN)",
    );
  }
  if (response.status === 403 || response.status === 404) return new InputError(what, ACCESS_HINT);
  if (response.status >= 500 || response.status === 429)
    return Object.assign(new Error(what), { status: response.status });
  return new LookerBackupError(what);
}

function describeWanted(request: FindBackupArtifactRequest): string {
  if (request.artifactName !== undefined) return `named ${request.artifactName}`;
  return request.instance === undefined ? "(any instance)" : `of instance ${request.instance}`;
}

function describeWhere(request: FindBackupArtifactRequest): string {
  const repo = `${request.owner}/${request.repo}`;
  if (request.runId !== undefined) return `run ${request.runId} of ${repo}`;
  return request.workflow === undefined
    ? `successful workflow runs of ${repo}`
    : `successful runs of workflow ${request.workflow} in ${repo}`;
}

function noneHint(request: FindBackupArtifactRequest): string {
  return request.runId === undefined
    ? "check the instance and workflow names, and that a backup run succeeded within the artifact retention period"
    : "check the run id and that its artifacts have not expired";
}
