/**
 * The C2SP CCTV age conformance vectors (test/fixtures/cctv-age, see its README) against our decrypter.
 * Every vector of a kind we decrypt must meet its expectation: success with the payload's sha256, or the failure it
 * names, mapped to our AgeIntegrityError's `failure`. For a payload failure, what the stream released before failing
 * must hash to the vector's payload too (only authenticated chunks may come out, and all of those do).
 * Kinds we do not decrypt would be listed with the reason (none are), and a vector of an unlisted kind fails the
 * suite: a new kind in an updated copy has to be classified, not silently ignored.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { finished } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { inflateSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { createAgeDecryptStream } from "../../src/crypto/age.js";
import { type AgeFailure, AgeIntegrityError } from "../../src/crypto/age-errors.js";
import { generateIdentity } from "../../src/crypto/age-keys.js";

const DIR = fileURLToPath(new URL("../fixtures/cctv-age/testdata/", import.meta.url));

/** Vector name prefixes we decrypt; a name is a prefix followed by nothing or by "_...". */
const SUPPORTED = [
  "hybrid",
  "x25519",
  "scrypt",
  "stanza",
  "stream",
  "hmac",
  "header",
  "empty",
  "version",
  "armor",
];

/** Vector name prefixes we do not decrypt, and why (none at this copy's commit: every kind is read). */
const UNSUPPORTED: Record<string, string> = {};

/**
 * Vectors whose failure we report at another stage than the vector names, and why. The vectors hand armored files to
 * an armor reader; we detect armor as the age CLI does, by the input's first non-whitespace bytes.
 */
const OTHER_STAGE: Record<string, { failure: AgeFailure; reason: string }> = {
  armor_garbage_leading: {
    failure: "header",
    reason: "garbage before the BEGIN line means the input is not armor at all: refused as not an age file",
  },
};

const EXPECTED_FAILURE: Record<string, AgeFailure> = {
  "header failure": "header",
  "no match": "no-match",
  "HMAC failure": "hmac",
  "payload failure": "payload",
  "armor failure": "armor",
};

interface Vector {
  readonly name: string;
  readonly expect: string;
  readonly payload: string | undefined;
  readonly identities: string[];
  readonly passphrases: string[];
  readonly armored: boolean;
  readonly file: Buffer;
}

function parseVector(name: string): Vector {
  const bytes = readFileSync(`${DIR}${name}`);
  const vector = { name, expect: "", payload: undefined as string | undefined, armored: false };
  const identities: string[] = [];
  const passphrases: string[] = [];
  let compressed = false;
  let offset = 0;
  for (;;) {
    const end = bytes.indexOf(0x0a, offset);
    if (end < 0) throw new Error(`${name}: no empty line after the vector header`);
    const line = bytes.subarray(offset, end).toString("utf8");
    offset = end + 1;
    if (line === "") break;
    const separator = line.indexOf(": ");
    const [key, value] = separator < 0 ? [line, ""] : [line.slice(0, separator), line.slice(separator + 2)];
    switch (key) {
      case "expect":
        if (value !== "success" && !(value in EXPECTED_FAILURE))
          throw new Error(`${name}: unknown expect value "${value}"`);
        vector.expect = value;
        break;
      case "payload":
        vector.payload = value;
        break;
      case "identity":
        identities.push(value);
        break;
      case "passphrase":
        passphrases.push(value);
        break;
      case "armored":
        vector.armored = value === "yes";
        break;
      case "compressed":
        if (value !== "zlib") throw new Error(`${name}: unknown compression "${value}"`);
        compressed = true;
        break;
      case "file key":
      case "comment":
        break;
      default:
        // The format says vectors with unknown keys should be ignored; failing instead makes an update visible.
        throw new Error(`${name}: unknown vector header key "${key}"`);
    }
  }
  const file = bytes.subarray(offset);
  return { ...vector, identities, passphrases, file: compressed ? inflateSync(file) : file };
}

function kindOf(name: string): string {
  return name.split("_")[0]!;
}

