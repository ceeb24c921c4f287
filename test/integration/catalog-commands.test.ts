/**
 * The catalog sidecar and the commands that read catalogs: every backup stores `<instance>-<time>.catalog.age` beside
 * its archive (stock `age -d` opens it; prune removes it with its archive); ls, find, diff and show answer from it,
 * or from the archive itself when it is gone, with the same result; a sidecar that says something else than its
 * archive is reported by verify, and the archive wins wherever it is read; `latest` and `latest~N` name archives of
 * a directory store.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readdir, rm, stat, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CATALOG_PATH } from "../../src/archive/catalog.js";
import { runBackup } from "../../src/engine/backup.js";
import { DirStore } from "../../src/store/dir-store.js";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { backupArgv, cli, cliJson } from "../helpers/cli.js";
import { requireCommands } from "../helpers/prerequisites.js";
import { selectionFor } from "../helpers/selection.js";

let work: string;
let home: string;
let out: string;
let identityFile: string;
let recipient: string;
let first: BackupJson;
let second: BackupJson;

interface BackupJson {
  archive: string;
  catalog: string | null;
  warnings: string[];
}

interface Member {
  path: string;
  archivePath: string;
  type: string;
  size: number;
  mtime: string;
  mode: string;
  uid: number;
  gid: number;
  sha256?: string;
}

const TEST_DIR = "looker/catalog-test";
const ADDED = "x".repeat(123);
const REMOVED = "y".repeat(45);
const CHANGED_BEFORE = "z".repeat(10);
const CHANGED_AFTER = "w".repeat(20);

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");
const keyArgs = () => ["--identity", identityFile];

/** Runs a command to completion: its stdout as bytes, its stderr; rejects on a non-zero exit. */
function run(command: string, args: string[], stdin?: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"] });
    const stdout: Buffer[] = [];
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => stdout.push(d));
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0
        ? resolve(Buffer.concat(stdout))
        : reject(new Error(`${command} ${args.join(" ")} exited ${code}: ${stderr}`)),
    );
    child.stdin.end(stdin);
  });
}

/** A member of the archive, read with the stock tools: age -d | zstd -d | tar -xO. */
async function stockMember(archive: string, member: string): Promise<Buffer> {
  const tar = await run("zstd", ["-d", "-c"], await run("age", ["-d", "-i", identityFile, archive]));
  return run("tar", ["-xO", member], tar);
}

async function backup(instance = "cat"): Promise<BackupJson> {
  const result = await cliJson<BackupJson>(
    ...backupArgv(home, out, recipient, instance),
    "--consistency",
    "live",
  );
  await new Promise((r) => setTimeout(r, 1100)); // archive names have one-second resolution
  return result;
}

/** A directory holding copies of the two archives without their sidecars. */
async function withoutSidecars(): Promise<string> {
  const dir = await mkdtemp(join(work, "bare-"));
  for (const archive of [first.archive, second.archive])
    await copyFile(archive, join(dir, basename(archive)));
  return dir;
}

