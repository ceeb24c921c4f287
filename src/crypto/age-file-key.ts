/**
 * The file key and the stanzas that carry it: X25519 recipient stanzas and the scrypt passphrase stanza.
 * Writing creates a header for a fresh file key; reading finds the stanza an identity (or passphrase) opens,
 * then checks the header MAC with the key it found.
 */
import { randomBytes, scrypt } from "node:crypto";
import { InputError, IntegrityError } from "../errors.js";
import { type ParsedHeader, type Stanza, serializeHeader, verifyHeaderMac } from "./age-header.js";
import type { X25519Identity, X25519Recipient } from "./age-keys.js";
import {
  AEAD_TAG_LENGTH,
  aeadOpen,
  aeadSeal,
  decodeBase64Raw,
  encodeBase64Raw,
  hkdfSha256,
} from "./primitives.js";
import { X25519_KEY_LENGTH, x25519GenerateSecret, x25519PublicKey, x25519SharedSecret } from "./x25519.js";

export const FILE_KEY_LENGTH = 16;
/** The age CLI's default work factor for `age -p`. */
export const DEFAULT_SCRYPT_LOG_N = 18;
/** Above this a header could make us spend minutes and gigabytes; age refuses it too. */
export const MAX_SCRYPT_LOG_N = 22;

const X25519_TYPE = "X25519";
const X25519_INFO = "age-encryption.org/v1/X25519";
const SCRYPT_TYPE = "scrypt";
const SCRYPT_SALT_LABEL = "age-encryption.org/v1/scrypt";
const SCRYPT_SALT_LENGTH = 16;
const SCRYPT_R = 8;
const WRAPPED_KEY_LENGTH = FILE_KEY_LENGTH + AEAD_TAG_LENGTH;
const DECIMAL_WITHOUT_LEADING_ZERO = /^[1-9][0-9]*$/;

export type FileKeySealer =
  | { readonly recipients: readonly X25519Recipient[] }
  | { readonly passphrase: string; readonly logN: number };

export interface FileKeyOpeners {
  readonly identities: readonly X25519Identity[];
  readonly passphrase?: string | undefined;
}

function malformedStanza(type: string, detail: string): IntegrityError {
  return new IntegrityError(
    `malformed ${type} stanza in the age header: ${detail}`,
    "the archive is corrupted",
  );
}

function x25519WrapKey(sharedSecret: Buffer, share: Buffer, recipientKey: Buffer): Buffer {
  return hkdfSha256(sharedSecret, Buffer.concat([share, recipientKey]), X25519_INFO);
}

function wrapForX25519(fileKey: Buffer, recipient: X25519Recipient): Stanza {
  const ephemeral = x25519GenerateSecret();
  const share = x25519PublicKey(ephemeral);
  const shared = x25519SharedSecret(ephemeral, recipient.publicKey);
  if (shared === undefined) {
    throw new InputError(
      `invalid age recipient ${recipient.text}: it is a low-order point`,
      "generate a new key pair",
    );
  }
  const body = aeadSeal(x25519WrapKey(shared, share, recipient.publicKey), fileKey);
  return { type: X25519_TYPE, args: [encodeBase64Raw(share)], body };
}

/** The file key if this X25519 stanza was made for the identity, undefined if not; throws if malformed. */
function unwrapX25519(stanza: Stanza, identity: X25519Identity): Buffer | undefined {
  const share = stanza.args.length === 1 ? decodeBase64Raw(stanza.args[0]!) : undefined;
  if (share?.length !== X25519_KEY_LENGTH) throw malformedStanza(X25519_TYPE, "bad ephemeral share");
  if (stanza.body.length !== WRAPPED_KEY_LENGTH) throw malformedStanza(X25519_TYPE, "bad body length");
  const shared = x25519SharedSecret(identity.secretKey, share);
  if (shared === undefined) throw malformedStanza(X25519_TYPE, "low-order ephemeral share");
  return aeadOpen(x25519WrapKey(shared, share, identity.publicKey), stanza.body);
}

function deriveScryptKey(passphrase: string, salt: Buffer, logN: number): Promise<Buffer> {
  const N = 2 ** logN;
  const label = Buffer.concat([Buffer.from(SCRYPT_SALT_LABEL, "latin1"), salt]);
  // scrypt needs 128 * N * r bytes; node refuses above maxmem (32 MiB by default), so allow what logN needs.
  const maxmem = 2 * 128 * N * SCRYPT_R;
  return new Promise((resolve, reject) => {
    scrypt(passphrase, label, 32, { N, r: SCRYPT_R, p: 1, maxmem }, (error, key) =>
      error ? reject(error) : resolve(key),
    );
  });
}

