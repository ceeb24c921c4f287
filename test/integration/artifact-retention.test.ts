/**
 * The artifact store across runs: every backup artifact of a repository listed newest first (listBackupArtifacts,
 * `looker-backup list --repo`), and retention (pruneBackupArtifacts, `looker-backup prune --repo`): restic's keep-
 * rules over a month of synthetic backups, one run each, decide exactly as they do for a directory store
 * (test/unit/retention.test.ts holds the same month and the same expectations), and what they drop is deleted through
 * GitHub's REST API with its companions. Against the local stand-in of GitHub's REST API and results service
 * (test/helpers/results-service.ts, blobs in Azurite), whose DELETE follows docs.github.com/en/rest/actions/artifacts.
 * Each test seeds a repository of its own.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InputError, RateLimitError } from "../../src/errors.js";
import { compactUtc } from "../../src/store/archive-name.js";
import { cli } from "../helpers/cli.js";
import {
  primaryRateLimitFault,
  type ResultsService,
  startResultsService,
} from "../helpers/results-service.js";

type FindModule = typeof import("../../src/store/artifact-find.js");
type PruneModule = typeof import("../../src/store/artifact-prune.js");

let service: ResultsService;
let find: FindModule;
let prune: PruneModule;
const savedEnv = { ...process.env };
/** The environment variable the CLI reads its token from in these tests (--token-env). */
const TOKEN_ENV = "LB_TEST_GITHUB_TOKEN";

beforeAll(async () => {
  service = await startResultsService();
  // @actions/github reads the environment when it is first imported.
  Object.assign(process.env, service.env);
  delete process.env["GITHUB_EVENT_PATH"];
  find = await import("../../src/store/artifact-find.js");
  prune = await import("../../src/store/artifact-prune.js");
});

afterAll(async () => {
  for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
  Object.assign(process.env, savedEnv);
  await service?.stop();
});

let repositories = 0;
/** A repository of its own for one test, and the request fields that reach it. */
function freshRepository(token = service.writeToken) {
  const repo = `retention-${++repositories}`;
  service.addRepository(`${service.owner}/${repo}`);
  return {
    fullName: `${service.owner}/${repo}`,
    request: { token, owner: service.owner, repo, retry: { unitMs: 1 } },
  };
}

const archiveOf = (instance: string, at: Date) => `${instance}-${compactUtc(at)}.tar.zst.age`;

/** One backup run of `workflow` holding the archive and each companion (suffixes after the archive or its base). */
async function seedBackup(
  repository: string,
  instance: string,
  at: Date,
  options: { size?: number; companions?: readonly string[]; workflow?: string; branch?: string } = {},
) {
  const run = service.addRun({
    repository,
    createdAt: at,
    ...(options.workflow ? { workflow: options.workflow } : {}),
    ...(options.branch ? { branch: options.branch } : {}),
  });
  const name = archiveOf(instance, at);
  const archive = await service.seedArtifact(run.runId, name, randomBytes(options.size ?? 1000), {
    createdAt: at,
  });
  const companions = [];
  for (const companion of options.companions ?? [".sig"]) {
    const companionName =
      companion === ".keyfile.age" ? name.replace(/\.tar\.zst\.age$/, ".keyfile.age") : `${name}${companion}`;
    companions.push(await service.seedArtifact(run.runId, companionName, randomBytes(64), { createdAt: at }));
  }
  return { run, archive, companions };
}

/** The month of test/unit/retention.test.ts: every 6 hours from 2026-11-01T03 to 2026-12-05T21 (UTC). */
function month(): Date[] {
  const times: Date[] = [];
  for (let t = Date.UTC(2026, 10, 1, 3); t <= Date.UTC(2026, 11, 5, 21); t += 6 * 3_600_000)
    times.push(new Date(t));
  return times;
}
const NOW = new Date(Date.UTC(2026, 11, 5, 22));
const hour = (archive: { createdAt: Date }) => archive.createdAt.toISOString().slice(0, 13);