const ALL = readdirSync(DIR).sort();
const RUN = ALL.filter((name) => SUPPORTED.includes(kindOf(name))).map(parseVector);
const SKIPPED = ALL.filter((name) => kindOf(name) in UNSUPPORTED);

interface Outcome {
  /** Everything the decrypt stream released, even when it then failed. */
  readonly released: Buffer;
  readonly error: unknown;
}

/** Decrypts as restore does, through the stream, keeping what comes out before an error. */
async function decrypt(
  vector: Vector,
  passphrase = vector.passphrases[0],
  pieceSize?: number,
): Promise<Outcome> {
  // A vector without keys fails before keys matter; an identity that matches nothing stands in for "none".
  const identities =
    vector.identities.length === 0 && passphrase === undefined ? [STRANGER] : vector.identities;
  const stream = createAgeDecryptStream({ identities, passphrase });
  const parts: Buffer[] = [];
  stream.on("data", (part: Buffer) => parts.push(part));
  stream.on("error", () => {}); // reported through finished() below
  if (pieceSize !== undefined) {
    for (let offset = 0; offset < vector.file.length && !stream.destroyed; offset += pieceSize)
      stream.write(vector.file.subarray(offset, offset + pieceSize));
  }
  stream.end(pieceSize === undefined ? vector.file : undefined);
  const error = await finished(stream).then(
    () => undefined,
    (reason: unknown) => reason,
  );
  return { released: Buffer.concat(parts), error };
}

const STRANGER = generateIdentity().identity;

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

describe("C2SP CCTV age vectors", () => {
  it("classifies every vector: run, or skipped with a reason", () => {
    const unclassified = ALL.filter(
      (name) => !SUPPORTED.includes(kindOf(name)) && !(kindOf(name) in UNSUPPORTED),
    );
    expect(unclassified).toEqual([]);
    expect(RUN.length + SKIPPED.length).toBe(ALL.length);
    // The copy holds the whole of CCTV's age/testdata at the commit named in its README.
    expect([ALL.length, RUN.length, SKIPPED.length]).toEqual([143, 143, 0]);
  });

  it.each(RUN.map((vector) => [vector.name, vector] as const))("%s", async (_name, vector) => {
    if (vector.passphrases.length > 1) {
      // Our API takes one passphrase: where a vector offers several, each alone must meet a failure expectation.
      expect(vector.expect).not.toBe("success");
      for (const passphrase of vector.passphrases.slice(1)) {
        const { error } = await decrypt(vector, passphrase);
        expect((error as AgeIntegrityError).failure).toBe(EXPECTED_FAILURE[vector.expect]);
      }
    }
    // Armor is decoded line by line across chunks: armored vectors also arrive in pieces that split lines.
    const pieceSizes = vector.armored ? [undefined, 1, 5, 64] : [undefined];
    for (const pieceSize of pieceSizes) {
      const { released, error } = await decrypt(vector, vector.passphrases[0], pieceSize);
      if (vector.expect === "success") {
        expect(error).toBeUndefined();
        expect(sha256(released)).toBe(vector.payload);
        continue;
      }
      expect(error, `expected ${vector.expect}, got success`).toBeInstanceOf(AgeIntegrityError);
      expect({
        failure: (error as AgeIntegrityError).failure,
        message: (error as Error).message,
      }).toMatchObject({
        failure: OTHER_STAGE[vector.name]?.failure ?? EXPECTED_FAILURE[vector.expect],
      });
      // The plaintext that authenticated before a failure, and nothing more, reached the reader (a payload failure
      // names its hash; before the payload, nothing may come out).
      if (vector.payload !== undefined) expect(sha256(released)).toBe(vector.payload);
      else expect(released).toHaveLength(0);
    }
  });

  for (const [kind, reason] of Object.entries(UNSUPPORTED)) {
    it.skip.each(SKIPPED.filter((name) => kindOf(name) === kind))(`%s: ${reason}`, () => {});
  }
});
