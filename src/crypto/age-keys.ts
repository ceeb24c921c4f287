/**
 * age native keys: X25519 (`age1...`, `AGE-SECRET-KEY-1...`) and the post-quantum hybrid MLKEM768-X25519 of age 1.3
 * (`age1pq1...`, `AGE-SECRET-KEY-PQ-1...`): generation, parsing of recipients and identity files, strict in the same
 * ways as age so that whatever we accept, age accepts too.
 * Errors never echo secret key material, only where it came from and the line number.
 */
import { randomBytes } from "node:crypto";
import { InputError } from "../errors.js";
import { decodeBech32Bytes, encodeBech32Bytes } from "./bech32.js";
import {
  HYBRID_SEED_LENGTH,
  type HybridPrivateKey,
  type HybridPublicKey,
  hybridPrivateKey,
  hybridPublicKey,
} from "./mlkem768x25519.js";
import { X25519_KEY_LENGTH, x25519GenerateSecret, x25519PublicKey } from "./x25519.js";

const RECIPIENT_HRP = "age";
const IDENTITY_HRP = "age-secret-key-";
const HYBRID_RECIPIENT_HRP = "age1pq";
const HYBRID_IDENTITY_HRP = "age-secret-key-pq-";

const RECIPIENT_HINT =
  "an age recipient starts with age1 (X25519) or age1pq1 (post-quantum); get one with `looker-backup keygen [--pq]` or `age-keygen -y`";
const IDENTITY_HINT =
  "create one with `looker-backup keygen [--pq]` or `age-keygen [-pq]`; an identity starts with AGE-SECRET-KEY-1 or AGE-SECRET-KEY-PQ-1";
/** Where a hint names the kinds of key we take. */
const SUPPORTED_RECIPIENTS = "use an age X25519 (age1...) or post-quantum (age1pq1...) recipient";
const SUPPORTED_IDENTITIES =
  "use an age X25519 (AGE-SECRET-KEY-1...) or post-quantum (AGE-SECRET-KEY-PQ-1...) identity";

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

/** A post-quantum hybrid recipient (`age1pq1...`): the MLKEM768-X25519 public key. */
export interface HybridRecipient extends HybridPublicKey {
  readonly kind: "mlkem768x25519";
  /** The 1216-byte public key. */
  readonly publicKey: Buffer;
  /** The canonical `age1pq1...` text. */
  readonly text: string;
}

/** A post-quantum hybrid identity (`AGE-SECRET-KEY-PQ-1...`), expanded from its 32-byte seed. */
export interface HybridIdentity extends HybridPrivateKey {
  readonly kind: "mlkem768x25519";
}

export type AgeRecipient = X25519Recipient | HybridRecipient;
export type AgeIdentity = X25519Identity | HybridIdentity;

export interface GeneratedIdentity {
  /** `AGE-SECRET-KEY-1...` or `AGE-SECRET-KEY-PQ-1...` */
  readonly identity: string;
  /** `age1...` or `age1pq1...` */
  readonly recipient: string;
}

function formatRecipient(publicKey: Uint8Array): string {
  return encodeBech32Bytes(RECIPIENT_HRP, publicKey);
}

function formatIdentity(secretKey: Uint8Array): string {
  return encodeBech32Bytes(IDENTITY_HRP, secretKey).toUpperCase();
}

function formatHybridRecipient(publicKey: Uint8Array): string {
  return encodeBech32Bytes(HYBRID_RECIPIENT_HRP, publicKey);
}

function formatHybridIdentity(seed: Uint8Array): string {
  return encodeBech32Bytes(HYBRID_IDENTITY_HRP, seed).toUpperCase();
}

function describeWhere(where: string | undefined): string {
  return where ? ` in ${where}` : "";
}

/** A new random X25519 identity and its recipient, in age's text forms. */
export function generateIdentity(): GeneratedIdentity {
  const secretKey = x25519GenerateSecret();
  return { identity: formatIdentity(secretKey), recipient: formatRecipient(x25519PublicKey(secretKey)) };
}

/** A new random post-quantum hybrid identity and its recipient, as `age-keygen -pq` makes them. */
export function generateHybridIdentity(): GeneratedIdentity {
  const seed = randomBytes(HYBRID_SEED_LENGTH);
  return {
    identity: formatHybridIdentity(seed),
    recipient: formatHybridRecipient(hybridPrivateKey(seed).publicKey),
  };
}