describe("listBackupArtifacts and list --repo", () => {
  it("lists every run's backups newest first by the time in the name, with their companions, filtered as asked", async () => {
    const { fullName, request } = freshRepository(service.token);
    const day = (d: number, h = 3) => new Date(Date.UTC(2025, 0, d, h));
    // Uploaded out of order: the listing sorts by the time in the name, not by upload.
    const third = await seedBackup(fullName, "prod", day(3), {
      companions: [".sig", ".keyfile.age", ".catalog.age"],
    });
    const first = await seedBackup(fullName, "prod", day(1));
    const second = await seedBackup(fullName, "prod", day(2), { workflow: "manual.yml" });
    const feature = await seedBackup(fullName, "prod", day(4), { branch: "feature/x" });
    const staging = await seedBackup(fullName, "staging", day(5));
    // Not backups: a drill report, an unrelated artifact, and an expired archive.
    await service.seedArtifact(first.run.runId, "looker-drill-prod-20250101T040000Z.json", Buffer.from("{}"));
    await service.seedArtifact(first.run.runId, "coverage.zip", Buffer.from("x"));
    const expired = await seedBackup(fullName, "prod", day(6));
    service.expire(expired.archive.name, expired.run.runId);

    const all = await find.listBackupArtifacts({ ...request, instance: "prod" });
    expect(all.truncated).toBe(false);
    expect(all.archives.map((a) => [a.name, a.id, a.runId, a.size])).toEqual(
      [feature, third, second, first].map(({ archive }) => [
        archive.name,
        archive.id,
        archive.runId,
        archive.size,
      ]),
    );
    const newest = all.archives[1]!;
    expect(newest.location).toBe(`artifact ${third.archive.id} of run ${third.run.runId}`);
    expect(newest.createdAt.toISOString()).toBe("2025-01-03T03:00:00.000Z");
    expect(newest.companions.map((c) => c.name).sort()).toEqual(
      [
        "prod-20250103T030000Z.keyfile.age",
        "prod-20250103T030000Z.tar.zst.age.catalog.age",
        "prod-20250103T030000Z.tar.zst.age.sig",
      ].sort(),
    );
    expect(newest.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(all.archives[0]!.branch).toBe("feature/x");

    const everyInstance = await find.listBackupArtifacts(request);
    expect(everyInstance.archives.map((a) => a.instance)).toEqual([
      "staging",
      "prod",
      "prod",
      "prod",
      "prod",
    ]);
    expect(everyInstance.archives[0]!.id).toBe(staging.archive.id);
    const onMain = await find.listBackupArtifacts({ ...request, instance: "prod", branch: "main" });
    expect(onMain.archives.map((a) => a.id)).toEqual([third, second, first].map((b) => b.archive.id));
    const ofBackupYml = await find.listBackupArtifacts({
      ...request,
      instance: "prod",
      workflow: "backup.yml",
    });
    expect(ofBackupYml.archives.map((a) => a.id)).toEqual([feature, third, first].map((b) => b.archive.id));

    // The CLI: the same listing, newest first, the token from the environment variable --token-env names.
    process.env[TOKEN_ENV] = service.token;
    const cliArgs = [
      "list",
      "--repo",
      fullName,
      "--token-env",
      TOKEN_ENV,
      "--api-url",
      service.env["GITHUB_API_URL"]!,
    ];
    const text = await cli(...cliArgs, "--instance", "prod", "--branch", "main");
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout.trim().split("\n")).toEqual(
      [third, second, first].map(
        ({ archive, run }) =>
          expect.stringMatching(
            new RegExp(
              `^${archive.createdAt.toISOString()}\\s+\\S+ \\S+\\s+artifact ${archive.id} of run ${run.runId}\\s+${archive.name.replaceAll(".", "\\.")}$`,
            ),
          ) as unknown as string,
      ),
    );
    const json = await cli(...cliArgs, "--instance", "prod", "--json");
    expect(json.code, json.stderr).toBe(0);
    const rows = JSON.parse(json.stdout) as {
      name: string;
      artifactId: number;
      runId: number;
      companions: string[];
    }[];
    expect(rows.map((r) => r.artifactId)).toEqual(all.archives.map((a) => a.id));
    expect(rows[1]!.companions).toHaveLength(3);
    expect(rows[1]!.runId).toBe(third.run.runId);
  });

  it("is exit 2 without a token, naming the permission, and with --out and --repo together", async () => {
    delete process.env[TOKEN_ENV];
    const missing = await cli("list", "--repo", "acme/looker-ops", "--token-env", TOKEN_ENV);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`environment variable ${TOKEN_ENV} is empty or unset`);
    expect(missing.stderr).toContain("actions: read");
    const both = await cli("list", "--repo", "acme/looker-ops", "--out", "/tmp");
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/either --out .* or --repo/);
    const stray = await cli("list", "--out", "/tmp", "--workflow", "backup.yml");
    expect(stray.code).toBe(2);
    expect(stray.stderr).toContain("--workflow goes with --repo");
    const notRepo = await cli("list", "--repo", "looker-ops");
    expect(notRepo.code).toBe(2);
    expect(notRepo.stderr).toContain("is not OWNER/REPO");
    // A token GitHub refuses (no actions: read): exit 2 with the hint.
    process.env[TOKEN_ENV] = service.forbiddenToken;
    const refused = await cli(
      ...["list", "--repo", `${service.owner}/${service.repo}`, "--token-env", TOKEN_ENV],
      ...["--api-url", service.env["GITHUB_API_URL"]!],
    );
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("403");
    expect(refused.stderr).toContain("actions: read");
  });
});

