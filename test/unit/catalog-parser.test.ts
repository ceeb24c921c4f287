import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { type CatalogEntry, CatalogParser, catalogLine } from "../../src/archive/catalog.js";
import { IntegrityError } from "../../src/errors.js";
import { extractMembers, VerifySink } from "../../src/extract/extract.js";
import { buildTar, type RawMember } from "../helpers/archives.js";

const entries: CatalogEntry[] = [
  {
    path: "meta/backup.json",
    type: "file",
    size: 10,
    mode: 0o600,
    uid: 0,
    gid: 0,
    mtime: 1.5,
    sha256: "a".repeat(64),
  },
  { path: "home/", type: "directory", size: 0, mode: 0o755, uid: 1000, gid: 1000, mtime: 2 },
  {
    path: "home/日本語.lkml",
    type: "file",
    size: 3,
    mode: 0o644,
    uid: 1000,
    gid: 1000,
    mtime: 3.25,
    sha256: "b".repeat(64),
  },
  {
    path: "home/link",
    type: "symlink",
    size: 0,
    mode: 0o777,
    uid: 1000,
    gid: 1000,
    mtime: 4,
    linkTarget: "x",
  },
];
const bytes = Buffer.from(entries.map(catalogLine).join(""));

function parse(parts: Buffer[]): Map<string, CatalogEntry> {
  const parser = new CatalogParser();
  for (const part of parts) parser.push(part);
  return parser.end();
}

describe("catalog lines", () => {
  it("are the JSON of the entry, whatever its strings hold", () => {
    const awkward: CatalogEntry[] = [
      ...entries,
      { ...entries[2]!, path: 'home/"quoted"\\back\nline\u0001\u2028.txt', warning: 'it "changed"\n' },
      { ...entries[3]!, type: "hardlink", linkTarget: "home/ü\t", sha256: "c".repeat(64), mtime: -1.25e-7 },
    ];
    for (const entry of awkward) {
      expect(catalogLine(entry)).toMatch(/^\{[^\n]*\}\n$/); // one line
      expect(JSON.parse(catalogLine(entry))).toEqual(entry);
    }
  });
});

