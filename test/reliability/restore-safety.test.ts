/**
 * Promise: restore never reaches outside its target, whatever archive it is given. Anyone holding the public
 * recipient can build an archive whose catalog is valid, so every archive here has a matching catalog: the refusals
 * come from restore's own rules, not from the catalog.
 * Faults: top-level home/mysql/rootfs/meta that are symlinks or files; rootfs/ members outside the paths the backup
 * recorded; setuid, sticky and world-writable modes; a rootfs or dumps destination that cannot take the files, a
 * symlinked directory in the rootfs, a home swap that fails after the rootfs files were placed; a second restore.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { lstat, mkdir, mkdtemp, readdir, readFile, stat, symlink, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { catalogLine } from "../../src/archive/catalog.js";
import { restoreArchive } from "../../src/engine/restore.js";
import { lockPathOf } from "../../src/engine/restore-lock.js";
import { type BuildOptions, buildTar, encryptTar, type RawMember } from "../helpers/archives.js";
import { cli, restoreArgv } from "../helpers/cli.js";
import {
  expectTargetUntouched,
  makeKeyPair,
  PRECIOUS,
  preparedTarget,
  removeWorkspace,
  workspace,
} from "./support.js";

let work: string;
let identityFile: string;
let recipient: string;
let identity: string;

beforeAll(async () => {
  work = await workspace("safety");
  ({ identityFile, recipient } = await makeKeyPair(work));
  identity = (await readFile(identityFile, "utf8")).split("\n").find((l) => l.startsWith("AGE-SECRET-KEY-"))!;
});

afterAll(() => removeWorkspace(work));

let counter = 0;
async function archiveOf(members: RawMember[], options: Omit<BuildOptions, "catalog"> = {}): Promise<string> {
  const path = join(work, `archive-${++counter}.tar.zst.age`);
  await writeFile(path, await encryptTar(await buildTar(members, { ...options, catalog: true }), recipient));
  return path;
}

/** A directory holding one file, standing for something outside the target that must stay as it is. */
async function bystander(name: string): Promise<string> {
  const dir = join(work, `${name}-${++counter}`);
  await mkdir(dir);
  await writeFile(join(dir, "data.txt"), PRECIOUS);
  return dir;
}

async function expectBystanderIntact(dir: string): Promise<void> {
  expect(await readdir(dir)).toEqual(["data.txt"]);
  expect(await readFile(join(dir, "data.txt"), "utf8")).toBe(PRECIOUS);
}

const file = (path: string, text = "x\n", mode = 0o644): RawMember => ({
  header: { path, mode },
  body: Buffer.from(text),
});
const dir = (path: string, mode = 0o755): RawMember => ({ header: { path, type: "directory", mode } });

async function verify(archive: string) {
  return cli("verify", "--archive", archive, "--identity", identityFile);
}

describe("the top-level roots are directories, always", () => {
  for (const root of ["home", "mysql", "rootfs", "meta"]) {
    it(`a top-level ${root} symlink or file is refused by verify and restore (exit 4), nothing placed`, async () => {
      const victim = await bystander(`victim-${root}`);
      for (const member of [
        { header: { path: root, type: "symlink" as const, linkTarget: victim } },
        file(root),
      ]) {
        const archive = await archiveOf([file("home/a.txt"), member]);
        const checked = await verify(archive);
        expect(checked.code, checked.stderr).toBe(4);
        expect(checked.stderr).toContain(`top-level ${root} must be a directory`);
        const { parent, target } = await preparedTarget(work);
        const rootfs = await bystander("rootfs");
        const run = await cli(...restoreArgv(archive, identityFile, target), "--force", "--rootfs", rootfs);
        expect(run.code, run.stderr).toBe(4);
        await expectTargetUntouched(parent, target);
        await expectBystanderIntact(victim);
        await expectBystanderIntact(rootfs);
      }
    });
  }

  it("mysql -> another directory: its files are not moved into <target>.mysql (exit 4)", async () => {
    const victim = await bystander("victim-mysql");
    const archive = await archiveOf([
      file("home/a.txt"),
      { header: { path: "mysql", type: "symlink", linkTarget: victim } },
    ]);
    const { parent, target } = await preparedTarget(work);
    const run = await cli(...restoreArgv(archive, identityFile, target), "--force");
    expect(run.code, run.stderr).toBe(4);
    await expectBystanderIntact(victim);
    expect(await readdir(parent)).toEqual(["home"]);
  });

  it("home -> /: the target never becomes a symlink (exit 4)", async () => {
    const archive = await archiveOf([{ header: { path: "home", type: "symlink", linkTarget: "/" } }]);
    const { parent, target } = await preparedTarget(work);
    const run = await cli(...restoreArgv(archive, identityFile, target), "--force");
    expect(run.code, run.stderr).toBe(4);
    expect((await lstat(target)).isDirectory()).toBe(true);
    await expectTargetUntouched(parent, target);
  });
});