/** The identity file text `age-keygen` writes: creation time and public key as comments, then the key. */
export function formatIdentityFile(generated: GeneratedIdentity, created: Date = new Date()): string {
  const timestamp = created.toISOString().replace(/\.\d{3}Z$/, "Z");
  return `# created: ${timestamp}\n# public key: ${generated.recipient}\n${generated.identity}\n`;
}

function unsupportedRecipientHint(text: string, hrp: string | undefined): string | undefined {
  if (/^ssh-(ed25519|rsa) /.test(text)) return `ssh recipients are not supported; ${SUPPORTED_RECIPIENTS}`;
  // Plugin recipients are bech32 with an hrp like "age1yubikey"; tag recipients (age1tag, age1tagpq) need one.
  if (hrp?.startsWith("age1") && hrp !== HYBRID_RECIPIENT_HRP)
    return `plugin and tag recipients are not supported; ${SUPPORTED_RECIPIENTS}`;
  return undefined;
}

/**
 * Secret key material a user may paste where a recipient belongs, by the marker that gives it away, and how a message
 * names it instead: the marker, then "…(redacted)". Matched anywhere in the value, in any case.
 */
const SECRET_MARKERS: readonly (readonly [RegExp, (match: string) => string])[] = [
  [/AGE-SECRET-KEY-PQ-1/i, () => "AGE-SECRET-KEY-PQ-1"],
  [/AGE-SECRET-KEY-1/i, () => "AGE-SECRET-KEY-1"],
  [/AGE-SECRET-KEY-/i, () => "AGE-SECRET-KEY-"],
  [/AGE-PLUGIN-[A-Z0-9]*-?/i, (match) => match.toUpperCase()],
  [/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/i, (match) => match],
];

/** What a recipient looks like to a person: only such a value is ever quoted back (see quoteRecipientValue). */
const PUBLIC_LOOKING = /^(age1[0-9a-z]*|ssh-[a-z0-9-]+ [A-Za-z0-9+/=]+( \S+)?)$/i;

/** The value's secret-key marker ("AGE-SECRET-KEY-1", "-----BEGIN OPENSSH PRIVATE KEY-----"), if it has one. */
function secretMarker(text: string): string | undefined {
  for (const [pattern, name] of SECRET_MARKERS) {
    const match = pattern.exec(text);
    if (match) return name(match[0]);
  }
  return undefined;
}

/**
 * A value given as a recipient, as an error message may show it. A secret key is named by its kind only
 * (`AGE-SECRET-KEY-1…(redacted)`); anything that does not look like a recipient at all (a line of a private key's
 * body, say) is not shown, only its length; a malformed recipient is quoted, so a typo can be found.
 */
export function quoteRecipientValue(text: string): string {
  const trimmed = text.trim();
  const marker = secretMarker(trimmed);
  if (marker !== undefined) return `${marker}…(redacted)`;
  if (!PUBLIC_LOOKING.test(trimmed))
    return `a value of ${trimmed.length} characters (not shown: it is no recipient, and may be a secret)`;
  return `"${trimmed.length > 80 ? `${trimmed.slice(0, 77)}...` : trimmed}"`;
}

/**
 * The parts of a recipients input that must be masked in a log (the action's core.setSecret): the whole value when
 * it holds a secret key, and every item (a line, or comma-separated) that quoteRecipientValue would not show. Items
 * shorter than 16 characters are no key and are left alone: masking them would blank ordinary words in the log.
 */
export function recipientInputSecrets(text: string): string[] {
  const secrets: string[] = [];
  if (secretMarker(text) !== undefined) secrets.push(text.trim());
  for (const item of text.split(/[\n,]/).map((part) => part.trim())) {
    if (item.length < 16 || item.startsWith("#")) continue;
    if (secretMarker(item) !== undefined || !PUBLIC_LOOKING.test(item)) secrets.push(item);
  }
  return secrets;
}

function invalidRecipient(trimmed: string, hrp: string | undefined, where: string | undefined): InputError {
  const marker = secretMarker(trimmed);
  if (marker !== undefined) {
    const what = marker.includes("PRIVATE KEY") ? "a private key" : "an identity (secret key)";
    return new InputError(
      `invalid age recipient${describeWhere(where)}: ${quoteRecipientValue(trimmed)} is ${what}, given where a recipient belongs`,
      "give the recipient (public key) instead, as `looker-backup keygen` or `age-keygen -y` prints it; treat the secret key as exposed if it was pasted anywhere public",
    );
  }
  const hint = unsupportedRecipientHint(trimmed, hrp) ?? RECIPIENT_HINT;
  return new InputError(
    `invalid age recipient${describeWhere(where)}: ${quoteRecipientValue(trimmed)}`,
    hint,
  );
}

