/**
 * Partial restore through the real CLI: `restore --include/--exclude` into a new home, and `--into DIR` next to
 * existing content. Every restore reads and checks the whole archive; what is not selected is never written.
 */
import { createHash } from "node:crypto";
import { cp, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { restoreInto } from "../../src/engine/restore-into.js";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { buildTar, encryptTar, type RawMember } from "../helpers/archives.js";
import { backupArgv, cli, cliJson, restoreArgv } from "../helpers/cli.js";
import { comparable, mtimeDifferences, snapshotTree, type TreeEntry } from "../helpers/tree.js";

let work: string;
let home: string;
let identityFile: string;
let recipient: string;
let archive: string;
let source: Map<string, TreeEntry>;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "lb-partial-"));
  home = join(work, "home");
  // 200 LookML files spread over models-user-1..3 (the generator's small profile, not the bench's 1 GB).
  await generateLookerHome({ root: home, seed: 23, sizeBytes: 2 << 20, smallFiles: 200 });
  identityFile = join(work, "identity.txt");
  ({ recipient } = await cliJson<{ recipient: string }>("keygen", "--output", identityFile));
  ({ archive } = await cliJson<{ archive: string }>(
    ...backupArgv(home, join(work, "store"), recipient, "partial"),
  ));
  source = await snapshotTree(home);
}, 120_000);

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

interface Summary {
  target: string;
  into: string | null;
  members: number;
  bytes: number;
  restored: { members: number; bytes: number };
  include: string[];
  exclude: string[];
  placed: string[];
  replaced: { path: string; keptAt: string }[];
  warnings: string[];
}

/** The source tree's entries for which `keep` holds. */
function sourceWhere(keep: (path: string) => boolean): Map<string, TreeEntry> {
  return new Map([...source].filter(([path]) => keep(path)));
}

const under = (prefix: string) => (path: string) => path === prefix || path.startsWith(`${prefix}/`);

/** The restored tree equals the source's selection: content, type, mode, owner, size and mtime. */
function expectSameTree(restored: Map<string, TreeEntry>, expected: Map<string, TreeEntry>): void {
  expect(comparable(restored)).toEqual(comparable(expected));
  expect(mtimeDifferences(expected, restored)).toEqual([]);
}

async function newParent(): Promise<string> {
  return mkdtemp(join(work, "restore-"));
}

describe("--include into a new home", () => {
  it("restores one models-user directory byte-identical, with its parents as archived, and nothing else", async () => {
    const parent = await newParent();
    const target = join(parent, "home");
    const summary = await cliJson<Summary>(
      ...restoreArgv(archive, identityFile, target),
      "--include",
      "looker/models-user-2",
    );
    const restored = await snapshotTree(target);
    const expected = sourceWhere((path) => path === "looker" || under("looker/models-user-2")(path));
    expect(expected.size).toBeGreaterThan(20);
    expectSameTree(restored, expected);
    // The home directory itself took the archived home's mode and times, as a full restore's would.
    const [homeInfo, targetInfo] = await Promise.all([stat(home), stat(target)]);
    expect(targetInfo.mode).toBe(homeInfo.mode);
    expect(Math.abs(targetInfo.mtimeMs - homeInfo.mtimeMs)).toBeLessThan(0.001);
    expect(await readdir(parent), "no staging dir, lock or dumps dir beside the target").toEqual(["home"]);
    // Restored: the selected entries, `looker/` and the home; read and checked: the whole archive.
    expect(summary.restored.members).toBe(expected.size + 1);
    const files = [...expected.values()].filter((entry) => entry.type === "file");
    expect(summary.restored.bytes).toBe(files.reduce((sum, entry) => sum + entry.size, 0));
    expect(summary.members).toBeGreaterThan(summary.restored.members + 100);
    expect(summary.include).toEqual(["looker/models-user-2"]);
    expect(summary.exclude).toEqual([]);
    expect(summary.into).toBeNull();
  });

  it("--exclude wins over --include; a glob selects across directories", async () => {
    const target = join(await newParent(), "home");
    const summary = await cliJson<Summary>(
      ...restoreArgv(archive, identityFile, target),
      "--include",
      "looker/models-user-*",
      "--exclude",
      "looker/models-user-*/**/*.md",
      "--exclude",
      "looker/models-user-3",
    );
    const expected = sourceWhere(
      (path) =>
        path === "looker" ||
        ((under("looker/models-user-1")(path) || under("looker/models-user-2")(path)) &&
          !path.endsWith(".md")),
    );
    expect(
      [...source.keys()].some((path) => path.startsWith("looker/models-user-1/") && path.endsWith(".md")),
    ).toBe(true);
    expectSameTree(await snapshotTree(target), expected);
    expect(summary.exclude).toEqual(["looker/models-user-*/**/*.md", "looker/models-user-3"]);
  });

  it("a text summary says how much of the archive was restored and that all of it was checked", async () => {
    const target = join(await newParent(), "home");
    const run = await cli(...restoreArgv(archive, identityFile, target), "--include", "looker/models-user-1");
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(
      /^restored \d+ of \d+ members \(.+\) into .+\nthe whole archive \(.+\) matched its catalog/,
    );
  });
});