beforeAll(async () => {
  requireCommands(["age", "zstd", "tar"]);
  work = await mkdtemp(join(tmpdir(), "lb-catalog-"));
  home = join(work, "home");
  out = join(work, "store");
  await generateLookerHome({ root: home, seed: 21, sizeBytes: 2 << 20, smallFiles: 40 });
  identityFile = join(work, "identity.txt");
  ({ recipient } = await cliJson<{ recipient: string }>("keygen", "--output", identityFile));
  await mkdir(join(home, TEST_DIR));
  await writeFile(join(home, TEST_DIR, "removed.txt"), REMOVED);
  await writeFile(join(home, TEST_DIR, "changed.txt"), CHANGED_BEFORE);
  first = await backup();
  await writeFile(join(home, TEST_DIR, "added.txt"), ADDED);
  await unlink(join(home, TEST_DIR, "removed.txt"));
  await writeFile(join(home, TEST_DIR, "changed.txt"), CHANGED_AFTER);
  second = await backup();
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("the catalog sidecar", () => {
  it("is stored beside each archive as <instance>-<time>.catalog.age, 0600", async () => {
    for (const result of [first, second]) {
      expect(result.catalog).toBe(result.archive.replace(/\.tar\.zst\.age$/, ".catalog.age"));
      expect((await stat(result.catalog!)).mode & 0o777).toBe(0o600);
    }
    expect((await readdir(out)).sort()).toEqual(
      [first.archive, first.catalog!, second.archive, second.catalog!].map((p) => basename(p)).sort(),
    );
  });

  it("opens with the stock age -d: a header line with backup.json, then the archive's catalog byte for byte", async () => {
    const text = (await run("age", ["-d", "-i", identityFile, second.catalog!])).toString("utf8");
    const newline = text.indexOf("\n");
    const header = JSON.parse(text.slice(0, newline)) as { format: string; archive: string; backup: unknown };
    expect(header.format).toBe("looker-backup-catalog/1");
    expect(header.archive).toBe(basename(second.archive));
    const backupJson = JSON.parse((await stockMember(second.archive, "meta/backup.json")).toString("utf8"));
    expect(header.backup).toEqual(backupJson);
    expect(text.slice(newline + 1)).toBe((await stockMember(second.archive, CATALOG_PATH)).toString("utf8"));
  });

  it("is removed by prune together with its archive", async () => {
    const store = join(work, "prune-store");
    await mkdir(store);
    for (const path of [first.archive, first.catalog!, second.archive, second.catalog!])
      await copyFile(path, join(store, basename(path)));
    const pruned = await cli("prune", "--out", store, "--instance", "cat", "--keep-last", "1");
    expect(pruned.code, pruned.stderr).toBe(0);
    expect((await readdir(store)).sort()).toEqual(
      [basename(second.archive), basename(second.catalog!)].sort(),
    );
  });

  it("a sidecar that cannot be stored is a warning: the archive is stored and the backup does not fail", async () => {
    const store = join(work, "blocked-store");
    const at = new Date("2026-12-06T03:00:00Z");
    // A non-empty directory where the sidecar goes: its rename fails.
    await mkdir(join(store, "blocked-20261206T030000Z.catalog.age", "x"), { recursive: true });
    const result = await runBackup({
      home,
      instance: "blocked",
      recipients: [recipient],
      selection: await selectionFor(home),
      store: new DirStore(store),
      now: () => at,
    });
    expect(result.archive?.name).toBe("blocked-20261206T030000Z.tar.zst.age");
    expect(result.catalogSidecar).toBeUndefined();
    expect(result.warnings.join("\n")).toMatch(/catalog sidecar could not be/);
    expect(result.exitCode).toBe(3);
    const verified = await cli("verify", "--archive", result.archive!.location, ...keyArgs());
    expect(verified.code, verified.stderr).toBe(0);
  });
});

describe("ls, find, diff and show", () => {
  it("ls lists the members with home paths, sizes and times; PATH narrows to a subtree; the sidecar is named", async () => {
    const all = await cli("ls", second.archive, ...keyArgs());
    expect(all.code, all.stderr).toBe(0);
    expect(all.stderr).toMatch(/catalog of .*: from its sidecar .*\.catalog\.age/);
    expect(all.stdout).toMatch(
      /^ +123 {2}\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ {2}looker\/catalog-test\/added\.txt$/m,
    );
    expect(all.stdout).toMatch(/ {2}looker\/lookerstart\.cfg$/m);
    expect(all.stdout).not.toMatch(/meta\//);
    const sub = await cli("ls", second.archive, TEST_DIR, ...keyArgs());
    expect(sub.code).toBe(0);
    expect(
      sub.stdout
        .trim()
        .split("\n")
        .map((line) => line.split(/ +/).pop()),
    ).toEqual([`${TEST_DIR}/`, `${TEST_DIR}/added.txt`, `${TEST_DIR}/changed.txt`]);
  });

  it("ls --long adds mode, owner, type and sha256; --json carries them all", async () => {
    const long = await cli("ls", "--long", second.archive, `${TEST_DIR}/added.txt`, ...keyArgs());
    expect(long.code, long.stderr).toBe(0);
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    expect(long.stdout.trim()).toMatch(
      new RegExp(
        `^-rw-r--r-- {2}${uid}:${gid} +file +123 {2}\\S+Z {2}${sha256(ADDED)} {2}${TEST_DIR}/added\\.txt$`,
      ),
    );
    const listed = await cliJson<{ source: string; members: Member[] }>(
      "ls",
      second.archive,
      TEST_DIR,
      ...keyArgs(),
    );
    expect(listed.source).toBe("sidecar");
    expect(listed.members.find((m) => m.path === `${TEST_DIR}/changed.txt`)).toMatchObject({
      archivePath: `home/${TEST_DIR}/changed.txt`,
      type: "file",
      size: 20,
      mode: "0644",
      uid,
      gid,
      sha256: sha256(CHANGED_AFTER),
    });
  });

  it("find tells which archives hold a matching path, over several archives and `all`", async () => {
    const removed = await cliJson<{ archives: { archive: string; matches: Member[] }[] }>(
      "find",
      first.archive,
      second.archive,
      `**/removed.txt`,
      ...keyArgs(),
    );
    expect(removed.archives.map((a) => [a.archive, a.matches.map((m) => m.path)])).toEqual([
      [first.archive, [`${TEST_DIR}/removed.txt`]],
      [second.archive, []],
    ]);
    const added = await cli("find", "all", `${TEST_DIR}/add*`, "--out", out, ...keyArgs());
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout.trim().split("\n")).toEqual([
      expect.stringMatching(new RegExp(`^${basename(second.archive)} +123 .* ${TEST_DIR}/added\\.txt$`)),
    ]);
    expect(added.stderr).toMatch(/matched in 1 of 2 archive\(s\)/);
  });

  it("diff lists exactly the files added, removed and changed, with their sizes", async () => {
    const diff = await cliJson<{
      added: unknown[];
      removed: unknown[];
      changed: unknown[];
      totals: Record<string, unknown>;
    }>("diff", "latest~1", "latest", "--out", out, ...keyArgs());
    expect(diff.added).toEqual([{ path: `${TEST_DIR}/added.txt`, size: 123 }]);
    expect(diff.removed).toEqual([{ path: `${TEST_DIR}/removed.txt`, size: 45 }]);
    expect(diff.changed).toEqual([{ path: `${TEST_DIR}/changed.txt`, size: 20, previousSize: 10 }]);
    expect(diff.totals).toEqual({
      added: { files: 1, bytes: 123 },
      removed: { files: 1, bytes: 45 },
      changed: { files: 1, bytes: 20, previousBytes: 10 },
    });
    const text = await cli("diff", first.archive, second.archive, ...keyArgs());
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout.split("\n").filter(Boolean)).toEqual([
      `+ ${"123".padStart(12)}  ${TEST_DIR}/added.txt`,
      `- ${"45".padStart(12)}  ${TEST_DIR}/removed.txt`,
      `~ ${"20".padStart(12)}  ${TEST_DIR}/changed.txt  (was 10)`,
    ]);
    expect(text.stderr).toMatch(/added 1 \(123 B\), removed 1 \(45 B\), changed 1 \(10 B -> 20 B\)/);
  });

  it("show gives backup.json (consistency, tool version, ...) and what the archive holds", async () => {
    const shown = await cliJson<{
      source: string;
      members: number;
      files: number;
      bytes: number;
      backup: Record<string, unknown>;
    }>("show", "latest", "--out", out, ...keyArgs());
    const listed = await cliJson<{ members: Member[] }>("ls", second.archive, ...keyArgs());
    const files = listed.members.filter((m) => m.type === "file");
    expect(shown).toMatchObject({
      source: "sidecar",
      members: listed.members.length,
      files: files.length,
      bytes: files.reduce((sum, m) => sum + m.size, 0),
    });
    expect(shown.backup).toMatchObject({ instance: "cat", consistency: "live", keystoreIndependent: false });
    expect((shown.backup.tool as { version: string }).version).toMatch(/^\d+\.\d+\.\d+/);
    const text = await cli("show", second.archive, ...keyArgs());
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^consistency +live; Looker was not stopped$/m);
    expect(text.stdout).toMatch(/^instance +cat$/m);
  });

  it("without the sidecar, each reads the archive itself, says so, and answers the same", async () => {
    const bare = await withoutSidecars();
    const [a, b] = [join(bare, basename(first.archive)), join(bare, basename(second.archive))];
    const pairs: [string[], string[]][] = [
      [
        ["ls", "--long", second.archive],
        ["ls", "--long", b],
      ],
      [
        ["find", first.archive, second.archive, "looker/catalog-test"],
        ["find", a, b, "looker/catalog-test"],
      ],
      [
        ["diff", first.archive, second.archive],
        ["diff", a, b],
      ],
    ];
    for (const [withSidecar, without] of pairs) {
      const expected = await cli(...withSidecar, ...keyArgs());
      const actual = await cli(...without, ...keyArgs());
      expect(actual.code, actual.stderr).toBe(0);
      expect(actual.stderr).toMatch(
        /reading the archive itself, every member verified \(no sidecar beside it\)/,
      );
      expect(actual.stderr).not.toMatch(/from its sidecar/);
      expect(actual.stdout.replaceAll(bare, "DIR")).toBe(expected.stdout.replaceAll(out, "DIR"));
    }
    const shown = await cliJson<{ source: string; backup: unknown; members: number }>(
      "show",
      b,
      ...keyArgs(),
    );
    const fromSidecar = await cliJson<{ backup: unknown; members: number }>(
      "show",
      second.archive,
      ...keyArgs(),
    );
    expect(shown.source).toBe("archive");
    expect(shown.backup).toEqual(fromSidecar.backup);
    expect(shown.members).toBe(fromSidecar.members);
  });
});

