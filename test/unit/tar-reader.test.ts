import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import {
  encodeEndOfArchive,
  encodeHeader,
  Field,
  headerChecksum,
  type TarHeader,
} from "../../src/archive/tar-format.js";
import { IntegrityError, LookerBackupError } from "../../src/errors.js";
import { NEEDS_INPUT, readBody, TarReader, type TarReadLimits } from "../../src/extract/tar-reader.js";
import { handOver } from "../../src/runtime/buffers.js";
import { nameBytes, printableName } from "../../src/runtime/byte-names.js";
import { readTar } from "../helpers/read-tar.js";
import { type TarWriteEntry, writeTar } from "../helpers/tar-writer.js";

const base = { mode: 0o644, uid: 0, gid: 0, mtime: 1_700_000_000 };

function file(path: string, content: string): TarWriteEntry {
  return {
    header: { ...base, path, type: "file", size: Buffer.byteLength(content) },
    body: Buffer.from(content),
  };
}

async function archiveOf(entries: TarWriteEntry[]): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of writeTar(entries)) parts.push(part);
  return Buffer.concat(parts);
}

async function readAll(source: Iterable<Buffer> | AsyncIterable<Buffer>, limits?: TarReadLimits) {
  const members: { header: TarHeader; body: string }[] = [];
  for await (const entry of readTar(source, limits)) {
    members.push({ header: entry.header, body: (await readBody(entry.body, 1 << 26)).toString("utf8") });
  }
  return members;
}

/** A header block with some raw field bytes replaced, and a correct checksum again. */
function patched(block: Buffer, changes: [readonly [number, number], string | Buffer][]): Buffer {
  const copy = Buffer.from(block);
  for (const [[offset, width], value] of changes) {
    copy.fill(0, offset, offset + width);
    (typeof value === "string" ? Buffer.from(value, "latin1") : value).copy(copy, offset);
  }
  copy.write(`${headerChecksum(copy).toString(8).padStart(6, "0")}\0 `, Field.checksum[0], "latin1");
  return copy;
}

function padded(content: Buffer): Buffer {
  return Buffer.concat([content, Buffer.alloc((512 - (content.length % 512)) % 512)]);
}

/** A meta header block ('x', 'g', 'L', 'K') followed by its padded body. */
function metaMember(typeFlag: string, body: Buffer, name = "././@LongLink"): Buffer {
  const header = patched(encodeHeader({ ...base, path: "placeholder", type: "file", size: 0 }), [
    [Field.name, name],
    [Field.typeflag, typeFlag],
    [Field.size, `${body.length.toString(8).padStart(11, "0")}\0`],
  ]);
  return Buffer.concat([header, padded(body)]);
}

/** Deterministic bytes (xorshift), so a failure reproduces. */
function pseudoRandom(length: number, seed: number): Buffer {
  const bytes = Buffer.alloc(length);
  let state = seed | 1;
  for (let i = 0; i < length; i += 1) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[i] = state & 0xff;
  }
  return bytes;
}

const sample = [
  file("home/a.txt", "alpha\n".repeat(100)),
  file(`home/${"long/".repeat(40)}b.txt`, "bravo"),
  { header: { ...base, path: "home/link", type: "symlink", size: 0, linkTarget: "/etc/hosts" } },
  file("home/ü.txt", ""),
] satisfies TarWriteEntry[];