describe("refusals: exit 2, nothing written", () => {
  it("an include that matches nothing is named, with a hint; the target is not created", async () => {
    const parent = await newParent();
    const target = join(parent, "home");
    const run = await cli(
      ...restoreArgv(archive, identityFile, target),
      "--include",
      "looker/models-user-2",
      "--include",
      "looker/modles-user-1",
    );
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toContain("--include 'looker/modles-user-1' matched nothing in the archive");
    expect(run.stderr).toMatch(/hint: .*check the spelling/);
    expect(await readdir(parent)).toEqual([]);
  });

  it("an include spelled as the archive stores it (home/...) gets a hint about the home-relative form", async () => {
    const parent = await newParent();
    const run = await cli(
      ...restoreArgv(archive, identityFile, join(parent, "home")),
      "--include",
      "home/looker/models-user-2",
    );
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("without the archive's home/ prefix");
    expect(await readdir(parent)).toEqual([]);
  });

  it("a partial restore into a non-empty home is refused, with --force too, pointing at --into", async () => {
    const parent = await newParent();
    const target = join(parent, "home");
    await mkdir(target);
    await writeFile(join(target, "keep.txt"), "running home\n");
    for (const force of [[], ["--force"]]) {
      const run = await cli(
        ...restoreArgv(archive, identityFile, target),
        "--include",
        "looker/models-user-2",
        ...force,
      );
      expect(run.code, run.stderr).toBe(2);
      expect(run.stderr).toContain("a partial restore (--include/--exclude) does not replace a home");
      expect(run.stderr).toContain("--into DIR");
      expect(await readdir(parent)).toEqual(["home"]);
      expect(await readdir(target)).toEqual(["keep.txt"]);
    }
  });

  it("bad flag combinations and patterns fail before the archive is read", async () => {
    const into = await newParent();
    const cases: [string[], RegExp][] = [
      [["--into", into, "--target", join(into, "x")], /exactly one of --target DIR .* and --into DIR/],
      [["--into", into, "--rootfs", "/"], /--rootfs does not go with --into/],
      [["--target", join(into, "x"), "--include", "looker/../etc"], /'\.' and '\.\.' segments/],
      [["--target", join(into, "x"), "--include", "mysql:"], /mysql: takes a database name/],
      [["--into", join(into, "missing"), "--include", "looker"], /is not an existing directory/],
    ];
    for (const [flags, message] of cases) {
      const run = await cli("restore", "--archive", archive, "--identity", identityFile, ...flags);
      expect(run.code, run.stderr).toBe(2);
      expect(run.stderr).toMatch(message);
    }
    expect(await readdir(into)).toEqual([]);
  });
});

