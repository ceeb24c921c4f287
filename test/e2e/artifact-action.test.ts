/**
 * The bundled actions end to end with the default store (artifact), on the real @actions/artifact and @actions/cache
 * clients talking to a local results service whose blobs live in a real Azurite (test/helpers/results-service.ts):
 * backup runs of a "backup.yml" workflow upload the archive and the key file, keep the catalog in the Actions cache
 * for the next run's change report, and a drill run finds the newest backup of the default branch across runs, checks
 * its digest, boots Looker from it, and keeps its report as an artifact that the next drill shows as history.
 *
 * Every backup run uses the same RUNNER_TEMP: the backups run on the one self-hosted runner next to Looker, and the
 * Actions cache versions an entry by the paths it holds.
 */
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { compactUtc } from "../../src/store/archive-name.js";
import { cliJson } from "../helpers/cli.js";
import { requireCommands } from "../helpers/prerequisites.js";
import { type ResultsService, type RunHandle, startResultsService } from "../helpers/results-service.js";
import {
  bundledAction,
  cleanUpRunnerJobs,
  type NodeAction,
  type StepResult,
  startRunnerJob,
} from "../helpers/runner-job.js";
import { type SimulatedLooker, simulatedLooker } from "../helpers/simulator.js";

const INSTANCE = "e2e-art";
const DAY_MS = 24 * 60 * 60 * 1000;

let work: string;
let runnerTemp: string;
let service: ResultsService;
let sim: SimulatedLooker;
let identity: string;
let recipient: string;
let signingKey: string;
let trustedSigners: string;
let backupAction: NodeAction;
let restoreAction: NodeAction;
/** Drill targets that may hold a running restored Looker, stopped in afterAll whatever happened. */
const drillTargets: string[] = [];

beforeAll(async () => {
  requireCommands(["age", "zstd", "tar"]);
  work = await mkdtemp(join(tmpdir(), "lb-artifact-e2e-"));
  // Traversable by the looker user, who runs the restored Looker of a drill as root.
  await chmod(work, 0o711);
  runnerTemp = join(work, "runner-temp");
  await mkdir(runnerTemp);
  service = await startResultsService();
  sim = await simulatedLooker(join(work, "home"), { seed: 11, sizeBytes: 6 << 20, smallFiles: 60 });
  sim.start();
  const identityFile = join(work, "identity.txt");
  recipient = (await cliJson<{ recipient: string }>("keygen", "--output", identityFile)).recipient;
  identity = await readFile(identityFile, "utf8");
  const signingKeyFile = join(work, "signing-key");
  trustedSigners = (
    await cliJson<{ allowedSigners: string }>("keygen", "--signing", "--output", signingKeyFile)
  ).allowedSigners;
  signingKey = await readFile(signingKeyFile, "utf8");
  backupAction = await bundledAction("backup");
  restoreAction = await bundledAction("restore");
});

afterEach(async () => {
  await cleanUpRunnerJobs();
});

