import { createCipheriv, randomBytes } from "node:crypto";
import { Readable, type Transform, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import {
  createAgeDecryptStream,
  createAgeEncryptStream,
  decryptBuffer,
  encryptBuffer,
} from "../../src/crypto/age.js";
import type { AgeIntegrityError } from "../../src/crypto/age-errors.js";
import { createHeader } from "../../src/crypto/age-file-key.js";
import { parseHeader, type Stanza, serializeHeader } from "../../src/crypto/age-header.js";
import { generateHybridIdentity, generateIdentity, parseRecipient } from "../../src/crypto/age-keys.js";
import { CIPHERTEXT_CHUNK_SIZE, PLAINTEXT_CHUNK_SIZE, payloadKey } from "../../src/crypto/age-stream.js";
import { InputError, IntegrityError } from "../../src/errors.js";

const KEY = generateIdentity();
const OTHER = generateIdentity();
const PQ = generateHybridIdentity();
const PQ_OTHER = generateHybridIdentity();
const CHUNK = PLAINTEXT_CHUNK_SIZE;

/** Streams `input` through `stream` in pieces of the given sizes (cycled), collecting the output. */
async function through(
  stream: Transform,
  input: Buffer,
  pieceSizes: number[] = [input.length || 1],
): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for (let offset = 0, index = 0; offset < input.length; index++) {
    const size = pieceSizes[index % pieceSizes.length]!;
    pieces.push(input.subarray(offset, offset + size));
    offset += size;
  }
  const output: Buffer[] = [];
  await pipeline(
    Readable.from(pieces),
    stream,
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        output.push(chunk);
        callback();
      },
    }),
  );
  return Buffer.concat(output);
}

function headerLength(ciphertext: Buffer): number {
  return ciphertext.indexOf("\n", ciphertext.indexOf("\n---") + 1) + 1;
}

async function expectRejection(
  promise: Promise<unknown>,
  type: typeof IntegrityError | typeof InputError,
  message?: RegExp,
) {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(type);
  if (message) expect((error as Error).message).toMatch(message);
  return error as IntegrityError;
}

const decryptWithKey = (ciphertext: Buffer) => decryptBuffer(ciphertext, { identities: [KEY.identity] });

describe("age encryption round trip", () => {
  it.each([0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 5])(
    "round-trips %i bytes with age's chunk layout",
    async (size) => {
      const plaintext = randomBytes(size);
      const ciphertext = await encryptBuffer(plaintext, { recipients: [KEY.recipient] });
      const chunks = Math.max(1, Math.ceil(size / CHUNK));
      expect(ciphertext.length - headerLength(ciphertext)).toBe(16 + size + 16 * chunks);
      expect((await decryptWithKey(ciphertext)).equals(plaintext)).toBe(true);
    },
  );

  it("gives the same result whatever the write sizes on both sides", async () => {
    const plaintext = randomBytes(5 * CHUNK + 1234);
    const ciphertext = await through(createAgeEncryptStream({ recipients: [KEY.recipient] }), plaintext, [
      1,
      7,
      CHUNK - 8,
      CHUNK,
      3 * CHUNK + 17,
      100_000,
    ]);
    for (const sizes of [[1, 3, 5000], [CIPHERTEXT_CHUNK_SIZE], [CIPHERTEXT_CHUNK_SIZE + 1, 13], [1 << 20]]) {
      const decrypted = await through(
        createAgeDecryptStream({ identities: [KEY.identity] }),
        ciphertext,
        sizes,
      );
      expect(decrypted.equals(plaintext)).toBe(true);
    }
  });

  it("writes one X25519 stanza per recipient; each identity decrypts", async () => {
    const plaintext = Buffer.from("two recipients");
    const ciphertext = await encryptBuffer(plaintext, { recipients: [KEY.recipient, OTHER.recipient] });
    const header = parseHeader(ciphertext.subarray(0, headerLength(ciphertext)));
    expect(header.stanzas.map((stanza) => stanza.type)).toEqual(["X25519", "X25519"]);
    expect((await decryptBuffer(ciphertext, { identities: [OTHER.identity] })).equals(plaintext)).toBe(true);
    const identityFile = `# two keys\n${generateIdentity().identity}\n${KEY.identity}\n`;
    expect((await decryptBuffer(ciphertext, { identities: [identityFile] })).equals(plaintext)).toBe(true);
  });

  it("ignores unknown stanzas (grease) as age does", async () => {
    const { header, fileKey } = await createHeader({ recipients: [parseRecipient(KEY.recipient)] });
    const parsed = parseHeader(header);
    const greased = serializeHeader(
      [{ type: "x-grease", args: ["a", "b"], body: randomBytes(70) }, ...parsed.stanzas],
      fileKey,
    );
    const nonce = randomBytes(16);
    const lastChunk = sealChunk(payloadKey(fileKey, nonce), 0, true, Buffer.from("greased"));
    const plaintext = await decryptWithKey(Buffer.concat([greased, nonce, lastChunk]));
    expect(plaintext.toString()).toBe("greased");
  });
});