describe("--into DIR: added next to existing content", () => {
  /** A running home: the live copy of the source, with something of its own. */
  async function liveHome(): Promise<string> {
    const dir = join(await newParent(), "live");
    await cp(home, dir, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
    await writeFile(join(dir, "looker", "added-since.txt"), "made after the backup\n");
    return dir;
  }

  it("brings back a deleted models-user directory, leaving everything else as it is", async () => {
    const live = await liveHome();
    await rm(join(live, "looker", "models-user-2"), { recursive: true });
    const lookerBefore = await lstat(join(live, "looker"));
    const othersBefore = await snapshotTree(live, { skip: (path) => path === "looker" });
    const summary = await cliJson<Summary>(
      "restore",
      "--archive",
      archive,
      "--identity",
      identityFile,
      "--into",
      live,
      "--include",
      "looker/models-user-2",
    );
    expect(summary.into).toBe(live);
    expect(summary.placed).toEqual([join(live, "looker", "models-user-2")]);
    expect(summary.replaced).toEqual([]);
    const restored = await snapshotTree(join(live, "looker", "models-user-2"));
    const expected = new Map(
      [...sourceWhere((path) => path.startsWith("looker/models-user-2/"))].map(([path, entry]) => [
        path.slice("looker/models-user-2/".length),
        entry,
      ]),
    );
    expectSameTree(restored, expected);
    const models = await stat(join(live, "looker", "models-user-2"));
    const archived = source.get("looker/models-user-2")!;
    expect(models.mode & 0o7777).toBe(archived.mode);
    expect(Math.abs(models.mtimeMs - archived.mtimeMs)).toBeLessThan(0.001);
    // The rest of the home: the same entries, content and metadata; `looker/` is the same directory.
    const othersAfter = await snapshotTree(live, {
      skip: (path) => path === "looker" || under("looker/models-user-2")(path),
    });
    expect(othersAfter).toEqual(othersBefore);
    expect((await lstat(join(live, "looker"))).ino).toBe(lookerBefore.ino);
    expect((await readdir(live)).filter((name) => name.startsWith(".looker-backup"))).toEqual([]);
  });

  it("refuses to overwrite an existing selected path (exit 2, nothing changed); --force keeps it aside", async () => {
    const live = await liveHome();
    const models = join(live, "looker", "models-user-2");
    const changed = join(models, "ecommerce", "edited.view.lkml");
    await writeFile(changed, "view: edited {}\n");
    const before = await snapshotTree(live);
    const argv = [
      "restore",
      "--archive",
      archive,
      "--identity",
      identityFile,
      "--into",
      live,
      "--include",
      "looker/models-user-2",
    ];
    const refused = await cli(...argv);
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toContain(`exist in ${live} already: ${models}`);
    expect(refused.stderr).toContain("--force");
    expect(await snapshotTree(live)).toEqual(before);

    const summary = await cliJson<Summary>(...argv, "--force");
    expect(summary.replaced).toHaveLength(1);
    const { path, keptAt } = summary.replaced[0]!;
    expect(path).toBe(models);
    expect(keptAt).toMatch(/\/models-user-2\.pre-restore-\d{8}T\d{6}Z$/);
    expect(await readFile(join(keptAt, "ecommerce", "edited.view.lkml"), "utf8")).toBe("view: edited {}\n");
    await expect(stat(changed)).rejects.toThrow(/ENOENT/);
    const expected = new Map(
      [...sourceWhere((p) => p.startsWith("looker/models-user-2/"))].map(([p, entry]) => [
        p.slice("looker/models-user-2/".length),
        entry,
      ]),
    );
    expectSameTree(await snapshotTree(models), expected);
  });

  it("an include that matches nothing leaves DIR as it was", async () => {
    const live = await liveHome();
    const before = await snapshotTree(live);
    const run = await cli(
      "restore",
      "--archive",
      archive,
      "--identity",
      identityFile,
      "--into",
      live,
      "--include",
      "looker/models-user-9",
    );
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toContain("'looker/models-user-9' matched nothing");
    expect(await snapshotTree(live)).toEqual(before);
  });
});

describe("hand-built archives: forged members, outside files, dumps, hard links", () => {
  const text = (path: string, body: string, mode = 0o644): RawMember => ({
    header: { path, mode },
    body: Buffer.from(body),
  });
  const dir = (path: string, mode = 0o755): RawMember => ({ header: { path, type: "directory", mode } });
  const members: RawMember[] = [
    dir("home/", 0o750),
    dir("home/looker/"),
    dir("home/looker/models-user-7/"),
    text("home/looker/models-user-7/orders.view.lkml", "view: orders {}\n"),
    dir("home/looker/models-user-8/"),
    text("home/looker/models-user-8/users.view.lkml", "view: users {}\n"),
    { header: { path: "home/looker/tool", mode: 0o4755 }, body: Buffer.from("#!/bin/sh\n") },
    dir("rootfs/"),
    dir("rootfs/etc/looker/", 0o700),
    text("rootfs/etc/looker/cert.pem", "CERT\n", 0o600),
    dir("mysql/", 0o700),
    text("mysql/looker.sql", "-- dump\n", 0o600),
  ];
  let counter = 0;

  /** The archive, its catalog's sha256 of `forge` (if given) replaced by the digest of other content. */
  async function archiveOf(list: RawMember[], forge?: string): Promise<string> {
    const path = join(work, `hand-${++counter}.tar.zst.age`);
    const other = createHash("sha256").update("something else").digest("hex");
    const tar = await buildTar(list, {
      catalog: true,
      outside: ["/etc/looker"],
      catalogLines: (lines) =>
        lines.map((line) =>
          forge !== undefined && line.includes(`"path":"${forge}"`)
            ? line.replace(/"sha256":"[0-9a-f]{64}"/, `"sha256":"${other}"`)
            : line,
        ),
    });
    await writeFile(path, await encryptTar(tar, recipient));
    return path;
  }

  for (const [what, forged] of [
    ["the selected member", "home/looker/models-user-7/orders.view.lkml"],
    [
      "a member that is not selected (the whole archive is checked)",
      "home/looker/models-user-8/users.view.lkml",
    ],
  ] as const) {
    it(`a forged archive whose catalog disagrees with ${what}: exit 4, target and DIR untouched`, async () => {
      const forgedArchive = await archiveOf(members, forged);
      const parent = await newParent();
      const target = join(parent, "home");
      const run = await cli(
        ...restoreArgv(forgedArchive, identityFile, target),
        "--include",
        "looker/models-user-7",
      );
      expect(run.code, run.stderr).toBe(4);
      expect(run.stderr).toContain(`member ${forged} does not match the catalog: sha256 differs`);
      expect(await readdir(parent)).toEqual([]);
      const into = await newParent();
      await writeFile(join(into, "keep.txt"), "keep\n");
      const intoRun = await cli(
        "restore",
        "--archive",
        forgedArchive,
        "--identity",
        identityFile,
        "--into",
        into,
        "--include",
        "looker/models-user-7",
      );
      expect(intoRun.code, intoRun.stderr).toBe(4);
      expect(await readdir(into)).toEqual(["keep.txt"]);
    });
  }

  it("--into --force: a move that fails undoes the ones before it; DIR is as it was, the staging gone", async () => {
    const good = await archiveOf(members);
    const into = await newParent();
    for (const name of ["models-user-7", "models-user-8"]) {
      await mkdir(join(into, "looker", name), { recursive: true });
      await writeFile(join(into, "looker", name, "current.lkml"), `${name} now\n`);
    }
    // The name models-user-8's current content would be kept under is taken: the second move fails.
    const now = new Date("2025-01-02T03:04:05Z");
    await mkdir(join(into, "looker", "models-user-8.pre-restore-20250102T030405Z"));
    const before = await snapshotTree(into);
    const secret = (await readFile(identityFile, "utf8"))
      .split("\n")
      .find((l) => l.startsWith("AGE-SECRET-KEY-"))!;
    await expect(
      restoreInto({
        source: Readable.from([await readFile(good)]),
        keys: { identities: [secret] },
        into,
        include: ["looker/models-user-7", "looker/models-user-8"],
        force: true,
        now: () => now,
      }),
    ).rejects.toThrow(/cannot keep .*models-user-8 as .*models-user-8\.pre-restore-20250102T030405Z/);
    // Every entry as it was, the same inodes; only the directories' own times show the attempt.
    const after = await snapshotTree(into);
    expect(comparable(after)).toEqual(comparable(before));
    expect([...after].map(([path, entry]) => [path, entry.ino])).toEqual(
      [...before].map(([path, entry]) => [path, entry.ino]),
    );
    expect(mtimeDifferences(before, after, { directories: false })).toEqual([]);
  });

  it("--into places outside files and dumps below DIR/rootfs and DIR/mysql only when selected", async () => {
    const good = await archiveOf(members);
    const into = await newParent();
    await cliJson(
      "restore",
      "--archive",
      good,
      "--identity",
      identityFile,
      "--into",
      into,
      "--include",
      "looker/models-user-7",
    );
    expect((await readdir(into)).sort()).toEqual(["looker"]);
    expect(await readdir(join(into, "looker"))).toEqual(["models-user-7"]);

    const both = await newParent();
    const summary = await cliJson<Summary>(
      "restore",
      "--archive",
      good,
      "--identity",
      identityFile,
      "--into",
      both,
      "--include",
      "/etc/looker/cert.pem",
      "--include",
      "mysql:looker",
    );
    expect((await readdir(both)).sort()).toEqual(["mysql", "rootfs"]);
    expect(await readFile(join(both, "rootfs/etc/looker/cert.pem"), "utf8")).toBe("CERT\n");
    expect((await stat(join(both, "rootfs/etc/looker/cert.pem"))).mode & 0o777).toBe(0o600);
    expect(await readFile(join(both, "mysql/looker.sql"), "utf8")).toBe("-- dump\n");
    expect(summary.placed.sort()).toEqual([join(both, "mysql"), join(both, "rootfs")]);
  });

  it("a directory listed after its contents (another writer's order) still gets its archived mode", async () => {
    const late = await archiveOf([
      dir("home/", 0o750),
      text("home/looker/models-user-7/orders.view.lkml", "view: orders {}\n"),
      text("home/looker/other.txt", "not selected\n"),
      dir("home/looker/models-user-7/", 0o2770),
      dir("home/looker/", 0o710),
    ]);
    const target = join(await newParent(), "home");
    await cliJson(
      ...restoreArgv(late, identityFile, target),
      "--include",
      "looker/models-user-7/orders.view.lkml",
    );
    expect((await stat(join(target, "looker"))).mode & 0o7777).toBe(0o710);
    expect((await stat(join(target, "looker/models-user-7"))).mode & 0o7777).toBe(0o2770);
    expect((await readdir(join(target, "looker"))).sort()).toEqual(["models-user-7"]);
  });

  it("the mode rule warns only about members it writes", async () => {
    const good = await archiveOf(members);
    const quiet = await cliJson<Summary>(
      ...restoreArgv(good, identityFile, join(await newParent(), "home")),
      "--include",
      "looker/models-user-7",
    );
    expect(quiet.warnings.filter((w) => w.includes("setuid"))).toEqual([]);
    const tool = await cliJson<Summary>(
      ...restoreArgv(good, identityFile, join(await newParent(), "home")),
      "--include",
      "looker/tool",
    );
    expect(tool.warnings.join("\n")).toContain("home/looker/tool (mode 4755 written as 0755)");
  });

  it("a selected hard link whose file is left out: exit 2 naming both; with the file included, both restored", async () => {
    const linked = await archiveOf([
      ...members,
      {
        header: {
          path: "home/looker/models-user-8/alias.lkml",
          type: "hardlink",
          linkTarget: "home/looker/models-user-7/orders.view.lkml",
        },
      },
    ]);
    const parent = await newParent();
    const run = await cli(
      ...restoreArgv(linked, identityFile, join(parent, "home")),
      "--include",
      "looker/models-user-8",
    );
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toContain(
      "home/looker/models-user-8/alias.lkml is a hard link to home/looker/models-user-7/orders.view.lkml",
    );
    expect(run.stderr).toContain("add --include for looker/models-user-7/orders.view.lkml");
    expect(await readdir(parent)).toEqual([]);
    const target = join(await newParent(), "home");
    await cliJson(
      ...restoreArgv(linked, identityFile, target),
      "--include",
      "looker/models-user-8",
      "--include",
      "looker/models-user-7/orders.view.lkml",
    );
    const [a, b] = await Promise.all([
      stat(join(target, "looker/models-user-8/alias.lkml")),
      stat(join(target, "looker/models-user-7/orders.view.lkml")),
    ]);
    expect(a.ino).toBe(b.ino);
    expect((await readdir(join(target, "looker"))).sort()).toEqual(["models-user-7", "models-user-8"]);
  });
});

it("restore --help lists the partial-restore flags", async () => {
  const run = await cli("restore", "--help");
  expect(run.code).toBe(0);
  for (const flag of ["--include GLOB", "--exclude GLOB", "--into DIR"]) expect(run.stdout).toContain(flag);
});
