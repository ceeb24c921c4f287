import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  checkRecipientMix,
  formatIdentityFile,
  generateHybridIdentity,
  generateIdentity,
  parseIdentities,
  parseIdentity,
  parseRecipient,
  parseRecipients,
  recipientInputSecrets,
  recipientOf,
} from "../../src/crypto/age-keys.js";
import { encodeBech32Bytes } from "../../src/crypto/bech32.js";
import { InputError } from "../../src/errors.js";

const AGE_KEYGEN_IDENTITY = "AGE-SECRET-KEY-1KXJ9KALZU2Y76DJPJETDVD0XCVEKNE5808USWJ4533WJ3VT50RQQH3Q94C";
const AGE_KEYGEN_RECIPIENT = "age1elh2p74p4gpn2krl9u03kdwksq2mha65latewr9tqm65qr277f5qgzdasg";

function thrown(action: () => unknown): InputError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(InputError);
    return error as InputError;
  }
  throw new Error("expected an InputError, nothing was thrown");
}

/**
 * Post-quantum identities with known recipients: the example of the age spec (C2SP age.md, "The MLKEM768-X25519
 * recipient type") and the key of age 1.3's own CLI test (cmd/age/testdata/hybrid.txt). The 1959-character
 * recipients are pinned by their SHA-256.
 */
const PQ_KNOWN = [
  {
    identity: "AGE-SECRET-KEY-PQ-1XX76JRALNLXDMEW0CRK45QMCCH4X06SE84UN3VPM33W6HWDX0H3SK3ZQFR",
    recipientPrefix: "age1pq1x34nzsvr0rxjsgdn8zgyhfe8j7ceq5r9rdelkjuh3y235jzxshfg87pzf5zrqtzdxz95paef6caq5",
    recipientSha256: "a091dd7e0ee9d62b75173dcc98441a0424baa941e66a8776e570a4ae60ff61ea",
  },
  {
    identity: "AGE-SECRET-KEY-PQ-16XDSLZ3XCSZ3236YJ5J0T9NAPLZTP96LJKQCVHJYUDTQVJR5J5PQTDPQCX",
    recipientPrefix: "age1pq1044e3hfmq2tltgck54m0gnpv8rfrwkdxjgl38psnwg8zfyv4uqdu63kk0u94ztt0q35k9dzuwgv",
    recipientSha256: "d41cb81cf6b9a2c10a03a72ac63893a57667341760b8ecf00ccb3f0b0ca81853",
  },
];

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

function alterCharacter(text: string, index: number): string {
  const replacement = text[index] === "Q" ? "P" : text[index] === "q" ? "p" : text[index] === "p" ? "q" : "Q";
  return `${text.slice(0, index)}${replacement}${text.slice(index + 1)}`;
}

describe("generateIdentity", () => {
  it("makes a fresh identity whose recipient recipientOf derives", () => {
    const first = generateIdentity();
    const second = generateIdentity();
    expect(first.identity).toMatch(/^AGE-SECRET-KEY-1[02-9AC-HJ-NP-Z]{58}$/);
    expect(first.recipient).toMatch(/^age1[02-9ac-hj-np-z]{58}$/);
    expect(recipientOf(first.identity)).toBe(first.recipient);
    expect(second.identity).not.toBe(first.identity);
    expect(second.recipient).not.toBe(first.recipient);
  });

  it("formats an identity file like age-keygen that parses back", () => {
    const generated = generateIdentity();
    const text = formatIdentityFile(generated, new Date("2024-05-06T07:08:09.123Z"));
    expect(text).toBe(
      `# created: 2024-05-06T07:08:09Z\n# public key: ${generated.recipient}\n${generated.identity}\n`,
    );
    const [identity] = parseIdentities(text, "key.txt");
    expect(recipientOf(generated.identity)).toBe(generated.recipient);
    expect(identity?.publicKey.equals(parseRecipient(generated.recipient).publicKey)).toBe(true);
  });
});

