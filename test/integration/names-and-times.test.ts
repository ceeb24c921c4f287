/**
 * Nothing lost at backup: names that are not UTF-8 (Linux names are bytes), pre-1970 and sub-second mtimes, through
 * our backup and our restore, and through the stock `age -d | zstd -d | tar -x` pipeline; GNU tar's own archive of
 * such names read back byte for byte; and a name that cannot be archived failing the backup by name.
 */
import { execFileSync, spawnSync } from "node:child_process";
import {
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nameBytes } from "../../src/runtime/byte-names.js";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { backupArgv, cli, cliJson, restoreArgv } from "../helpers/cli.js";
import { requireCommands } from "../helpers/prerequisites.js";
import { readTar } from "../helpers/read-tar.js";

/** A path under `dir` whose last parts are raw bytes, as an fs call takes it. */
function bytePath(dir: string, ...parts: (string | Buffer)[]): Buffer {
  return Buffer.concat([Buffer.from(dir), ...parts.flatMap((part) => [Buffer.from("/"), Buffer.from(part)])]);
}

const latin1Dir = Buffer.from("models-user-\xe9t\xe9", "latin1"); // "été" as an old Latin-1 checkout names it
const badFile = Buffer.from("bad-\xff\xfe-name", "latin1");
const badTarget = Buffer.from("target-\x80\x81", "latin1");
/** 1960-01-01, and a time with microseconds: what Node's utimes turned into "now" and what a whole-second copy loses. */
const PRE_1970 = -315_619_200;
const SUB_SECOND = 1_700_000_000.123456;

/** Every test path relative to the home, with what it must hold. */
interface Expected {
  readonly relative: Buffer;
  readonly content?: string;
  readonly linkTarget?: Buffer;
  readonly mtime: number;
}

let work: string;
let home: string;
let identity: string;
let recipient: string;
let archive: string;
const expected: Expected[] = [];

