/**
 * Bounded memory: a ~2 GiB home is backed up, restored, and one models-user directory restored alone (--include), by
 * the bundled CLI in a child process, and the
 * peak resident set of each run, as the kernel reports it to GNU time (`%M`, ru_maxrss), must stay under 256 MiB.
 * No timing is asserted; the restored tree is checked (file count, digests) so a fast wrong answer cannot pass.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NOT_CHECKED_WARNING } from "../../src/engine/authenticity.js";
import { resolveManifest } from "../../src/engine/backup.js";
import { selectFiles } from "../../src/manifest/select.js";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { bundledEntry } from "../helpers/bundle.js";
import { backupArgv } from "../helpers/cli.js";
import { findCommand, requireCommands } from "../helpers/prerequisites.js";

const GiB = 1024 ** 3;
const RSS_LIMIT_MIB = 256;

interface MeasuredRun {
  code: number | null;
  stdout: string;
  stderr: string;
  peakMiB: number;
}

/** Runs `node <args>` under GNU time, which writes the child's peak RSS (KiB) to a file of its own. */
async function measured(work: string, label: string, args: string[]): Promise<MeasuredRun> {
  const report = join(work, `${label}.maxrss`);
  const child = spawn(findCommand("time")!, ["-f", "%M", "-o", report, process.execPath, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => {
    stdout += d;
  });
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", resolve);
  });
  const kib = Number((await readFile(report, "utf8")).trim().split("\n").pop());
  return { code, stdout, stderr, peakMiB: kib / 1024 };
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

async function regularFiles(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(root.length + 1));
}

describe("memory stays bounded on a 2 GiB home", () => {
  let work: string;
  let home: string;
  let identity: string;
  let recipient: string;

  beforeAll(async () => {
    requireCommands(["time", "age-keygen"]);
    work = await mkdtemp(join(tmpdir(), "lb-memory-"));
    home = join(work, "home");
    await generateLookerHome({ root: home, seed: 20, sizeBytes: 2 * GiB, smallFiles: 5_000 });
    identity = join(work, "identity.txt");
    const keygen = spawnSync("age-keygen", ["-o", identity]);
    if (keygen.status !== 0) throw new Error(`age-keygen failed: ${keygen.stderr}`);
    recipient = spawnSync("age-keygen", ["-y", identity]).stdout.toString().trim();
  }, 300_000);

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it(`backs up and restores with a peak RSS under ${RSS_LIMIT_MIB} MiB each`, async () => {
    const cli = await bundledEntry("cli");
    const out = join(work, "out");
    const backup = await measured(work, "backup", [
      cli,
      ...backupArgv(home, out, recipient, "memory"),
      "--json",
      "--quiet",
    ]);
    expect(backup.stderr).toBe("");
    expect(backup.code).toBe(0);
    const { archive } = JSON.parse(backup.stdout) as { archive: string };

    const target = join(work, "restored");
    const restore = await measured(work, "restore", [
      cli,
      "restore",
      ...["--archive", archive, "--identity", identity, "--target", target, "--json", "--quiet"],
    ]);
    // The one line a quiet restore without trusted signers prints.
    expect(restore.stderr).toBe(`warning: ${NOT_CHECKED_WARNING}\n`);
    expect(restore.code).toBe(0);
    // Partial restore (issue 19): one user's models from the same archive, the rest read and checked, nothing else
    // written; under the same memory bound.
    const userDir = (await readdir(join(home, "looker")))
      .filter((n) => n.startsWith("models-user-"))
      .sort()[1]!;
    const partialTarget = join(work, "partial");
    const partial = await measured(work, "partial", [
      cli,
      "restore",
      ...["--archive", archive, "--identity", identity, "--target", partialTarget],
      ...["--include", `looker/${userDir}`, "--json", "--quiet"],
    ]);
    expect(partial.code, partial.stderr).toBe(0);
    const partialReport = JSON.parse(partial.stdout) as { restored: { members: number }; members: number };
    const partialFiles = await regularFiles(partialTarget);
    const sourceFiles = (await regularFiles(join(home, "looker", userDir))).map(
      (p) => `looker/${userDir}/${p}`,
    );
    expect(partialFiles.sort()).toEqual(sourceFiles.sort());
    expect(partialFiles.length).toBeGreaterThan(0);
    for (const file of partialFiles) {
      expect(await sha256Of(join(partialTarget, file)), file).toBe(await sha256Of(join(home, file)));
    }
    expect(partialReport.restored.members).toBeLessThan(partialReport.members);
    await rm(partialTarget, { recursive: true, force: true });

    // The archive is no longer needed: free its space before the tree walks below.
    await rm(out, { recursive: true, force: true });

    const { manifest } = await resolveManifest({ home });
    const selection = await selectFiles({ home, manifest });
    const selected = selection.entries.filter((e) => e.type === "file").map((e) => e.archivePath);
    const restored = await regularFiles(target);
    expect(restored.length).toBe(selected.length);
    expect(restored.length).toBeGreaterThan(5_000);

    const samples = [
      "looker/looker.jar",
      "looker/.db/looker.data",
      restored.find((p) => p.startsWith("looker/models-user-"))!,
    ];
    for (const sample of samples) {
      expect(await sha256Of(join(target, sample)), sample).toBe(await sha256Of(join(home, sample)));
    }

    console.log(
      `peak RSS: backup ${backup.peakMiB.toFixed(0)} MiB, restore ${restore.peakMiB.toFixed(0)} MiB, partial restore ${partial.peakMiB.toFixed(0)} MiB`,
    );
    expect(backup.peakMiB, "backup peak RSS (MiB)").toBeLessThan(RSS_LIMIT_MIB);
    expect(restore.peakMiB, "restore peak RSS (MiB)").toBeLessThan(RSS_LIMIT_MIB);
    expect(partial.peakMiB, "partial restore peak RSS (MiB)").toBeLessThan(RSS_LIMIT_MIB);
  }, 600_000);
});