function sealChunk(key: Buffer, counter: number, last: boolean, plaintext: Buffer): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeUIntBE(counter, 5, 6);
  nonce[11] = last ? 1 : 0;
  const cipher = createCipheriv("chacha20-poly1305", key, nonce, { authTagLength: 16 });
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

describe("age decryption rejects damaged input", () => {
  it("rejects every single-byte change of a small file with an IntegrityError", async () => {
    const ciphertext = await encryptBuffer(randomBytes(100), { recipients: [KEY.recipient] });
    for (let index = 0; index < ciphertext.length; index++) {
      const damaged = Buffer.from(ciphertext);
      damaged[index]! ^= 0x01;
      await expectRejection(decryptWithKey(damaged), IntegrityError);
    }
  });

  it("rejects changes across a multi-chunk payload, tags included", async () => {
    const ciphertext = await encryptBuffer(randomBytes(3 * CHUNK + 10), { recipients: [KEY.recipient] });
    const payloadStart = headerLength(ciphertext) + 16;
    const offsets = [payloadStart, payloadStart + CHUNK, payloadStart + CIPHERTEXT_CHUNK_SIZE - 1];
    offsets.push(payloadStart + 2 * CIPHERTEXT_CHUNK_SIZE + 5, ciphertext.length - 1);
    for (const offset of offsets) {
      const damaged = Buffer.from(ciphertext);
      damaged[offset]! ^= 0x80;
      await expectRejection(decryptWithKey(damaged), IntegrityError, /failed authentication/);
    }
  });

  it("detects truncation at any depth", async () => {
    const ciphertext = await encryptBuffer(randomBytes(2 * CHUNK + 100), { recipients: [KEY.recipient] });
    const header = headerLength(ciphertext);
    const cuts: [number, RegExp][] = [
      [0, /empty/],
      [10, /truncated/],
      [header - 1, /truncated/],
      [header, /before the payload nonce/],
      [header + 8, /before the payload nonce/],
      [header + 16, /payload is missing/],
      [header + 16 + 10, /truncated/],
      // Cut at a chunk boundary: the chunks that authenticate are whole, and the final one is missing.
      [header + 16 + CIPHERTEXT_CHUNK_SIZE, /ends after chunk 0 without a final chunk/],
      [header + 16 + 2 * CIPHERTEXT_CHUNK_SIZE, /ends after chunk 1 without a final chunk/],
      [ciphertext.length - 1, /final chunk failed authentication/],
    ];
    for (const [length, message] of cuts) {
      await expectRejection(decryptWithKey(ciphertext.subarray(0, length)), IntegrityError, message);
    }
  });

  it("rejects trailing data and reordered chunks", async () => {
    const ciphertext = await encryptBuffer(randomBytes(3 * CHUNK), { recipients: [KEY.recipient] });
    await expectRejection(
      decryptWithKey(Buffer.concat([ciphertext, Buffer.from([0])])),
      IntegrityError,
      /data after its final chunk 2/,
    );
    await expectRejection(
      decryptWithKey(Buffer.concat([ciphertext, ciphertext.subarray(-20)])),
      IntegrityError,
    );
    const start = headerLength(ciphertext) + 16;
    const chunk = (index: number) =>
      ciphertext.subarray(start + index * CIPHERTEXT_CHUNK_SIZE, start + (index + 1) * CIPHERTEXT_CHUNK_SIZE);
    const swapped = Buffer.concat([ciphertext.subarray(0, start), chunk(1), chunk(0), chunk(2)]);
    await expectRejection(decryptWithKey(swapped), IntegrityError, /chunk 0 failed authentication/);
  });

  it("rejects an empty final chunk after a full one, but accepts a lone empty chunk", async () => {
    const { header, fileKey } = await createHeader({ recipients: [parseRecipient(KEY.recipient)] });
    const nonce = randomBytes(16);
    const key = payloadKey(fileKey, nonce);
    const lone = Buffer.concat([header, nonce, sealChunk(key, 0, true, Buffer.alloc(0))]);
    expect(await decryptWithKey(lone)).toHaveLength(0);
    const full = sealChunk(key, 0, false, randomBytes(CHUNK));
    const emptyAfterFull = Buffer.concat([header, nonce, full, sealChunk(key, 1, true, Buffer.alloc(0))]);
    await expectRejection(decryptWithKey(emptyAfterFull), IntegrityError, /empty final chunk/);
    const shortNonLast = Buffer.concat([header, nonce, sealChunk(key, 0, false, Buffer.alloc(10))]);
    await expectRejection(decryptWithKey(shortNonLast), IntegrityError, /final chunk failed authentication/);
  });

  it("says no identity matched when the key is wrong", async () => {
    const ciphertext = await encryptBuffer(Buffer.from("x"), { recipients: [KEY.recipient] });
    const error = await expectRejection(
      decryptBuffer(ciphertext, { identities: [OTHER.identity] }),
      IntegrityError,
      /no identity matched/,
    );
    expect(error.hint).toContain("recipient");
  });

  it("surfaces errors as stream errors of the typed classes", async () => {
    const ciphertext = await encryptBuffer(randomBytes(CHUNK * 2), { recipients: [KEY.recipient] });
    ciphertext[ciphertext.length - 100]! ^= 1;
    const stream = createAgeDecryptStream({ identities: [KEY.identity] });
    await expectRejection(through(stream, ciphertext, [4096]), IntegrityError);
    expect(stream.destroyed).toBe(true);
  });
});

