/**
 * The bundled backup action in jobs of the runner stand-in (test/helpers/runner-job.ts) against the Looker simulator:
 * main and post as separate processes, cancellation with the runner's timing, and the orphan clean-up at
 * "Complete job", which kills every process that carries the job's RUNNER_TRACKING_ID. A Looker that the action
 * (re)starts must survive the job and must not inherit the job's variables or secrets.
 *
 * Secret inputs are passed as plain values, not registered as workflow secrets: only the action's own `::add-mask::`
 * hides them, which is stricter than a workflow passing `${{ secrets.X }}` (those the runner masks by itself).
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { probeAlive } from "../../src/looker/alive.js";
import { cliJson } from "../helpers/cli.js";
import { requireCommands } from "../helpers/prerequisites.js";
import {
  bundledAction,
  cleanUpRunnerJobs,
  type JobCompletion,
  type NodeAction,
  processEnvironment,
  type StepResult,
  startRunnerJob,
} from "../helpers/runner-job.js";
import { type SimulatedLooker, simulatedLooker } from "../helpers/simulator.js";

let work: string;
let sim: SimulatedLooker;
let recipient: string;
let backup: NodeAction;
const token = `ghs_${randomBytes(18).toString("base64url")}`;
const passphrase = `pass-${randomBytes(12).toString("hex")}`;
const mysqlPassword = `mysql-${randomBytes(12).toString("hex")}`;
const sshKey = generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }).toString();

beforeAll(async () => {
  requireCommands(["age", "zstd", "tar"]);
  work = await mkdtemp(join(tmpdir(), "lb-runner-e2e-"));
  // Large enough that a `stopped` backup is still running when the test sees Looker stopped and cancels it.
  sim = await simulatedLooker(join(work, "home"), { seed: 5, sizeBytes: 160 << 20, smallFiles: 200 });
  sim.start();
  recipient = (await cliJson<{ recipient: string }>("keygen", "--output", join(work, "identity.txt")))
    .recipient;
  backup = await bundledAction("backup");
});

afterEach(async () => {
  await cleanUpRunnerJobs();
});

afterAll(async () => {
  await cleanUpRunnerJobs();
  sim?.stopQuietly();
  if (work) await rm(work, { recursive: true, force: true });
});

/** Whether a backup is writing its archive into `store` right now (the dir store's partial file). */
function writingArchive(store: string): boolean {
  try {
    return readdirSync(store).some((name) => name.startsWith(".partial-"));
  } catch {
    return false; // the store directory is made when the archive is
  }
}

function inputs(store: string, extra: Record<string, string>): Record<string, string> {
  return {
    recipients: recipient,
    home: sim.home,
    instance: "e2e-runner",
    store: "dir",
    "store-dir": store,
    "web-port": String(sim.webPort),
    "boot-timeout": "60",
    "master-key": sim.cmk,
    ...extra,
  };
}

/** The pid the Looker server keeps in looker/.tmp/looker.pid. */
function lookerPid(): number | undefined {
  return sim.pid();
}

/** Variables of the job or the step found in a process environment: none may reach Looker. */
function jobVariablesIn(env: Map<string, string>): string[] {
  return [...env.keys()].filter(
    (name) =>
      name === "RUNNER_TRACKING_ID" || name === "GITHUB_TOKEN" || /^(INPUT|STATE|ACTIONS)_/.test(name),
  );
}

const secretValues = () => [
  ["master-key", sim.cmk],
  ["passphrase", passphrase],
  ["mysql-password", mysqlPassword],
  ...sshKey
    .split("\n")
    .filter((line) => line && !line.startsWith("-----"))
    .map((line, i) => [`ssh-key line ${i + 1}`, line] as const),
];

function unmaskedSecrets(step: StepResult): string[] {
  return secretValues()
    .filter(([, value]) => step.log.includes(value))
    .map(([name]) => `${name} in the ${step.stage} step's log`);
}

function ensureLookerRunning(): void {
  if (!sim.isRunning()) sim.start();
}

