import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { encodeHeader, type TarHeader } from "../../src/archive/tar-format.js";
import { IntegrityError } from "../../src/errors.js";
import { readBody } from "../../src/extract/tar-reader.js";
import { readTar } from "../helpers/read-tar.js";
import { type TarWriteEntry, writeTar } from "../helpers/tar-writer.js";

const base = { mode: 0o644, uid: 1000, gid: 1000, mtime: 1_700_000_000 };

function file(path: string, content: string | Buffer, extra: Partial<TarHeader> = {}): TarWriteEntry {
  const body = typeof content === "string" ? Buffer.from(content) : content;
  return { header: { ...base, path, type: "file", size: body.length, ...extra }, body };
}

function node(path: string, type: TarHeader["type"], extra: Partial<TarHeader> = {}): TarWriteEntry {
  return { header: { ...base, path, type, size: 0, ...extra } };
}

async function archiveOf(entries: TarWriteEntry[]): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of writeTar(entries)) parts.push(part);
  return Buffer.concat(parts);
}

/** Feeds `archive` in pieces of `size` bytes, so every header and body boundary gets split somewhere. */
async function* inChunks(archive: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < archive.length; i += size) yield archive.subarray(i, i + size);
}

async function readAll(source: AsyncIterable<Buffer>): Promise<{ header: TarHeader; body: Buffer }[]> {
  const members: { header: TarHeader; body: Buffer }[] = [];
  for await (const entry of readTar(source)) {
    members.push({ header: entry.header, body: await readBody(entry.body, 64 * 1024 * 1024) });
  }
  return members;
}

const longSegment = "d".repeat(60);
const path150 = `home/${longSegment}/${longSegment}/file-150.txt`;
const path300 = `home/${[1, 2, 3, 4, 5].map((n) => `${longSegment}${n}`).join("/")}/over-255.txt`;
const nameOver100NoSlash = `home/${"x".repeat(120)}`;

const cases: { title: string; entry: TarWriteEntry; expectPax: boolean }[] = [
  { title: "plain file", entry: file("home/a.txt", "hello\n"), expectPax: false },
  { title: "mode 0600", entry: file("home/.ssh/id_rsa", "key", { mode: 0o600 }), expectPax: false },
  { title: "mode 0755", entry: file("home/looker/looker", "#!/bin/sh\n", { mode: 0o755 }), expectPax: false },
  { title: "setgid directory", entry: node("home/shared/", "directory", { mode: 0o2775 }), expectPax: false },
  { title: "setuid + sticky bits", entry: file("home/bin/x", "x", { mode: 0o5755 }), expectPax: false },
  { title: "empty directory", entry: node("home/empty/", "directory", { mode: 0o700 }), expectPax: false },
  { title: "empty file", entry: file("home/empty.txt", ""), expectPax: false },
  { title: "numeric owner", entry: file("home/owned", "o", { uid: 1234, gid: 5678 }), expectPax: false },
  {
    title: "uid/gid above ustar",
    entry: file("home/big-id", "o", { uid: 3_000_000, gid: 4_000_000 }),
    expectPax: true,
  },
  {
    title: "uname/gname",
    entry: file("home/named", "n", { uname: "looker", gname: "looker" }),
    expectPax: false,
  },
  {
    title: "non-ASCII uname",
    entry: file("home/named2", "n", { uname: "lööker", gname: "grüppe" }),
    expectPax: true,
  },
  { title: "fractional mtime", entry: file("home/frac", "f", { mtime: 1_700_000_000.123 }), expectPax: true },
  { title: "mtime 0", entry: file("home/epoch", "e", { mtime: 0 }), expectPax: false },
  { title: "negative mtime", entry: file("home/before-epoch", "e", { mtime: -86_400.5 }), expectPax: true },
  {
    title: "absolute symlink",
    entry: node("home/.ssl/cert.pem", "symlink", { linkTarget: "/etc/ssl/x.pem" }),
    expectPax: false,
  },
  {
    title: "relative symlink",
    entry: node("home/link", "symlink", { linkTarget: "../outside/target" }),
    expectPax: false,
  },
  {
    title: "symlink target over 100 bytes",
    entry: node("home/longlink", "symlink", { linkTarget: `/opt/${"t".repeat(150)}` }),
    expectPax: true,
  },
  { title: "name with spaces", entry: file("home/my models/a b.view.lkml", "view"), expectPax: false },
  { title: "name with newline", entry: file("home/line\nbreak", "nl"), expectPax: true },
  { title: "non-ASCII name", entry: file("home/modèles/日本語.txt", "utf8"), expectPax: true },
  { title: "path over 100 bytes (ustar prefix)", entry: file(path150, "150"), expectPax: false },
  { title: "path over 255 bytes", entry: file(path300, "300"), expectPax: true },
  { title: "name part over 100 bytes", entry: file(nameOver100NoSlash, "long name"), expectPax: true },
  {
    title: "long directory",
    entry: node(`home/${"e".repeat(120)}/${"f".repeat(120)}/`, "directory", { mode: 0o750 }),
    expectPax: true,
  },
  { title: "body of exactly one block", entry: file("home/block", Buffer.alloc(512, 7)), expectPax: false },
  { title: "multi-block body", entry: file("home/multi", Buffer.alloc(70_000, 9)), expectPax: false },
];