beforeAll(async () => {
  requireCommands(["age", "zstd", "tar"]);
  work = await mkdtemp(join(tmpdir(), "lb-names-"));
  home = join(work, "home");
  await generateLookerHome({ root: home, seed: 41, sizeBytes: 1 << 20, smallFiles: 10 });
  const looker = Buffer.from("looker");
  mkdirSync(bytePath(home, looker, latin1Dir));
  const lkml = Buffer.concat([latin1Dir, Buffer.from("/views.lkml")]);
  writeFileSync(bytePath(home, looker, lkml), "view: été {}\n");
  writeFileSync(bytePath(home, looker, badFile), "bytes\n");
  symlinkSync(badTarget, bytePath(home, looker, Buffer.from("link-\xfe", "latin1")));
  writeFileSync(join(home, "looker", "old.txt"), "from 1960\n");
  utimesSync(join(home, "looker", "old.txt"), new Date(PRE_1970 * 1000), new Date(PRE_1970 * 1000));
  writeFileSync(join(home, "looker", "precise.txt"), "sub-second\n");
  utimesSync(join(home, "looker", "precise.txt"), String(SUB_SECOND), String(SUB_SECOND));
  for (const [relative, content] of [
    [Buffer.concat([looker, Buffer.from("/"), lkml]), "view: été {}\n"],
    [Buffer.concat([looker, Buffer.from("/"), badFile]), "bytes\n"],
    [Buffer.from("looker/old.txt"), "from 1960\n"],
    [Buffer.from("looker/precise.txt"), "sub-second\n"],
  ] as const) {
    expected.push({ relative, content, mtime: lstatSync(bytePath(home, relative)).mtimeMs / 1000 });
  }
  const link = Buffer.from("looker/link-\xfe", "latin1");
  expected.push({
    relative: link,
    linkTarget: badTarget,
    mtime: lstatSync(bytePath(home, link)).mtimeMs / 1000,
  });
  identity = join(work, "id.txt");
  ({ recipient } = await cliJson<{ recipient: string }>("keygen", "--output", identity));
  ({ archive } = await cliJson<{ archive: string }>(
    ...backupArgv(home, join(work, "store"), recipient, "names"),
  ));
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

/** Each expected path under `root`, as restored: content or link target byte for byte, mtime to the microsecond. */
function expectRestored(root: string): void {
  for (const want of expected) {
    const path = bytePath(root, want.relative);
    const info = lstatSync(path);
    if (want.linkTarget) expect(readlinkSync(path, { encoding: "buffer" })).toEqual(want.linkTarget);
    else expect(readFileSync(path, "utf8")).toBe(want.content);
    // libuv sets times to the microsecond; the archive holds what lstat gave.
    expect(
      Math.abs(info.mtimeMs / 1000 - want.mtime),
      `mtime of ${want.relative.toString("latin1")}`,
    ).toBeLessThan(2e-6);
  }
}

describe("names that are not UTF-8, and mtimes before 1970 or below a second", () => {
  it("are archived without a warning", async () => {
    const verified = await cliJson<{ warnings?: string[] }>(
      "verify",
      "--archive",
      archive,
      "--identity",
      identity,
    );
    expect(JSON.stringify(verified)).not.toMatch(/vanished|skipped/);
  });

  it("come back exactly from our restore", async () => {
    const target = join(work, "restored");
    const run = await cli(...restoreArgv(archive, identity, target));
    expect(run.code, run.stderr).toBe(0);
    expectRestored(target);
    expect(lstatSync(join(target, "looker", "old.txt")).mtime.getUTCFullYear()).toBe(1960);
  });

  it("come back exactly from the stock age | zstd | tar pipeline", () => {
    const target = join(work, "stock");
    mkdirSync(target);
    execFileSync(
      "sh",
      ["-c", 'age -d -i "$1" "$2" | zstd -dc | tar -x -C "$3"', "sh", identity, archive, target],
      {
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LC_ALL: "C" },
        stdio: ["ignore", "pipe", "pipe"], // tar warns of the 1960 time stamp, and restores it
      },
    );
    expectRestored(join(target, "home"));
  });
});

describe("GNU tar's archive of such names", () => {
  it("reads back with the exact bytes of every name", async () => {
    const dir = join(work, "gnu");
    mkdirSync(dir);
    writeFileSync(bytePath(dir, badFile), "x");
    mkdirSync(bytePath(dir, latin1Dir));
    const tar = spawnSync("tar", ["--format=posix", "-cf", "-", "-C", dir, "."], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LC_ALL: "C" },
      maxBuffer: 1 << 24,
    });
    expect(tar.status, tar.stderr.toString()).toBe(0);
    const names: Buffer[] = [];
    for await (const { header, body } of readTar(Readable.from([tar.stdout]))) {
      names.push(nameBytes(header.path));
      for await (const _ of body) {
        // drain
      }
    }
    expect(names).toContainEqual(Buffer.concat([Buffer.from("./"), badFile]));
    expect(names).toContainEqual(Buffer.concat([Buffer.from("./"), latin1Dir, Buffer.from("/")]));
  });
});

describe("a name that cannot be archived", () => {
  it("fails the backup with exit 1, naming it, instead of a warning", async () => {
    const deep = join(work, "deep-home");
    await generateLookerHome({ root: deep, seed: 42, sizeBytes: 1 << 20, smallFiles: 5 });
    // A path past PATH_MAX (4096 bytes): it can be made step by step (mkdir -p walks with mkdirat), but not named
    // whole, which is how the backup would have to open it.
    const segment = "d".repeat(200);
    const parts = Array.from({ length: 21 }, () => segment);
    execFileSync("mkdir", ["-p", parts.join("/")], { cwd: join(deep, "looker") });
    const run = await cli(...backupArgv(deep, join(work, "store-deep"), recipient, "deep"));
    expect(run.code, run.stderr).toBe(1);
    expect(run.stderr).toMatch(/cannot archive home\/looker\/d{200}\//);
    expect(run.stderr).toMatch(/ENAMETOOLONG/);
    // Node's rm names the whole path, which is too long; GNU rm walks down with unlinkat.
    execFileSync("rm", ["-rf", deep]);
  });
});
