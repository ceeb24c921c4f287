/**
 * Post-quantum interop with typage (npm age-encryption 0.3), FiloSottile's TypeScript age implementation: what we
 * encrypt to an age1pq1 recipient, typage decrypts byte for byte, and what typage encrypts to one, we decrypt; keys
 * made by either side work on the other. Debian's age 1.1.1 (the one age-interop.test.ts runs) predates
 * post-quantum keys, so typage stands in for age 1.3 here; the CCTV vectors (crypto-cctv.test.ts) pin the format.
 */
import { randomBytes } from "node:crypto";
import { Decrypter, Encrypter, generateHybridIdentity, identityToRecipient } from "age-encryption";
import { describe, expect, it } from "vitest";
import { createAgeEncryptStream, decryptBuffer, encryptBuffer } from "../../src/crypto/age.js";
import {
  generateIdentity,
  generateHybridIdentity as ourHybridIdentity,
  recipientOf,
} from "../../src/crypto/age-keys.js";

/** Around the 64 KiB STREAM chunk: empty, one byte, one short of a chunk, a chunk, one over, two chunks, more. */
const SIZES = [0, 1, 65_535, 65_536, 65_537, 131_072, 200_000];

async function typageEncrypt(plaintext: Uint8Array, recipients: string[]): Promise<Buffer> {
  const encrypter = new Encrypter();
  for (const recipient of recipients) encrypter.addRecipient(recipient);
  return Buffer.from(await encrypter.encrypt(plaintext));
}

async function typageDecrypt(ciphertext: Uint8Array, identities: string[]): Promise<Buffer> {
  const decrypter = new Decrypter();
  for (const identity of identities) decrypter.addIdentity(identity);
  return Buffer.from(await decrypter.decrypt(ciphertext));
}

/** Our encryption as backup runs it: a stream fed in pieces, not one buffer. */
async function ourStreamEncrypt(plaintext: Buffer, recipients: string[]): Promise<Buffer> {
  const stream = createAgeEncryptStream({ recipients });
  const parts: Buffer[] = [];
  stream.on("data", (part: Buffer) => parts.push(part));
  for (let offset = 0; offset < plaintext.length; offset += 50_000)
    stream.write(plaintext.subarray(offset, offset + 50_000));
  stream.end();
  await new Promise((resolve, reject) => stream.on("end", resolve).on("error", reject));
  return Buffer.concat(parts);
}

describe("post-quantum age interop with typage", () => {
  const ours = ourHybridIdentity();

  it.each(SIZES)("typage decrypts what we encrypt to an age1pq1 recipient (%i bytes)", async (size) => {
    const plaintext = randomBytes(size);
    const ciphertext = await ourStreamEncrypt(plaintext, [ours.recipient]);
    expect(ciphertext.subarray(0, 40).toString("latin1")).toMatch(
      /^age-encryption\.org\/v1\n-> mlkem768x25519 /,
    );
    expect((await typageDecrypt(ciphertext, [ours.identity])).equals(plaintext)).toBe(true);
  });

  it.each(SIZES)("we decrypt what typage encrypts to an age1pq1 recipient (%i bytes)", async (size) => {
    const plaintext = randomBytes(size);
    const ciphertext = await typageEncrypt(plaintext, [ours.recipient]);
    expect((await decryptBuffer(ciphertext, { identities: [ours.identity] })).equals(plaintext)).toBe(true);
  });

  it("a typage identity: we derive the same recipient, and files go both ways", async () => {
    const identity = await generateHybridIdentity();
    const recipient = await identityToRecipient(identity);
    expect(identity).toMatch(/^AGE-SECRET-KEY-PQ-1/);
    expect(recipientOf(identity)).toBe(recipient);
    const plaintext = randomBytes(70_000);
    const toTypage = await encryptBuffer(plaintext, { recipients: [recipient] });
    expect((await typageDecrypt(toTypage, [identity])).equals(plaintext)).toBe(true);
    const fromTypage = await typageEncrypt(plaintext, [recipient]);
    expect((await decryptBuffer(fromTypage, { identities: [identity] })).equals(plaintext)).toBe(true);
  });

  it("our identity: typage derives the same recipient, and files go both ways", async () => {
    const identity = ourHybridIdentity();
    expect(await identityToRecipient(identity.identity)).toBe(identity.recipient);
    const plaintext = randomBytes(70_000);
    const fromTypage = await typageEncrypt(plaintext, [identity.recipient]);
    expect((await decryptBuffer(fromTypage, { identities: [identity.identity] })).equals(plaintext)).toBe(
      true,
    );
    const toTypage = await encryptBuffer(plaintext, { recipients: [identity.recipient] });
    expect((await typageDecrypt(toTypage, [identity.identity])).equals(plaintext)).toBe(true);
  });

  it("several PQ recipients: each identity decrypts, on both sides", async () => {
    const others = [ourHybridIdentity(), ourHybridIdentity()];
    const plaintext = randomBytes(1000);
    const recipients = [ours.recipient, ...others.map((other) => other.recipient)];
    const ciphertext = await encryptBuffer(plaintext, { recipients });
    const fromTypage = await typageEncrypt(plaintext, recipients);
    for (const { identity } of others) {
      expect((await typageDecrypt(ciphertext, [identity])).equals(plaintext)).toBe(true);
      expect((await decryptBuffer(fromTypage, { identities: [identity] })).equals(plaintext)).toBe(true);
    }
  });

  it("typage 0.3 encrypts to PQ and X25519 recipients together, which we refuse to write but read", async () => {
    const classic = generateIdentity();
    const plaintext = randomBytes(1000);
    // typage does not enforce age's rule; age 1.3 (and we) refuse to write such a file.
    const mixed = await typageEncrypt(plaintext, [ours.recipient, classic.recipient]);
    expect(() => createAgeEncryptStream({ recipients: [ours.recipient, classic.recipient] })).toThrow(
      /cannot be mixed/,
    );
    for (const identity of [ours.identity, classic.identity]) {
      expect((await decryptBuffer(mixed, { identities: [identity] })).equals(plaintext)).toBe(true);
    }
  });

  it("typage refuses the wrong PQ identity for our file, as we refuse it for typage's", async () => {
    const stranger = ourHybridIdentity();
    const ciphertext = await encryptBuffer(Buffer.from("x"), { recipients: [ours.recipient] });
    await expect(typageDecrypt(ciphertext, [stranger.identity])).rejects.toThrow();
    const fromTypage = await typageEncrypt(Buffer.from("x"), [ours.recipient]);
    await expect(decryptBuffer(fromTypage, { identities: [stranger.identity] })).rejects.toThrow(
      /no identity matched/,
    );
  });
});
