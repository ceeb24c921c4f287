/**
 * Extended attributes: archived as pax SCHILY.xattr.* records (what GNU tar --xattrs writes and reads), restored by
 * us and by the stock pipeline, file capabilities dropped like setuid unless --keep-privileged-modes, and the
 * switches that leave them out. Real getfattr/setfattr and GNU tar throughout.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readXattrIndex } from "../../src/archive/xattr-index.js";
import { InputError } from "../../src/errors.js";
import { XattrWriter } from "../../src/extract/xattr-apply.js";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { backupArgv, cli, cliJson, restoreArgv } from "../helpers/cli.js";
import { requireCommands } from "../helpers/prerequisites.js";
import { readTar } from "../helpers/read-tar.js";

const isRoot = process.getuid?.() === 0;
/** cap_net_bind_service=ep, as `setcap` writes it (VFS_CAP_REVISION_2). */
const CAPABILITY = "0x0100000200040000000000000000000000000000";

/** name -> value (hex) of a path's extended attributes, as getfattr reads them. */
function attrsOf(path: string): Record<string, string> {
  const out = execFileSync("getfattr", ["--no-dereference", "--dump", "--match=-", "--encoding=hex", path], {
    encoding: "utf8",
  });
  const attrs: Record<string, string> = {};
  for (const line of out.split("\n")) {
    const match = /^([^#=][^=]*)=0x([0-9a-f]*)$/.exec(line);
    // getfattr writes "=" (and backslash, control bytes) in a name as \ooo.
    if (match)
      attrs[
        match[1]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)))
      ] = match[2]!;
  }
  return attrs;
}

function setAttr(path: string, name: string, value: string): void {
  execFileSync("setfattr", ["--no-dereference", "-n", name, "-v", value, path]);
}

let work: string;
let home: string;
let identity: string;
let recipient: string;
let archive: string;
const lkml = () => join(home, "looker", "models-user-a", "view.lkml");
const dir = () => join(home, "looker", "models-user-a");
const binary = () => join(home, "looker", "helper");

