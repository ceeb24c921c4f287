import { describe, expect, it } from "vitest";
import {
  formatIdentityFile,
  generateIdentity,
  parseIdentities,
  parseIdentity,
  parseRecipient,
  parseRecipients,
  recipientOf,
} from "../../src/crypto/age-keys.js";
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