afterAll(async () => {
  await cleanUpRunnerJobs();
  sim?.stopQuietly();
  for (const target of drillTargets) stopLookerIn(target);
  await service?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

function stopLookerIn(home: string): void {
  // Looker's script picks the instance by HOME.
  spawnSync("./looker", ["stop"], {
    cwd: join(home, "looker"),
    env: { ...process.env, HOME: home, LKR_MASTER_KEY_ENV: sim.cmk },
    stdio: "ignore",
  });
}

/** A new completed, successful run of the backup workflow, as the scheduler would start it. */
function backupRun(): RunHandle {
  return service.addRun({ workflow: "backup.yml" });
}

function backupEnv(run: RunHandle): Record<string, string> {
  return {
    ...run.env,
    GITHUB_WORKFLOW_REF: `${service.owner}/${service.repo}/.github/workflows/backup.yml@refs/heads/main`,
    GITHUB_RUN_ATTEMPT: "1",
  };
}

/**
 * One job of the runner with one step of `action`, completed (post steps, orphan clean-up, RUNNER_TEMP emptied)
 * after `beforeComplete` has looked at what the step left in RUNNER_TEMP.
 */
async function runJob(
  action: NodeAction,
  inputs: Record<string, string>,
  env: Record<string, string>,
  beforeComplete?: (main: StepResult) => Promise<void>,
): Promise<StepResult> {
  const job = await startRunnerJob({ env, runnerTemp });
  const main = await job.run(action, { with: inputs });
  await beforeComplete?.(main);
  await job.complete();
  return main;
}

function backupInputs(extra: Record<string, string> = {}): Record<string, string> {
  return {
    recipients: recipient,
    home: sim.home,
    instance: INSTANCE,
    "web-port": String(sim.webPort),
    "boot-timeout": "60",
    ...extra,
  };
}

async function runBackup(run: RunHandle, inputs: Record<string, string>): Promise<StepResult> {
  const result = await runJob(backupAction, inputs, backupEnv(run));
  expect(result.code, result.stdout + result.stderr).toBe(0);
  return result;
}

function artifactsOf(runId: number) {
  return service.artifacts().filter((a) => a.runId === runId);
}

function createCallsOf(run: RunHandle) {
  return service
    .callsTo("CreateArtifact")
    .filter((c) => c.body["workflow_run_backend_id"] === run.runBackendId);
}

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

/** `age -d | zstd -d | tar -t` with the Debian binaries: the member list of an archive blob. */
function listArchive(blob: Buffer): string[] {
  const identityFile = join(work, "identity.txt");
  const decrypted = spawnSync("age", ["-d", "-i", identityFile], { input: blob, maxBuffer: 1 << 30 });
  expect(decrypted.status, decrypted.stderr?.toString()).toBe(0);
  const tarBytes = spawnSync("zstd", ["-d", "-c"], { input: decrypted.stdout, maxBuffer: 1 << 30 });
  expect(tarBytes.status, tarBytes.stderr?.toString()).toBe(0);
  const listed = spawnSync("tar", ["-t"], { input: tarBytes.stdout, maxBuffer: 1 << 30 });
  expect(listed.status, listed.stderr?.toString()).toBe(0);
  return listed.stdout.toString("utf8").split("\n").filter(Boolean);
}

/** A drill run of its own workflow (in progress while it runs), on the same runner as the backups. */
function drillRun(): RunHandle {
  return service.addRun({ workflow: "restore-drill.yml", conclusion: null });
}

function drillEnv(run = drillRun()): Record<string, string> {
  return {
    ...run.env,
    GITHUB_WORKFLOW_REF: `${service.owner}/${service.repo}/.github/workflows/restore-drill.yml@refs/heads/main`,
  };
}

function restoreInputs(targetDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    identity,
    workflow: "backup.yml",
    "github-token": service.token,
    instance: INSTANCE,
    "target-dir": targetDir,
    "master-key": sim.cmk,
    "web-port": String(sim.webPort),
    "api-port": String(sim.apiPort),
    "boot-timeout": "60",
    "api-client-id": sim.clientId,
    "api-client-secret": sim.clientSecret,
    ...extra,
  };
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** The drill report artifacts a drill run uploaded. */
function drillArtifactsOf(run: RunHandle) {
  return artifactsOf(run.runId).filter((a) => a.name.startsWith(`looker-drill-${INSTANCE}-`));
}

describe("bundled actions with the artifact store (real artifact and cache clients, Azurite)", () => {
  const runs: { run: RunHandle; outputs: Record<string, string> }[] = [];
  let changedLookml = "";
  /** The first drill's report, which the next drill must show as history. */
  let firstDrill: { startedAt: string } | undefined;
  let cacheCallsBeforeDrills = 0;

  it("uploads the archive, the key file, the signature and the catalog sidecar as artifacts of their own, with retention and outputs", async () => {
    const run = backupRun();
    const result = await runBackup(
      run,
      backupInputs({
        "keystore-independent": "true",
        "master-key": sim.cmk,
        "retention-days": "7",
        "signing-key": signingKey,
      }),
    );
    runs.push({ run, outputs: result.outputs });
    const { outputs } = result;
    const name = outputs["archive-name"]!;
    expect(name).toMatch(new RegExp(`^${INSTANCE}-\\d{8}T\\d{6}Z\\.tar\\.zst\\.age$`));
    expect(outputs.skipped).toBe("false");

    const stored = artifactsOf(run.runId);
    expect(stored.map((a) => a.name).sort()).toEqual(
      [name, outputs["keyfile-artifact-name"], `${name}.sig`, outputs["catalog-name"]].sort(),
    );
    expect(outputs["catalog-name"]).toBe(name.replace(/\.tar\.zst\.age$/, ".catalog.age"));
    const signature = (await service.readBlob(`${name}.sig`, run.runId)).toString("utf8");
    expect(signature).toMatch(/^-----BEGIN SSH SIGNATURE-----\n/);
    expect(outputs["keyfile-artifact-name"]).toBe(name.replace(/\.tar\.zst\.age$/, ".keyfile.age"));
    const archive = stored.find((a) => a.name === name)!;
    expect(outputs["artifact-id"]).toBe(String(archive.id));
    // The artifact's page, as actions/upload-artifact reports it, and linked from the summary.
    const url = `https://github.com/${service.owner}/${service.repo}/actions/runs/${run.runId}/artifacts/${archive.id}`;
    expect(outputs["artifact-url"]).toBe(url);
    expect(result.summary).toContain(`](${url})`);
    expect(archive.digest).toBe(`sha256:${outputs.sha256}`);

    // No zip around it: the blob is the age file itself, byte for byte what the outputs describe.
    const blob = await service.readBlob(name, run.runId);
    expect(blob.subarray(0, 21).toString("latin1")).toBe("age-encryption.org/v1");
    expect(sha256(blob)).toBe(outputs.sha256);
    expect(String(blob.length)).toBe(outputs.bytes);
    const members = listArchive(blob);
    expect(members[0]).toBe("meta/backup.json");
    expect(members.at(-1)).toBe("meta/catalog.jsonl");
    expect(members).toContain("home/looker/.db/looker.script");

    // retention-days reaches the service as the artifact's expiry (CreateArtifact's expires_at).
    const creates = createCallsOf(run);
    expect(creates.map((c) => c.body["name"]).sort()).toEqual(stored.map((a) => a.name).sort());
    for (const call of creates) {
      const expiresAt = Date.parse(String(call.body["expires_at"]));
      const days = (expiresAt - archive.createdAt.getTime()) / DAY_MS;
      expect(days).toBeGreaterThan(6.9);
      expect(days).toBeLessThan(7.1);
    }

    const keyfileBlob = await service.readBlob(outputs["keyfile-artifact-name"]!, run.runId);
    const keyfile = spawnSync("age", ["-d", "-i", join(work, "identity.txt")], { input: keyfileBlob });
    expect(keyfile.status, keyfile.stderr?.toString()).toBe(0);
    expect(JSON.parse(keyfile.stdout.toString()).backup_uid).toBeTruthy();
    // The sidecar opens with the stock age: its header names the archive, the catalog's lines follow.
    const sidecarBlob = await service.readBlob(outputs["catalog-name"]!, run.runId);
    const sidecar = spawnSync("age", ["-d", "-i", join(work, "identity.txt")], { input: sidecarBlob });
    expect(sidecar.status, sidecar.stderr?.toString()).toBe(0);
    const [header, ...lines] = sidecar.stdout.toString().trim().split("\n");
    expect(JSON.parse(header!)).toMatchObject({ format: "looker-backup-catalog/1", archive: name });
    expect(lines.map((line) => JSON.parse(line).path)).toEqual(members.slice(0, -1));

    expect(result.summary).toContain(`## Looker backup: ${INSTANCE}`);
    expect(result.summary).toContain("No earlier backup of this instance was found.");
    // Checked after the whole job: the restarted Looker must also survive Complete job's orphan process clean-up.
    expect(sim.isRunning(), "Looker is not running after the job").toBe(true);
  });

  it("reports the changes since the previous run's catalog, kept in the Actions cache", async () => {
    // From here on Looker is stopped: a running Looker rewrites files in looker/.db every beat.
    sim.stopQuietly();
    expect(sim.isRunning()).toBe(false);
    const settle = backupRun();
    const settled = await runBackup(settle, backupInputs());
    runs.push({ run: settle, outputs: settled.outputs });
    expect(settled.summary).toContain(`### Changes since \`${runs[0]!.outputs["archive-name"]}\``);
    expect(service.callsTo("GetCacheEntryDownloadURL").length).toBeGreaterThan(0);

    const lookml = (await readdir(join(sim.lookerDir, "models-user-1"), { recursive: true }))
      .filter((p) => p.endsWith(".view.lkml"))
      .sort()[0]!;
    changedLookml = lookml;
    const file = join(sim.lookerDir, "models-user-1", lookml);
    await writeFile(file, `${await readFile(file, "utf8")}\n# changed by the e2e test\n`);

    const run = backupRun();
    const result = await runBackup(run, backupInputs());
    runs.push({ run, outputs: result.outputs });
    expect(result.summary).toContain(`### Changes since \`${settled.outputs["archive-name"]}\``);
    expect(result.summary).toMatch(/\| Added \| 0 \|/);
    expect(result.summary).toMatch(/\| Changed \| 1 \|/);
    expect(result.summary).toMatch(/\| Removed \| 0 \|/);
    expect(result.summary).toContain(`looker/models-user-1/${lookml}`);
    expect(result.outputs.skipped).toBe("false");
    expect(
      artifactsOf(run.runId)
        .map((a) => a.name)
        .sort(),
    ).toEqual([result.outputs["archive-name"], result.outputs["catalog-name"]].sort());
  });

  it("skips the upload when nothing changed and skip-if-unchanged is set", async () => {
    const run = backupRun();
    const lookupsBefore = service.callsTo("getArtifact").length;
    const result = await runBackup(
      run,
      backupInputs({ "skip-if-unchanged": "true", "github-token": service.token }),
    );
    expect(result.outputs.skipped, result.stdout).toBe("true");
    // Only after GitHub confirmed that the archive standing in for this run is still there.
    expect(service.callsTo("getArtifact").length).toBe(lookupsBefore + 1);
    expect(createCallsOf(run)).toEqual([]);
    expect(artifactsOf(run.runId)).toEqual([]);
    expect(result.outputs["artifact-id"] ?? "").toBe("");
    // Nothing was stored, so there is no archive name or digest a later step could try to fetch.
    expect(result.outputs["archive-name"]).toBe("");
    expect(result.outputs.sha256).toBe("");
    expect(result.summary).toContain("(skipped: nothing changed)");
    expect(result.summary).toContain(`Nothing changed since \`${runs.at(-1)!.outputs["archive-name"]}\``);
    // The discarded archive is never offered for restore.
    expect(result.summary).not.toContain("How to restore");
    expect(result.stdout).toContain(`nothing changed since ${runs.at(-1)!.outputs["archive-name"]}`);
  });

  it("backs up anyway when nothing changed but the last archive expired, or cannot be looked up", async () => {
    const last = runs.at(-1)!;
    // Without a token the artifact cannot be confirmed: no skip.
    const unconfirmed = backupRun();
    const first = await runBackup(
      unconfirmed,
      backupInputs({ "skip-if-unchanged": "true", "github-token": "" }),
    );
    expect(first.outputs.skipped, first.stdout).toBe("false");
    expect(first.stdout).toContain(
      `::notice::nothing changed, but backing up anyway: ${last.outputs["archive-name"]} can no longer be found`,
    );
    runs.push({ run: unconfirmed, outputs: first.outputs });

    // The archive just stored runs out of retention: the next unchanged run must replace it.
    service.expire(first.outputs["archive-name"]!, unconfirmed.runId);
    const run = backupRun();
    const result = await runBackup(
      run,
      backupInputs({ "skip-if-unchanged": "true", "github-token": service.token }),
    );
    expect(result.outputs.skipped, result.stdout).toBe("false");
    expect(result.stdout).toContain(`${first.outputs["archive-name"]} can no longer be found`);
    expect(
      artifactsOf(run.runId)
        .map((a) => a.name)
        .sort(),
    ).toEqual([result.outputs["archive-name"], result.outputs["catalog-name"]].sort());
    runs.push({ run, outputs: result.outputs });
  });

  it("drills the newest backup of the default branch: download, digest check, restore, boot, report kept", async () => {
    const newest = runs.at(-1)!;
    // A newer successful run of the backup workflow, dispatched on a feature branch, with a newer "backup" of the
    // instance (that would not even decrypt): the drill must not take it.
    const feature = service.addRun({ workflow: "backup.yml", branch: "feature/try-things" });
    const featureName = `${INSTANCE}-${new Date(Date.now() + DAY_MS)
      .toISOString()
      .replace(/\.\d{3}Z$/, "Z")
      .replace(/[-:]/g, "")}.tar.zst.age`;
    await service.seedArtifact(
      feature.runId,
      featureName,
      Buffer.from("age-encryption.org/v1\nnot a backup\n"),
    );
    const target = join(work, "drill-newest");
    drillTargets.push(target);
    const downloadsBefore = service.callsTo("downloadArtifact").length;
    cacheCallsBeforeDrills = service.calls.filter((c) => c.service === "CacheService").length;
    const run = drillRun();
    let report: { result?: string; startedAt: string } = { startedAt: "" };
    // The JSON report lives in RUNNER_TEMP, which the runner empties at the end of the job.
    // A private repository whose artifact retention is set to GitHub's maximum (the runner passes the setting).
    const env = { ...drillEnv(run), GITHUB_RETENTION_DAYS: "400" };
    const result = await runJob(restoreAction, restoreInputs(target), env, async (main) => {
      report = JSON.parse(await readFile(main.outputs.report!, "utf8"));
    });
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.outputs.result).toBe("passed");
    expect(result.outputs["archive-name"]).toBe(newest.outputs["archive-name"]);
    expect(Number(result.outputs["rto-ms"])).toBeGreaterThan(0);
    expect(Number(result.outputs["rpo-ms"])).toBeGreaterThanOrEqual(0);
    expect(Number(result.outputs["files-verified"])).toBeGreaterThan(60);
    expect(result.stdout).toContain(`from run ${newest.run.runId}`);
    expect(report.result).toBe("passed");
    // Fetched through the REST API of another run (the drill is not the backup run), then restored byte for byte.
    expect(service.callsTo("downloadArtifact").length).toBeGreaterThan(downloadsBefore);
    expect(await readFile(join(target, "looker", "models-user-1", changedLookml), "utf8")).toContain(
      "# changed by the e2e test",
    );
    expect(result.stdout).not.toContain(featureName);
    // No trusted-signers input: the drill says it did not check who made the archive.
    expect(result.stdout).toContain("::warning::authenticity not checked: no trusted signers configured");
    expect(service.callsTo("listWorkflowRuns").at(-1)?.body["branch"]).toBe(service.defaultBranch);

    // The report is kept as an artifact of the drill run, named by the drill's start, for up to 400 days.
    const kept = drillArtifactsOf(run);
    expect(kept.map((a) => a.name)).toEqual([
      `looker-drill-${INSTANCE}-${report.startedAt.replace(/\.\d{3}Z$/, "Z").replace(/[-:]/g, "")}.json`,
    ]);
    const days = (Date.parse(kept[0]!.expiresAt!) - kept[0]!.createdAt.getTime()) / DAY_MS;
    expect(days).toBeGreaterThan(399.9);
    expect(days).toBeLessThan(400.1);
    expect(JSON.parse((await service.readBlob(kept[0]!.name, run.runId)).toString("utf8"))).toEqual(report);
    expect(result.summary).not.toContain("### Previous drills");
    firstDrill = report;
  });

  it("drills a keystore-independent backup of a given run with its key file artifact", async () => {
    const first = runs[0]!;
    // Beside the first drill's report: an older damaged one, and a newer one of another instance whose name starts
    // with this instance's prefix.
    const other = service.addRun({ workflow: "restore-drill.yml" });
    await service.seedArtifact(
      other.runId,
      `looker-drill-${INSTANCE}-20200101T000000Z.json`,
      Buffer.from("{ not json"),
    );
    await service.seedArtifact(
      other.runId,
      `looker-drill-${INSTANCE}-eu-20300101T000000Z.json`,
      Buffer.from(JSON.stringify({ ...firstDrill, startedAt: "2030-01-01T00:00:00.000Z" })),
    );
    const target = join(work, "drill-keyfile");
    drillTargets.push(target);
    const run = drillRun();
    const result = await runJob(
      restoreAction,
      restoreInputs(target, { "run-id": String(first.run.runId), "trusted-signers": trustedSigners }),
      drillEnv(run),
    );
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.outputs.result).toBe("passed");
    expect(result.outputs["archive-name"]).toBe(first.outputs["archive-name"]);
    // The signature artifact of the same run came down too, and vouched for the archive before it was decrypted.
    expect(result.stdout).toMatch(/ok +check signature \(\d+ ms\): signed by SHA256:\S+ \(looker-backup\)/);
    expect(result.stdout).not.toContain("authenticity not checked");
    expect(result.stdout).toContain(`restoring ${first.outputs["keyfile-artifact-name"]} of the same run`);
    expect(result.stdout).toMatch(/ok +restore_dr_backup/);
    // The first drill's report came back from its artifact as this one's history; the damaged one cost a warning.
    expect(firstDrill).toBeDefined();
    expect(result.summary).toContain("### Previous drills");
    expect(result.summary).toContain(`| ${firstDrill!.startedAt} | passed |`);
    expect(result.summary).not.toContain("2030-01-01");
    expect(result.stdout).toMatch(
      new RegExp(
        `::warning::earlier drill looker-drill-${INSTANCE}-20200101T000000Z\\.json \\(run ${other.runId}\\) left out`,
      ),
    );
    expect(drillArtifactsOf(run)).toHaveLength(1);
    // Neither drill touched the Actions cache.
    expect(service.calls.filter((c) => c.service === "CacheService").length).toBe(cacheCallsBeforeDrills);
  });

  it("drills without the artifact service, warning that the drill history is not kept", async () => {
    const target = join(work, "drill-no-service");
    drillTargets.push(target);
    const run = drillRun();
    const listsBefore = service.callsTo("listRepoArtifacts").length;
    // A step the runner gave no artifact service: the backup still comes through the REST API.
    const result = await runJob(restoreAction, restoreInputs(target), {
      ...drillEnv(run),
      ACTIONS_RUNTIME_TOKEN: "",
    });
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.outputs.result).toBe("passed");
    expect(result.stdout).toContain("::warning::the drill history is not kept: ACTIONS_RUNTIME_TOKEN");
    expect(result.summary).not.toContain("### Previous drills");
    expect(drillArtifactsOf(run)).toEqual([]);
    expect(service.callsTo("listRepoArtifacts").length).toBe(listsBefore);
  });

  it("refuses an unsigned backup with exit 4 when trusted signers are set, and leaves the target absent", async () => {
    const newest = runs.at(-1)!;
    const target = join(work, "drill-unsigned");
    const result = await runJob(
      restoreAction,
      restoreInputs(target, { "trusted-signers": trustedSigners }),
      drillEnv(),
    );
    expect(result.code, result.stdout + result.stderr).toBe(4);
    expect(result.stdout).toContain(`${newest.outputs["archive-name"]} is not signed`);
    expect(await exists(target)).toBe(false);
    expect((await readdir(work)).filter((entry) => entry.startsWith(".looker-drill-"))).toEqual([]);
  });

  it("refuses a tampered artifact with exit 4 and leaves the target absent", async () => {
    const newest = runs.at(-1)!;
    const name = newest.outputs["archive-name"]!;
    const blob = await service.readBlob(name, newest.run.runId);
    const altered = Buffer.from(blob);
    altered[altered.length - 100] = altered[altered.length - 100]! ^ 0x01;
    await service.tamper(name, altered, newest.run.runId);
    const target = join(work, "drill-tampered");
    const result = await runJob(restoreAction, restoreInputs(target), drillEnv());
    expect(result.code, result.stdout + result.stderr).toBe(4);
    expect(result.stdout).toContain(`artifact ${name}`);
    expect(result.stdout).toContain("was altered after upload");
    expect(await exists(target)).toBe(false);
    // Nor any staging directory beside it: the digest is checked before anything is extracted.
    expect((await readdir(work)).filter((entry) => entry.startsWith(".looker-drill-"))).toEqual([]);
  });

  it("keeps the README's action tables generated from the action files", () => {
    const check = spawnSync(process.execPath, ["scripts/docs.mjs", "--check"], { encoding: "utf8" });
    expect(check.status, check.stdout + check.stderr).toBe(0);
  });
});

