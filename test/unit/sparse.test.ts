import { createHash, randomBytes } from "node:crypto";
import { closeSync, ftruncateSync, openSync, writeSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  encodeSparseMap,
  MIN_SPARSE_SIZE,
  mayHaveHoles,
  SparseContent,
  SparseMapParser,
  scanForData,
  sparseMapLength,
  sparseStoredSize,
} from "../../src/archive/sparse.js";
import {
  encodeHeader,
  Field,
  headerChecksum,
  paxRecord,
  type TarHeader,
} from "../../src/archive/tar-format.js";
import { IntegrityError } from "../../src/errors.js";
import { readBody } from "../../src/extract/tar-reader.js";
import { readTar } from "../helpers/read-tar.js";
import { writeTar } from "../helpers/tar-writer.js";

let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "lb-sparse-unit-"));
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

const base = { type: "file" as const, mode: 0o644, uid: 0, gid: 0, mtime: 1_700_000_000 };

/** A file of `size` bytes with `islands` written (each [offset, bytes]) and holes elsewhere. */
function sparseFile(name: string, size: number, islands: [number, Buffer][]): string {
  const path = join(work, name);
  const fd = openSync(path, "w");
  for (const [offset, bytes] of islands) writeSync(fd, bytes, 0, bytes.length, offset);
  ftruncateSync(fd, size);
  closeSync(fd);
  return path;
}

/** The whole content of a file described by its islands, as one buffer (small files only). */
function logical(size: number, islands: [number, Buffer][]): Buffer {
  const content = Buffer.alloc(size);
  for (const [offset, bytes] of islands) bytes.copy(content, offset);
  return content;
}

function scan(path: string, size: number, maxSegments?: number) {
  const fd = openSync(path, "r");
  try {
    return scanForData(fd, size, maxSegments === undefined ? {} : { maxSegments });
  } finally {
    closeSync(fd);
  }
}

describe("finding holes", () => {
  it("only in a file whose blocks cover less than its size", () => {
    expect(mayHaveHoles({ size: 1 << 20, blocks: 0 })).toBe(true);
    expect(mayHaveHoles({ size: 1 << 20, blocks: 2048 })).toBe(false);
    expect(mayHaveHoles({ size: MIN_SPARSE_SIZE - 1, blocks: 0 })).toBe(false);
  });

  it("finds the 4 KiB blocks holding data, and ends the map at the file's end as GNU tar does", () => {
    const islands: [number, Buffer][] = [
      [0, randomBytes(100)],
      [40_000, randomBytes(5000)],
      [200_000, randomBytes(10)],
    ];
    const path = sparseFile("islands.bin", 300_000, islands);
    expect(scan(path, 300_000)).toEqual({
      segments: [0, 4096, 36_864, 8192, 196_608, 4096, 300_000, 0],
    });
  });

  it("says nothing for a file without holes, and maps a file of holes alone", () => {
    const full = sparseFile("full.bin", 100_000, [[0, randomBytes(100_000)]]);
    expect(scan(full, 100_000)).toBeUndefined();
    const empty = sparseFile("empty.bin", 100_000, []);
    expect(scan(empty, 100_000)).toEqual({ segments: [100_000, 0] });
  });

  it("coarsens the holes of a file more fragmented than the limit, keeping every byte of data", () => {
    // 40 data blocks, each followed by a hole of 4, 8, 12 ... KiB.
    const islands: [number, Buffer][] = [];
    let offset = 0;
    for (let i = 1; i <= 40; i++) {
      islands.push([offset, randomBytes(4096)]);
      offset += 4096 + i * 4096;
    }
    const path = sparseFile("fragmented.bin", offset, islands);
    const map = scan(path, offset, 8)!;
    expect(map.segments.length / 2 - 1).toBeLessThanOrEqual(8);
    const content = new SparseContent(map, offset);
    const file = logical(offset, islands);
    for (let i = 0; i < map.segments.length; i += 2) {
      content.add(file.subarray(map.segments[i]!, map.segments[i]! + map.segments[i + 1]!));
    }
    expect(content.digest()).toBe(createHash("sha256").update(file).digest("hex"));
  });
});

