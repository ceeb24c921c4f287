/**
 * The artifact store and the cross-run lookup on the real @actions/artifact and @actions/cache clients, against a
 * local results service (test/helpers/results-service.ts) whose blobs live in a real Azurite server.
 * The clients run in this process: the service's env is set before the modules under test are imported, because
 * @actions/github fixes its API base URL (GITHUB_API_URL) at import time. GITHUB_EVENT_PATH is unset unless a test
 * sets it: then the default branch comes from the API.
 */
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitCode, InputError, IntegrityError, LookerBackupError, RateLimitError } from "../../src/errors.js";
import type { ResultsService } from "../helpers/results-service.js";
import {
  primaryRateLimitFault,
  secondaryRateLimitFault,
  startResultsService,
} from "../helpers/results-service.js";

type StoreModule = typeof import("../../src/store/artifact-store.js");
type FindModule = typeof import("../../src/store/artifact-find.js");

let service: ResultsService;
let storeModule: StoreModule;
let findModule: FindModule;
let scratch: string;
const savedEnv = { ...process.env };

beforeAll(async () => {
  scratch = await fs.mkdtemp(path.join(os.tmpdir(), "lbartifact-"));
  service = await startResultsService();
  const runnerTemp = path.join(scratch, "runner-temp");
  const workspace = path.join(scratch, "workspace");
  await fs.mkdir(runnerTemp);
  await fs.mkdir(workspace);
  Object.assign(process.env, service.env, { RUNNER_TEMP: runnerTemp, GITHUB_WORKSPACE: workspace });
  delete process.env["GITHUB_RETENTION_DAYS"];
  delete process.env["GITHUB_EVENT_PATH"];
  storeModule = await import("../../src/store/artifact-store.js");
  findModule = await import("../../src/store/artifact-find.js");
});

afterAll(async () => {
  for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
  Object.assign(process.env, savedEnv);
  await service?.stop();
  if (scratch) await fs.rm(scratch, { recursive: true, force: true });
});

async function privateDir(label: string): Promise<string> {
  return fs.mkdtemp(path.join(scratch, `${label}-`));
}