describe("tar round trip", () => {
  it.each(cases)("$title", async ({ entry, expectPax }) => {
    const archive = await archiveOf([entry]);
    const headerBlocks = encodeHeader(entry.header);
    expect(headerBlocks.length > 512).toBe(expectPax);
    expect(archive.subarray(257, 265).toString("latin1")).toBe("ustar\u000000");

    for (const chunk of [1, 511, 4096, archive.length]) {
      const members = await readAll(inChunks(archive, chunk));
      expect(members).toHaveLength(1);
      const expected = { ...entry.header };
      if (expected.type === "directory" && !expected.path.endsWith("/")) expected.path += "/";
      expect(members[0]!.header).toEqual(expected);
      const body = entry.body === undefined ? Buffer.alloc(0) : Buffer.from(entry.body as Buffer);
      expect(members[0]!.body.equals(body)).toBe(true);
    }
  });

  it("keeps a whole tree in order: directories, files, hard links, symlinks", async () => {
    const entries = [
      node("home/", "directory", { mode: 0o755 }),
      node("home/looker/", "directory", { mode: 0o2755 }),
      file("home/looker/a.jar", Buffer.alloc(3000, 1), { mode: 0o644 }),
      node("home/looker/a-hardlink.jar", "hardlink", { linkTarget: "home/looker/a.jar" }),
      node("home/looker/current", "symlink", { linkTarget: "a.jar" }),
      file(path300, "deep"),
      node(`home/hl-${"y".repeat(200)}`, "hardlink", { linkTarget: path300 }),
      file("mysql/looker.sql", "CREATE TABLE t (x int);\n"),
    ];
    const archive = await archiveOf(entries);
    const members = await readAll(inChunks(archive, 1000));
    expect(members.map((m) => m.header)).toEqual(entries.map((e) => e.header));
    expect(members[2]!.body.equals(Buffer.alloc(3000, 1))).toBe(true);
    expect(members[3]!.body.length).toBe(0);
  });

  it("streams big bodies as slices of the input, never as one buffer", async () => {
    const part = Buffer.alloc(1024 * 1024, 3);
    const parts = Array.from({ length: 8 }, () => part);
    const size = part.length * parts.length;
    const archive = writeTar([
      { header: { ...base, path: "home/big.bin", type: "file", size }, body: parts },
    ]);
    let biggest = 0;
    let total = 0;
    const hash = createHash("sha256");
    for await (const entry of readTar(archive)) {
      for await (const piece of entry.body) {
        biggest = Math.max(biggest, piece.length);
        total += piece.length;
        hash.update(piece);
      }
    }
    expect(total).toBe(size);
    expect(biggest).toBeLessThanOrEqual(part.length);
    expect(hash.digest("hex")).toBe(createHash("sha256").update(Buffer.concat(parts)).digest("hex"));
  });

  it("encodes sizes of 8 GiB and more in a pax header (header only)", async () => {
    const size = 8 * 1024 ** 3 + 1;
    const header: TarHeader = { ...base, path: "mysql/huge.sql", type: "file", size };
    const blocks = encodeHeader(header);
    expect(blocks.toString("latin1")).toContain(`size=${size}\n`);
    // Without the body the reader still yields the header, then reports the truncation.
    const seen: TarHeader[] = [];
    const read = async () => {
      for await (const entry of readTar([blocks, Buffer.alloc(4096, 1)])) {
        seen.push(entry.header);
        await readBody(entry.body, Number.MAX_SAFE_INTEGER);
      }
    };
    await expect(read()).rejects.toThrow(IntegrityError);
    expect(seen).toEqual([header]);
  });

  it("refuses a body that does not match the declared size", async () => {
    const short = archiveOf([
      { header: { ...base, path: "home/x", type: "file", size: 10 }, body: Buffer.alloc(5) },
    ]);
    await expect(short).rejects.toThrow(/fewer bytes than the 10/);
    const long = archiveOf([
      { header: { ...base, path: "home/y", type: "file", size: 1 }, body: Buffer.alloc(2) },
    ]);
    await expect(long).rejects.toThrow(/more bytes than the 1/);
  });
});
