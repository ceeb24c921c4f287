/**
 * Nothing lost at backup, nor at restore: sparse files are archived sparsely (GNU tar's pax sparse format 1.0) and
 * restored sparse, by our restore and by the stock `age -d | zstd -d | tar -x` pipeline, with the same content; an
 * archive GNU tar writes with --sparse is read by us; a hostile sparse map is refused (exit 4) by verify and restore.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  createReadStream,
  ftruncateSync,
  linkSync,
  mkdirSync,
  openSync,
  statSync,
  writeSync,
} from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SparseContent } from "../../src/archive/sparse.js";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { buildTar, encryptTar, type RawMember, rawSparseMember } from "../helpers/archives.js";
import { backupArgv, cli, cliJson, restoreArgv } from "../helpers/cli.js";
import { requireCommands } from "../helpers/prerequisites.js";
import { readTar } from "../helpers/read-tar.js";
import { expectTargetUntouched, preparedTarget } from "../reliability/support.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

interface SparseFile {
  readonly name: string;
  readonly size: number;
  /** Where the data lies; the rest is holes. */
  readonly islands: readonly { readonly offset: number; readonly length: number }[];
}

/** A 2 GiB file with data at its start, in its middle (not block-aligned) and at its very end; two that end in holes. */
const FILES: readonly SparseFile[] = [
  {
    name: "sparse.bin",
    size: 2 * GiB,
    islands: [
      { offset: 0, length: 64 * KiB },
      { offset: GiB + 1000, length: 100 * KiB },
      { offset: 2 * GiB - 10 * KiB, length: 10 * KiB },
    ],
  },
  { name: "tail-hole.bin", size: 96 * MiB, islands: [{ offset: 60 * MiB + 12345, length: 8 * KiB }] },
  { name: "holes-only.bin", size: 16 * MiB, islands: [] },
];
const DATA_BYTES = FILES.flatMap((f) => f.islands).reduce((sum, island) => sum + island.length, 0);

/**
 * The map a 4 KiB-block reader finds (ours by reading zeros, GNU tar by SEEK_DATA on ext4 or tmpfs): each island
 * widened to whole blocks, and a last segment of no bytes at the file's end, as GNU tar ends every map.
 */
function expectedSegments(file: SparseFile): number[] {
  const segments: number[] = [];
  for (const { offset, length } of file.islands) {
    const start = Math.floor(offset / 4096) * 4096;
    const end = Math.min(Math.ceil((offset + length) / 4096) * 4096, file.size);
    segments.push(start, end - start);
  }
  segments.push(file.size, 0);
  return segments;
}

const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", LC_ALL: "C" };

/** Through OpenSSL's sha256 (4x coreutils' sha256sum here): the files are gigabytes, mostly of zeros. */
async function sha256Of(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const part of createReadStream(path, { highWaterMark: 4 * MiB })) hash.update(part);
  return hash.digest("hex");
}

function allocatedBytes(path: string): number {
  return statSync(path).blocks * 512;
}

let work: string;
let home: string;
let identity: string;
let recipient: string;
let archive: string;
const digests = new Map<string, string>();

beforeAll(async () => {
  requireCommands(["age", "zstd", "tar", "cmp"]);
  work = await mkdtemp(join(tmpdir(), "lb-sparse-"));
  home = join(work, "home");
  await generateLookerHome({ root: home, seed: 43, sizeBytes: 1 << 20, smallFiles: 10 });
  for (const file of FILES) {
    const path = join(home, "looker", file.name);
    const fd = openSync(path, "w");
    for (const { offset, length } of file.islands) writeSync(fd, randomBytes(length), 0, length, offset);
    ftruncateSync(fd, file.size);
    closeSync(fd);
    digests.set(file.name, await sha256Of(path));
    expect(allocatedBytes(path), `${file.name} is sparse on this filesystem`).toBeLessThan(1 * MiB);
  }
  // A second name of a sparse file (archived after it) is a hard link to it, as for any file.
  linkSync(join(home, "looker", "sparse.bin"), join(home, "looker", "sparse.bin.link"));
  identity = join(work, "id.txt");
  ({ recipient } = await cliJson<{ recipient: string }>("keygen", "--output", identity));
  ({ archive } = await cliJson<{ archive: string }>(
    ...backupArgv(home, join(work, "store"), recipient, "sparse"),
  ));
}, 120_000);

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

