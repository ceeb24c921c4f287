/**
 * The artifact store and the cross-run lookup on the real @actions/artifact and @actions/cache clients, against a
 * local results service (test/helpers/results-service.ts) whose blobs live in a real Azurite server.
 * The clients run in this process: the service's env is set before the modules under test are imported, because
 * @actions/github fixes its API base URL (GITHUB_API_URL) at import time.
 */
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitCode, InputError, IntegrityError, LookerBackupError } from "../../src/errors.js";
import type { ResultsService } from "../helpers/results-service.js";
import { startResultsService } from "../helpers/results-service.js";

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
  });

  const base = () => ({
    token: service.token,
    owner: service.owner,
    repo: service.repo,
    retry: { baseDelayMs: 10 },
  });

  it("picks the newest backup of the instance from successful runs of the workflow", async () => {
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
      `no backup artifact of instance looker-dev found in successful runs of workflow backup.yml in ${service.owner}/${service.repo}`,
    );
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

    await service.tamper(found.name, randomBytes(expected.bytes.length), found.runId);
    await expect(store.open(found.name)).rejects.toBeInstanceOf(IntegrityError);
    expect(await fs.readdir(tempRoot)).toEqual([]);
  });
});