describe("readTar robustness", () => {
  it("reports every truncation as an IntegrityError with a byte offset", async () => {
    const archive = await archiveOf(sample);
    const lastZeroBlock = archive.length - 512;
    for (let cut = 0; cut < archive.length; cut += 1) {
      const attempt = readAll([archive.subarray(0, cut)]);
      if (cut >= lastZeroBlock) {
        // Only the second zero block is missing: every member is complete, as GNU tar also accepts.
        await expect(attempt, `cut at ${cut}`).resolves.toHaveLength(sample.length);
      } else {
        await expect(attempt, `cut at ${cut}`).rejects.toThrow(/corrupt tar archive: .* at byte \d+/);
        await expect(readAll([archive.subarray(0, cut)])).rejects.toBeInstanceOf(IntegrityError);
      }
    }
  });

  it("rejects a header whose checksum does not match, naming its offset", async () => {
    const archive = await archiveOf(sample);
    const secondHeader = 512 + 1024; // the first header, then its 600-byte body in two blocks
    const damaged = Buffer.from(archive);
    damaged[secondHeader + 10] = damaged[secondHeader + 10]! ^ 0x01;
    await expect(readAll([damaged])).rejects.toThrow(`bad header checksum at byte ${secondHeader}`);
  });

  it("rejects random garbage without hanging", async () => {
    for (let seed = 1; seed <= 200; seed += 1) {
      const garbage = pseudoRandom(512 + ((seed * 7919) % 20_000), seed);
      await expect(readAll([garbage])).rejects.toBeInstanceOf(IntegrityError);
    }
  });

  it("rejects an empty stream and accepts an archive of only the end marker", async () => {
    await expect(readAll([])).rejects.toThrow(/ends without an end-of-archive marker at byte 0/);
    await expect(readAll([encodeEndOfArchive()])).resolves.toEqual([]);
  });

  it("rejects data after a lone zero block", async () => {
    const archive = await archiveOf([file("home/a", "a")]);
    const withHole = Buffer.concat([Buffer.alloc(512), archive]);
    await expect(readAll([withHole])).rejects.toThrow(/zero block followed by data at byte 0/);
  });

  it("refuses a pax header over the limit before reading it", async () => {
    const huge = metaMember("x", Buffer.alloc(0)).subarray(0, 512);
    const declared = patched(huge, [[Field.size, `${(2 * 1024 * 1024).toString(8).padStart(11, "0")}\0`]]);
    // Only the header exists: the error must come from the limit, not from running out of data.
    await expect(readAll([declared])).rejects.toThrow(
      /pax header of 2097152 bytes exceeds the limit of 1048576/,
    );
    const small = metaMember("x", Buffer.from("30 path=home/zzzzzzzzzzzzzzzz\n"));
    await expect(
      readAll([small, await archiveOf([file("home/a", "a")])], { maxPaxHeaderBytes: 16 }),
    ).rejects.toThrow(/exceeds the limit of 16/);
  });

  it("rejects malformed pax records", async () => {
    const lengths = ["012 path=abc\n", " 12 path=abc\n", "1x path=abc\n", "1234567890 path=abc\n"];
    for (const records of [
      "12 path=abc",
      "99 path=abc\n",
      "x path=abc\n",
      "8 =abcd\n",
      "9 pathab\n",
      ...lengths,
    ]) {
      const archive = Buffer.concat([
        metaMember("x", Buffer.from(records)),
        await archiveOf([file("home/a", "a")]),
      ]);
      await expect(readAll([archive]), records).rejects.toThrow(/pax record/);
    }
  });

  it("rejects a pax header that describes no member", async () => {
    const archive = Buffer.concat([metaMember("x", Buffer.from("16 path=home/ab\n")), encodeEndOfArchive()]);
    await expect(readAll([archive])).rejects.toThrow(/end-of-archive marker right after an extended header/);
  });

  it("enforces the path length and member count limits", async () => {
    const longPath = `home/${"p/".repeat(2100)}f`;
    await expect(readAll([await archiveOf([file(longPath, "x")])])).rejects.toThrow(
      /path of 4206 bytes exceeds/,
    );
    await expect(
      readAll([await archiveOf([file(longPath, "x")])], { maxPathBytes: 5000 }),
    ).resolves.toHaveLength(1);
    const three = await archiveOf([file("home/1", "1"), file("home/2", "2"), file("home/3", "3")]);
    await expect(readAll([three], { maxEntries: 2 })).rejects.toThrow(/more than 2 members/);
    await expect(readAll([three], { maxEntries: 3 })).resolves.toHaveLength(3);
  });

  it("refuses a chain of meta headers over 4 MiB before one member, naming the limit and the chain's start", async () => {
    const record = Buffer.from(`500 comment=${"c".repeat(487)}\n`);
    expect(record.length).toBe(500);
    const pax = metaMember("x", record); // 1024 bytes
    const longName = metaMember("L", Buffer.from(`home/${"n".repeat(500)}\0`)); // 1024 bytes
    const global = metaMember("g", record, "pax_global_header");
    const member = await archiveOf([file("home/a", "a")]);
    for (const [what, meta, count] of [
      ["pax", pax, 4097],
      ["GNU long name", longName, 4097],
      ["pax global", global, 4097],
    ] as const) {
      const archive = Buffer.concat([
        member.subarray(0, 1024),
        ...Array.from({ length: count }, () => meta),
        member,
      ]);
      await expect(readAll(piecesOf(archive, 65536)), what).rejects.toThrow(
        /headers before one member \(pax, GNU long names\) exceed the limit of 4194304 bytes at byte 1024/,
      );
    }
    const chain = Buffer.concat([...Array.from({ length: 64 }, () => pax), member]);
    await expect(readAll([chain], { maxHeaderChainBytes: 64 * 1024 })).rejects.toThrow(
      /exceed the limit of 65536/,
    );
    await expect(readAll([chain], { maxHeaderChainBytes: 66 * 1024 })).resolves.toHaveLength(1);
  });

  it("parses each header of a long chain once, however the stream is cut", async () => {
    // 16 members behind ~4 MiB of pax headers each, in 500-byte pieces. A parser that copies and re-parses the
    // chain from its start for each piece does ~8000 passes over up to 4 MiB per member: many minutes in all.
    const pax = (n: number) => metaMember("x", Buffer.from(`22 path=home/m/${String(n).padStart(6, "0")}\n`));
    const parts: Buffer[] = [];
    for (let m = 0; m < 16; m++) {
      for (let h = 0; h < 4000; h++) parts.push(pax(m * 4000 + h));
      parts.push((await archiveOf([file("home/placeholder", `${m}`)])).subarray(0, 1024));
    }
    parts.push(encodeEndOfArchive());
    const members = await readAll(piecesOf(Buffer.concat(parts), 500));
    expect(members.map((m) => m.header.path)).toEqual(
      Array.from({ length: 16 }, (_, m) => `home/m/${String(m * 4000 + 3999).padStart(6, "0")}`),
    );
    expect(members.map((m) => m.body)).toEqual(Array.from({ length: 16 }, (_, m) => `${m}`));
  });

  it("quotes at most 200 bytes of an invalid pax value", async () => {
    const value = "9".repeat(500_000);
    const record = (key: string) => {
      const text = ` ${key}=${value}x\n`;
      return Buffer.from(`${text.length + 6}${text}`);
    };
    for (const key of ["uid", "mtime"]) {
      const archive = Buffer.concat([metaMember("x", record(key)), await archiveOf([file("home/a", "a")])]);
      const refused = await readAll([archive]).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(IntegrityError);
      expect((refused as Error).message).toMatch(
        new RegExp(`^corrupt tar archive: invalid pax ${key} 9{200}\\.\\.\\. at byte 500736$`),
      );
    }
  });

  it("reads a name that is not valid UTF-8 as its exact bytes, never renamed", async () => {
    const archive = await archiveOf([file("home/abc", "x")]);
    const latin1 = Buffer.concat([
      patched(archive.subarray(0, 512), [[Field.name, Buffer.from([0x68, 0xe9, 0x2e])]]),
      archive.subarray(512),
    ]);
    const [member] = await readAll([latin1]);
    expect(nameBytes(member!.header.path)).toEqual(Buffer.from([0x68, 0xe9, 0x2e]));
    expect(printableName(member!.header.path)).toBe("h\\xe9.");
  });
});