/** Parses one `age1...` or `age1pq1...` recipient; surrounding whitespace is ignored. */
export function parseRecipient(text: string, where?: string): AgeRecipient {
  const trimmed = text.trim();
  const decoded = decodeBech32Bytes(trimmed);
  const lowerCase = trimmed === trimmed.toLowerCase();
  if (lowerCase && decoded?.hrp === RECIPIENT_HRP && decoded.bytes.length === X25519_KEY_LENGTH) {
    return { kind: "x25519", publicKey: decoded.bytes, text: trimmed };
  }
  if (lowerCase && decoded?.hrp === HYBRID_RECIPIENT_HRP) {
    const key = hybridPublicKey(decoded.bytes);
    if (key !== undefined) return { kind: "mlkem768x25519", ...key, publicKey: decoded.bytes, text: trimmed };
  }
  throw invalidRecipient(trimmed, decoded?.hrp, where);
}

/**
 * age refuses to encrypt to post-quantum and classic recipients together: anyone with a quantum computer could
 * then open the file through the X25519 stanza, so the post-quantum one would protect nothing. We refuse it too,
 * before any work starts, naming where the list came from.
 */
export function checkRecipientMix(recipients: readonly AgeRecipient[], where: string): void {
  const hybrid = recipients.filter((recipient) => recipient.kind === "mlkem768x25519").length;
  if (hybrid === 0 || hybrid === recipients.length) return;
  throw new InputError(
    `${where}: post-quantum (age1pq1...) and X25519 (age1...) recipients cannot be mixed: the archive would be only as safe as its X25519 recipients against a quantum computer`,
    "give only age1pq1 recipients (make one per key holder with `looker-backup keygen --pq`), or only age1 ones; to keep an X25519 copy for old age versions, run a second backup to those recipients alone",
  );
}

/** Parses a recipients list (age `-R` format): one recipient a line, `#` comments and blank lines ignored. */
export function parseRecipients(text: string, where?: string): AgeRecipient[] {
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
function parseIdentityLine(line: string, whereSuffix: string): AgeIdentity {
  const decoded = decodeBech32Bytes(line);
  const upperCase = line === line.toUpperCase();
  if (upperCase && decoded?.hrp === IDENTITY_HRP && decoded.bytes.length === X25519_KEY_LENGTH) {
    return { kind: "x25519", secretKey: decoded.bytes, publicKey: x25519PublicKey(decoded.bytes) };
  }
  if (upperCase && decoded?.hrp === HYBRID_IDENTITY_HRP && decoded.bytes.length === HYBRID_SEED_LENGTH) {
    return { kind: "mlkem768x25519", ...hybridPrivateKey(decoded.bytes) };
  }
  throw new InputError(`invalid age identity${whereSuffix}`, unsupportedIdentityHint(line) ?? IDENTITY_HINT);
}

function unsupportedIdentityHint(line: string): string | undefined {
  if (line.startsWith("-----BEGIN")) return `ssh identities are not supported; ${SUPPORTED_IDENTITIES}`;
  if (line.startsWith("AGE-PLUGIN-")) return `plugin identities are not supported; ${SUPPORTED_IDENTITIES}`;
  if (line.startsWith("age-encryption.org/"))
    return "the identity file is encrypted; decrypt it first with `age -d`";
  return undefined;
}

/** Parses one `AGE-SECRET-KEY-1...` or `AGE-SECRET-KEY-PQ-1...` identity. */
export function parseIdentity(text: string, where?: string): AgeIdentity {
  return parseIdentityLine(text.trim(), describeWhere(where));
}

/** Parses an age identity file: one identity a line, `#` comments and blank lines ignored; at least one. */
export function parseIdentities(fileText: string, where?: string): AgeIdentity[] {
  const identities = meaningfulLines(fileText).map(({ line, lineNumber }) =>
    parseIdentityLine(line, ` on line ${lineNumber}${describeWhere(where)}`),
  );
  if (identities.length === 0)
    throw new InputError(`no age identities found${describeWhere(where)}`, IDENTITY_HINT);
  return identities;
}

/** The recipient of an identity (what `age-keygen -y` prints): `age1...`, or `age1pq1...` for a PQ identity. */
export function recipientOf(identity: string, where?: string): string {
  const parsed = parseIdentity(identity, where);
  return parsed.kind === "x25519"
    ? formatRecipient(parsed.publicKey)
    : formatHybridRecipient(parsed.publicKey);
}