async function write(pending: { stream: NodeJS.WritableStream }, bytes: Buffer): Promise<void> {
  await new Promise<void>((resolve, reject) =>
    pending.stream.end(bytes, (error?: Error | null) => (error ? reject(error) : resolve())),
  );
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

describe("ArtifactStore on the current run", () => {
  it("uploads one file as-is, lists it, and streams back identical verified bytes", async () => {
    const tempRoot = await privateDir("upload");
    const store = new storeModule.ArtifactStore({ tempRoot, retentionDays: 7, retry: { baseDelayMs: 10 } });
    const name = "looker-prod-20250102T030405Z.tar.zst.age";
    // More than the client's 8 MiB chunk, so the blob is staged in several blocks.
    const bytes = randomBytes(9 * 1024 * 1024 + 123);

    const pending = await store.create(name);
    const [dir] = await fs.readdir(tempRoot);
    expect((await fs.stat(path.join(tempRoot, dir!))).mode & 0o777).toBe(0o700);
    expect((await fs.stat(path.join(tempRoot, dir!, name))).mode & 0o777).toBe(0o600);
    await write(pending, bytes);
    const stored = await pending.commit();

    expect(stored.name).toBe(name);
    expect(stored.size).toBe(bytes.length);
    expect(stored.location).toBe(`artifact ${stored.artifactId}`);
    expect(stored.digest).toBe(sha256(bytes));
    expect(stored.createdAt.toISOString()).toBe("2025-01-02T03:04:05.000Z");
    expect(store.lastUpload).toEqual(stored);
    expect(await fs.readdir(tempRoot)).toEqual([]);

    // skipArchive: the service holds the very bytes written, no zip around them.
    expect((await service.readBlob(name)).equals(bytes)).toBe(true);
    const record = service.artifacts().find((a) => a.id === stored.artifactId);
    expect(record?.digest).toBe(`sha256:${sha256(bytes)}`);

    // The companion key file is an artifact too, but not an archive in the listing.
    const companion = await store.create("looker-prod-20250102T030405Z.keyfile.age");
    await write(companion, Buffer.from("age-encrypted key file"));
    await companion.commit();

    const listed = await store.list("looker-prod");
    expect(listed.map((o) => [o.name, o.artifactId, o.size, o.digest])).toEqual([
      [name, stored.artifactId, bytes.length, sha256(bytes)],
    ]);
    expect(await store.list("other-instance")).toEqual([]);

    const back = await readAll(await store.open(name));
    expect(back.equals(bytes)).toBe(true);
    expect(await fs.readdir(tempRoot)).toEqual([]);
  });

  it("sends retention-days to the service as the artifact's expiry", async () => {
    const store = new storeModule.ArtifactStore({
      tempRoot: await privateDir("retention"),
      retentionDays: 7,
    });
    const name = "retention-20250103T000000Z.tar.zst.age";
    const pending = await store.create(name);
    await write(pending, Buffer.from("ciphertext"));
    await pending.commit();

    const create = service.callsTo("CreateArtifact").find((c) => c.body["name"] === name);
    expect(create).toBeDefined();
    const expiresAt = Date.parse(String(create?.body["expires_at"]));
    const days = (expiresAt - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(6.9);
    expect(days).toBeLessThan(7.1);
    expect(create?.body["mime_type"]).toBe("application/octet-stream");
  });

  it("sends no expiry with retention-days 0, so the repository's default retention applies", async () => {
    const store = new storeModule.ArtifactStore({
      tempRoot: await privateDir("retention-default"),
      retentionDays: 0,
    });
    const name = "retention-default-20250103T000000Z.tar.zst.age";
    const pending = await store.create(name);
    await write(pending, Buffer.from("ciphertext"));
    await pending.commit();
    const create = service.callsTo("CreateArtifact").find((c) => c.body["name"] === name);
    expect(create).toBeDefined();
    expect(create?.body["expires_at"]).toBeUndefined();
  });

  it("rejects an artifact altered after upload with an IntegrityError", async () => {
    const tempRoot = await privateDir("tamper");
    const store = new storeModule.ArtifactStore({ tempRoot });
    const name = "tampered-20250104T000000Z.tar.zst.age";
    const bytes = randomBytes(64 * 1024);
    const pending = await store.create(name);
    await write(pending, bytes);
    await pending.commit();

    const altered = Buffer.from(bytes);
    altered[1000] = altered[1000]! ^ 0xff;
    await service.tamper(name, altered);

    const error = await store.open(name).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error as IntegrityError).exitCode).toBe(ExitCode.Integrity);
    expect((error as Error).message).toMatch(/was altered after upload/);
    expect((error as Error).message).toContain(sha256(bytes));
    expect(await fs.readdir(tempRoot)).toEqual([]);
  });

  it("abort() uploads nothing and leaves no temp file", async () => {
    const tempRoot = await privateDir("abort");
    const store = new storeModule.ArtifactStore({ tempRoot });
    const name = "aborted-20250105T000000Z.tar.zst.age";
    const pending = await store.create(name);
    pending.stream.write(randomBytes(4096));
    await pending.abort();

    expect(await fs.readdir(tempRoot)).toEqual([]);
    expect(service.calls.filter((c) => c.body["name"] === name)).toEqual([]);
    expect(service.artifacts().some((a) => a.name === name)).toBe(false);
    expect((await store.list("aborted")).length).toBe(0);
  });

  it("retries an upload after a dropped connection", async () => {
    const store = new storeModule.ArtifactStore({
      tempRoot: await privateDir("retry"),
      retry: { baseDelayMs: 10 },
    });
    const name = "flaky-20250106T000000Z.tar.zst.age";
    const bytes = randomBytes(10_000);
    service.failNext("CreateArtifact", "reset");
    const pending = await store.create(name);
    await write(pending, bytes);
    const stored = await pending.commit();

    expect(service.callsTo("CreateArtifact").filter((c) => c.body["name"] === name)).toHaveLength(2);
    expect((await service.readBlob(name)).equals(bytes)).toBe(true);
    expect(stored.digest).toBe(sha256(bytes));
  });

  it("fails at once, with the cause, on a permanent service error", async () => {
    const tempRoot = await privateDir("permanent");
    const store = new storeModule.ArtifactStore({ tempRoot, retry: { baseDelayMs: 10 } });
    const name = "denied-20250107T000000Z.tar.zst.age";
    service.failNext("CreateArtifact", {
      status: 403,
      message: "artifact uploads are disabled for this repository",
    });
    const pending = await store.create(name);
    await write(pending, Buffer.from("x"));

    const error = await pending.commit().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LookerBackupError);
    expect((error as Error).message).toMatch(
      /^upload of artifact denied-20250107T000000Z\.tar\.zst\.age failed: /,
    );
    expect((error as Error).message).toContain("artifact uploads are disabled");
    expect((error as Error).cause).toBeInstanceOf(Error);
    expect(service.callsTo("CreateArtifact").filter((c) => c.body["name"] === name)).toHaveLength(1);
    expect(await fs.readdir(tempRoot)).toEqual([]);
  });

  it("open() of an unknown name is an InputError naming it", async () => {
    const store = new storeModule.ArtifactStore({ tempRoot: await privateDir("missing") });
    const error = await store.open("nope-20250101T000000Z.tar.zst.age").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InputError);
    expect((error as Error).message).toContain(
      "no artifact named nope-20250101T000000Z.tar.zst.age in the current workflow run",
    );
  });

  it("prune() leaves retention to GitHub", async () => {
    const store = new storeModule.ArtifactStore();
    expect(await store.prune()).toEqual([]);
    expect(store.kind).toBe("artifact");
  });
});