describe("readTar body handling", () => {
  it("skips bodies the consumer does not read, fully or partly", async () => {
    const archive = await archiveOf([
      file("home/1", "one".repeat(1000)),
      file("home/2", "two".repeat(1000)),
      file("home/3", "three"),
    ]);
    const seen: string[] = [];
    for await (const entry of readTar([archive.subarray(0, 700), archive.subarray(700)])) {
      if (entry.header.path === "home/2") {
        for await (const part of entry.body) {
          seen.push(`${entry.header.path}:${part.subarray(0, 3).toString()}`);
          break;
        }
      }
      if (entry.header.path === "home/3") seen.push(`home/3:${(await readBody(entry.body, 100)).toString()}`);
    }
    expect(seen).toEqual(["home/2:two", "home/3:three"]);
  });

  it("refuses to read a body after moving on", async () => {
    const archive = await archiveOf([file("home/1", "one"), file("home/2", "two")]);
    const bodies: AsyncIterable<Buffer>[] = [];
    for await (const entry of readTar([archive])) bodies.push(entry.body);
    await expect(readBody(bodies[0]!, 100)).rejects.toThrow(LookerBackupError);
    await expect(readBody(bodies[0]!, 100)).rejects.toThrow(/already read|after moving/);
  });

  it("destroys a Readable source when the consumer stops early", async () => {
    const archive = await archiveOf([file("home/1", "one"), file("home/2", "two")]);
    const source = Readable.from([archive.subarray(0, 600), archive.subarray(600)], { objectMode: false });
    for await (const entry of readTar(source)) {
      expect(entry.header.path).toBe("home/1");
      break;
    }
    expect(source.destroyed).toBe(true);
  });

  it("reads the source to its end after the end marker (so upstream stages finish)", async () => {
    const archive = await archiveOf([file("home/1", "one")]);
    let sourceFinished = false;
    async function* source() {
      yield archive;
      yield Buffer.alloc(10_240 - (archive.length % 10_240)); // GNU tar's record padding
      sourceFinished = true;
    }
    await expect(readAll(source())).resolves.toHaveLength(1);
    expect(sourceFinished).toBe(true);
  });

  it("gives header-only types no body even if their size field says otherwise (POSIX)", async () => {
    const archive = await archiveOf([
      { header: { ...base, path: "home/dir/", type: "directory", size: 0 } },
      file("home/dir/f", "data"),
    ]);
    const sized = Buffer.concat([
      patched(archive.subarray(0, 512), [[Field.size, "00000001000\0"]]),
      archive.subarray(512),
    ]);
    const members = await readAll([sized]);
    expect(members.map((m) => [m.header.path, m.header.size, m.body])).toEqual([
      ["home/dir/", 0, ""],
      ["home/dir/f", 4, "data"],
    ]);
  });
});

