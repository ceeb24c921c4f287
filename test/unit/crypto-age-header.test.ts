import { describe, expect, it } from "vitest";
import {
  HeaderReader,
  MAX_HEADER_BYTES,
  parseHeader,
  serializeHeader,
  verifyHeaderMac,
} from "../../src/crypto/age-header.js";
import { IntegrityError } from "../../src/errors.js";

const FILE_KEY = Buffer.alloc(16, 7);

function expectIntegrityError(action: () => unknown, message: RegExp): void {
  let caught: unknown;
  try {
    action();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(IntegrityError);
  expect((caught as Error).message).toMatch(message);
}

const STANZAS = [
  { type: "X25519", args: ["c2hhcmU"], body: Buffer.alloc(32, 1) },
  { type: "empty-body", args: [], body: Buffer.alloc(0) },
  { type: "exactly-one-line", args: ["a", "b"], body: Buffer.alloc(48, 2) }, // 64 columns: needs an empty last line
  { type: "two-lines", args: ["x"], body: Buffer.alloc(60, 3) },
];

describe("age header", () => {
  it("serializes with 64-column bodies and parses back to the same stanzas", () => {
    const header = serializeHeader(STANZAS, FILE_KEY);
    const lines = header.toString("latin1").split("\n");
    expect(lines[0]).toBe("age-encryption.org/v1");
    expect(lines[1]).toBe("-> X25519 c2hhcmU");
    expect(lines[3]).toBe("-> empty-body");
    expect(lines[4]).toBe("");
    expect(lines[6]).toHaveLength(64);
    expect(lines[7]).toBe("");
    expect(lines.at(-2)).toMatch(/^--- [A-Za-z0-9+/]{43}$/);

    const parsed = parseHeader(header);
    expect(parsed.stanzas.map((stanza) => [stanza.type, stanza.args, stanza.body.toString("hex")])).toEqual(
      STANZAS.map((stanza) => [stanza.type, stanza.args, stanza.body.toString("hex")]),
    );
    expect(parsed.macInput.toString("latin1").endsWith("\n---")).toBe(true);
    verifyHeaderMac(parsed, FILE_KEY);
    expectIntegrityError(() => verifyHeaderMac(parsed, Buffer.alloc(16, 8)), /MAC mismatch/);
  });

  it("rejects non-canonical base64, long lines, empty arguments and unknown lines", () => {
    const good = serializeHeader([{ type: "t", args: [], body: Buffer.from([0xff]) }], FILE_KEY).toString(
      "latin1",
    );
    expect(good).toContain("\n/w\n");
    const variants: [string, RegExp][] = [
      [good.replace("\n/w\n", "\n/x\n"), /not canonical base64/], // unused bits set
      [good.replace("\n/w\n", "\n/w==\n"), /not canonical base64/], // padding
      [good.replace("\n/w\n", `\n${"A".repeat(65)}\n`), /longer than 64 columns/],
      [good.replace("-> t", "->  t"), /invalid stanza arguments/],
      [good.replace("-> t", "-> t\t"), /invalid stanza arguments/],
      [good.replace("-> t", "-- t"), /unexpected line/],
      [good.replace("age-encryption.org/v1", "age-encryption.org/v2"), /first line/],
      [good.replace(/--- (.*)\n$/, "--- $1A\n"), /invalid MAC line/],
      [good.replace(/--- (.*)\n$/, "---$1\n"), /invalid MAC line/],
    ];
    for (const [text, message] of variants) {
      expectIntegrityError(() => parseHeader(Buffer.from(text, "latin1")), message);
    }
  });

  it("reads a header delivered one byte at a time and returns the bytes after it", () => {
    const header = serializeHeader(STANZAS, FILE_KEY);
    const input = Buffer.concat([header, Buffer.from("payload")]);
    const reader = new HeaderReader();
    let result: ReturnType<HeaderReader["push"]>;
    let index = 0;
    do {
      result = reader.push(input.subarray(index, index + 1));
      index++;
    } while (result === undefined && index < input.length);
    expect(index).toBe(header.length);
    expect(result?.header.stanzas).toHaveLength(STANZAS.length);
    const rest = Buffer.concat([result!.rest, input.subarray(index)]);
    expect(rest.toString()).toBe("payload");
  });

  it("fails fast on input that is not age, and explains armor", () => {
    expectIntegrityError(
      () => new HeaderReader().push(Buffer.from("\x28\xb5\x2f\xfd zstd frame")),
      /not an age v1 file/,
    );
    let caught: unknown;
    try {
      new HeaderReader().push(Buffer.from("-----BEGIN AGE ENCRYPTED FILE-----\n"));
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(IntegrityError);
    expect((caught as IntegrityError).hint).toContain("-a");
  });

  it("bounds how much it buffers while looking for the header end", () => {
    const reader = new HeaderReader();
    expect(reader.push(Buffer.from("age-encryption.org/v1\n"))).toBeUndefined();
    const block = Buffer.alloc(64 * 1024, "A");
    let caught: unknown;
    let pushed = 0;
    try {
      while (pushed <= 2 * MAX_HEADER_BYTES) {
        reader.push(block);
        pushed += block.length;
      }
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(IntegrityError);
    expect(pushed).toBeLessThanOrEqual(MAX_HEADER_BYTES + block.length);
  });

  it("reports empty and truncated input at end", () => {
    expectIntegrityError(() => new HeaderReader().end(), /empty/);
    const reader = new HeaderReader();
    reader.push(Buffer.from("age-encryption.org/v1\n-> X25519 abc\n"));
    expectIntegrityError(() => reader.end(), /truncated/);
  });
});