describe("a sidecar that disagrees with its archive", () => {
  let archive: string;
  let sidecar: string;

  beforeAll(async () => {
    const dir = await mkdtemp(join(work, "tampered-"));
    archive = join(dir, basename(second.archive));
    sidecar = join(dir, basename(second.catalog!));
    await copyFile(second.archive, archive);
    // Re-encrypted to the same recipient with the stock age, with another size for changed.txt.
    const text = (await run("age", ["-d", "-i", identityFile, second.catalog!])).toString("utf8");
    const tampered = text.replace(
      /("path":"home\/looker\/catalog-test\/changed\.txt","type":"file","size":)20/,
      "$1999",
    );
    expect(tampered).not.toBe(text);
    await writeFile(sidecar, await run("age", ["-e", "-r", recipient], Buffer.from(tampered)));
  });

  it("verify reports it, naming the differing path, and exits 3 (done with warnings)", async () => {
    const verified = await cli("verify", "--archive", archive, ...keyArgs());
    expect(verified.code, verified.stderr).toBe(3);
    expect(verified.stderr).toMatch(
      /warning: the catalog sidecar .* disagrees with the archive: 1 path differs \(first: home\/looker\/catalog-test\/changed\.txt\); the archive wins/,
    );
    const json = await cli("verify", "--archive", archive, ...keyArgs(), "--json");
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, sidecar: { path: sidecar, agrees: false } });
  });

  it("verify of an archive whose sidecar agrees says so and exits 0", async () => {
    const verified = await cli("verify", "--archive", second.archive, ...keyArgs());
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.stdout).toMatch(/the catalog sidecar agrees/);
  });

  it("the commands read the sidecar by default; with --from-archive they show the archive's catalog and warn", async () => {
    const quick = await cliJson<{ source: string; members: Member[] }>("ls", archive, TEST_DIR, ...keyArgs());
    expect(quick.source).toBe("sidecar");
    expect(quick.members.find((m) => m.path.endsWith("changed.txt"))?.size).toBe(999);
    const read = await cli("ls", archive, TEST_DIR, "--from-archive", "--json", ...keyArgs());
    expect(read.code).toBe(3);
    const listed = JSON.parse(read.stdout) as { source: string; members: Member[] };
    expect(listed.source).toBe("archive");
    expect(listed.members.find((m) => m.path.endsWith("changed.txt"))?.size).toBe(20);
    expect(read.stderr).toMatch(/disagrees with the archive: 1 path differs .*the archive wins/);
  });

  it("a sidecar that is not one at all: the commands fall back to the archive, with a warning", async () => {
    const dir = await mkdtemp(join(work, "garbage-"));
    const copy = join(dir, basename(second.archive));
    await copyFile(second.archive, copy);
    await writeFile(
      join(dir, basename(second.catalog!)),
      await run("age", ["-e", "-r", recipient], Buffer.from("not a sidecar\n")),
    );
    const shown = await cli("show", copy, "--json", ...keyArgs());
    expect(shown.code).toBe(3);
    expect(JSON.parse(shown.stdout)).toMatchObject({ source: "archive", backup: { instance: "cat" } });
    expect(shown.stderr).toMatch(
      /the catalog sidecar .* cannot be read \(the catalog sidecar's first line is not JSON\); the archive itself was read/,
    );
  });
});

