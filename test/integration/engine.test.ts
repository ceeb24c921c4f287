import { execFileSync, spawnSync } from "node:child_process";
import {
  chmod,
  chown,
  link,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { writeArchive } from "../helpers/archives.js";
import { backupArgv, cli, cliJson, restoreArgv } from "../helpers/cli.js";
import { requireCommands } from "../helpers/prerequisites.js";
import { comparable, mtimeDifferences, snapshotTree } from "../helpers/tree.js";

let work: string;
let home: string;
let identityFile: string;
let recipient: string;

interface BackupJson {
  archive: string;
  signature: string | null;
  catalog: string | null;
  sha256: string;
  files: number;
  bytesIn: number;
  bytesOut: number;
  warnings: string[];
}

const EXCLUDED = /^looker\/(log|\.cache|\.tmp|\.snapshots|models)(\/|$)|^looker\/\.db\/looker\.lck$/;

/** Adds every metadata case the archive must keep to a generated home. */
async function addMetadataCases(root: string): Promise<void> {
  const odd = join(root, "looker/models-user-7/odd");
  await mkdir(odd, { recursive: true });
  await writeFile(join(odd, "name with spaces.lkml"), "view: spaces {}");
  await writeFile(join(odd, "line\nbreak.lkml"), "view: newline {}");
  await writeFile(join(odd, "ünïcødé-日本.lkml"), "view: unicode {}");
  const deep = join(odd, `${"d".repeat(60)}/${"e".repeat(60)}/${"f".repeat(60)}`);
  await mkdir(deep, { recursive: true });
  await writeFile(join(deep, `${"long-name-".repeat(12)}.lkml`), "view: long {}");
  await mkdir(join(root, "looker/empty-dir"));
  await writeFile(join(root, "looker/secret.key"), "k");
  await chmod(join(root, "looker/secret.key"), 0o600);
  await writeFile(join(root, "looker/tool.sh"), "#!/bin/sh\n");
  await chmod(join(root, "looker/tool.sh"), 0o755);
  await mkdir(join(root, "looker/shared"));
  await chmod(join(root, "looker/shared"), 0o2775);
  await writeFile(join(root, "looker/owned-by-1234"), "owned");
  await chown(join(root, "looker/owned-by-1234"), 1234, 4321);
  await utimes(join(root, "looker/owned-by-1234"), 1_600_000_000.25, 1_600_000_000.75);
  await symlink("/etc/ssl/certs/ca-certificates.crt", join(root, "looker/abs-link"));
  await symlink("../looker/lookerstart.cfg", join(root, "looker/rel-link"));
  await writeFile(join(root, "looker/hard-a"), "same inode");
  await link(join(root, "looker/hard-a"), join(root, "looker/hard-b"));
}

beforeAll(async () => {
  requireCommands(["age", "age-keygen", "zstd", "tar"]);
  work = await mkdtemp(join(tmpdir(), "lb-engine-"));
  home = join(work, "home");
  await generateLookerHome({ root: home, seed: 7, sizeBytes: 8 << 20, smallFiles: 200 });
  await addMetadataCases(home);
  identityFile = join(work, "identity.txt");
  const keygen = await cliJson<{ recipient: string }>("keygen", "--output", identityFile);
  recipient = keygen.recipient;
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function backup(out: string, ...extra: string[]): Promise<BackupJson> {
  return cliJson<BackupJson>(...backupArgv(home, out, recipient, "test"), ...extra);
}

describe("backup and restore round trip", () => {
  let result: BackupJson;
  let restored: string;

  beforeAll(async () => {
    result = await backup(join(work, "store"));
    restored = join(work, "restored");
    await cliJson("restore", "--archive", result.archive, "--identity", identityFile, "--target", restored);
  });

  it("prints the documented JSON and names the archive by instance and UTC time", async () => {
    expect(Object.keys(result).sort()).toEqual([
      "archive",
      "bytesIn",
      "bytesOut",
      "catalog",
      "files",
      "notices",
      "sha256",
      "signature",
      "warnings",
    ]);
    // No --signing-key: nothing signed, and the JSON says so.
    expect(result.signature).toBeNull();
    expect(result.archive).toMatch(/\/store\/test-\d{8}T\d{6}Z\.tar\.zst\.age$/);
    expect(result.catalog).toBe(result.archive.replace(/\.tar\.zst\.age$/, ".catalog.age"));
    const actualSha = execFileSync("sha256sum", [result.archive]).toString().split(" ")[0];
    expect(result.sha256).toBe(actualSha);
    expect(result.bytesOut).toBe((await readFile(result.archive)).length);
    expect(result.bytesIn).toBeGreaterThan(4 << 20);
    expect(result.warnings).toEqual([]);
  });

  it("restores exactly the selected files with modes, owners, mtimes, links and odd names", async () => {
    const source = await snapshotTree(home, { skip: (p) => EXCLUDED.test(p) });
    const copy = await snapshotTree(restored);
    expect(comparable(copy)).toEqual(comparable(source));
    expect(mtimeDifferences(source, copy)).toEqual([]);
  });

  it("keeps hard links as one inode and symlinks verbatim", async () => {
    const tree = await snapshotTree(restored);
    expect(tree.get("looker/hard-a")!.ino).toBe(tree.get("looker/hard-b")!.ino);
    expect(tree.get("looker/abs-link")!.linkTarget).toBe("/etc/ssl/certs/ca-certificates.crt");
    expect(tree.get("looker/rel-link")!.linkTarget).toBe("../looker/lookerstart.cfg");
    expect(tree.get("looker/shared")!.mode).toBe(0o2775);
    expect(tree.get("looker/owned-by-1234")).toMatchObject({ uid: 1234, gid: 4321 });
    expect(tree.get("looker/owned-by-1234")!.mtimeMs).toBeCloseTo(1_600_000_000_750, 3);
  });

  it("writes an archive that age -d | zstd -d | tar -x reads (the break-glass path)", async () => {
    const out = join(work, "by-shell");
    await mkdir(out);
    const r = spawnSync("bash", [
      "-c",
      `age -d -i '${identityFile}' '${result.archive}' | zstd -dc | tar -x --numeric-owner -C '${out}'`,
    ]);
    expect(r.status, r.stderr.toString()).toBe(0);
    expect((await readdir(out)).sort()).toEqual(["home", "meta"]);
    const source = await snapshotTree(home, { skip: (p) => EXCLUDED.test(p) });
    const extracted = await snapshotTree(join(out, "home"));
    expect(comparable(extracted)).toEqual(comparable(source));
    // GNU tar sets a directory's time before filling it only when --delay-directory-restore is off; files must match.
    expect(mtimeDifferences(source, extracted, { directories: false })).toEqual([]);
    const catalog = (await readFile(join(out, "meta/catalog.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(catalog[0].path).toBe("meta/backup.json");
    expect(catalog.some((e: { path: string }) => e.path === "home/looker/.db/")).toBe(true);
    const meta = JSON.parse(await readFile(join(out, "meta/backup.json"), "utf8"));
    expect(meta).toMatchObject({ format: "looker-backup/1", instance: "test", backend: "internal" });
  });

  it("verify checks everything and writes nothing", async () => {
    const before = await readdir(work);
    const verified = await cliJson<{ ok: boolean; members: number }>(
      "verify",
      "--archive",
      result.archive,
      "--identity",
      identityFile,
    );
    expect(verified.ok).toBe(true);
    expect(verified.members).toBe(result.files);
    expect(await readdir(work)).toEqual(before);
  });
});

describe("interop: an archive made by GNU tar, zstd and age", () => {
  it("is restored by looker-backup", async () => {
    const dir = await mkdtemp(join(work, "shell-made-"));
    await mkdir(join(dir, "home/looker/.db"), { recursive: true });
    await writeFile(join(dir, "home/looker/.db/looker.script"), "db content");
    await mkdir(join(dir, "meta"));
    await writeFile(
      join(dir, "meta/backup.json"),
      JSON.stringify({ format: "looker-backup/1", instance: "shell" }),
    );
    // The catalog is what our restore verifies against; a shell user can make it the same way.
    const members = execFileSync("tar", ["-cf", "-", "--format=pax", "-C", dir, "meta/backup.json", "home"]);
    const listing = execFileSync("tar", ["-tvf", "-", "--numeric-owner", "--full-time"], {
      input: members,
    }).toString();
    expect(listing).toContain("home/looker/.db/looker.script");
    const { buildCatalogForDir } = await import("../helpers/catalog-for-dir.js");
    await writeFile(
      join(dir, "meta/catalog.jsonl"),
      await buildCatalogForDir(dir, ["meta/backup.json", "home"]),
    );
    const archive = join(work, "shell-made.tar.zst.age");
    const r = spawnSync("bash", [
      "-c",
      `tar -cf - --format=pax -C '${dir}' meta/backup.json home meta/catalog.jsonl | zstd -3 -T0 -q | age -r ${recipient} > '${archive}'`,
    ]);
    expect(r.status, r.stderr.toString()).toBe(0);
    const target = join(work, "shell-restored");
    await cliJson("restore", "--archive", archive, "--identity", identityFile, "--target", target);
    expect(await readFile(join(target, "looker/.db/looker.script"), "utf8")).toBe("db content");
  });

  it("decrypts with an identity made by age-keygen", async () => {
    const keyFile = join(work, "age-keygen.txt");
    execFileSync("age-keygen", ["-o", keyFile], { stdio: "ignore" });
    const theirRecipient = execFileSync("age-keygen", ["-y", keyFile]).toString().trim();
    const out = join(work, "store-agekeygen");
    const made = await cliJson<BackupJson>(...backupArgv(home, out, theirRecipient, "k"));
    await cliJson("verify", "--archive", made.archive, "--identity", keyFile);
  });
});

describe("restore refuses what it must, and leaves the target untouched", () => {
  /** Restores over a non-empty target with --force; exit 4 must leave it exactly as it was and nothing beside it. */
  async function expectIntegrityFailure(archive: string, identity = identityFile) {
    const parent = await mkdtemp(join(work, "target-"));
    const target = join(parent, "home");
    await mkdir(target);
    await writeFile(join(target, "keep.txt"), "precious");
    const run = await cli(...restoreArgv(archive, identity, target), "--force");
    expect(run.code, run.stderr).toBe(4);
    expect(await readdir(parent)).toEqual(["home"]);
    expect(await readdir(target)).toEqual(["keep.txt"]);
    return run;
  }

  async function expectRefused(members: Parameters<typeof writeArchive>[1], message: RegExp) {
    const archive = join(await mkdtemp(join(work, "hostile-")), "a.tar.zst.age");
    await writeArchive(archive, members, recipient, { catalog: true });
    const run = await expectIntegrityFailure(archive);
    expect(run.stderr).toMatch(message);
  }

  it.each([
    ["an absolute path", [{ header: { path: "/etc/evil" }, body: Buffer.from("x") }], /absolute path/],
    ["a .. path", [{ header: { path: "home/../../evil" }, body: Buffer.from("x") }], /'\.\.'/],
    [
      "a path outside the roots",
      [{ header: { path: "etc/evil" }, body: Buffer.from("x") }],
      /outside the allowed roots/,
    ],
    [
      "a write through a symlink",
      [
        { header: { path: "home/a", type: "symlink", linkTarget: "/tmp" } },
        { header: { path: "home/a/evil" }, body: Buffer.from("x") },
      ],
      /passes through symlink/,
    ],
    [
      "a hard link to outside",
      [{ header: { path: "home/h", type: "hardlink", linkTarget: "/etc/passwd" } }],
      /hard link target/,
    ],
    ["a device node", [{ header: { path: "home/dev", type: "character-device" } }], /device/],
    [
      "a directory replaced by a symlink",
      [
        { header: { path: "home/d/", type: "directory", mode: 0o755 } },
        { header: { path: "home/d", type: "symlink", linkTarget: "/etc" } },
      ],
      /replaced by a symlink/,
    ],
  ] as const)("refuses %s (exit 4)", async (_name, members, message) => {
    await expectRefused(members as unknown as Parameters<typeof writeArchive>[1], message);
  });

  it("refuses a member the catalog does not list", async () => {
    const archive = join(work, "uncatalogued.tar.zst.age");
    await writeArchive(
      archive,
      [
        { header: { path: "meta/backup.json" }, body: Buffer.from("{}") },
        { header: { path: "home/x" }, body: Buffer.from("x") },
        { header: { path: "meta/catalog.jsonl" }, body: Buffer.from("") },
      ],
      recipient,
    );
    const target = join(await mkdtemp(join(work, "t-")), "home");
    const run = await cli("restore", "--archive", archive, "--identity", identityFile, "--target", target);
    expect(run.code).toBe(4);
    expect(run.stderr).toMatch(/not in the catalog/);
  });

  describe("damaged archives", () => {
    let good: string;
    beforeAll(async () => {
      good = (await backup(join(work, "store-damage"))).archive;
    });

    it.each([0.1, 0.5, 0.9, 0.999])("truncated at %d of its length -> exit 4", async (fraction) => {
      const bytes = await readFile(good);
      const cut = join(work, `truncated-${fraction}.age`);
      await writeFile(cut, bytes.subarray(0, Math.floor(bytes.length * fraction)));
      await expectIntegrityFailure(cut);
    });

    it.each([40, 0.5, -20])("with one flipped byte at %d -> exit 4", async (where) => {
      const bytes = Buffer.from(await readFile(good));
      const index = where < 0 ? bytes.length + where : where < 1 ? Math.floor(bytes.length * where) : where;
      bytes[index] = bytes[index]! ^ 0x40;
      const flipped = join(work, `flipped-${where}.age`);
      await writeFile(flipped, bytes);
      await expectIntegrityFailure(flipped);
    });

    it("with the wrong identity -> exit 4", async () => {
      const other = join(work, "other-identity.txt");
      await cliJson("keygen", "--output", other);
      const run = await expectIntegrityFailure(good, other);
      expect(run.stderr).toMatch(/identity/);
    });
  });

  it("refuses a non-empty target without --force and keeps it with --force", async () => {
    const archive = (await backup(join(work, "store-force"))).archive;
    const target = join(await mkdtemp(join(work, "force-")), "home");
    await mkdir(target);
    await writeFile(join(target, "old.txt"), "old");
    const refused = await cli(...restoreArgv(archive, identityFile, target));
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/not empty/);
    expect(refused.stderr).toMatch(/--force/);
    const done = await cliJson<{ previousContent: string }>(
      ...restoreArgv(archive, identityFile, target),
      "--force",
    );
    expect(await readFile(join(done.previousContent, "old.txt"), "utf8")).toBe("old");
    expect(done.previousContent).toMatch(/home\.pre-restore-\d{8}T\d{6}Z$/);
    expect(await readdir(target)).toContain("looker");
  });
});

describe("files from outside the home", () => {
  it("without --rootfs are not placed, and the restore names them and how to place them", async () => {
    const ssl = join(work, "outside", "looker.pem");
    await mkdir(join(work, "outside"), { recursive: true });
    await writeFile(ssl, "certificate\n");
    const made = await cliJson<BackupJson>(
      ...backupArgv(home, join(work, "store-outside"), recipient, "out"),
      "--ssl-file",
      ssl,
    );
    const run = await cli(
      ...restoreArgv(made.archive, identityFile, join(work, "restored-outside")),
      "--json",
    );
    expect(run.code, run.stderr).toBe(0);
    expect((JSON.parse(run.stdout) as { rootfsSkipped: string[] }).rootfsSkipped).toEqual([ssl]);
    expect(run.stderr).toContain(
      `note: 1 file(s) from outside the home were not placed: ${ssl}; restore again with --rootfs /`,
    );
  });
});

describe("bad input", () => {
  it("reports a bad manifest with file:line and exit 2", async () => {
    const manifest = join(work, "bad.yml");
    await writeFile(manifest, "include:\n  - path: looker/log\n    requird: true\n");
    const run = await cli(
      "backup",
      "--home",
      home,
      "--out",
      join(work, "x"),
      "--recipient",
      recipient,
      "--manifest",
      manifest,
    );
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`${manifest}:3:5: include[0].requird: unknown key`);
  });

  it.each([
    [["backup", "--home", "/nonexistent", "--out", "/tmp/x", "--recipient", "age1bad"], /recipient/],
    [["backup", "--out", "/tmp/x", "--recipient", "x"], /--home is required/],
    [["backup", "--bogus"], /bogus/],
    [
      ["restore", "--archive", "/nonexistent", "--identity", "x", "--target", "/tmp/y"],
      /cannot read archive/,
    ],
    [
      ["backup", "--home", "/", "--out", "/tmp/x", "--level", "99", "--recipient", "age1x"],
      /level|recipient/,
    ],
  ])("%j -> exit 2 naming the problem", async (argv, message) => {
    const run = await cli(...argv);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(message);
    expect(run.stdout).toBe("");
  });
});

describe("dir store", () => {
  it("keeps older archives when a backup fails and prunes only after success", async () => {
    const out = join(work, "store-prune");
    const first = await backup(out);
    await new Promise((r) => setTimeout(r, 1100)); // archive names have one-second resolution
    const failing = await cli(
      ...backupArgv(join(work, "no-such-home"), out, recipient, "test"),
      "--keep-last",
      "1",
    );
    expect(failing.code).toBe(2);
    const stored = (result: BackupJson) =>
      [result.archive, result.catalog!].map((p) => p.split("/").pop()).sort();
    expect((await readdir(out)).sort()).toEqual(stored(first));
    const second = await backup(out, "--keep-last", "1");
    // Pruned with its catalog sidecar.
    expect((await readdir(out)).sort()).toEqual(stored(second));
  });
});