describe("a brief-stop backup job: main, post, Complete job", () => {
  let main: StepResult;
  let completion: JobCompletion;
  let restarted: number | undefined;
  let restartedEnv: Map<string, string> | undefined;

  beforeAll(async () => {
    ensureLookerRunning();
    const job = await startRunnerJob({ token, env: { GITHUB_TOKEN: token } });
    main = await job.run(backup, {
      with: inputs(join(work, "store-brief"), {
        consistency: "brief-stop",
        "ssh-key": sshKey,
        "mysql-password": mysqlPassword,
      }),
    });
    completion = await job.complete({
      // Looked at before the orphan clean-up, which may kill it.
      beforeOrphanCleanup: () => {
        restarted = lookerPid();
        restartedEnv = restarted === undefined ? undefined : processEnvironment(restarted);
      },
    });
  });

  it("(a) leaves Looker running: Complete job's orphan clean-up does not kill it", async () => {
    expect(main.code, main.log).toBe(0);
    expect(completion.posts.map((p) => p.conclusion)).toEqual(["success"]);
    expect(
      completion.orphans.filter((p) => p.pid === restarted),
      "the orphan clean-up killed the Looker server the backup restarted",
    ).toEqual([]);
    expect(await probeAlive({ host: "127.0.0.1", port: sim.webPort })).toBe(true);
    const status = sim.looker(["status"]);
    expect(status.code, status.stdout + status.stderr).toBe(0);
    expect(status.stdout).toContain("Status:Looker Web Application running");
  });

  it("(c) starts Looker without the job's variables in its environment", () => {
    expect(restartedEnv, `no readable environment for the Looker pid ${restarted}`).toBeDefined();
    expect(jobVariablesIn(restartedEnv!)).toEqual([]);
  });

  it("(c) gives Looker the master key only as LKR_MASTER_KEY_ENV, the one variable Looker reads it from", () => {
    // Looker needs its CMK to boot and reads it from its own environment (LKR_MASTER_KEY_ENV, or a path in
    // LKR_MASTER_KEY_FILE): that one copy is unavoidable; the job's copy in INPUT_MASTER-KEY is not.
    expect(restartedEnv, `no readable environment for the Looker pid ${restarted}`).toBeDefined();
    const holders = [...restartedEnv!].filter(([, value]) => value.includes(sim.cmk)).map(([name]) => name);
    expect(holders).toEqual(["LKR_MASTER_KEY_ENV"]);
  });

  it("(d) passes outputs, state and summary through the files, with no deprecated command", () => {
    expect(main.outputs["archive-name"]).toMatch(/^e2e-runner-\d{8}T\d{6}Z\.tar\.zst\.age$/);
    expect(main.outputs.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(Number(main.outputs["downtime-ms"])).toBeGreaterThan(0);
    expect(main.summary).toContain("## Looker backup: e2e-runner");
    expect(Object.keys(main.state)).toContain("stop-record");
    const post = completion.posts[0]!;
    expect(post.environment["STATE_stop-record"]).toBe(main.state["stop-record"]);
    expect([...main.deprecatedCommands, ...post.deprecatedCommands]).toEqual([]);
    expect([...main.runnerErrors, ...post.runnerErrors]).toEqual([]);
  });

  it("(e) never shows a secret input unmasked in the step logs", () => {
    expect([main, ...completion.posts].flatMap(unmaskedSecrets)).toEqual([]);
  });
});

describe("a stopped backup job cancelled while Looker is down", () => {
  let main: StepResult;
  let completion: JobCompletion;
  let restarted: number | undefined;

  beforeAll(async () => {
    ensureLookerRunning();
    const job = await startRunnerJob({ token, env: { GITHUB_TOKEN: token } });
    main = await job.run(backup, {
      // A passphrase is used alone (age allows no other recipient beside it), and must stay masked too.
      with: inputs(join(work, "store-cancel"), { consistency: "stopped", recipients: "", passphrase }),
      // Mid-backup: the archive is being written (a partial file in the store) while Looker is down. Polling
      // `looker status` alone could first see Looker down during the restart, after the archive was stored.
      cancelWhen: (step) =>
        step.until(() => writingArchive(join(work, "store-cancel")) && !sim.isRunning(), 20),
    });
    completion = await job.complete({
      beforeOrphanCleanup: () => {
        restarted = lookerPid();
      },
    });
  });

  it("(b) ends with Looker answering /alive after post and the orphan clean-up; main exits 130", async () => {
    expect(main.cancelSignals[0], main.log).toBe("SIGINT");
    expect(main.conclusion).toBe("cancelled");
    expect(main.code, `${main.log}\nsignals: ${main.cancelSignals.join(", ")}`).toBe(130);
    expect(completion.posts.map((p) => p.stage)).toEqual(["post"]);
    expect(
      completion.orphans.filter((p) => p.pid === restarted),
      "the orphan clean-up killed the Looker server the cancelled backup restarted",
    ).toEqual([]);
    expect(await probeAlive({ host: "127.0.0.1", port: sim.webPort })).toBe(true);
  });

  it("(d, e) uses no deprecated command and shows no secret unmasked", () => {
    const steps = [main, ...completion.posts];
    expect(steps.flatMap((s) => s.deprecatedCommands)).toEqual([]);
    expect(steps.flatMap(unmaskedSecrets)).toEqual([]);
  });
});
