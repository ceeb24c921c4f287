import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  isByteName,
  isPlainName,
  nameByteLength,
  nameBytes,
  nameFromBytes,
  printableName,
} from "../../src/runtime/byte-names.js";

describe("names as bytes", () => {
  it("gives every byte string back exactly, whatever it holds", () => {
    // Random bytes are mostly not UTF-8; mixing in valid multi-byte sequences exercises the boundaries between them.
    const pieces = [
      Buffer.from("é"),
      Buffer.from("日本"),
      Buffer.from("💀"),
      Buffer.from([0xed, 0xa0, 0x80]),
    ];
    for (let i = 0; i < 3000; i++) {
      const parts: Buffer[] = [randomBytes(i % 17)];
      if (i % 3 === 0) parts.push(pieces[i % pieces.length] as Buffer, randomBytes(i % 5));
      const bytes = Buffer.concat(parts);
      const name = nameFromBytes(bytes);
      expect(nameBytes(name)).toEqual(bytes);
      expect(nameByteLength(name)).toBe(bytes.length);
      expect(isByteName(name)).toBe(true);
      expect(nameFromBytes(nameBytes(name))).toBe(name);
    }
  });

  it("leaves valid UTF-8 as the plain string, and escapes only the stray bytes", () => {
    expect(nameFromBytes(Buffer.from("modèles/日本語 💀.txt"))).toBe("modèles/日本語 💀.txt");
    expect(isPlainName("modèles/💀")).toBe(true);
    const latin1 = nameFromBytes(Buffer.from([0x63, 0x61, 0x66, 0xe9])); // "café" in Latin-1
    expect(isPlainName(latin1)).toBe(false);
    expect(latin1).toBe("caf\udce9");
    // A surrogate encoded as UTF-8 (CESU) is not UTF-8: three stray bytes, not one character.
    expect(nameFromBytes(Buffer.from([0x61, 0xed, 0xa0, 0x80]))).toBe("a\udced\udca0\udc80");
    // Overlong "/" (C0 AF) must not turn into a path separator.
    expect(nameFromBytes(Buffer.from([0xc0, 0xaf]))).toBe("\udcc0\udcaf");
  });

  it("prints stray bytes as \\xNN and leaves real characters alone", () => {
    expect(printableName(nameFromBytes(Buffer.from("bad-\xff\xfe-name", "latin1")))).toBe(
      "bad-\\xff\\xfe-name",
    );
    // U+1F480's low surrogate (\udc80) is in the escape range, but it is half of a real pair.
    expect(printableName("💀\udc80")).toBe("💀\\x80");
  });

  it("refuses lone surrogates that stand for no byte", () => {
    for (const name of ["a\ud800", "a\udc10b", "\udfff", "x\ud83d"]) {
      expect(isByteName(name)).toBe(false);
      expect(() => nameBytes(name)).toThrow(/lone UTF-16 surrogate/);
    }
  });
});