describe("retention of backup artifacts across runs (restic's rules)", () => {
  it("over a month of backups, deletes exactly what keep-daily 7, keep-weekly 3 and keep-monthly 2 drop, with their signatures", async () => {
    const { fullName, request } = freshRepository();
    const seeded = [];
    for (const at of month()) seeded.push(await seedBackup(fullName, "prod", at));
    // Another instance in the same repository is not this instance's to prune.
    const other = await seedBackup(fullName, "staging", new Date(Date.UTC(2026, 10, 2, 3)));
    const policy = { keepDaily: 7, keepWeekly: 3, keepMonthly: 2 };
    // The union of the unit test's three expectations: daily 11-29..12-05, weekly 11-22/11-29/12-05, monthly
    // 11-30/12-05.
    const expectedKept = [
      "2026-11-22T21",
      "2026-11-29T21",
      "2026-11-30T21",
      "2026-12-01T21",
      "2026-12-02T21",
      "2026-12-03T21",
      "2026-12-04T21",
      "2026-12-05T21",
    ];

    const dry = await prune.pruneBackupArtifacts({
      ...request,
      instance: "prod",
      policy,
      now: NOW,
      dryRun: true,
    });
    expect(dry.archives).toHaveLength(seeded.length);
    expect(
      dry.archives
        .filter((a) => !dry.doomed.includes(a))
        .map(hour)
        .sort(),
    ).toEqual(expectedKept);
    expect(dry.removed).toEqual([]);
    expect(service.callsTo("deleteArtifact")).toHaveLength(0);

    const deletesBefore = service.callsTo("deleteArtifact").length;
    const done = await prune.pruneBackupArtifacts({ ...request, instance: "prod", policy, now: NOW });
    expect(done.warning).toBeUndefined();
    expect(done.refusal).toBeUndefined();
    expect(done.removed.map((a) => a.id).sort()).toEqual(dry.doomed.map((a) => a.id).sort());
    expect(done.left).toEqual([]);
    expect(service.callsTo("deleteArtifact").length - deletesBefore).toBe(
      2 * (seeded.length - expectedKept.length),
    );

    const after = await find.listBackupArtifacts({ ...request });
    expect(
      after.archives
        .filter((a) => a.instance === "prod")
        .map(hour)
        .sort(),
    ).toEqual(expectedKept);
    // Each kept backup still has its signature; nothing of a removed one is left, in any listing.
    for (const archive of after.archives)
      expect(archive.companions.map((c) => c.name)).toEqual([`${archive.name}.sig`]);
    const left = new Set(service.artifacts().map((a) => a.id));
    for (const backup of seeded) {
      const kept = expectedKept.includes(backup.archive.createdAt.toISOString().slice(0, 13));
      expect(left.has(backup.archive.id)).toBe(kept);
      expect(left.has(backup.companions[0]!.id)).toBe(kept);
    }
    expect(left.has(other.archive.id) && left.has(other.companions[0]!.id)).toBe(true);

    // Decided again at the same moment, the kept ones are all kept: nothing more to delete.
    const again = await prune.pruneBackupArtifacts({ ...request, instance: "prod", policy, now: NOW });
    expect(again.doomed).toEqual([]);
  });

  it("keep-last and keep-days count the archive this run uploaded even before GitHub lists it", async () => {
    const { fullName, request } = freshRepository();
    const older = await seedBackup(fullName, "prod", new Date(Date.UTC(2026, 0, 1)));
    const newer = await seedBackup(fullName, "prod", new Date(Date.UTC(2026, 0, 2)));
    const justUploaded = {
      id: 99_999_999,
      name: archiveOf("prod", new Date(Date.UTC(2026, 0, 3))),
      size: 1000,
      runId: 1,
    };
    const dry = await prune.pruneBackupArtifacts({
      ...request,
      instance: "prod",
      policy: { keepLast: 2 },
      justUploaded,
      dryRun: true,
    });
    expect(dry.archives.map((a) => a.id)).toEqual([justUploaded.id, newer.archive.id, older.archive.id]);
    expect(dry.doomed.map((a) => a.id)).toEqual([older.archive.id]);
    // Its size is what the check compares: a tenth of the one before it keeps everything.
    const small = await prune.pruneBackupArtifacts({
      ...request,
      instance: "prod",
      policy: { keepLast: 1 },
      justUploaded: { ...justUploaded, size: 100 },
    });
    expect(small.refusal).toMatch(
      /nothing pruned: the new archive prod-20260103T000000Z\.tar\.zst\.age \(100 bytes\)/,
    );
    expect(small.removed).toEqual([]);
  });
});