describe("catalog parser", () => {
  it("gives the same entries wherever the bytes are cut into parts, multi-byte characters included", () => {
    const whole = parse([bytes]);
    expect([...whole.values()]).toEqual(entries);
    for (let cut = 0; cut <= bytes.length; cut++) {
      expect(parse([bytes.subarray(0, cut), bytes.subarray(cut)])).toEqual(whole);
    }
    const oneByteParts = [...bytes].map((byte) => Buffer.from([byte]));
    expect(parse(oneByteParts)).toEqual(whole);
  });

  it("does not keep views of the parts it was given (they may be freed)", () => {
    const part = Buffer.from(bytes.subarray(0, bytes.length - 5));
    const parser = new CatalogParser();
    parser.push(part);
    part.fill(0);
    parser.push(bytes.subarray(bytes.length - 5));
    expect([...parser.end().values()]).toEqual(entries);
  });

  it("takes a last line without its newline, and names the line of a bad one", () => {
    expect(parse([bytes.subarray(0, bytes.length - 1)]).size).toBe(entries.length);
    const bad = Buffer.concat([bytes, Buffer.from("\n{not json\n")]);
    expect(() => parse([bad])).toThrow(/catalog line 6 is not valid JSON/);
  });

  it("refuses a line over 128 KiB as it arrives, whole or in parts, and quotes none of it", () => {
    const line = Buffer.from(`{"path":"home/${"x".repeat(50 << 20)}"`);
    const parser = new CatalogParser();
    let pushed = 0;
    let refused: unknown;
    try {
      for (let at = 0; at < line.length; at += 65536, pushed++) parser.push(line.subarray(at, at + 65536));
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(IntegrityError);
    expect((refused as Error).message).toBe("catalog line 1 is longer than the limit of 131072 bytes");
    expect(pushed, "refused as soon as the carried part is over the limit").toBe(2);
    const whole = Buffer.concat([bytes, line.subarray(0, 200 << 10), Buffer.from("\n")]);
    expect(() => parse([whole])).toThrow(/^catalog line 5 is longer than the limit of 131072 bytes$/);
    const [within] = parse([
      Buffer.from(catalogLine({ ...entries[2]!, warning: "w".repeat(120 << 10) })),
    ]).values();
    expect(within?.warning).toHaveLength(120 << 10);
  });

  it("refuses a path or link target over 4096 bytes, quoting at most 200 bytes of it", () => {
    const path = `home/${"p".repeat(5000)}`;
    for (const entry of [
      { ...entries[2]!, path },
      { ...entries[3]!, linkTarget: path },
    ]) {
      let refused: unknown;
      try {
        parse([Buffer.from(catalogLine(entry))]);
      } catch (error) {
        refused = error;
      }
      expect(refused).toBeInstanceOf(IntegrityError);
      expect((refused as Error).message).toMatch(
        /^catalog line 1 names a (path|link target) of 5005 bytes, over the limit of 4096$/,
      );
    }
    const duplicate = catalogLine({ ...entries[2]!, path: `home/${"d".repeat(4000)}` });
    expect(() => parse([Buffer.from(duplicate + duplicate)])).toThrow(
      /^catalog lists home\/d{195}\.\.\. twice$/,
    );
  });

  it("refuses a path listed twice", () => {
    const twice = Buffer.concat([bytes, Buffer.from(catalogLine(entries[2]!))]);
    expect(() => parse([twice])).toThrow(IntegrityError);
  });
});

describe("verification against the catalog", () => {
  const members: RawMember[] = [
    { header: { path: "home/", type: "directory", mode: 0o755 } },
    { header: { path: "home/a" }, body: Buffer.from("aa") },
    { header: { path: "home/b" }, body: Buffer.from("bbb") },
    { header: { path: "home/c" }, body: Buffer.from("c") },
  ];
  const verify = async (catalogLines?: (lines: string[]) => string[]) =>
    extractMembers(
      Readable.from([await buildTar(members, { catalog: true, catalogLines })]),
      new VerifySink(),
    );

  it("accepts a catalog in archive order and one in any other order alike", async () => {
    expect((await verify()).members).toBe(5);
    expect((await verify((lines) => [...lines].reverse())).members).toBe(5);
    expect((await verify((lines) => [lines[0]!, lines[3]!, lines[1]!, lines[2]!, lines[4]!])).members).toBe(
      5,
    );
  });

  it("refuses a member that differs after others matched in order, and one the catalog lacks", async () => {
    const changed = (lines: string[]) => lines.map((l) => l.replace('"size":3', '"size":4'));
    await expect(verify(changed)).rejects.toThrow(
      /home\/b does not match the catalog: size 3, catalog says 4/,
    );
    const lacking = (lines: string[]) => lines.filter((l) => !l.includes('"home/c"'));
    await expect(verify(lacking)).rejects.toThrow(/home\/c is not in the catalog/);
    const extra = (lines: string[]) => [...lines, lines[4]!.replace('"home/c"', '"home/d"')];
    await expect(verify(extra)).rejects.toThrow(/catalog lists home\/d but the archive has no such member/);
  });
});

describe("limits on what restore holds per member", () => {
  const members: RawMember[] = [
    { header: { path: "home/", type: "directory", mode: 0o755 } },
    { header: { path: "home/a" }, body: Buffer.from("aa") },
    { header: { path: "home/bb/ccc/dddd/e", type: "symlink", linkTarget: "../x" } },
  ];
  // backup.json, the three members and the catalog; paths and the link target are 67 bytes in all.
  const verify = async (limits: { members?: number; pathBytes?: number; treePaths?: number }) =>
    extractMembers(Readable.from([await buildTar(members, { catalog: true })]), new VerifySink(), undefined, {
      limits,
    });

  it("refuses more members than the limit, naming it, and takes exactly the limit", async () => {
    await expect(verify({ members: 3 })).rejects.toThrow(/^the archive has more than 3 members, the limit$/);
    await expect(verify({ members: 3 })).rejects.toBeInstanceOf(IntegrityError);
    expect((await verify({ members: 4 })).members).toBe(4);
  });

  it("refuses more path bytes than the limit in all, link targets included", async () => {
    await expect(verify({ pathBytes: 66 })).rejects.toThrow(
      /^the archive's member paths exceed the limit of 66 bytes in all \(at member 5\)$/,
    );
    expect((await verify({ pathBytes: 67 })).members).toBe(4);
  });

  it("counts the directories a member implies against the tree's limit", async () => {
    // meta, meta/backup.json, home, home/a, home/bb, home/bb/ccc, home/bb/ccc/dddd, home/bb/ccc/dddd/e, catalog.
    await expect(verify({ treePaths: 8 })).rejects.toThrow(/^the archive's tree has more than 8 paths/);
    expect((await verify({ treePaths: 9 })).members).toBe(4);
  });

  it("refuses a catalog listing more entries or path bytes than the limits", () => {
    const parse = (limits: { maxEntries?: number; maxPathBytes?: number }) => {
      const parser = new CatalogParser(undefined, limits);
      parser.push(bytes);
      return parser.end();
    };
    expect(() => parse({ maxEntries: 3 })).toThrow(/^the catalog lists more than 3 members, the limit$/);
    expect(parse({ maxEntries: 4 }).size).toBe(4);
    const pathBytes = entries.reduce(
      (sum, e) => sum + Buffer.byteLength(e.path) + Buffer.byteLength(e.linkTarget ?? ""),
      0,
    );
    expect(() => parse({ maxPathBytes: pathBytes - 1 })).toThrow(/^the catalog's paths exceed the limit/);
    expect(parse({ maxPathBytes: pathBytes }).size).toBe(4);
  });
});