describe("a sparse file's content", () => {
  it("is hashed whole, holes as zeros, and placed at its offsets, however its data is cut", () => {
    const map = { segments: [4096, 10, 10_000, 5, 20_000, 0] };
    const data = Buffer.from("0123456789abcde");
    const whole = logical(20_000, [
      [4096, data.subarray(0, 10)],
      [10_000, data.subarray(10)],
    ]);
    for (const cut of [1, 3, 15]) {
      const content = new SparseContent(map, 20_000);
      const placed: [number, string][] = [];
      for (let at = 0; at < data.length; at += cut) {
        content.add(data.subarray(at, at + cut), (bytes, position) =>
          placed.push([position, bytes.toString()]),
        );
      }
      expect(content.digest()).toBe(createHash("sha256").update(whole).digest("hex"));
      expect(placed.map(([position, text]) => `${position}:${text}`).join(" ")).toMatch(/^4096:0/);
      expect(Buffer.concat(placed.map(([, text]) => Buffer.from(text))).toString()).toBe(data.toString());
      expect(placed.find(([, text]) => text.startsWith("a"))?.[0]).toBe(10_000);
    }
  });

  it("refuses data beyond the map, and a digest before all of it came", () => {
    const content = new SparseContent({ segments: [0, 4] }, 10);
    expect(() => content.digest()).toThrow(/less data/);
    expect(() => content.add(Buffer.alloc(5))).toThrow(/more data/);
  });
});