async function wrapForPassphrase(fileKey: Buffer, passphrase: string, logN: number): Promise<Stanza> {
  const salt = randomBytes(SCRYPT_SALT_LENGTH);
  const body = aeadSeal(await deriveScryptKey(passphrase, salt, logN), fileKey);
  return { type: SCRYPT_TYPE, args: [encodeBase64Raw(salt), String(logN)], body };
}

async function unwrapScrypt(stanza: Stanza, passphrase: string): Promise<Buffer | undefined> {
  if (stanza.args.length !== 2) throw malformedStanza(SCRYPT_TYPE, "wrong number of arguments");
  const salt = decodeBase64Raw(stanza.args[0]!);
  if (salt?.length !== SCRYPT_SALT_LENGTH) throw malformedStanza(SCRYPT_TYPE, "bad salt");
  const logNText = stanza.args[1]!;
  if (!DECIMAL_WITHOUT_LEADING_ZERO.test(logNText)) throw malformedStanza(SCRYPT_TYPE, "bad work factor");
  const logN = Number(logNText);
  if (logN > MAX_SCRYPT_LOG_N) {
    throw new IntegrityError(
      `the archive's scrypt work factor 2^${logNText} exceeds the maximum 2^${MAX_SCRYPT_LOG_N}`,
      "the file was made with an unusually high work factor or was tampered with",
    );
  }
  if (stanza.body.length !== WRAPPED_KEY_LENGTH) throw malformedStanza(SCRYPT_TYPE, "bad body length");
  return aeadOpen(await deriveScryptKey(passphrase, salt, logN), stanza.body);
}

/** A fresh file key and the serialized header that carries it to the recipients or the passphrase. */
export async function createHeader(sealer: FileKeySealer): Promise<{ header: Buffer; fileKey: Buffer }> {
  const fileKey = randomBytes(FILE_KEY_LENGTH);
  const stanzas =
    "recipients" in sealer
      ? sealer.recipients.map((recipient) => wrapForX25519(fileKey, recipient))
      : [await wrapForPassphrase(fileKey, sealer.passphrase, sealer.logN)];
  return { header: serializeHeader(stanzas, fileKey), fileKey };
}

async function openWithPassphrase(header: ParsedHeader, passphrase: string | undefined): Promise<Buffer> {
  const [stanza] = header.stanzas;
  if (header.stanzas.length !== 1 || stanza === undefined) {
    throw new IntegrityError(
      "malformed age header: an scrypt stanza must be the only stanza",
      "the archive is corrupted",
    );
  }
  if (passphrase === undefined) {
    throw new InputError(
      "the archive is encrypted with a passphrase",
      "provide the passphrase instead of identities",
    );
  }
  const fileKey = await unwrapScrypt(stanza, passphrase);
  if (fileKey === undefined)
    throw new IntegrityError("incorrect passphrase", "check the passphrase and try again");
  return fileKey;
}

function openWithIdentities(header: ParsedHeader, openers: FileKeyOpeners): Buffer {
  for (const stanza of header.stanzas) {
    if (stanza.type !== X25519_TYPE) continue; // unknown stanza types (grease, plugins) are skipped, as age does
    for (const identity of openers.identities) {
      const fileKey = unwrapX25519(stanza, identity);
      if (fileKey !== undefined) return fileKey;
    }
  }
  if (openers.identities.length === 0 && openers.passphrase !== undefined) {
    throw new IntegrityError(
      "the archive is not encrypted with a passphrase",
      "decrypt with the identity (AGE-SECRET-KEY-1...) of one of its recipients",
    );
  }
  throw new IntegrityError(
    "no identity matched any of the archive's recipients",
    "use the identity (AGE-SECRET-KEY-1...) whose recipient (age1...) the archive was encrypted to",
  );
}

/** Recovers the file key from a parsed header and verifies the header MAC with it. */
export async function openHeader(header: ParsedHeader, openers: FileKeyOpeners): Promise<Buffer> {
  const isPassphraseHeader = header.stanzas.some((stanza) => stanza.type === SCRYPT_TYPE);
  const fileKey = isPassphraseHeader
    ? await openWithPassphrase(header, openers.passphrase)
    : openWithIdentities(header, openers);
  verifyHeaderMac(header, fileKey);
  return fileKey;
}
