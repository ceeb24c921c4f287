/**
 * Promise: one backup per instance at a time. A second backup of the same instance started while one runs fails
 * at once with a message naming the running one; there are never two writers; the lock is released afterwards, and
 * a lock left by a dead process is taken over rather than blocking every later backup.
 * Faults: two concurrent runLookerBackup calls on one instance and store (in-process), the same across two
 * processes (the bundled CLI drives one, the engine the other), and a lock file naming a pid that has exited.
 */
import { spawnSync } from "node:child_process";
import { readdir, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BackupSelection } from "../../src/engine/backup.js";
import { type LookerJobRequest, runLookerBackup } from "../../src/engine/looker-job.js";
import { LookerBackupError } from "../../src/errors.js";
import { DirStore } from "../../src/store/dir-store.js";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { cli } from "../helpers/cli.js";
import { selectionFor } from "../helpers/selection.js";
import { makeKeyPair, removeWorkspace, workspace } from "./support.js";

let work: string;
let home: string;
let selection: BackupSelection;
let identityFile: string;
let recipient: string;

beforeAll(async () => {
  work = await workspace("concurrency");
  ({ identityFile, recipient } = await makeKeyPair(work));
  home = join(work, "home");
  await generateLookerHome({ root: home, seed: 13, sizeBytes: 8 << 20, smallFiles: 100 });
  selection = await selectionFor(home);
});

afterAll(() => removeWorkspace(work));

/** Bundles a small engine script into one file, the way the shipped entries are built, to run as a second process. */
async function bundleProbe(source: string): Promise<string> {
  const outfile = join(work, "probe.mjs");
  await build({
    stdin: { contents: source, resolveDir: process.cwd(), loader: "ts", sourcefile: "probe.ts" },
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    logLevel: "warning",
    external: ["cpu-features", "*.node"],
    banner: {
      js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
    },
  });
  return outfile;
}

function job(name: string, extra: Partial<LookerJobRequest> = {}): LookerJobRequest {
  return {
    home,
    instance: "conc",
    selection,
    recipients: [recipient],
    store: new DirStore(join(work, `store-${name}`)),
    consistency: "live",
    keystoreIndependent: false,
    nodes: [],
    lockDirectory: join(work, `locks-${name}`),
    ...extra,
  };
}

async function expectOneVerifiedArchive(storeDir: string): Promise<void> {
  const names = (await readdir(storeDir)).sort();
  expect(names, "exactly one archive and its catalog sidecar, no partial file").toHaveLength(2);
  expect(names[1]).toMatch(/^conc-\d{8}T\d{6}Z\.tar\.zst\.age$/);
  expect(names[0]).toBe(names[1]!.replace(/\.tar\.zst\.age$/, ".catalog.age"));
  const run = await cli("verify", "--archive", join(storeDir, names[1]!), "--identity", identityFile);
  expect(run.code, run.stderr).toBe(0);
}

describe("two backups of one instance", () => {
  it("started together in one process: one succeeds, the other fails clearly, one archive", async () => {
    const request = job("same-process");
    const outcomes = await Promise.allSettled([runLookerBackup(request), runLookerBackup(request)]);
    const failed = outcomes.filter((o) => o.status === "rejected");
    expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(1);
    expect(failed).toHaveLength(1);
    const error = (failed[0] as PromiseRejectedResult).reason as Error;
    expect(error).toBeInstanceOf(LookerBackupError);
    expect(error.message).toMatch(
      new RegExp(`another backup of instance conc is running: pid ${process.pid} on ${hostname()}`),
    );
    expect((error as LookerBackupError).hint).toMatch(/wait for it to finish/);
    await expectOneVerifiedArchive(join(work, "store-same-process"));
    expect(await readdir(join(work, "locks-same-process")), "lock released").toEqual([]);
  });

  it("a run holding the lock blocks another process; the next run after it succeeds", async () => {
    const request = job("two-processes");
    const lockDir = join(work, "locks-two-processes");
    const storeDir = join(work, "store-two-processes");
    // While our run holds the lock (its pre-command runs inside it), a second process tries the same instance.
    const probe = await bundleProbe(
      [
        'import { resolveSelection } from "./src/engine/backup.js";',
        'import { runLookerBackup } from "./src/engine/looker-job.js";',
        'import { DirStore } from "./src/store/dir-store.js";',
        "try {",
        `  const selection = await resolveSelection({ home: ${JSON.stringify(home)} }, undefined);`,
        `  await runLookerBackup({ home: ${JSON.stringify(home)}, instance: "conc", selection, recipients: [${JSON.stringify(recipient)}],`,
        `    store: new DirStore(${JSON.stringify(storeDir)}), consistency: "live", keystoreIndependent: false,`,
        `    nodes: [], lockDirectory: ${JSON.stringify(lockDir)} });`,
        '  console.log("second run succeeded");',
        "} catch (e) { console.log('second run failed: ' + (e as Error).message); }",
      ].join("\n"),
    );
    let secondOutput = "";
    const result = await runLookerBackup({
      ...request,
      preCommand: "true",
      log: (line) => {
        if (line.startsWith("pre-command:") && secondOutput === "") {
          const second = spawnSync(process.execPath, [probe], {
            encoding: "utf8",
          });
          secondOutput = second.stdout + second.stderr;
        }
      },
    });
    expect(result.archive).toBeDefined();
    expect(secondOutput).toMatch(/second run failed: another backup of instance conc is running: pid \d+/);
    await expectOneVerifiedArchive(storeDir);
    expect(await readdir(lockDir)).toEqual([]);
  });

  it("a lock left by a process that died is taken over, with a log line", async () => {
    const request = job("stale");
    const lockDir = join(work, "locks-stale");
    const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], {
      encoding: "utf8",
    });
    const deadPid = Number(dead.stdout);
    await (await import("node:fs/promises")).mkdir(lockDir, { recursive: true });
    await writeFile(
      join(lockDir, "looker-backup-conc.lock"),
      `${JSON.stringify({ pid: deadPid, host: hostname(), startedAt: "2020-01-01T00:00:00Z", description: "crashed" })}\n`,
    );
    const lines: string[] = [];
    const result = await runLookerBackup({ ...request, log: (l) => lines.push(l) });
    expect(result.archive).toBeDefined();
    expect(lines).toContain(`took over a stale lock of pid ${deadPid} (2020-01-01T00:00:00Z)`);
    expect(await readdir(lockDir)).toEqual([]);
  });
});