describe("what pruning never loses", () => {
  it("keeps every artifact after a backup less than half the size of the one before it, unless force-prune", async () => {
    const { fullName, request } = freshRepository();
    const day = (d: number) => new Date(Date.UTC(2026, 2, d));
    const big1 = await seedBackup(fullName, "prod", day(1), { size: 40_000 });
    const big2 = await seedBackup(fullName, "prod", day(2), { size: 40_000 });
    const small = await seedBackup(fullName, "prod", day(3), { size: 1_000 });
    const refused = await prune.pruneBackupArtifacts({
      ...request,
      instance: "prod",
      policy: { keepLast: 1 },
    });
    expect(refused.refusal).toMatch(
      /less than half the size of prod-20260302T000000Z\.tar\.zst\.age \(40000 bytes\)/,
    );
    expect(refused.doomed).toEqual([]);
    expect(refused.removed).toEqual([]);
    const ids = new Set(service.artifacts().map((a) => a.id));
    for (const backup of [big1, big2, small]) expect(ids.has(backup.archive.id)).toBe(true);

    const forced = await prune.pruneBackupArtifacts({
      ...request,
      instance: "prod",
      policy: { keepLast: 1, forcePrune: true },
    });
    expect(forced.removed.map((a) => a.id).sort()).toEqual([big1.archive.id, big2.archive.id].sort());
    const after = new Set(service.artifacts().map((a) => a.id));
    expect([big1, big2].some((b) => after.has(b.archive.id) || after.has(b.companions[0]!.id))).toBe(false);
    expect(after.has(small.archive.id)).toBe(true);
  });

  it("with a token that may only read: 403 is a warning naming actions: write, and every artifact stays", async () => {
    const { fullName, request } = freshRepository(service.token);
    for (let d = 1; d <= 3; d++) await seedBackup(fullName, "prod", new Date(Date.UTC(2026, 3, d)));
    const before = service.artifacts().length;
    const deletesBefore = service.callsTo("deleteArtifact").length;
    const result = await prune.pruneBackupArtifacts({
      ...request,
      instance: "prod",
      policy: { keepLast: 1 },
    });
    expect(result.doomed).toHaveLength(2);
    expect(result.removed).toEqual([]);
    expect(result.left).toHaveLength(2);
    expect(result.stoppedBy).toBeInstanceOf(InputError);
    expect(result.warning).toMatch(
      /^nothing pruned \(2 superseded backup\(s\) kept\): deleting .* failed: github api answered 403/,
    );
    expect(result.warning).toContain("Resource not accessible by integration");
    expect(result.warning).toContain("actions: write");
    expect(service.artifacts()).toHaveLength(before);
    // One refused request, not one per artifact.
    expect(service.callsTo("deleteArtifact").length - deletesBefore).toBe(1);

    // The CLI: a dry run needs only read; a real prune with that token is exit 2 with the permission.
    process.env[TOKEN_ENV] = service.token;
    const base = [
      "prune",
      "--repo",
      fullName,
      "--token-env",
      TOKEN_ENV,
      "--api-url",
      service.env["GITHUB_API_URL"]!,
    ];
    const dry = await cli(...base, "--instance", "prod", "--keep-last", "1", "--dry-run", "--json");
    expect(dry.code, dry.stderr).toBe(0);
    expect((JSON.parse(dry.stdout) as { wouldRemove: string[] }).wouldRemove).toEqual([
      "prod-20260402T000000Z.tar.zst.age",
      "prod-20260401T000000Z.tar.zst.age",
    ]);
    const real = await cli(...base, "--instance", "prod", "--keep-last", "1");
    expect(real.code).toBe(2);
    expect(real.stderr).toContain("actions: write");
    expect(service.artifacts()).toHaveLength(before);
    delete process.env[TOKEN_ENV];
    const none = await cli(
      "prune",
      "--repo",
      fullName,
      "--token-env",
      TOKEN_ENV,
      "--instance",
      "prod",
      "--keep-last",
      "1",
    );
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("actions: write");
  });

  it("deletes the key file, signature and catalog sidecar with their archive, and only those", async () => {
    const { fullName, request } = freshRepository();
    const companions = [".sig", ".keyfile.age", ".catalog.age"];
    const old = await seedBackup(fullName, "prod", new Date(Date.UTC(2026, 4, 1)), { companions });
    const kept = await seedBackup(fullName, "prod", new Date(Date.UTC(2026, 4, 2)), { companions });
    // The same names in another run (a stray copy) belong to that run's archive, not to the one pruned.
    const strayRun = service.addRun({ repository: fullName });
    const stray = await service.seedArtifact(strayRun.runId, `${old.archive.name}.sig`, randomBytes(10));

    process.env[TOKEN_ENV] = service.writeToken;
    const run = await cli(
      ...["prune", "--repo", fullName, "--token-env", TOKEN_ENV, "--api-url", service.env["GITHUB_API_URL"]!],
      ...["--instance", "prod", "--keep-last", "1", "--json"],
    );
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({
      dryRun: false,
      removed: [old.archive.name],
      wouldRemove: [],
      left: [],
      kept: [kept.archive.name],
      warnings: [],
    });
    const ids = new Set(service.artifacts().map((a) => a.id));
    for (const artifact of [old.archive, ...old.companions]) expect(ids.has(artifact.id)).toBe(false);
    for (const artifact of [kept.archive, ...kept.companions, stray]) expect(ids.has(artifact.id)).toBe(true);
    // Companions first, then the archive: a failure in between leaves the archive listed for the next run.
    const order = service
      .callsTo("deleteArtifact")
      .map((c) => c.body["artifact_id"])
      .filter((id) => [old.archive.id, ...old.companions.map((c) => c.id)].includes(id as number));
    expect(order).toHaveLength(4);
    expect(order.at(-1)).toBe(old.archive.id);
    expect(request.repo).toBe(fullName.split("/")[1]);
  });

  it("stops at the first failed deletion and leaves that backup whole for the next run; at most maxArchives, oldest first", async () => {
    const { fullName, request } = freshRepository();
    const backups: Awaited<ReturnType<typeof seedBackup>>[] = [];
    for (let d = 1; d <= 4; d++) {
      backups.push(
        await seedBackup(fullName, "prod", new Date(Date.UTC(2026, 5, d)), {
          companions: [".sig", ".keyfile.age"],
        }),
      );
    }
    // 500 on every attempt (plugin-retry's three retries included) of the first deletion.
    service.failNext("deleteArtifact", { status: 500, message: "Server Error" }, 4);
    const failed = await prune.pruneBackupArtifacts({
      ...request,
      instance: "prod",
      policy: { keepLast: 1 },
    });
    expect(failed.removed).toEqual([]);
    expect(failed.left).toHaveLength(3);
    expect(failed.warning).toMatch(
      /^nothing pruned \(3 superseded backup\(s\) kept\): deleting prod-20260601T000000Z\S* \(artifact \d+\) failed: github api answered 500/,
    );
    expect(failed.warning).toContain("the next backup retries");
    const ids = () => new Set(service.artifacts().map((a) => a.id));
    for (const backup of backups) {
      for (const artifact of [backup.archive, ...backup.companions])
        expect(ids().has(artifact.id)).toBe(true);
    }

    const some = await prune.pruneBackupArtifacts({
      ...request,
      instance: "prod",
      policy: { keepLast: 1 },
      maxArchives: 2,
    });
    expect(some.warning).toBeUndefined();
    expect(some.removed.map((a) => a.id)).toEqual([backups[0]!.archive.id, backups[1]!.archive.id]);
    expect(some.left.map((a) => a.id)).toEqual([backups[2]!.archive.id]);
    const rest = await prune.pruneBackupArtifacts({ ...request, instance: "prod", policy: { keepLast: 1 } });
    expect(rest.removed.map((a) => a.id)).toEqual([backups[2]!.archive.id]);
    expect([...ids()].filter((id) => backups.some((b) => b.archive.id === id))).toEqual([
      backups[3]!.archive.id,
    ]);
  });

  it("a rate limit on deleting is a warning saying when it resets, not a permission problem", async () => {
    const { fullName, request } = freshRepository();
    for (let d = 1; d <= 2; d++) await seedBackup(fullName, "prod", new Date(Date.UTC(2026, 6, d)));
    const resetAt = new Date(Math.ceil(Date.now() / 1000) * 1000 + 3600_000);
    service.failNext("deleteArtifact", primaryRateLimitFault(resetAt));
    const limited = await prune.pruneBackupArtifacts({
      ...request,
      instance: "prod",
      policy: { keepLast: 1 },
    });
    expect(limited.stoppedBy).toBeInstanceOf(RateLimitError);
    expect(limited.warning).toContain(`it resets at ${resetAt.toISOString()}`);
    expect(limited.warning).not.toContain("actions: write");
    expect(limited.removed).toEqual([]);
  });
});