describe("@actions/cache through the v2 cache service", () => {
  it("saveCache and restoreCache round-trip a small file", async () => {
    const cache = await import("@actions/cache");
    const workspace = String(process.env["GITHUB_WORKSPACE"]);
    const file = path.join(workspace, "change-report", "previous.json");
    await fs.mkdir(path.dirname(file), { recursive: true });
    const content = JSON.stringify({
      files: 3,
      at: new Date(0).toISOString(),
      nonce: randomBytes(8).toString("hex"),
    });
    await fs.writeFile(file, content);
    const key = `change-report-looker-prod-${randomBytes(4).toString("hex")}`;

    const entryId = await cache.saveCache([file], key);
    expect(entryId).toBeGreaterThan(0);
    expect(service.callsTo("FinalizeCacheEntryUpload")).toHaveLength(1);

    await fs.rm(path.join(workspace, "change-report"), { recursive: true });
    expect(
      await cache.restoreCache([file], "change-report-looker-prod-other", ["change-report-looker-prod-"]),
    ).toBe(key);
    expect(await fs.readFile(file, "utf8")).toBe(content);
    expect(await cache.restoreCache([file], "no-such-key")).toBeUndefined();
  });
});

describe("findNewestBackupArtifact across runs", () => {
  const day = 86_400_000;
  const now = Date.now();
  let expected: { runId: number; id: number; name: string; bytes: Buffer };

  beforeAll(async () => {
    const older = service.addRun({ createdAt: new Date(now - 5 * day) });
    await service.seedArtifact(older.runId, "looker-prod-20250101T000000Z.tar.zst.age", randomBytes(100));
    const newest = service.addRun({ createdAt: new Date(now - 3 * day) });
    const bytes = randomBytes(2048);
    const seeded = await service.seedArtifact(
      newest.runId,
      "looker-prod-20250103T000000Z.tar.zst.age",
      bytes,
    );
    await service.seedArtifact(newest.runId, "looker-prod-20250103T000000Z.keyfile.age", randomBytes(100));
    // Same run, older backup of the same instance (a retried job): the newer name wins.
    await service.seedArtifact(newest.runId, "looker-prod-20250102T000000Z.tar.zst.age", randomBytes(100));
    expected = { runId: newest.runId, id: seeded.id, name: seeded.name, bytes };
    // Newer, but ruled out: a failed run, another workflow, another instance.
    const failed = service.addRun({ createdAt: new Date(now - 2 * day), conclusion: "failure" });
    await service.seedArtifact(failed.runId, "looker-prod-20250104T000000Z.tar.zst.age", randomBytes(100));
    const other = service.addRun({ workflow: "other.yml", createdAt: new Date(now - 1 * day) });
    await service.seedArtifact(other.runId, "looker-prod-20250105T000000Z.tar.zst.age", randomBytes(100));
    const staging = service.addRun({ createdAt: new Date(now - 2.5 * day) });
    await service.seedArtifact(
      staging.runId,
      "looker-staging-20250106T000000Z.tar.zst.age",
      randomBytes(100),
    );
    // The newest successful run of the workflow, with the newest backup, but dispatched on a feature branch: not the
    // production backup a restore should take.
    const feature = service.addRun({
      branch: "feature/faster-restore",
      createdAt: new Date(now - 0.5 * day),
    });
    await service.seedArtifact(feature.runId, "looker-prod-20250110T000000Z.tar.zst.age", randomBytes(100));
    featureRunId = feature.runId;
  });
  let featureRunId: number;

  const base = () => ({
    token: service.token,
    owner: service.owner,
    repo: service.repo,
    retry: { unitMs: 1 },
  });

  it("picks the newest backup of the instance from successful runs of the workflow on the default branch", async () => {
    const reposBefore = service.callsTo("getRepository").length;
    const runsBefore = service.callsTo("listWorkflowRuns").length;
    const found = await findModule.findNewestBackupArtifact({
      ...base(),
      workflow: "backup.yml",
      instance: "looker-prod",
    });
    expect(found).toEqual({
      id: expected.id,
      name: expected.name,
      runId: expected.runId,
      createdAt: new Date("2025-01-03T00:00:00Z"),
      size: expected.bytes.length,
      digest: sha256(expected.bytes),
    });
    // The default branch came from the API and went into the runs query, as GitHub's `branch` filter.
    expect(service.callsTo("getRepository").length - reposBefore).toBe(1);
    expect(service.callsTo("listWorkflowRuns").slice(runsBefore)[0]?.body).toMatchObject({
      branch: "main",
      status: "success",
      per_page: "100",
    });
    const byId = await findModule.findNewestBackupArtifact({
      ...base(),
      workflow: String(service.currentRun.workflowId),
      instance: "looker-prod",
    });
    expect(byId.id).toBe(expected.id);
    // Without a workflow, other workflows' successful runs count too.
    const anyWorkflow = await findModule.findNewestBackupArtifact({ ...base(), instance: "looker-prod" });
    expect(anyWorkflow.name).toBe("looker-prod-20250105T000000Z.tar.zst.age");
    const staging = await findModule.findNewestBackupArtifact({
      ...base(),
      workflow: "backup.yml",
      instance: "looker-staging",
    });
    expect(staging.name).toBe("looker-staging-20250106T000000Z.tar.zst.age");
  });

  it("finds an exact artifact name, and looks in one run when given", async () => {
    const named = await findModule.findNewestBackupArtifact({
      ...base(),
      workflow: "backup.yml",
      artifactName: "looker-prod-20250101T000000Z.tar.zst.age",
    });
    expect(named.name).toBe("looker-prod-20250101T000000Z.tar.zst.age");
    const inRun = await findModule.findNewestBackupArtifact({
      ...base(),
      runId: expected.runId,
      instance: "looker-prod",
    });
    expect(inRun.id).toBe(expected.id);
  });

  it("says clearly when there is no matching backup", async () => {
    const error = await findModule
      .findNewestBackupArtifact({ ...base(), workflow: "backup.yml", instance: "looker-dev" })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InputError);
    expect((error as InputError).exitCode).toBe(ExitCode.BadInput);
    expect((error as Error).message).toBe(
      `no backup artifact of instance looker-dev found in successful runs of workflow backup.yml on branch main of ${service.owner}/${service.repo}`,
    );
  });

  it("takes another branch when told, or the default branch from the event payload of this repository", async () => {
    const feature = await findModule.findNewestBackupArtifact({
      ...base(),
      workflow: "backup.yml",
      instance: "looker-prod",
      branch: "feature/faster-restore",
    });
    expect([feature.name, feature.runId]).toEqual(["looker-prod-20250110T000000Z.tar.zst.age", featureRunId]);

    const eventFile = path.join(await privateDir("event"), "event.json");
    const findWithEvent = async (repository: object) => {
      await fs.writeFile(eventFile, JSON.stringify({ repository }));
      process.env["GITHUB_EVENT_PATH"] = eventFile;
      try {
        const before = service.callsTo("getRepository").length;
        const found = await findModule.findNewestBackupArtifact({
          ...base(),
          workflow: "backup.yml",
          instance: "looker-prod",
        });
        return { name: found.name, apiCalls: service.callsTo("getRepository").length - before };
      } finally {
        delete process.env["GITHUB_EVENT_PATH"];
      }
    };
    // A repository whose default branch is the feature branch, as the payload says: no API call needed.
    expect(
      await findWithEvent({
        full_name: `${service.owner}/${service.repo}`,
        default_branch: "feature/faster-restore",
      }),
    ).toEqual({ name: "looker-prod-20250110T000000Z.tar.zst.age", apiCalls: 0 });
    // The payload of another repository says nothing about this one's default branch.
    expect(
      await findWithEvent({
        full_name: `${service.owner}/elsewhere`,
        default_branch: "feature/faster-restore",
      }),
    ).toEqual({ name: expected.name, apiCalls: 1 });
  });

  it("finds backups in another repository, and opens them there", async () => {
    service.addRepository(`${service.owner}/looker-dr`, { defaultBranch: "trunk" });
    const run = service.addRun({ repository: `${service.owner}/looker-dr` });
    const bytes = randomBytes(512);
    const seeded = await service.seedArtifact(run.runId, "looker-prod-20250120T000000Z.tar.zst.age", bytes);
    const found = await findModule.findNewestBackupArtifact({
      ...base(),
      repo: "looker-dr",
      workflow: "backup.yml",
      instance: "looker-prod",
    });
    expect([found.id, found.runId]).toEqual([seeded.id, run.runId]);
    expect(service.callsTo("listWorkflowRuns").at(-1)?.body["branch"]).toBe("trunk");
    const store = new storeModule.ArtifactStore({
      tempRoot: await privateDir("other-repo"),
      findBy: {
        token: service.token,
        workflowRunId: found.runId,
        repositoryOwner: service.owner,
        repositoryName: "looker-dr",
      },
    });
    expect((await readAll(await store.open(found.name))).equals(bytes)).toBe(true);
    // This repository's search does not see the other's backups.
    const here = await findModule.findNewestBackupArtifact({
      ...base(),
      workflow: "backup.yml",
      instance: "looker-prod",
    });
    expect(here.id).toBe(expected.id);
  });

  it("follows Link pages of runs and of a run's artifacts", async () => {
    const start = now - 30 * day;
    const oldest = service.addRun({ workflow: "paged.yml", createdAt: new Date(start) });
    const target = await service.seedArtifact(
      oldest.runId,
      "looker-paged-20250101T000000Z.tar.zst.age",
      randomBytes(64),
      { createdAt: new Date(start) },
    );
    // 100 newer artifacts in the same run push the backup to the second page of that run's artifacts...
    for (let i = 0; i < 100; i++) {
      await service.seedArtifact(oldest.runId, `notes-${i}.txt`, Buffer.from(String(i)), {
        createdAt: new Date(start + 1000 + i),
      });
    }
    // ...and 100 newer successful runs without a backup push its run to the second page of runs.
    for (let i = 0; i < 100; i++)
      service.addRun({ workflow: "paged.yml", createdAt: new Date(start + day + i) });
    const callsBefore = service.calls.length;
    const found = await findModule.findNewestBackupArtifact({
      ...base(),
      workflow: "paged.yml",
      instance: "looker-paged",
    });
    expect([found.id, found.runId]).toEqual([target.id, oldest.runId]);
    const calls = service.calls.slice(callsBefore);
    const pagesOf = (method: string) =>
      calls.filter((c) => c.method === method).map((c) => c.body["page"] ?? "1");
    expect(pagesOf("listWorkflowRuns")).toEqual(["1", "2"]);
    // One page for each empty run, two for the run holding the backup.
    expect(pagesOf("listRunArtifacts").filter((page) => page === "2")).toHaveLength(1);
    expect(pagesOf("listRunArtifacts")).toHaveLength(102);
  });

  it("says a used-up rate limit is a rate limit, with its reset time, and does not wait an hour for it", async () => {
    for (const status of [403, 429] as const) {
      const resetAt = new Date(Math.ceil(Date.now() / 1000) * 1000 + 3600_000);
      const before = service.callsTo("listWorkflowRuns").length;
      service.failNext("listWorkflowRuns", primaryRateLimitFault(resetAt, status));
      const error = await findModule
        .findNewestBackupArtifact({ ...base(), workflow: "backup.yml", instance: "looker-prod" })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RateLimitError);
      expect((error as Error).message).toContain(String(status));
      expect((error as Error).message).toContain("rate limit");
      expect((error as Error).message).toContain(`it resets at ${resetAt.toISOString()}`);
      expect((error as RateLimitError).resetAt).toEqual(resetAt);
      expect((error as RateLimitError).hint).not.toContain("actions: read");
      expect(service.callsTo("listWorkflowRuns").length - before).toBe(1);
    }
  });

  it("waits out a short secondary rate limit, and reports a long one as a rate limit", async () => {
    let before = service.callsTo("listWorkflowRuns").length;
    service.failNext("listWorkflowRuns", secondaryRateLimitFault(2));
    const found = await findModule.findNewestBackupArtifact({
      ...base(),
      workflow: "backup.yml",
      instance: "looker-prod",
    });
    expect(found.id).toBe(expected.id);
    expect(service.callsTo("listWorkflowRuns").length - before).toBe(2);

    before = service.callsTo("listWorkflowRuns").length;
    service.failNext("listWorkflowRuns", secondaryRateLimitFault(900, 429));
    const error = await findModule
      .findNewestBackupArtifact({ ...base(), workflow: "backup.yml", instance: "looker-prod" })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RateLimitError);
    expect((error as Error).message).toContain("secondary rate limit");
    expect((error as Error).message).toMatch(/it lifts at \d{4}-\d\d-\d\dT/);
    expect((error as RateLimitError).hint).not.toContain("actions: read");
    expect(service.callsTo("listWorkflowRuns").length - before).toBe(1);
  });

  it("turns 403 and 404 into an InputError with the actions: read hint", async () => {
    const forbidden = await findModule
      .findNewestBackupArtifact({
        ...base(),
        token: service.forbiddenToken,
        workflow: "backup.yml",
        instance: "looker-prod",
      })
      .catch((e: unknown) => e);
    expect(forbidden).toBeInstanceOf(InputError);
    expect((forbidden as Error).message).toContain("403");
    expect((forbidden as InputError).hint).toContain("actions: read");
    const unknownWorkflow = await findModule
      .findNewestBackupArtifact({ ...base(), workflow: "nope.yml", instance: "looker-prod" })
      .catch((e: unknown) => e);
    expect(unknownWorkflow).toBeInstanceOf(InputError);
    expect((unknownWorkflow as Error).message).toContain("404");
    expect((unknownWorkflow as InputError).hint).toContain("actions: read");
  });

  it("retries a 502 from the API", async () => {
    const before = service.callsTo("listWorkflowRuns").length;
    service.failNext("listWorkflowRuns", { status: 502 });
    const found = await findModule.findNewestBackupArtifact({
      ...base(),
      workflow: "backup.yml",
      instance: "looker-prod",
    });
    expect(found.id).toBe(expected.id);
    expect(service.callsTo("listWorkflowRuns").length - before).toBe(2);
  });

  it("an ArtifactStore with findBy lists and opens the other run's backup, digest-checked", async () => {
    const found = await findModule.findNewestBackupArtifact({
      ...base(),
      workflow: "backup.yml",
      instance: "looker-prod",
    });
    const tempRoot = await privateDir("findby");
    const store = new storeModule.ArtifactStore({
      tempRoot,
      findBy: {
        token: service.token,
        workflowRunId: found.runId,
        repositoryOwner: service.owner,
        repositoryName: service.repo,
      },
    });
    expect((await store.list("looker-prod")).map((o) => o.name)).toEqual([
      "looker-prod-20250103T000000Z.tar.zst.age",
      "looker-prod-20250102T000000Z.tar.zst.age",
    ]);
    expect((await readAll(await store.open(found.name))).equals(expected.bytes)).toBe(true);
    await expect(store.create("looker-prod-20250109T000000Z.tar.zst.age")).rejects.toThrow(
      /refusing to upload/,
    );

    const denied = new storeModule.ArtifactStore({
      tempRoot,
      findBy: {
        token: service.forbiddenToken,
        workflowRunId: found.runId,
        repositoryOwner: service.owner,
        repositoryName: service.repo,
      },
    });
    const refused = await denied.list("looker-prod").catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(InputError);
    expect((refused as InputError).hint).toContain("actions: read");

    // A rate limit on the artifact client's own requests is a rate limit too, not the actions: read hint.
    const resetAt = new Date(Math.ceil(Date.now() / 1000) * 1000 + 1800_000);
    const listsBefore = service.callsTo("listRunArtifacts").length;
    // The artifact client asks 6 times in all: it puts `retries: 5` into its request options, which plugin-retry
    // applies to any failure, a 403 included.
    service.failNext("listRunArtifacts", primaryRateLimitFault(resetAt), 6);
    const limited = await store.open(found.name).catch((e: unknown) => e);
    expect(service.callsTo("listRunArtifacts").length - listsBefore).toBe(6);
    expect(limited).toBeInstanceOf(RateLimitError);
    expect((limited as Error).message).toMatch(
      /^lookup of artifact looker-prod-20250103T000000Z\.tar\.zst\.age failed: /,
    );
    expect((limited as Error).message).toContain(`it resets at ${resetAt.toISOString()}`);
    expect((limited as RateLimitError).hint).not.toContain("actions: read");

    await service.tamper(found.name, randomBytes(expected.bytes.length), found.runId);
    await expect(store.open(found.name)).rejects.toBeInstanceOf(IntegrityError);
    expect(await fs.readdir(tempRoot)).toEqual([]);
  });
});