describe("parseIdentities", () => {
  it("reads identities between comments, blank lines and CRLF line ends", () => {
    const other = generateIdentity();
    const text = `# created: now\r\n\r\n  ${AGE_KEYGEN_IDENTITY}  \r\n# another\n${other.identity}\n\n`;
    const identities = parseIdentities(text, "/keys/id.txt");
    expect(identities).toHaveLength(2);
    expect(identities[0]?.publicKey.equals(parseRecipient(AGE_KEYGEN_RECIPIENT).publicKey)).toBe(true);
    expect(identities[1]?.publicKey.equals(parseRecipient(other.recipient).publicKey)).toBe(true);
  });

  it("rejects a file with no identity, naming the file", () => {
    const error = thrown(() => parseIdentities("# only a comment\n\n", "/keys/empty.txt"));
    expect(error.message).toBe("no age identities found in /keys/empty.txt");
    expect(error.hint).toContain("age-keygen");
  });

  it("names the line and file of a bad identity without echoing key material", () => {
    const altered = alterCharacter(AGE_KEYGEN_IDENTITY, 30);
    const error = thrown(() => parseIdentities(`# key\n\n${altered}\n`, "/keys/bad.txt"));
    expect(error.message).toBe("invalid age identity on line 3 in /keys/bad.txt");
    expect(error.message).not.toContain(altered.slice(16, 40));
    expect(error.hint).toContain("looker-backup keygen");
  });

  it("rejects a lower-case identity as age does", () => {
    thrown(() => parseIdentity(AGE_KEYGEN_IDENTITY.toLowerCase()));
  });

  it("rejects a recipient given where an identity belongs", () => {
    const error = thrown(() => parseIdentities(AGE_KEYGEN_RECIPIENT, "id.txt"));
    expect(error.message).toBe("invalid age identity on line 1 in id.txt");
  });

  it("explains that ssh and plugin identities are not supported", () => {
    expect(thrown(() => parseIdentities("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n")).hint).toContain("ssh");
    expect(thrown(() => parseIdentity("AGE-PLUGIN-YUBIKEY-1QQQQQQ")).hint).toContain("plugin");
  });
});