describe("the map as written and read", () => {
  it("is GNU tar's text, padded to a block", () => {
    const map = { segments: [0, 4096, 524_288_000, 4096, 1_073_741_824, 0] };
    const encoded = encodeSparseMap(map);
    expect(encoded.toString("latin1").replace(/\0+$/, "")).toBe(
      "3\n0\n4096\n524288000\n4096\n1073741824\n0\n",
    );
    expect(encoded.length).toBe(512);
    expect(sparseMapLength(map)).toBe(512);
    expect(sparseStoredSize(map)).toBe(512 + 8192);
  });

  it("parses across blocks and refuses what GNU tar would read otherwise", () => {
    const problems: string[] = [];
    const parse = (text: string, size = 1 << 30) => {
      const parser = new SparseMapParser(size, 1000, (problem) => {
        problems.push(problem);
        throw new Error(problem);
      });
      const bytes = Buffer.alloc(Math.ceil(text.length / 512) * 512);
      bytes.write(text, "latin1");
      for (let at = 0; at < bytes.length; at += 512) if (parser.block(bytes.subarray(at, at + 512))) break;
      return parser.segments;
    };
    const many = Array.from({ length: 100 }, (_, i) => [i * 8192, 4096]).flat();
    expect(parse(`100\n${many.join("\n")}\n`)).toEqual(many);
    expect(() => parse("1\n0\n4096\n1\n")).toThrow(/bytes after its last segment/);
    expect(() => parse("2\n0\n4096\n")).toThrow(/ends after 1 of the 2 segments/);
    expect(() => parse("1\n0\n-4096\n")).toThrow(/something other than decimal numbers/);
    expect(() => parse("1\n0\n123456789012345678901\n")).toThrow(/more than 20 digits/);
    expect(() => parse("1\n0\n99999999999999999999\n")).toThrow(/beyond 2\^53/);
    expect(() => parse("1001\n")).toThrow(/announces 1001 segments, more than the limit of 1000/);
    expect(() => parse("2\n4096\n4096\n0\n10\n")).toThrow(/overlapping or out of order/);
    expect(() => parse("1\n0\n4097\n", 4096)).toThrow(/ends beyond the file's size of 4096 bytes/);
    expect(problems).toHaveLength(8);
  });
});

describe("a sparse member through our tar writer and reader", () => {
  const segments = Array.from({ length: 60 }, (_, i) => [i * 10_000, 7]).flat();
  segments.push(600_000, 0);
  const header: TarHeader = { ...base, path: "home/looker/sparse.bin", size: 600_000, sparse: { segments } };
  const data = randomBytes(60 * 7);

  it("writes GNU tar's records and a stand-in path for readers that know none of it", () => {
    const blocks = encodeHeader(header);
    const records = blocks.toString("latin1", 512, blocks.length - 512);
    const expected = [
      ["GNU.sparse.major", "1"],
      ["GNU.sparse.minor", "0"],
      ["GNU.sparse.name", "home/looker/sparse.bin"],
      ["GNU.sparse.realsize", "600000"],
    ].map(([key, value]) => paxRecord(key!, value!).toString("latin1"));
    expect(records.startsWith(expected.join(""))).toBe(true);
    const ustar = blocks.subarray(blocks.length - 512);
    expect(ustar.toString("latin1", 0, Field.name[1]).replace(/\0+$/, "")).toBe(
      "home/looker/GNUSparseFile.0/sparse.bin",
    );
    expect(Number.parseInt(ustar.toString("latin1", Field.size[0], Field.size[0] + Field.size[1]), 8)).toBe(
      sparseStoredSize(header.sparse!),
    );
    expect(() => encodeHeader({ ...header, sparse: { segments: [0, 10, 5, 10] } })).toThrow(/overlapping/);
    expect(() => encodeHeader({ ...header, type: "directory", size: 0 })).toThrow(/cannot be sparse/);
  });

  it("reads back the map and only the data, however the stream is cut, and the next member in step", async () => {
    const parts: Buffer[] = [];
    for await (const part of writeTar([
      { header, body: data },
      { header: { ...base, path: "home/after", size: 5 }, body: Buffer.from("after") },
    ])) {
      parts.push(part);
    }
    const tar = Buffer.concat(parts);
    for (const cut of [1, 100, 511, 4096, tar.length]) {
      const chunks: Buffer[] = [];
      for (let at = 0; at < tar.length; at += cut) chunks.push(tar.subarray(at, at + cut));
      const read: { header: TarHeader; body: Buffer }[] = [];
      for await (const entry of readTar(Readable.from(chunks))) {
        read.push({ header: entry.header, body: await readBody(entry.body, 1 << 20) });
      }
      expect(read.map((m) => m.header.path)).toEqual(["home/looker/sparse.bin", "home/after"]);
      expect(read[0]!.header).toMatchObject({ type: "file", size: 600_000, sparse: { segments } });
      expect(read[0]!.body).toEqual(data);
      expect(read[1]!.body.toString()).toBe("after");
    }
  });

  it("keeps older sparse formats (0.0, 0.1) refused as 'other'", async () => {
    const records = Buffer.concat([
      paxRecord("GNU.sparse.major", "0"),
      paxRecord("GNU.sparse.minor", "1"),
      paxRecord("GNU.sparse.map", "0,4096"),
    ]);
    const pax = Buffer.from(encodeHeader({ ...base, path: "PaxHeaders/x", size: records.length }));
    pax.write("x", Field.typeflag[0], "latin1");
    pax.write(`${headerChecksum(pax).toString(8).padStart(6, "0")}\0 `, Field.checksum[0], "latin1");
    const body = Buffer.concat([records, Buffer.alloc(512 - records.length)]);
    const parts: Buffer[] = [pax, body];
    for await (const part of writeTar([
      { header: { ...base, path: "home/old-sparse", size: 3 }, body: Buffer.from("abc") },
    ]))
      parts.push(part);
    const members: TarHeader[] = [];
    for await (const entry of readTar(Readable.from([Buffer.concat(parts)]))) members.push(entry.header);
    expect(members).toMatchObject([{ path: "home/old-sparse", type: "other", size: 3 }]);
    expect(members[0]!.sparse).toBeUndefined();
  });

  it("refuses a sparse member whose map runs past its body, naming it", async () => {
    const parts: Buffer[] = [];
    for await (const part of writeTar([{ header, body: data }])) parts.push(part);
    const tar = Buffer.concat(parts);
    // The stand-in's size field: shrink the stored size below the map's two blocks.
    const ustarAt = tar.indexOf("GNUSparseFile.0") - (tar.indexOf("GNUSparseFile.0") % 512);
    const patched = Buffer.from(tar);
    patched.write("00000001000\0", ustarAt + Field.size[0], "latin1");
    patched.write(
      `${headerChecksum(patched.subarray(ustarAt, ustarAt + 512))
        .toString(8)
        .padStart(6, "0")}\0 `,
      ustarAt + Field.checksum[0],
      "latin1",
    );
    const reading = (async () => {
      for await (const _ of readTar(Readable.from([patched]))) {
        // nothing
      }
    })();
    await expect(reading).rejects.toThrow(IntegrityError);
    await expect(reading).rejects.toThrow(
      /sparse file home\/looker\/sparse\.bin: its map runs past the member's 512 bytes/,
    );
  });
});
