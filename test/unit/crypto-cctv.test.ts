/**
 * The C2SP CCTV age conformance vectors (test/fixtures/cctv-age, see its README) against our decrypter.
 * Every vector of a kind we decrypt must meet its expectation: success with the payload's sha256, or the failure it
 * names, mapped to our AgeIntegrityError's `failure`. For a payload failure, what the stream released before failing
 * must hash to the vector's payload too (only authenticated chunks may come out, and all of those do).
 * Kinds we do not decrypt are listed with the reason, and a vector of an unlisted kind fails the suite: a new kind in
 * an updated copy has to be classified, not silently ignored.
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
const SUPPORTED = ["hybrid", "x25519", "scrypt", "stanza", "stream", "hmac", "header", "empty", "version"];

/** Vector name prefixes we do not decrypt, and why. */
const UNSUPPORTED: Record<string, string> = {
  armor:
    "ASCII-armored input is not supported: backups are written binary, and armored input is refused with a " +
    "hint to use `age -d` (checked below)",
};

const EXPECTED_FAILURE: Record<string, AgeFailure> = {
  "header failure": "header",
  "no match": "no-match",
  "HMAC failure": "hmac",
  "payload failure": "payload",
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
        if (value !== "success" && !(value in EXPECTED_FAILURE) && value !== "armor failure")
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
async function decrypt(vector: Vector, passphrase = vector.passphrases[0]): Promise<Outcome> {
  // A vector without keys fails before keys matter; an identity that matches nothing stands in for "none".
  const identities =
    vector.identities.length === 0 && passphrase === undefined ? [STRANGER] : vector.identities;
  const stream = createAgeDecryptStream({ identities, passphrase });
  const parts: Buffer[] = [];
  stream.on("data", (part: Buffer) => parts.push(part));
  stream.end(vector.file);
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
    expect([ALL.length, RUN.length, SKIPPED.length]).toEqual([143, 110, 33]);
  });

  it.each(RUN.map((vector) => [vector.name, vector] as const))("%s", async (_name, vector) => {
    expect(vector.armored).toBe(false);
    if (vector.passphrases.length > 1) {
      // Our API takes one passphrase: where a vector offers several, each alone must meet a failure expectation.
      expect(vector.expect).not.toBe("success");
      for (const passphrase of vector.passphrases.slice(1)) {
        const { error } = await decrypt(vector, passphrase);
        expect((error as AgeIntegrityError).failure).toBe(EXPECTED_FAILURE[vector.expect]);
      }
    }
    const { released, error } = await decrypt(vector);
    if (vector.expect === "success") {
      expect(error).toBeUndefined();
      expect(sha256(released)).toBe(vector.payload);
      return;
    }
    expect(error, `expected ${vector.expect}, got success`).toBeInstanceOf(AgeIntegrityError);
    expect({
      failure: (error as AgeIntegrityError).failure,
      message: (error as Error).message,
    }).toMatchObject({
      failure: EXPECTED_FAILURE[vector.expect],
    });
    if (vector.expect === "payload failure") {
      // The plaintext that authenticated before the failure, and nothing more, reached the reader.
      expect(sha256(released)).toBe(vector.payload);
    } else {
      expect(released).toHaveLength(0);
    }
  });

  describe.each(Object.entries(UNSUPPORTED))("%s_* vectors are skipped", (kind, reason) => {
    const names = SKIPPED.filter((name) => kindOf(name) === kind);

    it.skip.each(names)(`%s: ${reason}`, () => {});

    it("are refused, never decrypted: each fails in the header, most saying they are armored", async () => {
      let saidArmored = 0;
      for (const name of names) {
        const { released, error } = await decrypt(parseVector(name));
        expect(error, name).toBeInstanceOf(AgeIntegrityError);
        expect((error as AgeIntegrityError).failure, name).toBe("header");
        expect(released, name).toHaveLength(0);
        if (/ASCII-armored/.test((error as Error).message)) saidArmored++;
      }
      // The rest start with whitespace or garbage before the armor, or are not armor at all.
      expect(saidArmored).toBeGreaterThan(names.length / 2);
    });
  });
});