describe("age passphrase (scrypt)", () => {
  it("round-trips with a low work factor and rejects a wrong passphrase", async () => {
    const plaintext = randomBytes(CHUNK + 3);
    const ciphertext = await encryptBuffer(plaintext, {
      recipients: [],
      passphrase: "correct horse",
      scryptLogN: 10,
    });
    const header = parseHeader(ciphertext.subarray(0, headerLength(ciphertext)));
    expect(header.stanzas).toHaveLength(1);
    expect(header.stanzas[0]?.type).toBe("scrypt");
    expect(header.stanzas[0]?.args[1]).toBe("10");
    const decrypted = await decryptBuffer(ciphertext, { identities: [], passphrase: "correct horse" });
    expect(decrypted.equals(plaintext)).toBe(true);
    await expectRejection(
      decryptBuffer(ciphertext, { identities: [], passphrase: "wrong" }),
      IntegrityError,
      /incorrect passphrase/,
    );
    await expectRejection(decryptWithKey(ciphertext), InputError, /encrypted with a passphrase/);
  });

  it("writes and reads age's default work factor 2^18", async () => {
    const ciphertext = await encryptBuffer(Buffer.from("default"), { recipients: [], passphrase: "pw" });
    expect(ciphertext.toString("latin1")).toMatch(/\n-> scrypt [A-Za-z0-9+/]{22} 18\n/);
    expect((await decryptBuffer(ciphertext, { identities: [], passphrase: "pw" })).toString()).toBe(
      "default",
    );
  });

  it("refuses excessive work factors and scrypt next to other stanzas", async () => {
    const { header, fileKey } = await createHeader({ passphrase: "pw", logN: 4 });
    const scrypt = parseHeader(header).stanzas[0]!;
    const nonce = randomBytes(16);
    const body = sealChunk(payloadKey(fileKey, nonce), 0, true, Buffer.from("x"));
    const costly = serializeHeader([{ ...scrypt, args: [scrypt.args[0]!, "23"] }], fileKey);
    await expectRejection(
      decryptBuffer(Buffer.concat([costly, nonce, body]), { identities: [], passphrase: "pw" }),
      IntegrityError,
      /work factor 2\^23 exceeds/,
    );
    const leadingZero = serializeHeader([{ ...scrypt, args: [scrypt.args[0]!, "04"] }], fileKey);
    await expectRejection(
      decryptBuffer(Buffer.concat([leadingZero, nonce, body]), { identities: [], passphrase: "pw" }),
      IntegrityError,
      /bad work factor/,
    );
    const { header: x25519Header } = await createHeader({ recipients: [parseRecipient(KEY.recipient)] });
    const mixed = serializeHeader([scrypt, ...parseHeader(x25519Header).stanzas], fileKey);
    await expectRejection(
      decryptBuffer(Buffer.concat([mixed, nonce, body]), { identities: [KEY.identity], passphrase: "pw" }),
      IntegrityError,
      /must be the only stanza/,
    );
    const ok = await decryptBuffer(Buffer.concat([header, nonce, body]), {
      identities: [],
      passphrase: "pw",
    });
    expect(ok.toString()).toBe("x");
  });
});