/** The archive's plain tar, through the stock tools. */
function plaintext(): Buffer {
  return execFileSync("sh", ["-c", 'age -d -i "$1" "$2" | zstd -dc', "sh", identity, archive], {
    env,
    maxBuffer: 64 << 20,
  });
}

/** Each sparse file under `root` holds what the original held, in few blocks; the second name is a link. */
function expectRestoredSparse(root: string): void {
  for (const file of FILES) {
    const path = join(root, "looker", file.name);
    expect(statSync(path).size, file.name).toBe(file.size);
    // cmp, byte for byte: hashing gigabytes (of zeros) here took ~10 s a restore.
    const compared = spawnSync("cmp", [path, join(home, "looker", file.name)], { env });
    expect(compared.status, `${file.name}: ${compared.stdout}`).toBe(0);
    expect(allocatedBytes(path), `${file.name} restored sparse`).toBeLessThan(4 * MiB);
  }
  const link = statSync(join(root, "looker", "sparse.bin.link"));
  expect(link.ino).toBe(statSync(join(root, "looker", "sparse.bin")).ino);
}

describe("sparse files in the home", () => {
  it("are archived sparsely: the archive holds their data, not their holes", async () => {
    expect(statSync(archive).size).toBeLessThan(DATA_BYTES + 2 * MiB);
    const members = new Map<string, { size: number; segments: readonly number[] | undefined }>();
    for await (const { header, body } of readTar(Readable.from([plaintext()]))) {
      members.set(header.path, { size: header.size, segments: header.sparse?.segments });
      for await (const _ of body) {
        // drain
      }
    }
    for (const file of FILES) {
      expect(members.get(`home/looker/${file.name}`), file.name).toEqual({
        size: file.size,
        segments: expectedSegments(file),
      });
    }
  });

  it("are listed in the catalog with their whole size and the sha256 of their whole content", () => {
    const catalog = execFileSync("tar", ["-xOf", "-", "meta/catalog.jsonl"], { input: plaintext(), env })
      .toString()
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line) as { path: string; type: string; size: number; sha256?: string });
    for (const file of FILES) {
      expect(catalog.find((entry) => entry.path === `home/looker/${file.name}`)).toMatchObject({
        type: "file",
        size: file.size,
        sha256: digests.get(file.name),
      });
    }
    expect(catalog.find((entry) => entry.path === "home/looker/sparse.bin.link")).toMatchObject({
      type: "hardlink",
      sha256: digests.get("sparse.bin"),
    });
  });

  it("verify", async () => {
    const run = await cli("verify", "--archive", archive, "--identity", identity);
    expect(run.code, run.stderr).toBe(0);
  });

  it("come back sparse, with the same content, from our restore", async () => {
    const target = join(work, "restored");
    const run = await cli(...restoreArgv(archive, identity, target));
    expect(run.code, run.stderr).toBe(0);
    expectRestoredSparse(target);
  });

  it("come back sparse, with the same content, from the stock age | zstd | tar pipeline", () => {
    const target = join(work, "stock");
    mkdirSync(target);
    execFileSync(
      "sh",
      ["-c", 'age -d -i "$1" "$2" | zstd -dc | tar -x -C "$3"', "sh", identity, archive, target],
      {
        env,
      },
    );
    expectRestoredSparse(join(target, "home"));
  });

  it("are listed by GNU tar under their real names and sizes", () => {
    const listing = execFileSync("tar", ["-tvf", "-"], { input: plaintext(), env }).toString();
    for (const file of FILES)
      expect(listing).toMatch(new RegExp(` ${file.size} .* home/looker/${file.name}\\n`));
    expect(listing).not.toMatch(/GNUSparseFile/);
  });
});

