/**
 * Restore onto a mount point (a fresh volume at /home/looker, the usual disaster-recovery target), on real tmpfs
 * mounts: staged inside the target and swapped by contents, previous contents kept inside it with --force, lost+found
 * left alone, a failure putting everything back; and staging directories of an interrupted restore removed by the next.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { backupArgv, cli, cliJson, restoreArgv } from "../helpers/cli.js";

const isRoot = process.getuid?.() === 0;
if (!isRoot && process.env.CI === "true")
  throw new Error("restore-mount.test.ts mounts tmpfs and must run as root in CI");

let work: string;
let home: string;
let identity: string;
let recipient: string;
let archive: string;
const mounts: string[] = [];

async function mountTmpfs(path: string): Promise<void> {
  await mkdir(path, { recursive: true });
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=256m,mode=0755", "tmpfs", path]);
  mounts.push(path);
}

beforeAll(async () => {
  if (!isRoot) return;
  work = await mkdtemp(join(tmpdir(), "lb-mount-"));
  home = join(work, "home");
  await generateLookerHome({ root: home, seed: 44, sizeBytes: 1 << 20, smallFiles: 20 });
  identity = join(work, "id.txt");
  ({ recipient } = await cliJson<{ recipient: string }>("keygen", "--output", identity));
  ({ archive } = await cliJson<{ archive: string }>(
    ...backupArgv(home, join(work, "store"), recipient, "mount"),
  ));
});

afterEach(() => {
  for (const path of mounts.splice(0)) execFileSync("umount", [path]);
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe.skipIf(!isRoot)("restore onto a mount point", () => {
  it("restores into an empty mounted volume, which stays mounted and takes the archived home's mode", async () => {
    const target = join(work, "t1", "looker");
    await mountTmpfs(target);
    const device = (await stat(target)).dev;
    const run = await cli(...restoreArgv(archive, identity, target));
    expect(run.code, run.stderr).toBe(0);
    expect((await stat(target)).dev).toBe(device);
    expect(await readFile(join(target, "looker", "looker.jar"))).toEqual(
      await readFile(join(home, "looker", "looker.jar")),
    );
    expect((await stat(target)).mode & 0o7777).toBe((await stat(home)).mode & 0o7777);
    expect((await readdir(target)).filter((name) => name.startsWith(".looker-backup-restore-"))).toEqual([]);
  });

  it("with --force keeps the previous contents in .pre-restore-<time> inside the volume; without, exit 2", async () => {
    const target = join(work, "t2", "looker");
    await mountTmpfs(target);
    await writeFile(join(target, "old.txt"), "previous\n");
    const refused = await cli(...restoreArgv(archive, identity, target));
    expect(refused.code).toBe(2);
    const run = await cliJson<{ previousContent: string }>(
      ...restoreArgv(archive, identity, target),
      "--force",
    );
    expect(run.previousContent).toMatch(/\/t2\/looker\/\.pre-restore-\d{8}T\d{6}Z$/);
    expect(await readFile(join(run.previousContent, "old.txt"), "utf8")).toBe("previous\n");
    expect(existsSync(join(target, "old.txt"))).toBe(false);
    expect(existsSync(join(target, "looker", "looker.jar"))).toBe(true);
  });

  it("counts a volume holding only lost+found as empty and leaves lost+found where it is", async () => {
    const target = join(work, "t3", "looker");
    await mountTmpfs(target);
    await mkdir(join(target, "lost+found"), { mode: 0o700 });
    const run = await cli(...restoreArgv(archive, identity, target));
    expect(run.code, run.stderr).toBe(0);
    expect((await stat(join(target, "lost+found"))).isDirectory()).toBe(true);
    expect(existsSync(join(target, "looker", "looker.jar"))).toBe(true);
  });

  it("puts the volume's contents back when the swap fails half-way", async () => {
    // The archive's home holds a file named lost+found: moving it onto the volume's lost+found directory fails.
    const clash = join(work, "clash-home");
    await generateLookerHome({ root: clash, seed: 45, sizeBytes: 1 << 20, smallFiles: 5 });
    await writeFile(join(clash, "lost+found"), "a file of that name\n");
    const { archive: clashing } = await cliJson<{ archive: string }>(
      ...backupArgv(clash, join(work, "store-clash"), recipient, "clash"),
    );
    const target = join(work, "t4", "looker");
    await mountTmpfs(target);
    await mkdir(join(target, "lost+found"));
    await writeFile(join(target, "old.txt"), "previous\n");
    const run = await cli(...restoreArgv(clashing, identity, target), "--force");
    expect(run.code).not.toBe(0);
    expect((await readdir(target)).sort()).toEqual(["lost+found", "old.txt"]);
    expect(await readFile(join(target, "old.txt"), "utf8")).toBe("previous\n");
  });
});

describe.skipIf(!isRoot)("an interrupted restore's staging", () => {
  it("is removed by the next restore of that target, which names it", async () => {
    const parent = join(work, "t5");
    const target = join(parent, "looker");
    await mountTmpfs(target);
    const beside = join(parent, ".looker.restore-AbC123");
    const inside = join(target, ".looker-backup-restore-XyZ789");
    for (const dir of [beside, inside]) {
      await mkdir(join(dir, "home"), { recursive: true });
      await writeFile(join(dir, "home", "partial"), "x".repeat(1000));
    }
    const run = await cli(...restoreArgv(archive, identity, target));
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain(`removed ${beside}, the staging directory of an interrupted restore`);
    expect(run.stderr).toContain(`removed ${inside}, the staging directory of an interrupted restore`);
    expect(existsSync(beside)).toBe(false);
    expect(existsSync(inside)).toBe(false);
    expect(existsSync(join(target, "looker", "looker.jar"))).toBe(true);
  });
});
