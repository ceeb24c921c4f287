import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { decryptBuffer } from "../../src/crypto/age.js";
import { probeAlive } from "../../src/looker/alive.js";
import type { RuleTally } from "../../src/manifest/select.js";
import { formatBytes } from "../../src/runtime/format.js";
import { cliJson } from "../helpers/cli.js";
import { requireCommands } from "../helpers/prerequisites.js";
import { bundledAction, cleanUpRunnerJobs, type NodeAction, startRunnerJob } from "../helpers/runner-job.js";
import { type SimulatedLooker, simulatedLooker } from "../helpers/simulator.js";
import { sshKeygenVerify } from "../helpers/ssh-keygen.js";

let work: string;
let sim: SimulatedLooker;
let identityFile: string;
let recipient: string;
let signingKeyFile: string;
let allowedSigners: string;
let backup: NodeAction;

beforeAll(async () => {
  requireCommands(["age", "zstd", "tar", "ssh-keygen"]);
  work = await mkdtemp(join(tmpdir(), "lb-action-e2e-"));
  sim = await simulatedLooker(join(work, "home"), { seed: 3, sizeBytes: 160 << 20, smallFiles: 200 });
  sim.start();
  identityFile = join(work, "identity.txt");
  recipient = (await cliJson<{ recipient: string }>("keygen", "--output", identityFile)).recipient;
  signingKeyFile = join(work, "signing-key");
  allowedSigners = join(work, "allowed_signers");
  const signer = await cliJson<{ allowedSigners: string }>("keygen", "--signing", "--output", signingKeyFile);
  await writeFile(allowedSigners, `${signer.allowedSigners}\n`);
  backup = await bundledAction("backup");
});

// Each test starts from a running Looker. Whether Looker survives a job's "Complete job" (the runner's orphan
// process clean-up) is what test/e2e/runner-job.test.ts checks.
beforeEach(() => {
  if (!sim.isRunning()) sim.start();
});

afterEach(async () => {
  await cleanUpRunnerJobs();
});

afterAll(async () => {
  await cleanUpRunnerJobs();
  sim?.stopQuietly();
  await rm(work, { recursive: true, force: true });
});

/** Whether a backup is writing its archive into `store` right now (the dir store's partial file). */
function writingArchive(store: string): boolean {
  try {
    return readdirSync(store).some((name) => name.startsWith(".partial-"));
  } catch {
    return false; // the store directory is made when the archive is
  }
}

function baseInputs(store: string): Record<string, string> {
  return {
    recipients: recipient,
    home: sim.home,
    instance: "e2e",
    store: "dir",
    "store-dir": store,
    "web-port": String(sim.webPort),
    "boot-timeout": "60",
  };
}

/** How many times the simulator has shut down so far, from its own log. */
function lookerStops(): number {
  return readFileSync(join(sim.lookerDir, "log", "looker.log"), "utf8")
    .split("\n")
    .filter((line) => line.endsWith(" looker stopped")).length;
}

/** Every file under `dir`, recursively, as text, so a test can look for leaked secrets. */
async function allFileContents(dir: string): Promise<string> {
  const parts: string[] = [];
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) parts.push(await readFile(join(entry.parentPath, entry.name), "latin1"));
  }
  return parts.join("\n");
}

