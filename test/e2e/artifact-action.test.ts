/**
 * The bundled actions end to end with the default store (artifact), on the real @actions/artifact and @actions/cache
 * clients talking to a local results service whose blobs live in a real Azurite (test/helpers/results-service.ts):
 * backup runs of a "backup.yml" workflow upload the archive and the key file, keep the catalog in the Actions cache
 * for the next run's change report, and a drill run finds the newest backup across runs, checks its digest and
 * boots Looker from it.
 *
 * Every backup run uses the same RUNNER_TEMP: the backups run on the one self-hosted runner next to Looker, and the
 * Actions cache versions an entry by the paths it holds.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ActionRun, runActionEntry } from "../helpers/actions-env.js";
import { bundledEntry } from "../helpers/bundle.js";
import { cliJson } from "../helpers/cli.js";
import { requireCommands } from "../helpers/prerequisites.js";
import { type ResultsService, type RunHandle, startResultsService } from "../helpers/results-service.js";
import { type SimulatedLooker, simulatedLooker } from "../helpers/simulator.js";

const INSTANCE = "e2e-art";
const DAY_MS = 24 * 60 * 60 * 1000;

let work: string;
let runnerTemp: string;
let service: ResultsService;
let sim: SimulatedLooker;
let identity: string;
let recipient: string;
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
});

afterAll(async () => {
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
    RUNNER_TEMP: runnerTemp,
  };
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

async function runBackup(run: RunHandle, inputs: Record<string, string>): Promise<ActionRun> {
  const result = await runActionEntry(await bundledEntry("backup-main"), {
    inputs,
    env: backupEnv(run),
  });
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
function drillEnv(): Record<string, string> {
  const run = service.addRun({ workflow: "restore-drill.yml", conclusion: null });
  return {
    ...run.env,
    GITHUB_WORKFLOW_REF: `${service.owner}/${service.repo}/.github/workflows/restore-drill.yml@refs/heads/main`,
    RUNNER_TEMP: runnerTemp,
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

describe("bundled actions with the artifact store (real artifact and cache clients, Azurite)", () => {
  const runs: { run: RunHandle; outputs: Record<string, string> }[] = [];
  let changedLookml = "";

  it("uploads the archive as one artifact and the key file as another, with retention and outputs", async () => {
    const run = backupRun();
    const result = await runBackup(
      run,
      backupInputs({ "keystore-independent": "true", "master-key": sim.cmk, "retention-days": "7" }),
    );
    runs.push({ run, outputs: result.outputs });
    const { outputs } = result;
    const name = outputs["archive-name"]!;
    expect(name).toMatch(new RegExp(`^${INSTANCE}-\\d{8}T\\d{6}Z\\.tar\\.zst\\.age$`));
    expect(outputs.skipped).toBe("false");

    const stored = artifactsOf(run.runId);
    expect(stored.map((a) => a.name).sort()).toEqual([name, outputs["keyfile-artifact-name"]].sort());
    expect(outputs["keyfile-artifact-name"]).toBe(name.replace(/\.tar\.zst\.age$/, ".keyfile.age"));
    const archive = stored.find((a) => a.name === name)!;
    expect(outputs["artifact-id"]).toBe(String(archive.id));
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

    expect(result.summary).toContain(`## Looker backup: ${INSTANCE}`);
    expect(result.summary).toContain("No earlier backup of this instance was found.");
    expect(sim.isRunning()).toBe(true);
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
    expect(artifactsOf(run.runId).map((a) => a.name)).toEqual([result.outputs["archive-name"]]);
  });

  it("skips the upload when nothing changed and skip-if-unchanged is set", async () => {
    const run = backupRun();
    const result = await runBackup(run, backupInputs({ "skip-if-unchanged": "true" }));
    expect(result.outputs.skipped, result.stdout).toBe("true");
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

  it("drills the newest backup of the workflow: download, digest check, restore, boot", async () => {
    const newest = runs.at(-1)!;
    const target = join(work, "drill-newest");
    drillTargets.push(target);
    const downloadsBefore = service.callsTo("downloadArtifact").length;
    const result = await runActionEntry(await bundledEntry("restore-main"), {
      inputs: restoreInputs(target),
      env: drillEnv(),
    });
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.outputs.result).toBe("passed");
    expect(result.outputs["archive-name"]).toBe(newest.outputs["archive-name"]);
    expect(Number(result.outputs["rto-ms"])).toBeGreaterThan(0);
    expect(Number(result.outputs["rpo-ms"])).toBeGreaterThanOrEqual(0);
    expect(Number(result.outputs["files-verified"])).toBeGreaterThan(60);
    expect(result.stdout).toContain(`from run ${newest.run.runId}`);
    const report = JSON.parse(await readFile(result.outputs.report!, "utf8"));
    expect(report.result).toBe("passed");
    // Fetched through the REST API of another run (the drill is not the backup run), then restored byte for byte.
    expect(service.callsTo("downloadArtifact").length).toBeGreaterThan(downloadsBefore);
    expect(await readFile(join(target, "looker", "models-user-1", changedLookml), "utf8")).toContain(
      "# changed by the e2e test",
    );
  });

  it("drills a keystore-independent backup of a given run with its key file artifact", async () => {
    const first = runs[0]!;
    const target = join(work, "drill-keyfile");
    drillTargets.push(target);
    const result = await runActionEntry(await bundledEntry("restore-main"), {
      inputs: restoreInputs(target, { "run-id": String(first.run.runId) }),
      env: drillEnv(),
    });
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.outputs.result).toBe("passed");
    expect(result.outputs["archive-name"]).toBe(first.outputs["archive-name"]);
    expect(result.stdout).toContain(`restoring the key file ${first.outputs["keyfile-artifact-name"]}`);
    expect(result.stdout).toMatch(/ok +restore_dr_backup/);
    // The first drill's report came back from the Actions cache as this one's history.
    expect(result.summary).toContain("### Previous drills");
    expect(result.summary).toMatch(/\| passed \|/);
  });

  it("refuses a tampered artifact with exit 4 and leaves the target absent", async () => {
    const newest = runs.at(-1)!;
    const name = newest.outputs["archive-name"]!;
    const blob = await service.readBlob(name, newest.run.runId);
    const altered = Buffer.from(blob);
    altered[altered.length - 100] = altered[altered.length - 100]! ^ 0x01;
    await service.tamper(name, altered, newest.run.runId);
    const target = join(work, "drill-tampered");
    const result = await runActionEntry(await bundledEntry("restore-main"), {
      inputs: restoreInputs(target),
      env: drillEnv(),
    });
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