describe("parseRecipient", () => {
  it("accepts an age1 recipient with surrounding whitespace", () => {
    const recipient = parseRecipient(`  ${AGE_KEYGEN_RECIPIENT}\n`);
    expect(recipient.text).toBe(AGE_KEYGEN_RECIPIENT);
    expect(recipient.publicKey).toHaveLength(32);
  });

  it("rejects a corrupted recipient, naming where it came from", () => {
    const error = thrown(() => parseRecipient(alterCharacter(AGE_KEYGEN_RECIPIENT, 20), "input recipients"));
    expect(error.message).toMatch(/^invalid age recipient in input recipients: "age1/);
    expect(error.hint).toContain("starts with age1");
  });

  it("rejects upper-case recipients, identities and ssh keys", () => {
    thrown(() => parseRecipient(AGE_KEYGEN_RECIPIENT.toUpperCase()));
    thrown(() => parseRecipient(AGE_KEYGEN_IDENTITY));
    expect(thrown(() => parseRecipient("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH user@host")).hint).toContain(
      "ssh",
    );
  });

  it("parses a recipients list with comments and reports the bad line", () => {
    const other = generateIdentity();
    const list = parseRecipients(`# team\n${AGE_KEYGEN_RECIPIENT}\n\n${other.recipient}\n`, "recipients.txt");
    expect(list.map((recipient) => recipient.text)).toEqual([AGE_KEYGEN_RECIPIENT, other.recipient]);
    const error = thrown(() => parseRecipients(`${AGE_KEYGEN_RECIPIENT}\nage1nope\n`, "recipients.txt"));
    expect(error.message).toContain("recipients.txt line 2");
    expect(thrown(() => parseRecipients("# nothing\n", "recipients.txt")).message).toBe(
      "no age recipients found in recipients.txt",
    );
  });
});

describe("post-quantum (MLKEM768-X25519) keys", () => {
  it.each(PQ_KNOWN)(
    "derives age's recipient for $identity",
    ({ identity, recipientPrefix, recipientSha256 }) => {
      const recipient = recipientOf(identity);
      expect(recipient.startsWith(recipientPrefix)).toBe(true);
      expect(recipient).toHaveLength(1959);
      expect(sha256(recipient)).toBe(recipientSha256);
      const parsed = parseRecipient(recipient);
      expect(parsed.kind).toBe("mlkem768x25519");
      expect(parsed.publicKey).toHaveLength(1216);
      const [fromFile] = parseIdentities(
        `# created: then\n# public key: ${recipient}\n${identity}\n`,
        "key.txt",
      );
      expect(fromFile?.kind).toBe("mlkem768x25519");
      expect(fromFile?.publicKey.equals(parsed.publicKey)).toBe(true);
    },
  );

  it("generates identities like age-keygen -pq, in identity files that parse back", () => {
    const first = generateHybridIdentity();
    const second = generateHybridIdentity();
    expect(first.identity).toMatch(/^AGE-SECRET-KEY-PQ-1[02-9AC-HJ-NP-Z]{58}$/);
    expect(first.recipient).toMatch(/^age1pq1[02-9ac-hj-np-z]{1952}$/);
    expect(recipientOf(first.identity)).toBe(first.recipient);
    expect(second.identity).not.toBe(first.identity);
    const text = formatIdentityFile(first, new Date("2025-11-17T12:15:17Z"));
    expect(text).toBe(
      `# created: 2025-11-17T12:15:17Z\n# public key: ${first.recipient}\n${first.identity}\n`,
    );
    const identities = parseIdentities(`${text}${generateIdentity().identity}\n`, "mixed.txt");
    expect(identities.map((identity) => identity.kind)).toEqual(["mlkem768x25519", "x25519"]);
  });

  it("rejects damaged, wrong-case and invalid post-quantum keys without echoing the secret", () => {
    const [{ identity }] = PQ_KNOWN as [(typeof PQ_KNOWN)[0]];
    const altered = alterCharacter(identity, 40);
    const error = thrown(() => parseIdentities(`${altered}\n`, "/keys/pq.txt"));
    expect(error.message).toBe("invalid age identity on line 1 in /keys/pq.txt");
    expect(error.hint).toContain("AGE-SECRET-KEY-PQ-1");
    thrown(() => parseIdentity(identity.toLowerCase()));
    const recipient = recipientOf(identity);
    thrown(() => parseRecipient(recipient.toUpperCase()));
    thrown(() => parseRecipient(alterCharacter(recipient, 500)));
    // A well-formed bech32 string whose ML-KEM key fails FIPS 203's modulus check (coefficients of 0xfff).
    const invalid = parseRecipient(recipient).publicKey;
    invalid.fill(0xff, 0, 384);
    expect(
      thrown(() => parseRecipient(encodeBech32Bytes("age1pq", invalid), "input 'recipients'")).message,
    ).toMatch(/^invalid age recipient in input 'recipients': "age1pq1/);
  });

  it("never repeats a secret key given where a recipient belongs, naming only its kind", () => {
    const pq = PQ_KNOWN[0]!.identity;
    for (const [secret, shown] of [
      [AGE_KEYGEN_IDENTITY, "AGE-SECRET-KEY-1…(redacted)"],
      [pq, "AGE-SECRET-KEY-PQ-1…(redacted)"],
      [pq.toLowerCase(), "AGE-SECRET-KEY-PQ-1…(redacted)"],
      // Pasted with something in front, or damaged: still a secret.
      [`key: ${AGE_KEYGEN_IDENTITY}`, "AGE-SECRET-KEY-1…(redacted)"],
      [alterCharacter(AGE_KEYGEN_IDENTITY, 30), "AGE-SECRET-KEY-1…(redacted)"],
    ] as const) {
      const error = thrown(() => parseRecipient(secret, "--recipient"));
      expect(error.message).toBe(
        `invalid age recipient in --recipient: ${shown} is an identity (secret key), given where a recipient belongs`,
      );
      expect(`${error.message} ${error.hint}`).not.toContain(secret.slice(20, 50));
    }
  });

  it("never repeats a private key's lines given as recipients, nor anything that is no recipient at all", () => {
    const body = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW";
    const pem = `-----BEGIN OPENSSH PRIVATE KEY-----\n${body}\n-----END OPENSSH PRIVATE KEY-----`;
    const whole = thrown(() => parseRecipient(pem, "--recipient"));
    expect(whole.message).toBe(
      "invalid age recipient in --recipient: -----BEGIN OPENSSH PRIVATE KEY-----…(redacted) is a private key, given where a recipient belongs",
    );
    const line = thrown(() => parseRecipients(`${AGE_KEYGEN_RECIPIENT}\n${body}\n`, "recipients.txt"));
    expect(line.message).toBe(
      `invalid age recipient in recipients.txt line 2: a value of ${body.length} characters (not shown: it is no recipient, and may be a secret)`,
    );
    for (const error of [whole, line]) expect(`${error.message} ${error.hint}`).not.toContain(body.slice(10));
  });

  it("recipientInputSecrets: what an action masks of a recipients input", () => {
    const body = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW";
    expect(recipientInputSecrets(`${AGE_KEYGEN_RECIPIENT}\n# alice\nage1typo`)).toEqual([]);
    expect(recipientInputSecrets(`${AGE_KEYGEN_RECIPIENT}, ${AGE_KEYGEN_IDENTITY}`)).toEqual([
      `${AGE_KEYGEN_RECIPIENT}, ${AGE_KEYGEN_IDENTITY}`,
      AGE_KEYGEN_IDENTITY,
    ]);
    const pem = `-----BEGIN OPENSSH PRIVATE KEY-----\n${body}\n-----END OPENSSH PRIVATE KEY-----`;
    expect(recipientInputSecrets(pem)).toEqual([
      pem,
      "-----BEGIN OPENSSH PRIVATE KEY-----",
      body,
      "-----END OPENSSH PRIVATE KEY-----",
    ]);
  });

  it("refuses to mix post-quantum and X25519 recipients, as age does, saying where and how to fix it", () => {
    const pq = parseRecipient(generateHybridIdentity().recipient);
    const classic = parseRecipient(AGE_KEYGEN_RECIPIENT);
    checkRecipientMix([pq, parseRecipient(generateHybridIdentity().recipient)], "backup");
    checkRecipientMix([classic], "backup");
    const error = thrown(() => checkRecipientMix([classic, pq], "input 'recipients'"));
    expect(error.message).toMatch(
      /^input 'recipients': post-quantum \(age1pq1\.\.\.\) and X25519 .* cannot be mixed/,
    );
    expect(error.hint).toContain("keygen --pq");
    expect(error.hint).toContain("second backup");
  });
});