describe("age options", () => {
  it("refuses a passphrase together with recipients", () => {
    expect(() => createAgeEncryptStream({ recipients: [KEY.recipient], passphrase: "pw" })).toThrow(
      InputError,
    );
  });

  it("refuses missing or bad recipients, passphrases and work factors", () => {
    expect(() => createAgeEncryptStream({ recipients: [] })).toThrow(/no age recipients given/);
    expect(() => createAgeEncryptStream({ recipients: [KEY.recipient, "age1bogus"] })).toThrow(
      /invalid age recipient in recipient 2/,
    );
    expect(() => createAgeEncryptStream({ recipients: [], passphrase: "" })).toThrow(/passphrase is empty/);
    for (const scryptLogN of [0, 23, 10.5]) {
      expect(() => createAgeEncryptStream({ recipients: [], passphrase: "pw", scryptLogN })).toThrow(
        InputError,
      );
    }
  });

  it("refuses to decrypt with nothing to decrypt with, or a malformed identity", () => {
    expect(() => createAgeDecryptStream({ identities: [] })).toThrow(/no age identities given/);
    expect(() => createAgeDecryptStream({ identities: ["AGE-SECRET-KEY-1NOPE"] })).toThrow(InputError);
  });

  it("rejects an identity when the archive wants a passphrase and the reverse", async () => {
    const ciphertext = await encryptBuffer(Buffer.from("x"), { recipients: [KEY.recipient] });
    await expectRejection(
      decryptBuffer(ciphertext, { identities: [], passphrase: "pw" }),
      IntegrityError,
      /not encrypted with a passphrase/,
    );
  });
});