describe("latest, latest~N and the arguments", () => {
  it("latest is the newest archive of --out, latest~1 the one before; verify and restore take them too", async () => {
    const newest = await cliJson<{ archive: string }>("ls", "latest", "--out", out, ...keyArgs());
    expect(newest.archive).toBe(second.archive);
    const before = await cliJson<{ archive: string }>("ls", "latest~1", "--out", out, ...keyArgs());
    expect(before.archive).toBe(first.archive);
    const verified = await cliJson<{ archive: string }>(
      "verify",
      "--archive",
      "latest~1",
      "--out",
      out,
      ...keyArgs(),
    );
    expect(verified.archive).toBe(first.archive);
    const target = join(work, "restored");
    const restored = await cli(
      "restore",
      "--archive",
      "latest",
      "--out",
      out,
      "--target",
      target,
      ...keyArgs(),
    );
    expect(restored.code, restored.stderr).toBe(0);
  });

  it.each([
    [["ls", "latest~2", "--out", "STORE"], /latest~2: the store holds only 2 archive\(s\) of cat/],
    [["ls", "latest", "--out", "MISSING"], /--out .*no-such-store does not exist/],
    [["ls", "latest"], /latest names an archive of a directory store, and no --out was given/],
    [["show", "latest", "--out", "STORE", "--instance", "other"], /no archives of instance other/],
    [["ls"], /ls: ARCHIVE is missing/],
    [["diff", "latest"], /diff: B is missing/],
    [["find", "latest"], /find: ARCHIVE\.\.\. is missing/],
    [["show", "latest", "extra", "--out", "STORE"], /show: unexpected argument 'extra'/],
  ])("%j -> exit 2 naming the problem", async (argv, message) => {
    const args = argv.map((a) => (a === "STORE" ? out : a === "MISSING" ? join(work, "no-such-store") : a));
    const failed = await cli(...args, ...keyArgs());
    expect(failed.code, failed.stderr).toBe(2);
    expect(failed.stderr).toMatch(message);
  });

  it("a store of several instances needs --instance for latest", async () => {
    const mixed = join(work, "mixed");
    await mkdir(mixed);
    await copyFile(second.archive, join(mixed, basename(second.archive)));
    await copyFile(second.archive, join(mixed, basename(second.archive).replace(/^cat-/, "dog-")));
    const refused = await cli("show", "latest", "--out", mixed, ...keyArgs());
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/holds archives of several instances \(.*cat.*dog.*\)/);
    expect(refused.stderr).toMatch(/--instance NAME/);
    const shown = await cliJson<{ archive: string }>(
      "show",
      "latest",
      "--out",
      mixed,
      "--instance",
      "dog",
      ...keyArgs(),
    );
    expect(basename(shown.archive)).toMatch(/^dog-/);
  });

  it("--help shows the arguments, whatever is missing", async () => {
    for (const [command, argument] of [
      ["ls", "ARCHIVE"],
      ["find", "ARCHIVE..."],
      ["diff", "B"],
      ["show", "ARCHIVE"],
    ] as const) {
      const help = await cli(command, "--help");
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(new RegExp(`Arguments:\\n(.*\\n)*  ${argument.replace(".", "\\.")} +`));
      expect(help.stdout).toMatch(/--identity/);
    }
  });
});