beforeAll(async () => {
  requireCommands(["getfattr", "setfattr", "age", "zstd", "tar"]);
  work = await mkdtemp(join(tmpdir(), "lb-xattrs-"));
  home = join(work, "home");
  await generateLookerHome({ root: home, seed: 43, sizeBytes: 1 << 20, smallFiles: 10 });
  mkdirSync(dir());
  writeFileSync(lkml(), "view: a {}\n");
  setAttr(lkml(), "user.origin", "git");
  setAttr(lkml(), "user.binary", "0x00ff0a3d01"); // NUL, a non-UTF-8 byte, newline, "="
  setAttr(lkml(), "user.key=with%equals", "1"); // "=" and "%" in a name: pax keywords escape them
  setAttr(dir(), "user.dir", "yes");
  writeFileSync(binary(), "#!/bin/sh\n", { mode: 0o755 });
  if (isRoot) setAttr(binary(), "security.capability", CAPABILITY);
  identity = join(work, "id.txt");
  ({ recipient } = await cliJson<{ recipient: string }>("keygen", "--output", identity));
  ({ archive } = await cliJson<{ archive: string }>(
    ...backupArgv(home, join(work, "store"), recipient, "xattrs"),
  ));
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

const USER_ATTRS = {
  "user.origin": Buffer.from("git").toString("hex"),
  "user.binary": "00ff0a3d01",
  "user.key=with%equals": Buffer.from("1").toString("hex"),
};

describe("extended attributes", () => {
  it("come back from our restore; file capabilities only with --keep-privileged-modes", async () => {
    const target = join(work, "restored");
    const run = await cli(...restoreArgv(archive, identity, target), "--json");
    expect(run.code, run.stderr).toBe(0);
    const relative = (path: string) => join(target, path.slice(home.length));
    expect(attrsOf(relative(lkml()))).toEqual(USER_ATTRS);
    expect(attrsOf(relative(dir()))).toEqual({ "user.dir": Buffer.from("yes").toString("hex") });
    if (!isRoot) return;
    expect(attrsOf(relative(binary()))).toEqual({});
    expect(run.stderr).toMatch(/looker\/helper \(file capabilities\)/);
    const kept = join(work, "restored-privileged");
    const privileged = await cli(...restoreArgv(archive, identity, kept), "--keep-privileged-modes");
    expect(privileged.code, privileged.stderr).toBe(0);
    expect(attrsOf(join(kept, binary().slice(home.length)))["security.capability"]).toBe(CAPABILITY.slice(2));
  });

  it("come back from the stock pipeline with GNU tar --xattrs", () => {
    const target = join(work, "stock");
    mkdirSync(target);
    execFileSync(
      "sh",
      [
        "-c",
        `age -d -i "$1" "$2" | zstd -dc | tar --xattrs --xattrs-include='*' -x -C "$3"`,
        ...["sh", identity, archive, target],
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    expect(attrsOf(join(target, "home", lkml().slice(home.length)))).toEqual(USER_ATTRS);
  });

  it("in GNU tar's --xattrs archives are read back exactly", async () => {
    const made = spawnSync(
      "tar",
      ["--format=posix", "--xattrs", "--xattrs-include=*", "-cf", "-", "-C", dir(), "."],
      {
        maxBuffer: 1 << 24,
      },
    );
    expect(made.status, made.stderr.toString()).toBe(0);
    const seen = new Map<string, Record<string, string>>();
    for await (const { header, body } of readTar(Readable.from([made.stdout]))) {
      seen.set(
        header.path,
        Object.fromEntries((header.xattrs ?? []).map(([n, v]) => [n, v.toString("hex")])),
      );
      for await (const _ of body) {
        // drain
      }
    }
    expect(seen.get("./view.lkml")).toEqual(USER_ATTRS);
  });

  it("are left out with --xattrs false, at backup and at restore", async () => {
    const { archive: without } = await cliJson<{ archive: string }>(
      ...backupArgv(home, join(work, "store-without"), recipient, "without"),
      "--xattrs",
      "false",
    );
    const target = join(work, "restored-without");
    expect((await cli(...restoreArgv(without, identity, target))).code).toBe(0);
    expect(attrsOf(join(target, lkml().slice(home.length)))).toEqual({});
    const skipped = join(work, "restored-skipped");
    expect((await cli(...restoreArgv(archive, identity, skipped), "--xattrs", "false")).code).toBe(0);
    expect(attrsOf(join(skipped, lkml().slice(home.length)))).toEqual({});
  });
});

describe("without the attr tools", () => {
  it("auto says the attributes were not archived; true refuses (exit 2)", async () => {
    const path = process.env.PATH;
    process.env.PATH = join(work, "no-such-dir");
    try {
      const auto = await readXattrIndex([home], "auto");
      expect(auto.index.files).toBe(0);
      expect(auto.notices.join()).toMatch(/not archived: getfattr is not installed/);
      const required = await readXattrIndex([home], "true").catch((error: unknown) => error);
      expect(required).toBeInstanceOf(InputError);
    } finally {
      process.env.PATH = path;
    }
  });

  it("a restore of an archive with attributes names setfattr and the way around it", async () => {
    const writer = new XattrWriter(true);
    writer.add(lkml(), [["user.x", Buffer.from("1")]]);
    const path = process.env.PATH;
    process.env.PATH = join(work, "no-such-dir");
    try {
      await expect(writer.apply()).rejects.toThrow(/setfattr is not installed/);
    } finally {
      process.env.PATH = path;
    }
  });
});

describe("restoring as a user other than root", () => {
  it("sets what an owner may set and names the rest", async () => {
    const file = join(work, "plain.txt");
    writeFileSync(file, "x");
    const writer = new XattrWriter(false);
    writer.add(file, [
      ["user.kept", Buffer.from("1")],
      ["security.selinux", Buffer.from("system_u:object_r:user_home_t:s0")],
    ]);
    const warnings = await writer.apply();
    expect(attrsOf(file)).toEqual({ "user.kept": "31" });
    expect(warnings.join()).toMatch(/not restored \(only root may set them\): security\.selinux/);
  });
});