describe("backup action (bundled dist entry, dir store, running simulator)", () => {
  it("makes a signed keystore-independent brief-stop backup, restarts Looker and never leaks the secrets", async () => {
    const store = join(work, "store");
    const job = await startRunnerJob();
    const signingKey = await readFile(signingKeyFile, "utf8");
    const run = await job.run(backup, {
      with: {
        ...baseInputs(store),
        consistency: "brief-stop",
        "keystore-independent": "true",
        "master-key": sim.cmk,
        "signing-key": signingKey,
      },
    });
    expect(run.code, run.stderr + run.stdout).toBe(0);
    const { outputs } = run;
    expect(outputs["archive-name"]).toMatch(/^e2e-\d{8}T\d{6}Z\.tar\.zst\.age$/);
    expect(outputs.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(Number(outputs["downtime-ms"])).toBeGreaterThan(0);
    expect(outputs["keyfile-artifact-name"]).toBe(
      outputs["archive-name"]!.replace(".tar.zst.age", ".keyfile.age"),
    );
    const archiveName = outputs["archive-name"]!;
    expect(outputs["catalog-name"]).toBe(archiveName.replace(".tar.zst.age", ".catalog.age"));
    expect((await readdir(store)).sort()).toEqual(
      [outputs["keyfile-artifact-name"], archiveName, `${archiveName}.sig`, outputs["catalog-name"]].sort(),
    );
    // The catalog sidecar's backup.json, as the archive holds it, records how long the brief stop kept Looker down.
    const sidecar = await decryptBuffer(await readFile(join(store, outputs["catalog-name"]!)), {
      identities: [await readFile(identityFile, "utf8")],
    });
    const header = JSON.parse(sidecar.toString("utf8").split("\n", 1)[0]!);
    expect(header.backup).toMatchObject({ consistency: "brief-stop", keystoreIndependent: true });
    expect(header.backup.downtimeMs).toBeGreaterThan(0);
    // The signature beside the archive is one stock ssh-keygen accepts for the archive as stored.
    const archivePath = join(store, archiveName);
    const verified = await sshKeygenVerify(archivePath, allowedSigners);
    expect(verified.status, verified.stderr).toBe(0);

    expect(sim.isRunning()).toBe(true);
    expect(await probeAlive({ host: "127.0.0.1", port: sim.webPort })).toBe(true);

    expect(run.summary).toContain("## Looker backup: e2e");
    expect(run.summary).toContain("`looker/log` | excluded");
    expect(run.summary).toContain("age -d -i identity.txt");

    const keyfile = JSON.parse(
      (
        await decryptBuffer(await readFile(join(store, outputs["keyfile-artifact-name"]!)), {
          identities: [await readFile(identityFile, "utf8")],
        })
      ).toString(),
    );
    expect(keyfile.backup_uid).toBeTruthy();
    // Looker writes dbmk with a newline inside the string: the secret is the key text.
    // The signing key's body: every base64 line of the private key file (the armor lines are not secret).
    const signingKeyLines = signingKey.split("\n").filter((line) => line !== "" && !line.startsWith("-----"));
    const secrets = [sim.cmk, (keyfile.dbmk as string).trim(), ...signingKeyLines];
    // `::add-mask::` lines are commands the runner consumes to mask a value; they never reach the visible log.
    const visibleStdout = run.stdout
      .split("\n")
      .filter((line) => !line.startsWith("::add-mask::"))
      .join("\n");
    expect(run.stdout).toContain(`::add-mask::${sim.cmk}`);
    expect(run.stdout).toContain(`::add-mask::${signingKeyLines[0]}`);
    const written = [
      visibleStdout,
      run.stderr,
      run.summary,
      JSON.stringify(run.outputs),
      JSON.stringify(run.state),
      await allFileContents(job.runnerTemp),
      await allFileContents(store),
    ];
    const names = ["stdout", "stderr", "summary", "outputs", "state", "runner temp files", "store files"];
    for (const secret of secrets) {
      expect(names.filter((_, i) => written[i]!.includes(secret))).toEqual([]);
    }

    // The post step: its own process, the main step's state as STATE_*, then "Complete job".
    const { posts } = await job.complete();
    expect(posts).toHaveLength(1);
    const post = posts[0]!;
    expect(post.environment["STATE_stop-record"]).toBe(run.state["stop-record"]);
    expect(post.code, post.stderr).toBe(0);
    expect(post.stdout).toContain("nothing to restart");
  });

  it("says in the job summary what plan says was excluded: the same files and bytes per rule", async () => {
    // Nothing may write to the home between plan and the backup: the running simulator logs a heartbeat into
    // looker/log (an excluded directory). A live backup then leaves Looker as it is.
    sim.stopQuietly();
    const plan = await cliJson<{ rules: RuleTally[] }>("plan", "--home", sim.home);
    const excluded = plan.rules.filter((rule) => rule.action === "exclude");
    // A directory left out with files in it: a backup that does not walk it would count none.
    expect(excluded.some((rule) => rule.pattern === "looker/log" && rule.files > 0)).toBe(true);
    const job = await startRunnerJob();
    const run = await job.run(backup, {
      with: { ...baseInputs(join(work, "store-plan")), consistency: "live" },
    });
    await job.complete();
    expect(run.code, run.stdout).toBe(0);
    for (const rule of excluded) {
      const required = rule.required ? " (required)" : "";
      expect(run.summary).toContain(
        `| \`${rule.pattern}\` | excluded${required} | ${rule.files} | ${formatBytes(rule.bytes)} |`,
      );
    }
  });

  it("fails before touching anything when an input is invalid, naming the input", async () => {
    const job = await startRunnerJob();
    const run = await job.run(backup, {
      with: { ...baseInputs(join(work, "never")), consistency: "sometimes" },
    });
    expect(run.code).toBe(2);
    expect(run.stdout).toContain("input 'consistency' must be one of auto, live, brief-stop, stopped");
    expect(sim.isRunning()).toBe(true);
    await job.complete();
  });

  it("restarts Looker and leaves no partial archive when cancelled mid-backup", async () => {
    const store = join(work, "store-cancel");
    const job = await startRunnerJob();
    // Cancelled as the runner cancels a step (SIGINT, then SIGTERM, then SIGKILL) once Looker is seen stopped.
    const run = await job.run(backup, {
      with: { ...baseInputs(store), consistency: "stopped", "master-key": sim.cmk },
      // Mid-backup: the archive is being written (a partial file in the store) while Looker is down. Polling
      // `looker status` alone could first see Looker down during the restart, after the archive was stored.
      cancelWhen: (step) => step.until(() => writingArchive(store) && !sim.isRunning(), 20),
    });
    expect(run.cancelSignals, run.stdout).not.toEqual([]);
    expect(run.code, run.stdout).toBe(130);
    expect(await readdir(store).catch(() => [])).toEqual([]);
    // Looker runs again once the post step (which the runner runs after a cancel too) is done, whichever step
    // restarted it. That it also survives Complete job's orphan clean-up is test/e2e/runner-job.test.ts's concern.
    let runningAfterPost = false;
    const { posts } = await job.complete({
      beforeOrphanCleanup: () => {
        runningAfterPost = sim.isRunning();
      },
    });
    // Main leaves the restart to the post step: it records what it stopped and does not wait for a boot.
    expect(JSON.parse(run.state["stop-record"]!).stoppedByUs).toEqual([0]);
    expect(posts[0]!.code, posts[0]!.stdout + posts[0]!.stderr).toBe(0);
    expect(posts[0]!.stdout).toContain("starting Looker on local");
    expect(runningAfterPost, run.stdout + run.stderr).toBe(true);
  });

  it("fails the preflight before Looker is stopped when store artifact has no artifact service", async () => {
    const stopsBefore = lookerStops();
    const job = await startRunnerJob();
    const run = await job.run(backup, {
      with: {
        ...baseInputs(join(work, "never")),
        store: "artifact",
        consistency: "stopped",
        "master-key": sim.cmk,
      },
    });
    await job.complete();
    expect(run.code, run.stdout).toBe(2);
    expect(run.stdout).toMatch(
      /::error::preflight failed: store: artifact cannot upload here: ACTIONS_RUNTIME_TOKEN/,
    );
    expect(run.stdout).toContain("hint: use `store: dir` with `store-dir`");
    expect(lookerStops()).toBe(stopsBefore);
    expect(sim.isRunning()).toBe(true);
    // The preflight is the summary's first table; the rows after the failing one did not run.
    expect(run.summary).toMatch(/## Looker backup failed\n\n### Preflight\n/);
    expect(run.summary).toContain("| store | **failed** |");
    expect(run.summary).toContain("| Looker nodes | not run |");
  });

  it("shows nine warnings and one that counts the rest, lists all in the summary, and exits 3 with on-warnings: error", async () => {
    // Named pipes are skipped with a warning each: twelve warnings. Looker is stopped, so its internal database
    // holds still and the run's outcome is the warnings' alone (a running Looker's .db fails a live backup).
    sim.stopQuietly();
    const fifos = join(sim.home, "fifos");
    await mkdir(fifos);
    try {
      for (let i = 0; i < 12; i++) execFileSync("mkfifo", [join(fifos, `pipe-${i}`)]);
      const job = await startRunnerJob();
      const warn = await job.run(backup, { with: baseInputs(join(work, "store-warn")) });
      expect(warn.code, warn.stdout).toBe(0);
      const total = Number(warn.outputs.warnings);
      expect(total).toBeGreaterThanOrEqual(12);
      const annotations = warn.stdout.split("\n").filter((line) => line.startsWith("::warning"));
      expect(annotations).toHaveLength(10);
      expect(annotations.at(-1)).toBe(`::warning::${total - 9} more warnings are listed in the job summary`);
      expect(warn.summary).toContain("### Warnings");
      for (let i = 0; i < 12; i++) expect(warn.summary).toContain(`fifos/pipe-${i}`);
      expect(Number(warn.outputs["duration-ms"])).toBeGreaterThan(0);

      const error = await job.run(backup, {
        with: { ...baseInputs(join(work, "store-warn")), "on-warnings": "error" },
        if: "always()",
      });
      expect(error.code, error.stdout).toBe(3);
      expect(error.outputs["archive-name"]).toMatch(/\.tar\.zst\.age$/);
      expect(error.stdout).toMatch(
        /::error::the backup was made, with \d+ warning\(s\), and on-warnings is error/,
      );

      const ignore = await job.run(backup, {
        with: { ...baseInputs(join(work, "store-warn")), "on-warnings": "ignore" },
        if: "always()",
      });
      expect(ignore.code, ignore.stdout).toBe(0);
      expect(ignore.stdout).not.toMatch(/^::warning/m);
      expect(ignore.summary).toContain("fifos/pipe-11");
      await job.complete();
    } finally {
      await rm(fifos, { recursive: true, force: true });
    }
  });

  it("exits 3 naming brief-stop when a live backup sees the running Looker's internal database change", async () => {
    const job = await startRunnerJob();
    const run = await job.run(backup, {
      with: { ...baseInputs(join(work, "store-live")), consistency: "live", "on-warnings": "ignore" },
    });
    await job.complete();
    expect(run.code, run.stdout).toBe(3);
    expect(run.stdout).toMatch(/::error::looker\/\.db changed while this live backup read it/);
    expect(run.stdout).toContain("hint: use consistency: brief-stop");
    // The archive is still stored: it holds everything else, and it is the newest copy there is.
    expect(run.outputs["archive-name"]).toMatch(/\.tar\.zst\.age$/);
    expect(sim.isRunning()).toBe(true);
  });

  it("exits 5 with Looker's log when Looker cannot start again after the backup", async () => {
    const store = join(work, "store-no-cmk");
    // Without the CMK a keystore-protected Looker refuses to boot, as the real one does.
    const job = await startRunnerJob();
    const run = await job.run(backup, {
      with: { ...baseInputs(store), consistency: "stopped" },
    });
    try {
      expect(run.code, run.stdout).toBe(5);
      expect(run.stdout).toMatch(/::error::Looker failed to start on local/);
      expect(run.stdout).toContain("boot refused: no CMK configured");
      expect(run.summary).toContain("Exit code 5");
      expect(sim.isRunning()).toBe(false);
    } finally {
      await job.complete();
      sim.start();
    }
  });
});
