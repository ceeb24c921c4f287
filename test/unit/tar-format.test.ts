import { describe, expect, it } from "vitest";
import {
  encodeEndOfArchive,
  encodeHeader,
  Field,
  formatPaxTime,
  headerChecksum,
  maxOctal,
  paddingFor,
  paxRecord,
  splitUstarPath,
  type TarHeader,
} from "../../src/archive/tar-format.js";
import { LookerBackupError } from "../../src/errors.js";

const base: TarHeader = {
  path: "home/a.txt",
  type: "file",
  size: 5,
  mode: 0o644,
  uid: 1000,
  gid: 100,
  mtime: 1_700_000_000,
};

function field(block: Buffer, [offset, width]: readonly [number, number]): string {
  return block.toString("latin1", offset, offset + width);
}

describe("encodeHeader", () => {
  it("writes a plain POSIX ustar block when everything fits", () => {
    const block = encodeHeader({ ...base, uname: "looker", gname: "staff" });
    expect(block.length).toBe(512);
    expect(field(block, Field.name)).toBe(`home/a.txt${"\0".repeat(90)}`);
    expect(field(block, Field.mode)).toBe("0000644\0");
    expect(field(block, Field.uid)).toBe("0001750\0");
    expect(field(block, Field.gid)).toBe("0000144\0");
    expect(field(block, Field.size)).toBe("00000000005\0");
    expect(field(block, Field.mtime)).toBe(`${(1_700_000_000).toString(8)}\0`);
    expect(field(block, Field.typeflag)).toBe("0");
    expect(field(block, Field.magic)).toBe("ustar\0");
    expect(field(block, Field.version)).toBe("00");
    expect(field(block, Field.uname).replace(/\0+$/, "")).toBe("looker");
    expect(Number.parseInt(field(block, Field.checksum), 8)).toBe(headerChecksum(block));
  });

  it("uses the type flags of POSIX", () => {
    const flag = (header: Partial<TarHeader>) =>
      field(encodeHeader({ ...base, size: 0, ...header }).subarray(-512), Field.typeflag);
    expect(flag({ type: "directory", path: "home/d/" })).toBe("5");
    expect(flag({ type: "symlink", linkTarget: "/etc/x" })).toBe("2");
    expect(flag({ type: "hardlink", linkTarget: "home/b" })).toBe("1");
    expect(flag({ type: "fifo" })).toBe("6");
  });

  it("gives directories their trailing slash", () => {
    const block = encodeHeader({ ...base, path: "home/dir", type: "directory", size: 0 });
    expect(field(block, Field.name).replace(/\0+$/, "")).toBe("home/dir/");
  });

  it("splits paths of up to 255 bytes into ustar prefix and name", () => {
    const path = `home/${"p".repeat(120)}/${"n".repeat(90)}`;
    const block = encodeHeader({ ...base, path });
    expect(block.length).toBe(512);
    expect(field(block, Field.prefix).replace(/\0+$/, "")).toBe(`home/${"p".repeat(120)}`);
    expect(field(block, Field.name).replace(/\0+$/, "")).toBe("n".repeat(90));
    expect(splitUstarPath(`home/${"n".repeat(101)}`)).toBeUndefined();
    expect(splitUstarPath(`${"p".repeat(156)}/name`)).toBeUndefined();
  });

  it("adds a pax header exactly at the ustar limits", () => {
    const paxKeys = (header: Partial<TarHeader>): string[] => {
      const blocks = encodeHeader({ ...base, ...header });
      if (blocks.length === 512) return [];
      expect(field(blocks, Field.typeflag)).toBe("x");
      const size = Number.parseInt(field(blocks, Field.size), 8);
      const keys: string[] = [];
      // Records are length-prefixed; values may hold newlines, so never split on them.
      for (let at = 512; at < 512 + size; ) {
        const text = blocks.toString("latin1", at, at + 20);
        const length = Number(text.split(" ")[0]);
        keys.push(
          blocks
            .toString("latin1", at, at + length)
            .split(" ")[1]!
            .split("=")[0]!,
        );
        at += length;
      }
      return keys;
    };
    expect(paxKeys({ uid: maxOctal(8) })).toEqual([]);
    expect(paxKeys({ uid: maxOctal(8) + 1 })).toEqual(["uid"]);
    expect(paxKeys({ gid: maxOctal(8) + 1 })).toEqual(["gid"]);
    expect(paxKeys({ size: 8 * 1024 ** 3 - 1 })).toEqual([]);
    expect(paxKeys({ size: 8 * 1024 ** 3 })).toEqual(["size"]);
    expect(paxKeys({ mtime: 1.25 })).toEqual(["mtime"]);
    expect(paxKeys({ path: "home/ä" })).toEqual(["path"]);
    expect(paxKeys({ path: "home/a\nb" })).toEqual(["path"]);
    expect(paxKeys({ path: `home/${"a".repeat(100)}` })).toEqual([]);
    expect(paxKeys({ path: `home/${"a".repeat(101)}` })).toEqual(["path"]);
    expect(paxKeys({ path: "a".repeat(100) })).toEqual([]);
    expect(paxKeys({ path: "a".repeat(101) })).toEqual(["path"]);
    expect(paxKeys({ type: "symlink", size: 0, linkTarget: "t".repeat(100) })).toEqual([]);
    expect(paxKeys({ type: "symlink", size: 0, linkTarget: "t".repeat(101) })).toEqual(["linkpath"]);
    expect(paxKeys({ uname: "u".repeat(31) })).toEqual([]);
    expect(paxKeys({ uname: "u".repeat(32) })).toEqual(["uname"]);
    expect(paxKeys({ gname: "gröup" })).toEqual(["gname"]);
  });

  it("keeps ustar fallbacks readable for readers that ignore pax", () => {
    const blocks = encodeHeader({ ...base, path: "home/日本/file", uid: 5_000_000, size: 8 * 1024 ** 3 });
    const ustar = blocks.subarray(-512);
    expect(field(ustar, Field.name).replace(/\0+$/, "")).toMatch(/^home\/_+\/file$/);
    expect(field(ustar, Field.uid)).toBe("0000000\0");
    expect(field(ustar, Field.size)).toBe("00000000000\0");
    expect(Number.parseInt(field(ustar, Field.checksum), 8)).toBe(headerChecksum(ustar));
  });

  it("refuses headers it cannot encode faithfully", () => {
    const bad: Partial<TarHeader>[] = [
      { type: "directory", path: "home/d/", size: 3 },
      { type: "symlink", size: 0 },
      { type: "hardlink", size: 0, linkTarget: "" },
      { type: "other" },
      { path: "" },
      { path: "home/a\0b" },
      { path: "home/\ud800" },
      { uid: -1 },
      { size: 1.5 },
      { mtime: Number.NaN },
    ];
    for (const header of bad) expect(() => encodeHeader({ ...base, ...header })).toThrow(LookerBackupError);
  });
});

