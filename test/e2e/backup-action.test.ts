import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decryptBuffer } from "../../src/crypto/age.js";
import { probeAlive } from "../../src/looker/alive.js";
import { runActionEntry } from "../helpers/actions-env.js";
import { bundledEntry } from "../helpers/bundle.js";
import { cliJson } from "../helpers/cli.js";
import { requireCommands } from "../helpers/prerequisites.js";
import { type SimulatedLooker, simulatedLooker } from "../helpers/simulator.js";

let work: string;
let sim: SimulatedLooker;
let identityFile: string;
let recipient: string;

beforeAll(async () => {
  requireCommands(["age", "zstd", "tar"]);
  work = await mkdtemp(join(tmpdir(), "lb-action-e2e-"));
  sim = await simulatedLooker(join(work, "home"), { seed: 3, sizeBytes: 160 << 20, smallFiles: 200 });
  sim.start();
  identityFile = join(work, "identity.txt");
  recipient = (await cliJson<{ recipient: string }>("keygen", "--output", identityFile)).recipient;
});

afterAll(async () => {
  sim?.stopQuietly();
  await rm(work, { recursive: true, force: true });
});

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
  it("makes a keystore-independent brief-stop backup, restarts Looker and never leaks the secrets", async () => {
    const store = join(work, "store");
    const run = await runActionEntry(await bundledEntry("backup-main"), {
      inputs: {
        ...baseInputs(store),
        consistency: "brief-stop",
        "keystore-independent": "true",
        "master-key": sim.cmk,
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
    expect((await readdir(store)).sort()).toEqual(
      [outputs["keyfile-artifact-name"], outputs["archive-name"]].sort(),
    );

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
    const secrets = [sim.cmk, (keyfile.dbmk as string).trim()];
    // `::add-mask::` lines are commands the runner consumes to mask a value; they never reach the visible log.
    const visibleStdout = run.stdout
      .split("\n")
      .filter((line) => !line.startsWith("::add-mask::"))
      .join("\n");
    expect(run.stdout).toContain(`::add-mask::${sim.cmk}`);
    const written = [
      visibleStdout,
      run.stderr,
      run.summary,
      JSON.stringify(run.outputs),
      JSON.stringify(run.state),
      await allFileContents(run.files.runnerTemp),
      await allFileContents(store),
    ];
    const names = ["stdout", "stderr", "summary", "outputs", "state", "runner temp files", "store files"];
    for (const secret of secrets) {
      expect(names.filter((_, i) => written[i]!.includes(secret))).toEqual([]);
    }

    const post = await runActionEntry(await bundledEntry("backup-post"), {
      inputs: baseInputs(store),
      state: run.state,
    });
    expect(post.code, post.stderr).toBe(0);
    expect(post.stdout).toContain("nothing to restart");
  });

  it("fails before touching anything when an input is invalid, naming the input", async () => {
    const run = await runActionEntry(await bundledEntry("backup-main"), {
      inputs: { ...baseInputs(join(work, "never")), consistency: "sometimes" },
    });
    expect(run.code).toBe(2);
    expect(run.stdout).toContain("input 'consistency' must be one of live, brief-stop, stopped");
    expect(sim.isRunning()).toBe(true);
  });

  it("restarts Looker and leaves no partial archive when cancelled mid-backup", async () => {
    const store = join(work, "store-cancel");
    let stoppedSeen = false;
    const run = await runActionEntry(await bundledEntry("backup-main"), {
      inputs: { ...baseInputs(store), consistency: "stopped", "master-key": sim.cmk },
      onSpawn: (child) => {
        const poll = setInterval(() => {
          if (!sim.isRunning()) {
            stoppedSeen = true;
            clearInterval(poll);
            child.kill("SIGTERM");
          }
        }, 20);
        child.on("close", () => clearInterval(poll));
      },
    });
    expect(stoppedSeen, run.stdout).toBe(true);
    expect(run.code, run.stdout).toBe(130);
    expect(await readdir(store).catch(() => [])).toEqual([]);
    // Main leaves the restart to the post step, which the runner runs after a cancel too.
    expect(JSON.parse(run.state["stop-record"]!).stoppedByUs).toEqual([0]);
    const post = await runActionEntry(await bundledEntry("backup-post"), {
      inputs: { ...baseInputs(store), consistency: "stopped", "master-key": sim.cmk },
      state: run.state,
    });
    expect(post.code, post.stdout + post.stderr).toBe(0);
    expect(post.stdout).toContain("starting Looker on local");
    expect(sim.isRunning(), run.stdout + run.stderr).toBe(true);
  });

  it("fails the preflight before Looker is stopped when store artifact has no artifact service", async () => {
    const stopsBefore = lookerStops();
    const run = await runActionEntry(await bundledEntry("backup-main"), {
      inputs: {
        ...baseInputs(join(work, "never")),
        store: "artifact",
        consistency: "stopped",
        "master-key": sim.cmk,
      },
    });
    expect(run.code, run.stdout).toBe(2);
    expect(run.stdout).toMatch(
      /::error::preflight failed: store: artifact needs the Actions artifact service/,
    );
    expect(run.stdout).toContain("hint: run as a step of a GitHub Actions job, or use `store: dir`");
    expect(lookerStops()).toBe(stopsBefore);
    expect(sim.isRunning()).toBe(true);
    // The preflight is the summary's first table; the rows after the failing one did not run.
    expect(run.summary).toMatch(/## Looker backup failed\n\n### Preflight\n/);
    expect(run.summary).toContain("| store | **failed** |");
    expect(run.summary).toContain("| Looker nodes | not run |");
  });

  it("shows nine warnings and one that counts the rest, lists all in the summary, and exits 3 with on-warnings: error", async () => {
    // Named pipes are skipped with a warning each: twelve warnings, whatever else the live home does.
    const fifos = join(sim.home, "fifos");
    await mkdir(fifos);
    try {
      for (let i = 0; i < 12; i++) execFileSync("mkfifo", [join(fifos, `pipe-${i}`)]);
      const warn = await runActionEntry(await bundledEntry("backup-main"), {
        inputs: baseInputs(join(work, "store-warn")),
      });
      expect(warn.code, warn.stdout).toBe(0);
      const total = Number(warn.outputs.warnings);
      expect(total).toBeGreaterThanOrEqual(12);
      const annotations = warn.stdout.split("\n").filter((line) => line.startsWith("::warning"));
      expect(annotations).toHaveLength(10);
      expect(annotations.at(-1)).toBe(`::warning::${total - 9} more warnings are listed in the job summary`);
      expect(warn.summary).toContain("### Warnings");
      for (let i = 0; i < 12; i++) expect(warn.summary).toContain(`fifos/pipe-${i}`);
      expect(Number(warn.outputs["duration-ms"])).toBeGreaterThan(0);

      const error = await runActionEntry(await bundledEntry("backup-main"), {
        inputs: { ...baseInputs(join(work, "store-warn")), "on-warnings": "error" },
      });
      expect(error.code, error.stdout).toBe(3);
      expect(error.outputs["archive-name"]).toMatch(/\.tar\.zst\.age$/);
      expect(error.stdout).toMatch(
        /::error::the backup was made, with \d+ warning\(s\), and on-warnings is error/,
      );

      const ignore = await runActionEntry(await bundledEntry("backup-main"), {
        inputs: { ...baseInputs(join(work, "store-warn")), "on-warnings": "ignore" },
      });
      expect(ignore.code, ignore.stdout).toBe(0);
      expect(ignore.stdout).not.toMatch(/^::warning/m);
      expect(ignore.summary).toContain("fifos/pipe-11");
    } finally {
      await rm(fifos, { recursive: true, force: true });
    }
  });

  it("exits 5 with Looker's log when Looker cannot start again after the backup", async () => {
    const store = join(work, "store-no-cmk");
    // Without the CMK a keystore-protected Looker refuses to boot, as the real one does.
    const run = await runActionEntry(await bundledEntry("backup-main"), {
      inputs: { ...baseInputs(store), consistency: "stopped" },
    });
    try {
      expect(run.code, run.stdout).toBe(5);
      expect(run.stdout).toMatch(/::error::Looker failed to start on local/);
      expect(run.stdout).toContain("boot refused: no CMK configured");
      expect(run.summary).toContain("Exit code 5");
      expect(sim.isRunning()).toBe(false);
    } finally {
      sim.start();
    }
  });
});