describe("rootfs is limited to the outside paths the backup recorded", () => {
  const cert = file("rootfs/etc/looker/cert.pem", "CERT\n", 0o600);

  it("a member at or below a recorded outside path is placed (control)", async () => {
    const rootfs = await bystander("rootfs");
    const archive = await archiveOf([dir("rootfs/etc/looker/", 0o700), cert, file("home/a.txt")], {
      outside: ["/etc/looker"],
    });
    const { target } = await preparedTarget(work);
    const run = await cli(...restoreArgv(archive, identityFile, target), "--force", "--rootfs", rootfs);
    expect(run.code, run.stderr).toBe(0);
    expect(await readFile(join(rootfs, "etc/looker/cert.pem"), "utf8")).toBe("CERT\n");
    expect((await readdir(rootfs)).sort()).toEqual(["data.txt", "etc"]);
  });

  const forged: [string, RawMember[]][] = [
    [
      "etc/cron.d/evil outside every recorded path",
      [cert, file("rootfs/etc/cron.d/evil", "* * * * * root sh\n")],
    ],
    [
      "etc/passwd replaced by a symlink",
      [cert, { header: { path: "rootfs/etc/passwd", type: "symlink", linkTarget: "/tmp/x" } }],
    ],
    [
      "a hard link in rootfs/",
      [
        cert,
        {
          header: {
            path: "rootfs/etc/looker/again",
            type: "hardlink",
            linkTarget: "rootfs/etc/looker/cert.pem",
          },
        },
      ],
    ],
    ["a sibling whose name only starts like the recorded path", [file("rootfs/etc/lookerX/evil")]],
  ];
  for (const [name, members] of forged) {
    it(`${name}: verify and restore refuse (exit 4), nothing placed`, async () => {
      const archive = await archiveOf([file("home/a.txt"), ...members], { outside: ["/etc/looker"] });
      const checked = await verify(archive);
      expect(checked.code, checked.stderr).toBe(4);
      const rootfs = await bystander("rootfs");
      const { parent, target } = await preparedTarget(work);
      const run = await cli(...restoreArgv(archive, identityFile, target), "--force", "--rootfs", rootfs);
      expect(run.code, run.stderr).toBe(4);
      expect(run.stderr).toMatch(/refusing member rootfs\//);
      await expectBystanderIntact(rootfs);
      await expectTargetUntouched(parent, target);
    });
  }

  it("an archive whose backup.json records no outside path may hold no rootfs/ member (exit 4)", async () => {
    const archive = await archiveOf([file("home/a.txt"), cert]);
    const checked = await verify(archive);
    expect(checked.code, checked.stderr).toBe(4);
    expect(checked.stderr).toContain("not at or below an outside path that meta/backup.json records");
  });
});

describe("setuid, setgid (of files), sticky and world-writable bits are dropped unless asked for", () => {
  const members = (): RawMember[] => [
    file("home/rootshell", "#!/bin/sh\n", 0o4755),
    file("home/group", "g\n", 0o2750),
    dir("home/shared/", 0o1777),
    dir("home/team/", 0o2770),
    file("home/open.txt", "o\n", 0o666),
    file("home/plain.txt", "p\n", 0o640),
    file("rootfs/etc/looker/tool", "t\n", 0o6755),
  ];
  const modeOf = async (path: string) => (await stat(path)).mode & 0o7777;

  it("restore writes them without those bits, warns naming them, and verify says so beforehand", async () => {
    const archive = await archiveOf(members(), { outside: ["/etc/looker"] });
    const checked = await verify(archive);
    expect(checked.code, checked.stderr).toBe(0);
    expect(checked.stderr).toMatch(/would be dropped for 5 member\(s\)/);
    const rootfs = await bystander("rootfs");
    const { target } = await preparedTarget(work);
    const run = await cli(...restoreArgv(archive, identityFile, target), "--force", "--rootfs", rootfs);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/warning: .*dropped for 5 member\(s\)/);
    expect(run.stderr).toContain("home/rootshell (mode 4755 written as 0755)");
    expect(await modeOf(join(target, "rootshell"))).toBe(0o755);
    expect(await modeOf(join(target, "group"))).toBe(0o750);
    expect(await modeOf(join(target, "shared"))).toBe(0o775);
    // setgid on a directory only passes its group on: kept, as group-shared homes need it.
    expect(await modeOf(join(target, "team"))).toBe(0o2770);
    expect(await modeOf(join(target, "open.txt"))).toBe(0o664);
    expect(await modeOf(join(target, "plain.txt"))).toBe(0o640);
    expect(await modeOf(join(rootfs, "etc/looker/tool"))).toBe(0o755);
  });

  it("--keep-privileged-modes writes them as archived, without a warning", async () => {
    const archive = await archiveOf(members(), { outside: ["/etc/looker"] });
    const { target } = await preparedTarget(work);
    const run = await cli(
      ...restoreArgv(archive, identityFile, target),
      "--force",
      "--keep-privileged-modes",
    );
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).not.toMatch(/dropped/);
    expect(await modeOf(join(target, "rootshell"))).toBe(0o4755);
    expect(await modeOf(join(target, "shared"))).toBe(0o1777);
    expect(await modeOf(join(target, "open.txt"))).toBe(0o666);
  });
});