describe("pax records", () => {
  it("counts the length digits themselves, across digit-count boundaries", () => {
    for (let valueLength = 80; valueLength < 1010; valueLength += 1) {
      const record = paxRecord("path", "v".repeat(valueLength));
      const declared = Number(record.toString("latin1").split(" ")[0]);
      expect(declared).toBe(record.length);
      expect(record.at(-1)).toBe(0x0a);
    }
  });

  it("counts UTF-8 bytes, not characters", () => {
    const record = paxRecord("path", "日本語");
    expect(Number(record.toString("utf8").split(" ")[0])).toBe(record.length);
  });

  it("formats times without exponents", () => {
    expect(formatPaxTime(1_700_000_000)).toBe("1700000000");
    expect(formatPaxTime(1.5)).toBe("1.5");
    expect(formatPaxTime(1e-7)).toBe("0.0000001");
    expect(formatPaxTime(-2.25)).toBe("-2.25");
    expect(formatPaxTime(1_700_000_000.123)).toBe("1700000000.123");
    const precise = 1_700_000_000.123;
    expect(Number(formatPaxTime(precise))).toBe(precise);
  });
});

describe("padding and end of archive", () => {
  it("pads bodies to whole blocks", () => {
    expect(paddingFor(0)).toBe(0);
    expect(paddingFor(1)).toBe(511);
    expect(paddingFor(512)).toBe(0);
    expect(paddingFor(513)).toBe(511);
    expect(paddingFor(8 * 1024 ** 3 + 1)).toBe(511);
  });

  it("ends with two zero blocks", () => {
    const end = encodeEndOfArchive();
    expect(end.length).toBe(1024);
    expect(end.every((byte) => byte === 0)).toBe(true);
  });
});
