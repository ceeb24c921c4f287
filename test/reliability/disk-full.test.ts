/**
 * Promise: running out of disk space fails the run with a clear error and changes nothing that existed before:
 * a restore leaves the target as it was and removes its staging dir; a backup leaves older archives byte-identical
 * and no partial file behind.
 * Fault: an 8 MiB tmpfs (we run as root) as the restore target's parent, and as the backup's --out directory, with
 * a home holding 12 MiB of incompressible data.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { backupArgv, cli, cliJson, restoreArgv } from "../helpers/cli.js";
import { requireCommands } from "../helpers/prerequisites.js";
import { expectTargetUntouched, makeKeyPair, preparedTarget, removeWorkspace, workspace } from "./support.js";

let work: string;
let identityFile: string;
let recipient: string;
let bigHome: string;
let bigArchive: string;
const mounts: string[] = [];

async function smallTmpfs(name: string): Promise<string> {
  const dir = join(work, name);
  await mkdir(dir);
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", dir]);
  mounts.push(dir);
  return dir;
}

function unmountAll(): void {
  for (const dir of mounts.splice(0)) execFileSync("umount", [dir]);
}

beforeAll(async () => {
  requireCommands(["mount", "umount"]);
  if (process.getuid?.() !== 0) throw new Error("the disk-full tests mount a tmpfs and must run as root");
  work = await workspace("diskfull");
  ({ identityFile, recipient } = await makeKeyPair(work));
  bigHome = join(work, "big-home");
  await generateLookerHome({ root: bigHome, seed: 3, sizeBytes: 1 << 20, smallFiles: 20 });
  // Incompressible, so neither the archive nor the restored home fits in 8 MiB.
  await writeFile(join(bigHome, "looker/incompressible.bin"), randomBytes(12 << 20));
  bigArchive = (
    await cliJson<{ archive: string }>(
      "backup",
      "--home",
      bigHome,
      "--out",
      join(work, "store"),
      "--recipient",
      recipient,
      "--instance",
      "big",
    )
  ).archive;
});

afterEach(unmountAll);
afterAll(async () => {
  unmountAll();
  await removeWorkspace(work);
});

describe("disk full", () => {
  /** Restores `archive` onto a full 8 MiB tmpfs: it must fail with the disk-full hint and change nothing. */
  async function expectDiskFullRestore(archive: string, mountName: string): Promise<void> {
    const { parent, target } = await preparedTarget(await smallTmpfs(mountName));
    const run = await cli(...restoreArgv(archive, identityFile, target), "--force");
    expect(run.code, run.stderr).not.toBe(0);
    expect(run.stderr).toMatch(/looker-backup: error: .*no space left on device/i);
    expect(run.stderr).toContain("hint: the disk is full");
    await expectTargetUntouched(parent, target);
  }

  it("during a restore: clear error, target untouched, staging removed", async () => {
    await expectDiskFullRestore(bigArchive, "restore-fs");
  });

  it("while the writer thread makes small files: the same error, target untouched, staging removed", async () => {
    // 3,000 incompressible 4 KiB files: the space runs out in the thread that writes small files, not here.
    const manyHome = join(work, "many-home");
    await generateLookerHome({ root: manyHome, seed: 5, sizeBytes: 256 << 10, smallFiles: 10 });
    await mkdir(join(manyHome, "looker/many"));
    for (let i = 0; i < 3000; i++) await writeFile(join(manyHome, `looker/many/f${i}`), randomBytes(4096));
    const { archive } = await cliJson<{ archive: string }>(
      ...backupArgv(manyHome, join(work, "many-store"), recipient, "many"),
    );
    await expectDiskFullRestore(archive, "restore-many-fs");
  });

  it("during a backup: clear error, the older archive byte-identical, no partial file", async () => {
    const out = await smallTmpfs("backup-fs");
    const smallHome = join(work, "small-home");
    await generateLookerHome({ root: smallHome, seed: 4, sizeBytes: 256 << 10, smallFiles: 10 });
    const older = await cliJson<{ archive: string }>(
      "backup",
      "--home",
      smallHome,
      "--out",
      join(work, "small-store"),
      "--recipient",
      recipient,
      "--instance",
      "big",
    );
    const olderCopy = join(out, basename(older.archive));
    await copyFile(older.archive, olderCopy);
    const olderBytes = await readFile(olderCopy);
    await new Promise((r) => setTimeout(r, 1100)); // archive names have one-second resolution
    const run = await cli(
      "backup",
      "--home",
      bigHome,
      "--out",
      out,
      "--recipient",
      recipient,
      "--instance",
      "big",
      "--keep-last",
      "1",
    );
    expect(run.code, run.stderr).not.toBe(0);
    expect(run.stderr).toMatch(/looker-backup: error: .*no space left on device/i);
    expect(run.stderr).toContain("hint: the disk is full");
    expect(await readdir(out), "no partial file, older archive kept").toEqual([basename(olderCopy)]);
    expect((await readFile(olderCopy)).equals(olderBytes)).toBe(true);
    await rm(join(work, "small-store"), { recursive: true });
  });
});