/** Every member of every format this reader knows, with global pax values and bodies across several blocks. */
async function mixedArchive(): Promise<Buffer> {
  return Buffer.concat([
    metaMember("g", Buffer.from("14 uid=424242\n"), "pax_global_header"),
    metaMember("L", Buffer.from(`home/${"n".repeat(300)}\0`)),
    (await archiveOf([file("home/short", "long-named")])).subarray(0, 1024),
    (await archiveOf(sample)).subarray(0, -1024),
    await archiveOf([file("home/last", "z".repeat(1500))]),
  ]);
}

/** The archive cut into pieces of `size` bytes, each in an ArrayBuffer of its own, as our decompressor hands them out. */
function piecesOf(archive: Buffer, size: number, handedOver = false): Buffer[] {
  const pieces: Buffer[] = [];
  for (let at = 0; at < archive.length; at += size) {
    const piece = Buffer.allocUnsafeSlow(Math.min(size, archive.length - at));
    archive.copy(piece, 0, at, at + piece.length);
    if (handedOver) handOver(piece);
    pieces.push(piece);
  }
  return pieces;
}

describe("readTar chunk boundaries", () => {
  it("reads the same members however the stream is cut, headers and pax records included", async () => {
    const archive = await mixedArchive();
    const whole = await readAll([archive]);
    expect(whole.map((m) => m.header.path)).toEqual([
      `home/${"n".repeat(300)}`,
      "home/a.txt",
      `home/${"long/".repeat(40)}b.txt`,
      "home/link",
      "home/ü.txt",
      "home/last",
    ]);
    for (const size of [1, 3, 100, 511, 512, 513, 1000, 1024, 1536, 4096]) {
      await expect(readAll(piecesOf(archive, size)), `pieces of ${size}`).resolves.toEqual(whole);
    }
    for (let cut = 1; cut < archive.length; cut += 37) {
      const halves = [archive.subarray(0, cut), archive.subarray(cut)];
      await expect(readAll(halves), `cut at ${cut}`).resolves.toEqual(whole);
    }
  });

  it("frees handed-over pieces only once read, also when headers are copied across them", async () => {
    // Big pieces too: a straddling header copies only the start of the next piece, whose rest is read later.
    const many = await archiveOf(
      Array.from({ length: 600 }, (_, i) => file(`home/f${i}`, `${i}`.repeat(100 + (i % 7) * 50))),
    );
    for (const archive of [await mixedArchive(), many]) {
      const whole = await readAll([archive]);
      for (const size of [100, 700, 2048, 70_001, 100_000]) {
        // A piece freed while still being read shows as an empty or short read: a corrupt-archive error.
        const read = await readAll(piecesOf(archive, size, true), { releaseConsumed: true });
        expect(read, `pieces of ${size}`).toEqual(whole);
      }
    }
  });
});