describe("rootfs files and dumps change only together with the home", () => {
  /** A rootfs root holding the old etc/looker/a.conf, and an archive that replaces it and adds b.conf. */
  async function scene(extra: RawMember[] = []) {
    const rootfs = await bystander("rootfs");
    await mkdir(join(rootfs, "etc/looker"), { recursive: true });
    await writeFile(join(rootfs, "etc/looker/a.conf"), "old a\n");
    const archive = await archiveOf(
      [
        file("home/a.txt"),
        file("rootfs/etc/looker/a.conf", "new a\n"),
        file("rootfs/etc/looker/b.conf", "new b\n"),
        ...extra,
        file("mysql/looker.sql", "CREATE TABLE t (a int);\n", 0o600),
      ],
      { outside: ["/etc/looker"] },
    );
    const { parent, target } = await preparedTarget(work);
    return { rootfs, archive, parent, target };
  }

  async function expectRootfsAsBefore(rootfs: string, extra: string[] = []): Promise<void> {
    expect((await readdir(join(rootfs, "etc/looker"))).sort()).toEqual(["a.conf", ...extra].sort());
    expect(await readFile(join(rootfs, "etc/looker/a.conf"), "utf8")).toBe("old a\n");
  }

  it("a rootfs destination that is a directory: nothing placed, not even the files before it", async () => {
    const { rootfs, archive, parent, target } = await scene();
    await mkdir(join(rootfs, "etc/looker/b.conf"));
    const run = await cli(...restoreArgv(archive, identityFile, target), "--force", "--rootfs", rootfs);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toContain("it is a directory");
    await expectRootfsAsBefore(rootfs, ["b.conf"]);
    await expectTargetUntouched(parent, target);
  });

  it("a --mysql-dir that is a file: the rootfs files are not placed either", async () => {
    const { rootfs, archive, parent, target } = await scene();
    const mysqlDir = join(work, `not-a-dir-${++counter}`);
    await writeFile(mysqlDir, "file\n");
    const run = await cli(
      ...restoreArgv(archive, identityFile, target),
      "--force",
      "--rootfs",
      rootfs,
      "--mysql-dir",
      mysqlDir,
    );
    expect(run.code, run.stderr).toBe(2);
    await expectRootfsAsBefore(rootfs);
    expect(await readFile(mysqlDir, "utf8")).toBe("file\n");
    await expectTargetUntouched(parent, target);
  });

  it("a symlinked directory in the rootfs is not followed (exit 2), the directory it points to untouched", async () => {
    const rootfs = await bystander("rootfs");
    const elsewhere = await bystander("elsewhere");
    await symlink(elsewhere, join(rootfs, "etc"));
    const archive = await archiveOf([file("home/a.txt"), file("rootfs/etc/looker/a.conf", "new a\n")], {
      outside: ["/etc/looker"],
    });
    const { parent, target } = await preparedTarget(work);
    const run = await cli(...restoreArgv(archive, identityFile, target), "--force", "--rootfs", rootfs);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toContain("it is a symlink");
    await expectBystanderIntact(elsewhere);
    await expectTargetUntouched(parent, target);
  });

  it("when the home swap fails after the rootfs files and dumps were placed, they are put back", async () => {
    const { rootfs, archive, parent, target } = await scene();
    const at = new Date("2024-05-01T10:00:00Z");
    // The name the current home would be kept under is taken by a non-empty directory: the swap's rename fails.
    const kept = `${target}.pre-restore-20240501T100000Z`;
    await mkdir(kept);
    await writeFile(join(kept, "other"), "x");
    const mysqlDir = join(parent, "dumps");
    await expect(
      restoreArchive({
        source: Readable.from([await readFile(archive)]),
        keys: { identities: [identity] },
        target,
        rootfs,
        mysqlDir,
        force: true,
        now: () => at,
      }),
    ).rejects.toMatchObject({ code: "ENOTEMPTY" });
    await expectRootfsAsBefore(rootfs);
    expect((await readdir(parent)).sort()).toEqual(["home", "home.pre-restore-20240501T100000Z"]);
    expect(await readdir(target)).toEqual(["keep.txt"]);
  });

  it("on success the old rootfs content is replaced and nothing is left beside it", async () => {
    const { rootfs, archive, target } = await scene();
    const run = await cli(...restoreArgv(archive, identityFile, target), "--force", "--rootfs", rootfs);
    expect(run.code, run.stderr).toBe(0);
    expect((await readdir(join(rootfs, "etc/looker"))).sort()).toEqual(["a.conf", "b.conf"]);
    expect(await readFile(join(rootfs, "etc/looker/a.conf"), "utf8")).toBe("new a\n");
    expect(await readdir(`${target}.mysql`)).toEqual(["looker.sql"]);
  });
});

