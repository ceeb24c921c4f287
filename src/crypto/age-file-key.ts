/**
 * The file key and the stanzas that carry it: X25519 and post-quantum mlkem768x25519 recipient stanzas, and the
 * scrypt passphrase stanza.
 * Writing creates a header for a fresh file key; reading finds the stanza an identity (or passphrase) opens,
 * then checks the header MAC with the key it found.
 */
import { randomBytes, scrypt } from "node:crypto";
import { InputError } from "../errors.js";
import { AgeIntegrityError } from "./age-errors.js";
import { type ParsedHeader, type Stanza, serializeHeader, verifyHeaderMac } from "./age-header.js";
import {
  type AgeIdentity,
  type AgeRecipient,
  checkRecipientMix,
  type HybridIdentity,
  type HybridRecipient,
  type X25519Identity,
  type X25519Recipient,
} from "./age-keys.js";
import { HYBRID_ENC_LENGTH, hpkeOpen, hpkeSeal } from "./mlkem768x25519.js";
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
const HYBRID_TYPE = "mlkem768x25519";
const HYBRID_INFO = "age-encryption.org/mlkem768x25519";
const SCRYPT_TYPE = "scrypt";
const SCRYPT_SALT_LABEL = "age-encryption.org/v1/scrypt";
const SCRYPT_SALT_LENGTH = 16;
const SCRYPT_R = 8;
const WRAPPED_KEY_LENGTH = FILE_KEY_LENGTH + AEAD_TAG_LENGTH;
const DECIMAL_WITHOUT_LEADING_ZERO = /^[1-9][0-9]*$/;

export type FileKeySealer =
  | { readonly recipients: readonly AgeRecipient[] }
  | { readonly passphrase: string; readonly logN: number };

export interface FileKeyOpeners {
  readonly identities: readonly AgeIdentity[];
  readonly passphrase?: string | undefined;
}

function malformedStanza(type: string, detail: string): AgeIntegrityError {
  return new AgeIntegrityError(
    "header",
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

function wrapForHybrid(fileKey: Buffer, recipient: HybridRecipient): Stanza {
  const sealed = hpkeSeal(recipient, HYBRID_INFO, fileKey);
  if (sealed === undefined) {
    throw new InputError(
      `invalid age recipient ${recipient.text.slice(0, 40)}...: its X25519 part is a low-order point`,
      "generate a new key pair with `looker-backup keygen --pq`",
    );
  }
  return { type: HYBRID_TYPE, args: [encodeBase64Raw(sealed.enc)], body: sealed.ciphertext };
}

/** The file key if this mlkem768x25519 stanza was made for the identity, undefined if not; throws if malformed. */
function unwrapHybrid(stanza: Stanza, identity: HybridIdentity): Buffer | undefined {
  const enc = stanza.args.length === 1 ? decodeBase64Raw(stanza.args[0]!) : undefined;
  if (enc?.length !== HYBRID_ENC_LENGTH) throw malformedStanza(HYBRID_TYPE, "bad encapsulated key");
  // Checked before decrypting, as the spec requires, against partitioning oracle attacks.
  if (stanza.body.length !== WRAPPED_KEY_LENGTH) throw malformedStanza(HYBRID_TYPE, "bad body length");
  const fileKey = hpkeOpen(identity, HYBRID_INFO, enc, stanza.body);
  if (fileKey === "low-order") throw malformedStanza(HYBRID_TYPE, "low-order X25519 share");
  return fileKey;
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
    throw new AgeIntegrityError(
      "header",
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
  let stanzas: Stanza[];
  if ("recipients" in sealer) {
    checkRecipientMix(sealer.recipients, "age recipients");
    stanzas = sealer.recipients.map((recipient) =>
      recipient.kind === "x25519" ? wrapForX25519(fileKey, recipient) : wrapForHybrid(fileKey, recipient),
    );
  } else {
    stanzas = [await wrapForPassphrase(fileKey, sealer.passphrase, sealer.logN)];
  }
  return { header: serializeHeader(stanzas, fileKey), fileKey };
}

async function openWithPassphrase(header: ParsedHeader, passphrase: string | undefined): Promise<Buffer> {
  const [stanza] = header.stanzas;
  if (header.stanzas.length !== 1 || stanza === undefined) {
    throw new AgeIntegrityError(
      "header",
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
    throw new AgeIntegrityError("no-match", "incorrect passphrase", "check the passphrase and try again");
  return fileKey;
}

/** The file key if the stanza is of a type we know and was made for one of the identities; throws if malformed. */
function unwrapStanza(stanza: Stanza, identities: readonly AgeIdentity[]): Buffer | undefined {
  for (const identity of identities) {
    // Each identity looks only at stanzas of its own type, as age's do.
    const fileKey =
      stanza.type === X25519_TYPE && identity.kind === "x25519"
        ? unwrapX25519(stanza, identity)
        : stanza.type === HYBRID_TYPE && identity.kind === "mlkem768x25519"
          ? unwrapHybrid(stanza, identity)
          : undefined;
    if (fileKey !== undefined) return fileKey;
  }
  return undefined;
}

function openWithIdentities(header: ParsedHeader, openers: FileKeyOpeners): Buffer {
  // Unknown stanza types (grease, plugins) are skipped, as age does.
  for (const stanza of header.stanzas) {
    const fileKey = unwrapStanza(stanza, openers.identities);
    if (fileKey !== undefined) return fileKey;
  }
  if (openers.identities.length === 0 && openers.passphrase !== undefined) {
    throw new AgeIntegrityError(
      "no-match",
      "the archive is not encrypted with a passphrase",
      "decrypt with the identity (AGE-SECRET-KEY-1... or AGE-SECRET-KEY-PQ-1...) of one of its recipients",
    );
  }
  throw new AgeIntegrityError(
    "no-match",
    "no identity matched any of the archive's recipients",
    "use the identity (AGE-SECRET-KEY-1... or AGE-SECRET-KEY-PQ-1...) whose recipient (age1... or age1pq1...) the archive was encrypted to",
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