describe("TarReader without waiting", () => {
  it("gives members and whole bodies while they are buffered, and NEEDS_INPUT (consuming nothing) when not", async () => {
    const archive = await archiveOf([file("home/1", "one"), file("home/2", "two".repeat(400))]);
    const tar = new TarReader([archive.subarray(0, 1600), archive.subarray(1600)]);
    expect(tar.nextBuffered()).toBe(NEEDS_INPUT); // nothing has been read from the source yet
    const first = await tar.next();
    expect(first?.header.path).toBe("home/1");
    expect(first?.body.takeBuffered()?.toString()).toBe("one");
    expect(first?.body.takeBuffered()).toBeUndefined(); // taken once
    const second = tar.nextBuffered();
    expect(second).not.toBe(NEEDS_INPUT);
    const entry = second as Exclude<typeof second, typeof NEEDS_INPUT | undefined>;
    expect(entry.header.path).toBe("home/2");
    expect(entry.body.takeBuffered()).toBeUndefined(); // its 1200 bytes straddle the two chunks
    expect((await readBody(entry.body, 2000)).toString()).toBe("two".repeat(400));
    expect(tar.nextBuffered()).toBeUndefined(); // the end marker came with the second chunk
    await tar.finish();
  });

  it("skips a body left unread before giving the next member", async () => {
    const archive = await archiveOf([file("home/1", "x".repeat(5000)), file("home/2", "two")]);
    const tar = new TarReader([archive]);
    expect((await tar.next())?.header.path).toBe("home/1");
    const next = tar.nextBuffered();
    expect(next !== NEEDS_INPUT && next?.header.path).toBe("home/2");
  });
});

