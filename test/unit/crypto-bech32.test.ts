import { describe, expect, it } from "vitest";
import { recipientOf } from "../../src/crypto/age-keys.js";
import {
  bech32Decode,
  bech32Encode,
  decodeBech32Bytes,
  encodeBech32Bytes,
  fromWords,
  toWords,
} from "../../src/crypto/bech32.js";

// BIP173 test vectors (https://github.com/bitcoin/bips/blob/master/bip-0173.mediawiki#test-vectors).
const VALID = [
  "A12UEL5L",
  "a12uel5l",
  "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
  "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
  `11${"q".repeat(82)}c8247j`,
  "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
  "?1ezyfcl",
];
const INVALID = [
  "\x201nwldj5", // hrp character out of range
  "\x7f1axkwrx",
  "pzry9x0s0muk", // no separator
  "1pzry9x0s0muk", // empty hrp
  "x1b4n0q5v", // invalid data character
  "li1dgmt3", // too short checksum
  "de1lg7wt\xff", // invalid character in checksum
  "A1G7SGD8", // checksum calculated with upper-case hrp
  "10a06t8", // empty hrp
  "1qzzfhee", // empty hrp
  "A12uEL5L", // mixed case
  "a1lqfn3a", // valid bech32m (BIP350), which age does not use
];

// A key pair made by age-keygen 1.1.1.
const AGE_KEYGEN_IDENTITY = "AGE-SECRET-KEY-1KXJ9KALZU2Y76DJPJETDVD0XCVEKNE5808USWJ4533WJ3VT50RQQH3Q94C";
const AGE_KEYGEN_RECIPIENT = "age1elh2p74p4gpn2krl9u03kdwksq2mha65latewr9tqm65qr277f5qgzdasg";

describe("bech32", () => {
  it.each(VALID)("accepts the BIP173 vector %s and re-encodes it", (text) => {
    const decoded = bech32Decode(text);
    expect(decoded).toBeDefined();
    expect(bech32Encode(decoded!.hrp, decoded!.words)).toBe(text.toLowerCase());
  });

  it.each(INVALID)("rejects the invalid string %j", (text) => {
    expect(bech32Decode(text)).toBeUndefined();
  });

  it("round-trips bytes past the BIP173 90-character limit", () => {
    const bytes = Buffer.from(Array.from({ length: 100 }, (_, index) => (index * 37) & 0xff));
    const text = encodeBech32Bytes("age-secret-key-", bytes);
    expect(text.length).toBeGreaterThan(90);
    const decoded = decodeBech32Bytes(text.toUpperCase());
    expect(decoded?.hrp).toBe("age-secret-key-");
    expect(decoded?.bytes.equals(bytes)).toBe(true);
  });

  it("rejects non-canonical padding when converting words to bytes", () => {
    expect(fromWords([0, 0])).toEqual(Buffer.from([0]));
    expect(fromWords([0, 1])).toBeUndefined(); // leftover bits are not zero
    expect(fromWords([0])).toBeUndefined(); // 5 bits cannot hold a byte, and are too many to be padding
    expect(toWords(Buffer.from([0xff]))).toEqual([31, 28]);
  });

  it("detects a single changed character in an age recipient", () => {
    const altered = `${AGE_KEYGEN_RECIPIENT.slice(0, 10)}${AGE_KEYGEN_RECIPIENT[10] === "q" ? "p" : "q"}${AGE_KEYGEN_RECIPIENT.slice(11)}`;
    expect(decodeBech32Bytes(AGE_KEYGEN_RECIPIENT)?.bytes.length).toBe(32);
    expect(decodeBech32Bytes(altered)).toBeUndefined();
  });

  it("derives age-keygen's recipient from its identity", () => {
    expect(recipientOf(AGE_KEYGEN_IDENTITY)).toBe(AGE_KEYGEN_RECIPIENT);
  });

  it("matches the RFC 7748 X25519 vector through age's encodings", () => {
    const alicePrivate = Buffer.from(
      "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
      "hex",
    );
    const alicePublic = Buffer.from(
      "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
      "hex",
    );
    const identity = encodeBech32Bytes("age-secret-key-", alicePrivate).toUpperCase();
    expect(recipientOf(identity)).toBe(encodeBech32Bytes("age", alicePublic));
  });
});
