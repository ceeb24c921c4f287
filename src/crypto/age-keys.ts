/**
 * age X25519 keys: generation, parsing of recipients (`age1...`) and identity files (`AGE-SECRET-KEY-1...`),
 * strict in the same ways as age so that whatever we accept, age accepts too.
 * Errors never echo secret key material, only where it came from and the line number.
 */
import { InputError } from "../errors.js";
import { decodeBech32Bytes, encodeBech32Bytes } from "./bech32.js";
import { X25519_KEY_LENGTH, x25519GenerateSecret, x25519PublicKey } from "./x25519.js";

const RECIPIENT_HRP = "age";
const IDENTITY_HRP = "age-secret-key-";

const RECIPIENT_HINT =
  "an age recipient starts with age1 (get one with `looker-backup keygen` or `age-keygen -y`)";
const IDENTITY_HINT =
  "create one with `looker-backup keygen` or `age-keygen`; an identity starts with AGE-SECRET-KEY-1";

export interface X25519Recipient {
  readonly kind: "x25519";
  /** The 32-byte X25519 public key. */
  readonly publicKey: Buffer;
  /** The canonical `age1...` text. */
  readonly text: string;
}

export interface X25519Identity {
  readonly kind: "x25519";
  /** The 32-byte X25519 secret scalar. */
  readonly secretKey: Buffer;
  /** Its public key, precomputed: the X25519 stanza's HKDF salt needs it. */
  readonly publicKey: Buffer;
}

export interface GeneratedIdentity {
  /** `AGE-SECRET-KEY-1...` */
  readonly identity: string;
  /** `age1...` */
  readonly recipient: string;
}

function formatRecipient(publicKey: Uint8Array): string {
  return encodeBech32Bytes(RECIPIENT_HRP, publicKey);
}

function formatIdentity(secretKey: Uint8Array): string {
  return encodeBech32Bytes(IDENTITY_HRP, secretKey).toUpperCase();
}

function describeWhere(where: string | undefined): string {
  return where ? ` in ${where}` : "";
}

/** A new random X25519 identity and its recipient, in age's text forms. */
export function generateIdentity(): GeneratedIdentity {
  const secretKey = x25519GenerateSecret();
  return { identity: formatIdentity(secretKey), recipient: formatRecipient(x25519PublicKey(secretKey)) };
}

/** The identity file text `age-keygen` writes: creation time and public key as comments, then the key. */
export function formatIdentityFile(generated: GeneratedIdentity, created: Date = new Date()): string {
  const timestamp = created.toISOString().replace(/\.\d{3}Z$/, "Z");
  return `# created: ${timestamp}\n# public key: ${generated.recipient}\n${generated.identity}\n`;
}

function unsupportedRecipientHint(text: string, hrp: string | undefined): string | undefined {
  if (/^ssh-(ed25519|rsa) /.test(text))
    return "ssh recipients are not supported; use an age X25519 recipient (age1...)";
  // Plugin recipients are bech32 with an hrp like "age1yubikey".
  if (hrp?.startsWith("age1"))
    return "plugin recipients are not supported; use an age X25519 recipient (age1...)";
  return undefined;
}

/** Parses one `age1...` recipient; surrounding whitespace is ignored. */
export function parseRecipient(text: string, where?: string): X25519Recipient {
  const trimmed = text.trim();
  const decoded = decodeBech32Bytes(trimmed);
  const valid =
    decoded !== undefined &&
    decoded.hrp === RECIPIENT_HRP &&
    trimmed === trimmed.toLowerCase() &&
    decoded.bytes.length === X25519_KEY_LENGTH;
  if (!valid) {
    const shown = trimmed.length > 80 ? `${trimmed.slice(0, 77)}...` : trimmed;
    const hint = unsupportedRecipientHint(trimmed, decoded?.hrp) ?? RECIPIENT_HINT;
    throw new InputError(`invalid age recipient${describeWhere(where)}: "${shown}"`, hint);
  }
  return { kind: "x25519", publicKey: decoded.bytes, text: trimmed };
}

/** Parses a recipients list (age `-R` format): one recipient a line, `#` comments and blank lines ignored. */
export function parseRecipients(text: string, where?: string): X25519Recipient[] {
  const recipients = meaningfulLines(text).map(({ line, lineNumber }) =>
    parseRecipient(line, where ? `${where} line ${lineNumber}` : `line ${lineNumber}`),
  );
  if (recipients.length === 0)
    throw new InputError(`no age recipients found${describeWhere(where)}`, RECIPIENT_HINT);
  return recipients;
}

function meaningfulLines(text: string): { line: string; lineNumber: number }[] {
  return text
    .split(/\r?\n/)
    .map((line, index) => ({ line: line.trim(), lineNumber: index + 1 }))
    .filter(({ line }) => line !== "" && !line.startsWith("#"));
}

/** `whereSuffix` is "" or starts with a space, e.g. " on line 3 in /etc/key.txt". */
function parseIdentityLine(line: string, whereSuffix: string): X25519Identity {
  const decoded = decodeBech32Bytes(line);
  if (
    decoded === undefined ||
    decoded.hrp !== IDENTITY_HRP ||
    line !== line.toUpperCase() ||
    decoded.bytes.length !== X25519_KEY_LENGTH
  ) {
    throw new InputError(
      `invalid age identity${whereSuffix}`,
      unsupportedIdentityHint(line) ?? IDENTITY_HINT,
    );
  }
  return { kind: "x25519", secretKey: decoded.bytes, publicKey: x25519PublicKey(decoded.bytes) };
}

function unsupportedIdentityHint(line: string): string | undefined {
  if (line.startsWith("-----BEGIN")) return "ssh identities are not supported; use an age X25519 identity";
  if (line.startsWith("AGE-PLUGIN-"))
    return "plugin identities are not supported; use an age X25519 identity";
  if (line.startsWith("age-encryption.org/"))
    return "the identity file is encrypted; decrypt it first with `age -d`";
  return undefined;
}

/** Parses one `AGE-SECRET-KEY-1...` identity. */
export function parseIdentity(text: string, where?: string): X25519Identity {
  return parseIdentityLine(text.trim(), describeWhere(where));
}

/** Parses an age identity file: one identity a line, `#` comments and blank lines ignored; at least one. */
export function parseIdentities(fileText: string, where?: string): X25519Identity[] {
  const identities = meaningfulLines(fileText).map(({ line, lineNumber }) =>
    parseIdentityLine(line, ` on line ${lineNumber}${describeWhere(where)}`),
  );
  if (identities.length === 0)
    throw new InputError(`no age identities found${describeWhere(where)}`, IDENTITY_HINT);
  return identities;
}

/** The `age1...` recipient of an `AGE-SECRET-KEY-1...` identity (what `age-keygen -y` prints). */
export function recipientOf(identity: string, where?: string): string {
  return formatRecipient(parseIdentity(identity, where).publicKey);
}