describe("readTar formats", () => {
  it("reads GNU long names and long link targets ('L', 'K')", async () => {
    const longName = `home/${"n".repeat(300)}`;
    const longLink = `/${"t".repeat(200)}`;
    const symlink = patched(
      encodeHeader({ ...base, path: "home/short", type: "symlink", size: 0, linkTarget: "short" }),
      [[Field.magic, "ustar  \0"]],
    );
    const archive = Buffer.concat([
      metaMember("L", Buffer.from(`${longName}\0`)),
      metaMember("K", Buffer.from(`${longLink}\0`)),
      symlink,
      encodeEndOfArchive(),
    ]);
    const [member] = await readAll([archive]);
    expect(member!.header).toMatchObject({ path: longName, type: "symlink", linkTarget: longLink });
  });

  it("refuses a symlink that declares data, which GNU tar would skip and we would not", async () => {
    const symlink = patched(
      encodeHeader({ ...base, path: "home/link", type: "symlink", size: 0, linkTarget: "x" }),
      [[Field.size, "00000001000\0"]],
    );
    const archive = Buffer.concat([symlink, encodeEndOfArchive()]);
    await expect(readAll([archive])).rejects.toThrow(/symlink home\/link declares 512 bytes of data/);
  });

  it("applies pax global headers to later members and lets a local empty value cancel them", async () => {
    const archive = Buffer.concat([
      metaMember("g", Buffer.from("14 uid=424242\n16 uname=global\n"), "pax_global_header"),
      (await archiveOf([file("home/1", "1")])).subarray(0, 1024),
      metaMember("x", Buffer.from("10 uname=\n")),
      await archiveOf([file("home/2", "2")]),
    ]);
    const members = await readAll([archive]);
    expect(members.map((m) => [m.header.uid, m.header.uname])).toEqual([
      [424242, "global"],
      [424242, undefined],
    ]);
  });

  it("reads base-256 numeric fields (GNU) including a negative mtime", async () => {
    const archive = await archiveOf([file("home/b256", "x")]);
    const uid = Buffer.from([0x80, 0, 0, 0, 0, 0x12, 0x34, 0x56]);
    const size = Buffer.from([0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    const mtime = Buffer.alloc(12, 0xff); // two's complement -1
    const header = patched(archive.subarray(0, 512), [
      [Field.uid, uid],
      [Field.size, size],
      [Field.mtime, mtime],
    ]);
    const [member] = await readAll([Buffer.concat([header, archive.subarray(512)])]);
    expect(member!.header).toMatchObject({ uid: 0x123456, size: 1, mtime: -1 });
    expect(member!.body).toBe("x");
  });

  it("accepts the historic signed checksum", async () => {
    const archive = await archiveOf([file("home/s", "s")]);
    const header = Buffer.from(archive.subarray(0, 512));
    header.fill(0xff, 500, 512); // unused tail: makes signed and unsigned sums differ
    let signed = 8 * 0x20;
    for (let i = 0; i < 512; i += 1)
      if (i < 148 || i >= 156) signed += header[i]! > 127 ? header[i]! - 256 : header[i]!;
    header.write(`${signed.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
    const members = await readAll([Buffer.concat([header, archive.subarray(512)])]);
    expect(members[0]!.body).toBe("s");
  });

  it("treats pre-POSIX regular files with a trailing slash as directories", async () => {
    const archive = await archiveOf([{ header: { ...base, path: "home/old/", type: "directory", size: 0 } }]);
    const v7 = Buffer.concat([
      patched(archive.subarray(0, 512), [
        [Field.typeflag, "\0"],
        [Field.magic, "\0"],
        [Field.version, "\0"],
      ]),
      archive.subarray(512),
    ]);
    const [member] = await readAll([v7]);
    expect(member!.header).toMatchObject({ path: "home/old/", type: "directory" });
  });

  it("marks GNU sparse members and unknown types as 'other' and keeps reading in step", async () => {
    const sparse = Buffer.concat([
      metaMember("x", Buffer.from("22 GNU.sparse.major=1\n")),
      (await archiveOf([file("home/sparse", "map+data")])).subarray(0, 1024),
    ]);
    const volume = patched((await archiveOf([file("home/label", "")])).subarray(0, 512), [
      [Field.typeflag, "V"],
    ]);
    const rest = await archiveOf([file("home/after", "after")]);
    const members = await readAll([Buffer.concat([sparse, volume, rest])]);
    expect(members.map((m) => [m.header.path, m.header.type, m.body])).toEqual([
      ["home/sparse", "other", "map+data"],
      ["home/label", "other", ""],
      ["home/after", "file", "after"],
    ]);
  });
});