describe("one restore per target at a time", () => {
  it("a restore into a target whose lock is held fails at once with a clear error, target untouched", async () => {
    const archive = await archiveOf([file("home/a.txt")]);
    const { parent, target } = await preparedTarget(work);
    await writeFile(lockPathOf(target), `${process.pid} ${hostname()}\n`);
    const run = await cli(...restoreArgv(archive, identityFile, target), "--force");
    expect(run.code, run.stderr).toBe(1);
    expect(run.stderr).toMatch(/another restore into .* is running/);
    expect(await readdir(target)).toEqual(["keep.txt"]);
    expect((await readdir(parent)).sort()).toEqual([".home.restore.lock", "home"]);
  });

  it("a lock left by a process that is gone is taken over, and released after the restore", async () => {
    const archive = await archiveOf([file("home/a.txt")]);
    const { parent, target } = await preparedTarget(work);
    const child = spawn(process.execPath, ["-e", ""]);
    const pid = child.pid!;
    await new Promise((resolve) => child.on("exit", resolve));
    await writeFile(lockPathOf(target), `${pid} ${hostname()}\n`);
    const run = await cli(...restoreArgv(archive, identityFile, target), "--force", "--json");
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as { previousContent: string };
    expect((await readdir(parent)).sort()).toEqual(["home", result.previousContent.split("/").pop()].sort());
  });
});

