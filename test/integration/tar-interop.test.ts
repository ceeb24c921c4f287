/**
 * Interop with GNU tar (the Debian binary): archives we write are listed and extracted by it with every
 * piece of metadata intact, and archives it writes (pax and its default gnu format) read back exactly.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import {
  chmod,
  chown,
  link,
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readlink,
  rm,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { encodeHeader, type TarHeader } from "../../src/archive/tar-format.js";
import { LinkTracker } from "../../src/extract/member-safety.js";
import { readTar } from "../helpers/read-tar.js";
import { type TarWriteEntry, writeTar } from "../helpers/tar-writer.js";

/** GNU tar in a UTF-8 locale, so pax names are converted neither way. */
function gnuTar(args: string[]): { stdout: string; stderr: string; status: number | null } {
  const result = spawnSync("tar", args, { encoding: "utf8", env: { ...process.env, LC_ALL: "C.UTF-8" } });
  if (result.error)
    throw new Error(`GNU tar ('tar') is required for this test and could not run: ${result.error.message}`);
  return { stdout: result.stdout, stderr: result.stderr, status: result.status };
}

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

let workDir = "";
beforeEach(async () => {
  workDir = await mkdtemp(join(tmpdir(), "tar-interop-"));
});
afterEach(async () => {
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

const seg = "s".repeat(60);
const longPath = `home/${seg}1/${seg}2/${seg}3/${seg}4/${seg}5/beyond-255-bytes.txt`;
const names = {
  spaces: "home/my models/a b.view.lkml",
  newline: "home/line\nbreak.txt",
  utf8: "home/modèles/日本語.txt",
  prefix: `home/${"p".repeat(90)}/${"q".repeat(40)}.txt`,
  long: longPath,
};

function ourEntries(): TarWriteEntry[] {
  const at = { uid: 1234, gid: 5678, mtime: 1_700_000_000 };
  const file = (path: string, body: Buffer, extra: Partial<TarHeader> = {}): TarWriteEntry => ({
    header: { ...at, path, type: "file", size: body.length, mode: 0o644, ...extra },
    body,
  });
  const dir = (path: string, mode: number, extra: Partial<TarHeader> = {}): TarWriteEntry => ({
    header: { ...at, path, type: "directory", size: 0, mode, ...extra },
  });
  const other = (path: string, type: "symlink" | "hardlink", linkTarget: string): TarWriteEntry => ({
    header: { ...at, path, type, size: 0, mode: type === "symlink" ? 0o777 : 0o644, linkTarget },
  });
  return [
    dir("home/", 0o755),
    dir("home/.ssh/", 0o700),
    file("home/.ssh/id_ed25519", Buffer.from("secret key\n"), { mode: 0o600 }),
    dir("home/shared/", 0o2775, { mtime: 1_600_000_000 }),
    dir("home/empty/", 0o750),
    file("home/looker/looker", Buffer.from("#!/bin/sh\necho looker\n"), { mode: 0o755 }),
    file("home/looker/big.jar", Buffer.alloc(300_000, 0x5a)),
    other("home/looker/big-hardlink.jar", "hardlink", "home/looker/big.jar"),
    file("home/empty.txt", Buffer.alloc(0)),
    file("home/fraction", Buffer.from("f"), { mtime: 1_700_000_000.123 }),
    file("home/big-ids", Buffer.from("ids"), { uid: 3_000_000, gid: 4_000_000 }),
    other("home/.ssl/cert.pem", "symlink", "/etc/ssl/certs/looker.pem"),
    other("home/relative", "symlink", "../looker/looker"),
    other("home/long-target", "symlink", `/opt/${"t".repeat(150)}/target`),
    file(names.spaces, Buffer.from("spaces")),
    file(names.newline, Buffer.from("newline")),
    file(names.utf8, Buffer.from("utf8")),
    file(names.prefix, Buffer.from("prefix")),
    file(names.long, Buffer.from("long")),
    other(`home/hl-${"h".repeat(150)}`, "hardlink", names.long),
  ];
}

async function writeArchive(path: string, entries: TarWriteEntry[]): Promise<void> {
  const parts: Buffer[] = [];
  for await (const part of writeTar(entries)) parts.push(part);
  await writeFile(path, Buffer.concat(parts));
}

describe("archives we write, read by GNU tar", () => {
  it("lists them without complaint", async () => {
    const archive = join(workDir, "ours.tar");
    const entries = ourEntries();
    await writeArchive(archive, entries);
    const listing = gnuTar(["-tvf", archive, "--numeric-owner", "--quoting-style=escape"]);
    expect(listing.stderr).toBe("");
    expect(listing.status).toBe(0);
    const lines = listing.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(entries.length);
    expect(lines[2]).toMatch(/^-rw------- 1234\/5678 +11 2023-11-14 \d\d:\d\d home\/\.ssh\/id_ed25519$/);
    expect(lines[3]).toMatch(/^drwxrwsr-x 1234\/5678 .* home\/shared\/$/);
    expect(listing.stdout).toContain("home/line\\nbreak.txt");
    expect(listing.stdout).toContain(`${longPath}\n`);
    expect(listing.stdout).toContain("home/.ssl/cert.pem -> /etc/ssl/certs/looker.pem");
    expect(listing.stdout).toContain(`home/looker/big-hardlink.jar link to home/looker/big.jar`);
    expect(listing.stdout).toMatch(/3000000\/4000000 +3 .* home\/big-ids/);
  });

  it("extracts them with modes, owners, mtimes, links and contents intact", async () => {
    const archive = join(workDir, "ours.tar");
    const target = join(workDir, "extracted");
    await mkdir(target);
    const entries = ourEntries();
    await writeArchive(archive, entries);
    const result = gnuTar(["-xpf", archive, "--numeric-owner", "-C", target]);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);

    for (const { header, body } of entries) {
      const onDisk = join(target, header.path);
      const stats = await lstat(onDisk, { bigint: true });
      const where = `member ${JSON.stringify(header.path)}`;
      expect(Number(stats.uid), where).toBe(header.uid);
      expect(Number(stats.gid), where).toBe(header.gid);
      if (header.type === "symlink") {
        expect(stats.isSymbolicLink(), where).toBe(true);
        expect(await readlink(onDisk), where).toBe(header.linkTarget);
        continue;
      }
      expect(Number(stats.mode & 0o7777n), where).toBe(header.mode);
      expect(Number(stats.mtimeNs) / 1e9, where).toBeCloseTo(header.mtime, 6);
      if (header.type === "directory") {
        expect(stats.isDirectory(), where).toBe(true);
      } else if (header.type === "hardlink") {
        const original = await lstat(join(target, header.linkTarget!), { bigint: true });
        expect(stats.ino, where).toBe(original.ino);
      } else {
        expect(sha256(await readFile(onDisk)), where).toBe(sha256(body as Buffer));
      }
    }
    // The fractional mtime arrives to the nanosecond GNU tar was given, not as a binary expansion.
    expect((await lstat(join(target, "home/fraction"), { bigint: true })).mtimeNs).toBe(
      1_700_000_000_123_000_000n,
    );
  });

  it("shows a size of 8 GiB and more from our pax header", async () => {
    const archive = join(workDir, "huge-header.tar");
    const size = 8 * 1024 ** 3 + 1;
    // Header only, with a short body: GNU tar lists the member, then reports the truncation.
    await writeFile(
      archive,
      Buffer.concat([
        encodeHeader({ path: "mysql/huge.sql", type: "file", size, mode: 0o600, uid: 0, gid: 0, mtime: 0 }),
        Buffer.alloc(10_240),
      ]),
    );
    const listing = gnuTar(["-tvf", archive]);
    expect(listing.stdout).toMatch(new RegExp(`${size} 1970-01-01 00:00 mysql/huge\\.sql`));
    expect(listing.status).not.toBe(0);
  });
});

describe("archives GNU tar writes, read by us", () => {
  async function makeTree(): Promise<string> {
    const root = join(workDir, "src");
    const home = join(root, "home");
    await mkdir(join(home, "looker", "models-user-1"), { recursive: true });
    await mkdir(join(home, "empty"), { mode: 0o700 });
    await mkdir(join(home, "setgid"));
    await chmod(join(home, "setgid"), 0o2775);
    await writeFile(join(home, "looker", "data.bin"), Buffer.alloc(1_500_000, 0xa5));
    await writeFile(join(home, "looker", "models-user-1", "a b.view.lkml"), "view: a {}\n");
    await writeFile(join(home, "secret"), "0600\n", { mode: 0o600 });
    await writeFile(join(home, "empty-file"), "");
    await writeFile(join(home, "line\nbreak"), "nl");
    await writeFile(join(home, "日本語.txt"), "utf8");
    const deep = join(home, `${"d".repeat(100)}`, `${"e".repeat(100)}`, `${"f".repeat(100)}`);
    await mkdir(deep, { recursive: true });
    await writeFile(join(deep, `${"g".repeat(120)}.txt`), "deep");
    await link(join(home, "looker", "data.bin"), join(home, "looker", "data-hardlink.bin"));
    await symlink("/etc/ssl/certs/looker.pem", join(home, "abs-link"));
    await symlink("looker/data.bin", join(home, "rel-link"));
    await symlink(`/opt/${"t".repeat(200)}`, join(home, "long-link"));
    await writeFile(join(home, "owned"), "owned");
    await chown(join(home, "owned"), 1234, 5678);
    await writeFile(join(home, "big-owner"), "big");
    await chown(join(home, "big-owner"), 3_000_000, 3_000_001);
    await utimes(join(home, "secret"), 1_600_000_000, 1_600_000_000.25);
    return root;
  }

  for (const format of ["pax", "gnu"] as const) {
    it(`reads --format=${format} archives: headers match lstat, bodies match sha256`, async () => {
      const root = await makeTree();
      const archive = join(workDir, `gnu-${format}.tar`);
      const made = gnuTar(["-cf", archive, `--format=${format}`, "-C", root, "home"]);
      expect(made.stderr).toBe("");
      expect(made.status).toBe(0);

      const tracker = new LinkTracker();
      const seen = new Set<string>();
      const hardlinks: TarHeader[] = [];
      for await (const entry of readTar(createReadStream(archive, { highWaterMark: 100_000 }))) {
        const { header } = entry;
        tracker.admit(header); // GNU tar's archives of a normal tree pass every safety rule
        seen.add(header.path);
        const where = `${format} member ${JSON.stringify(header.path)}`;
        const stats = await lstat(join(root, header.path), { bigint: true });
        expect(header.mode, where).toBe(Number(stats.mode & 0o7777n));
        expect(header.uid, where).toBe(Number(stats.uid));
        expect(header.gid, where).toBe(Number(stats.gid));
        // pax keeps nanoseconds (we hold them as a double); gnu keeps whole seconds.
        const mtime = Number(stats.mtimeNs) / 1e9;
        if (format === "pax") expect(header.mtime, where).toBeCloseTo(mtime, 6);
        else expect(header.mtime, where).toBe(Math.floor(mtime));
        if (stats.isDirectory()) {
          expect(header.type, where).toBe("directory");
          expect(header.path.endsWith("/"), where).toBe(true);
        } else if (stats.isSymbolicLink()) {
          expect(header.type, where).toBe("symlink");
          expect(header.linkTarget, where).toBe(await readlink(join(root, header.path)));
        } else if (header.type === "hardlink") {
          hardlinks.push(header);
        } else {
          expect(header.type, where).toBe("file");
          expect(header.size, where).toBe(Number(stats.size));
          const hash = createHash("sha256");
          for await (const part of entry.body) hash.update(part);
          expect(hash.digest("hex"), where).toBe(await sha256OfFile(join(root, header.path)));
        }
      }
      expect(seen.size).toBe(21);
      expect(seen).toContain("home/line\nbreak");
      expect(seen).toContain("home/日本語.txt");
      expect(seen).toContain(
        `home/${"d".repeat(100)}/${"e".repeat(100)}/${"f".repeat(100)}/${"g".repeat(120)}.txt`,
      );
      expect(hardlinks).toHaveLength(1);
      const [hardlink] = hardlinks;
      const linkedStats = await lstat(join(root, hardlink!.path));
      const targetStats = await lstat(join(root, hardlink!.linkTarget!));
      expect(linkedStats.ino).toBe(targetStats.ino);
    });
  }
});