describe("GNU tar's --sparse --format=posix archive of such files", () => {
  it("is read by us: each file's map and the sha256 of its whole content", async () => {
    const tar = spawnSync(
      "tar",
      ["--format=posix", "--sparse", "-cf", "-", "-C", join(home, "looker"), ...FILES.map((f) => f.name)],
      { env, maxBuffer: 64 << 20 },
    );
    expect(tar.status, tar.stderr.toString()).toBe(0);
    expect(tar.stdout.length).toBeLessThan(DATA_BYTES + 1 * MiB);
    const read = new Map<string, { size: number; segments: readonly number[] | undefined; sha256: string }>();
    for await (const { header, body } of readTar(Readable.from([tar.stdout]))) {
      expect(header.type).toBe("file");
      const content = new SparseContent(header.sparse ?? { segments: [0, header.size] }, header.size);
      for await (const part of body) content.add(part);
      read.set(header.path, {
        size: header.size,
        segments: header.sparse?.segments,
        sha256: content.digest(),
      });
    }
    for (const file of FILES) {
      expect(read.get(file.name), file.name).toEqual({
        size: file.size,
        segments: expectedSegments(file),
        sha256: digests.get(file.name),
      });
    }
  });
});

describe("a hostile sparse map is refused by verify and restore (exit 4), target untouched", () => {
  const data = randomBytes(8192);
  const cases: { name: string; member: Parameters<typeof rawSparseMember>[0]; message: RegExp }[] = [
    {
      name: "overlapping segments",
      member: { path: "home/evil.bin", realSize: MiB, mapText: "2\n0\n4096\n2048\n4096\n", data },
      message: /sparse file home\/evil\.bin: segment 2 at offset 2048 starts before the previous one ends/,
    },
    {
      name: "segments out of order",
      member: { path: "home/evil.bin", realSize: MiB, mapText: "2\n8192\n4096\n0\n4096\n", data },
      message: /sparse file home\/evil\.bin: segment 2 at offset 0 starts before the previous one ends/,
    },
    {
      name: "a segment beyond the file's size",
      member: { path: "home/evil.bin", realSize: MiB, mapText: "1\n1044480\n8192\n", data },
      message: /sparse file home\/evil\.bin: segment 1 .* ends beyond the file's size of 1048576 bytes/,
    },
    {
      name: "a count larger than the segments given",
      member: { path: "home/evil.bin", realSize: MiB, mapText: "3\n0\n4096\n8192\n4096\n", data },
      message: /sparse file home\/evil\.bin: its map ends after 2 of the 3 segments it announces/,
    },
    {
      name: "a count smaller than the segments given",
      member: { path: "home/evil.bin", realSize: MiB, mapText: "1\n0\n4096\n8192\n4096\n", data },
      message: /sparse file home\/evil\.bin: bytes after its last segment/,
    },
    {
      name: "a map that lists more data than the member holds",
      member: { path: "home/evil.bin", realSize: MiB, mapText: "1\n0\n65536\n", data },
      message: /sparse file home\/evil\.bin: its map lists 65536 bytes of data, the member holds 8192/,
    },
    {
      name: "a huge segment count",
      member: { path: "home/evil.bin", realSize: MiB, mapText: "99999999999\n0\n4096\n", data },
      message:
        /sparse file home\/evil\.bin: its map announces 99999999999 segments, more than the limit of 1000000/,
    },
    {
      name: "2 PiB of holes (hashing them would take weeks)",
      member: { path: "home/evil.bin", realSize: 2 ** 51, mapText: "1\n0\n8192\n", data },
      message:
        /sparse files hold more than 1099511627776 bytes of holes, the limit \(at member home\/evil\.bin\)/,
    },
  ];
  let counter = 0;
  for (const { name, member, message } of cases) {
    it(name, async () => {
      const members: RawMember[] = [
        { header: { path: "home/", type: "directory", mode: 0o755 } },
        { header: { path: member.path, size: Number(member.realSize) }, raw: rawSparseMember(member) },
      ];
      const path = join(work, `hostile-${++counter}.tar.zst.age`);
      await writeFile(path, await encryptTar(await buildTar(members, { catalog: true }), recipient));
      const verified = await cli("verify", "--archive", path, "--identity", identity);
      expect(verified.code, verified.stderr).toBe(4);
      expect(verified.stderr).toMatch(message);
      const { parent, target } = await preparedTarget(work);
      const restored = await cli(...restoreArgv(path, identity, target), "--force");
      expect(restored.code, restored.stderr).toBe(4);
      expect(restored.stderr).toMatch(message);
      await expectTargetUntouched(parent, target);
    });
  }
});