describe("the keep- inputs with the artifact store", () => {
  const GFS = "e2e-gfs";

  it("prune the instance's backups of earlier runs with their companions; a read-only token only warns", async () => {
    const now = Date.now();
    const seeded: { id: number; name: string }[][] = [];
    for (const daysAgo of [40, 9, 3, 2]) {
      const at = new Date(now - daysAgo * DAY_MS);
      const run = service.addRun({ workflow: "backup.yml", createdAt: at });
      const name = `${GFS}-${compactUtc(at)}.tar.zst.age`;
      const seed = (artifactName: string) =>
        service.seedArtifact(run.runId, artifactName, randomBytes(2048), { createdAt: at });
      seeded.push([
        await seed(name),
        await seed(`${name}.sig`),
        await seed(name.replace(/\.tar\.zst\.age$/, ".keyfile.age")),
      ]);
    }
    const otherRun = service.addRun({ workflow: "backup.yml", createdAt: new Date(now - 9 * DAY_MS) });
    const other = await service.seedArtifact(
      otherRun.runId,
      `e2e-other-${compactUtc(new Date(now - 9 * DAY_MS))}.tar.zst.age`,
      randomBytes(2048),
    );
    const ids = () => new Set(service.artifacts().map((a) => a.id));

    // GITHUB_TOKEN without actions: write: the backup succeeds, says what permission pruning needs, deletes nothing.
    const readOnly = backupRun();
    const warned = await runBackup(
      readOnly,
      backupInputs({ instance: GFS, "keep-last": "2", "github-token": service.token }),
    );
    expect(warned.outputs.skipped).toBe("false");
    expect(warned.stdout).toMatch(
      /^::warning::nothing pruned \(3 superseded backup\(s\) kept\): deleting .* failed: github api answered 403 .*actions: write/m,
    );
    expect(warned.summary).toContain("actions: write");
    for (const artifact of seeded.flat()) expect(ids().has(artifact.id)).toBe(true);

    const run = backupRun();
    const pruned = await runBackup(
      run,
      backupInputs({ instance: GFS, "keep-last": "2", "github-token": service.writeToken }),
    );
    expect(pruned.outputs.warnings, pruned.stdout).toBe("0");
    expect(pruned.stdout).toContain(
      `retention: 6 backup(s) of ${GFS} in ${service.owner}/${service.repo}; 4 deleted, 2 kept`,
    );
    const left = ids();
    for (const artifact of seeded.flat()) expect(left.has(artifact.id), artifact.name).toBe(false);
    // Kept: this run's backup and the one before it; the other instance's backup is not this instance's to prune.
    const [kept] = artifactsOf(readOnly.runId).filter((a) => a.name === warned.outputs["archive-name"]);
    expect(kept && left.has(kept.id)).toBe(true);
    expect(left.has(Number(pruned.outputs["artifact-id"]))).toBe(true);
    expect(left.has(other.id)).toBe(true);
    // `list --repo` shows what is left of the instance, newest first: what a drill takes is this run's backup.
    process.env["LB_E2E_TOKEN"] = service.token;
    try {
      const listed = await cliJson<{ name: string; runId: number }[]>(
        ...["list", "--repo", `${service.owner}/${service.repo}`, "--instance", GFS],
        ...["--api-url", service.env["GITHUB_API_URL"]!, "--token-env", "LB_E2E_TOKEN"],
      );
      expect(listed.map((a) => [a.name, a.runId])).toEqual([
        [pruned.outputs["archive-name"], run.runId],
        [warned.outputs["archive-name"], readOnly.runId],
      ]);
    } finally {
      delete process.env["LB_E2E_TOKEN"];
    }
  });
});