describe("age post-quantum recipients (mlkem768x25519)", () => {
  it.each([0, 1, CHUNK, CHUNK + 1])("round-trips %i bytes through an age1pq1 recipient", async (size) => {
    const plaintext = randomBytes(size);
    const ciphertext = await encryptBuffer(plaintext, { recipients: [PQ.recipient] });
    const decrypted = await decryptBuffer(ciphertext, { identities: [PQ.identity] });
    expect(decrypted.equals(plaintext)).toBe(true);
  });

  it("writes one mlkem768x25519 stanza per recipient, as the spec lays it out", async () => {
    const ciphertext = await encryptBuffer(Buffer.from("pq"), {
      recipients: [PQ.recipient, PQ_OTHER.recipient],
    });
    const header = parseHeader(ciphertext.subarray(0, headerLength(ciphertext)));
    expect(header.stanzas.map((stanza) => stanza.type)).toEqual(["mlkem768x25519", "mlkem768x25519"]);
    for (const stanza of header.stanzas) {
      expect(stanza.args).toHaveLength(1);
      expect(Buffer.from(stanza.args[0]!, "base64")).toHaveLength(1120); // ML-KEM ciphertext || X25519 share
      expect(stanza.body).toHaveLength(32); // the sealed 16-byte file key
    }
    const identityFile = `# two keys\n${KEY.identity}\n${PQ_OTHER.identity}\n`;
    expect((await decryptBuffer(ciphertext, { identities: [identityFile] })).toString()).toBe("pq");
  });

  it("says no identity matched for the wrong post-quantum or X25519 key", async () => {
    const ciphertext = await encryptBuffer(Buffer.from("x"), { recipients: [PQ.recipient] });
    for (const identity of [PQ_OTHER.identity, KEY.identity]) {
      await expectRejection(
        decryptBuffer(ciphertext, { identities: [identity] }),
        IntegrityError,
        /no identity matched/,
      );
    }
  });

  it("refuses to encrypt to post-quantum and X25519 recipients together, at once", () => {
    for (const recipients of [
      [PQ.recipient, KEY.recipient],
      [KEY.recipient, PQ.recipient],
    ]) {
      expect(() => createAgeEncryptStream({ recipients })).toThrow(/cannot be mixed/);
    }
  });

  it("decrypts a header that mixes both kinds (age reads them), with either identity", async () => {
    const { header: pqHeader, fileKey } = await createHeader({ recipients: [parseRecipient(PQ.recipient)] });
    const { header: classicHeader } = await createHeader({ recipients: [parseRecipient(KEY.recipient)] });
    const classicStanza = parseHeader(classicHeader).stanzas[0]!;
    // The X25519 stanza carries another file key: only the order of the stanzas is of interest here, and an X25519
    // identity finding it must then fail on the MAC, which the post-quantum identity checks out.
    const mixed = serializeHeader([classicStanza, ...parseHeader(pqHeader).stanzas], fileKey);
    const nonce = randomBytes(16);
    const file = Buffer.concat([
      mixed,
      nonce,
      sealChunk(payloadKey(fileKey, nonce), 0, true, Buffer.from("both")),
    ]);
    expect((await decryptBuffer(file, { identities: [PQ.identity] })).toString()).toBe("both");
    await expectRejection(
      decryptBuffer(file, { identities: [KEY.identity] }),
      IntegrityError,
      /MAC mismatch/,
    );
  });

  it("rejects malformed mlkem768x25519 stanzas as header failures, before any decryption", async () => {
    const { header, fileKey } = await createHeader({ recipients: [parseRecipient(PQ.recipient)] });
    const stanza = parseHeader(header).stanzas[0]!;
    const nonce = randomBytes(16);
    const payload = sealChunk(payloadKey(fileKey, nonce), 0, true, Buffer.from("x"));
    const enc = Buffer.from(stanza.args[0]!, "base64");
    const lowOrder = Buffer.concat([enc.subarray(0, 1088), Buffer.alloc(32)]);
    const cases: [Stanza, RegExp][] = [
      [{ ...stanza, args: [...stanza.args, "extra"] }, /bad encapsulated key/],
      [
        { ...stanza, args: [enc.subarray(0, 1119).toString("base64").replace(/=+$/, "")] },
        /bad encapsulated key/,
      ],
      [{ ...stanza, body: Buffer.concat([stanza.body, Buffer.alloc(1)]) }, /bad body length/],
      [{ ...stanza, args: [lowOrder.toString("base64").replace(/=+$/, "")] }, /low-order X25519 share/],
    ];
    for (const [damaged, message] of cases) {
      const file = Buffer.concat([serializeHeader([damaged], fileKey), nonce, payload]);
      const error = await expectRejection(
        decryptBuffer(file, { identities: [PQ.identity] }),
        IntegrityError,
        message,
      );
      expect((error as AgeIntegrityError).failure).toBe("header");
    }
  });
});