describe("the archive's structure is looker-backup's, or it is refused (verify and restore alike)", () => {
  it("a file's catalog entry without its sha256 (its content would go unchecked): exit 4", async () => {
    const archive = await archiveOf([file("home/a.txt", "forged\n")], {
      catalogLines: (lines) => lines.map((line) => line.replace(/,"sha256":"[0-9a-f]{64}"/, "")),
    });
    const run = await verify(archive);
    expect(run.code, run.stderr).toBe(4);
    expect(run.stderr).toMatch(/catalog line \d+ does not describe a member/);
  });

  it("a member whose mtime or owner is not the catalog's (restore would set another time): exit 4", async () => {
    for (const [field, forged] of [
      ["mtime", '"mtime":-315619200'],
      ["owner", '"uid":4242'],
    ] as const) {
      const archive = await archiveOf([file("home/a.txt", "dated\n")], {
        catalogLines: (lines) =>
          lines.map((line) =>
            line.includes('"home/a.txt"')
              ? line.replace(field === "mtime" ? /"mtime":[0-9.]+/ : /"uid":\d+/, forged)
              : line,
          ),
      });
      const run = await verify(archive);
      expect(run.code, run.stderr).toBe(4);
      expect(run.stderr).toMatch(new RegExp(`member home/a.txt does not match the catalog: ${field}`));
    }
  });

  it("a member before meta/backup.json (which says what else may be placed): exit 4", async () => {
    const meta = Buffer.from(`${JSON.stringify({ format: "looker-backup/1" })}\n`);
    const body = Buffer.from("early\n");
    const sha = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");
    const entry = (path: string, content: Buffer, mode: number) =>
      catalogLine({
        path,
        type: "file",
        size: content.length,
        mode,
        uid: 0,
        gid: 0,
        mtime: 0,
        sha256: sha(content),
      });
    const lines = [entry("home/early.txt", body, 0o644), entry("meta/backup.json", meta, 0o600)];
    const tar = await buildTar([
      { header: { path: "home/early.txt", mode: 0o644, mtime: 0 }, body },
      { header: { path: "meta/backup.json", mode: 0o600, mtime: 0 }, body: meta },
      { header: { path: "meta/catalog.jsonl", mode: 0o600, mtime: 0 }, body: Buffer.from(lines.join("")) },
    ]);
    const archive = join(work, "meta-not-first.tar.zst.age");
    await writeFile(archive, await encryptTar(tar, recipient));
    const run = await verify(archive);
    expect(run.code, run.stderr).toBe(4);
    expect(run.stderr).toContain("the first member must be meta/backup.json");
  });
});

describe("big files are written several at once, each still checked", () => {
  /** Three files big enough for the writer threads (1 MiB and up), a hard link to one, and a small file after. */
  const bigMembers = (): RawMember[] => [
    dir("home/data/", 0o755),
    { header: { path: "home/data/a.db", mode: 0o600 }, body: Buffer.alloc(3 << 20, 0x61) },
    { header: { path: "home/data/b.jar", mode: 0o644 }, body: Buffer.alloc(2 << 20, 0x62) },
    { header: { path: "home/data/c.jar", mode: 0o644 }, body: Buffer.alloc(5 << 19, 0x63) },
    {
      header: { path: "home/data/b-link.jar", type: "hardlink", linkTarget: "home/data/b.jar", mode: 0o644 },
    },
    file("home/data/after.txt", "after\n"),
  ];

  it("every file restored byte for byte, the hard link to a file still being written one inode with it", async () => {
    const archive = await archiveOf(bigMembers());
    const parent = await mkdtemp(join(work, "big-"));
    const target = join(parent, "home");
    const run = await cli(...restoreArgv(archive, identityFile, target));
    expect(run.code, run.stderr).toBe(0);
    for (const [name, byte, size] of [
      ["a.db", 0x61, 3 << 20],
      ["b.jar", 0x62, 2 << 20],
      ["c.jar", 0x63, 5 << 19],
    ] as const) {
      expect((await readFile(join(target, "data", name))).equals(Buffer.alloc(size, byte)), name).toBe(true);
    }
    const [b, link] = await Promise.all([
      stat(join(target, "data/b.jar")),
      stat(join(target, "data/b-link.jar")),
    ]);
    expect(link.ino).toBe(b.ino);
    expect(await readFile(join(target, "data/after.txt"), "utf8")).toBe("after\n");
  });

  for (const forged of ["a.db", "c.jar"]) {
    it(`a big file (${forged}) unlike its catalog entry fails the restore (exit 4), target untouched`, async () => {
      const archive = await archiveOf(bigMembers(), {
        catalogLines: (lines) =>
          lines.map((line) =>
            line.includes(`"home/data/${forged}"`)
              ? line.replace(/"sha256":"[0-9a-f]{64}"/, `"sha256":"${"0".repeat(64)}"`)
              : line,
          ),
      });
      const { parent, target } = await preparedTarget(work);
      const run = await cli(...restoreArgv(archive, identityFile, target), "--force");
      expect(run.code, run.stderr).toBe(4);
      expect(run.stderr).toContain(`home/data/${forged}`);
      await expectTargetUntouched(parent, target);
    });
  }
});
