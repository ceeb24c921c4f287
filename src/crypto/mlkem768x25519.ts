/**
 * MLKEM768-X25519 (X-Wing), the hybrid KEM of draft-ietf-hpke-pq that age's `mlkem768x25519` stanza uses, and the
 * one-shot HPKE base mode (RFC 9180: HKDF-SHA256, ChaCha20-Poly1305) that wraps the file key with it.
 * ML-KEM-768, SHAKE256 and SHA3-256 come from node:crypto (OpenSSL 3.5); X25519 from x25519.ts.
 *
 * A key is a 32-byte seed, expanded with SHAKE256 into the 64-byte ML-KEM seed (d || z) and the X25519 secret.
 * The public key is the ML-KEM encapsulation key (1184 bytes) || the X25519 public key (32); the encapsulated key
 * is the ML-KEM ciphertext (1088) || the ephemeral X25519 share (32). The shared secret is
 * SHA3-256(ss_mlkem || ss_x25519 || share || recipient_x25519 || "\.//^\"), so it holds while either half does.
 */
// A namespace import: a Node.js 24 before 24.7 lacks encapsulate/decapsulate, and named imports of them would fail
// the whole program at load time, where only post-quantum keys need them (and say so, see mlkemUnavailable).
import * as nodeCrypto from "node:crypto";
import { createHash, createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { InputError } from "../errors.js";
import { aeadOpen, aeadSeal, hmacSha256 } from "./primitives.js";
import { X25519_KEY_LENGTH, x25519GenerateSecret, x25519PublicKey, x25519SharedSecret } from "./x25519.js";

export const HYBRID_SEED_LENGTH = 32;
const MLKEM_SEED_LENGTH = 64;
const MLKEM_PUBLIC_KEY_LENGTH = 1184;
const MLKEM_CIPHERTEXT_LENGTH = 1088;
export const HYBRID_PUBLIC_KEY_LENGTH = MLKEM_PUBLIC_KEY_LENGTH + X25519_KEY_LENGTH;
export const HYBRID_ENC_LENGTH = MLKEM_CIPHERTEXT_LENGTH + X25519_KEY_LENGTH;

/** X-Wing's combiner label, the six bytes `\./` `/^\`. */
const XWING_LABEL = Buffer.from("5c2e2f2f5e5c", "hex");

/** PKCS#8 of an ML-KEM-768 key in its seed-only form, and SPKI of an encapsulation key (OID 2.16.840.1.101.3.4.4.2). */
const MLKEM_PKCS8_SEED_PREFIX = Buffer.from("3054020100300b060960864801650304040204428040", "hex");
const MLKEM_SPKI_PREFIX = Buffer.from("308204b2300b0609608648016503040402038204a100", "hex");

export interface HybridPrivateKey {
  /** The 32-byte seed: what the identity string encodes. */
  readonly seed: Buffer;
  readonly mlkem: KeyObject;
  readonly x25519Secret: Buffer;
  readonly x25519Public: Buffer;
  /** The 1216-byte public key: what the recipient string encodes. */
  readonly publicKey: Buffer;
}

export interface HybridPublicKey {
  readonly mlkem: KeyObject;
  readonly x25519Public: Buffer;
}

function mlkemUnavailable(error: unknown): InputError {
  return new InputError(
    `this Node.js (${process.version}, OpenSSL ${process.versions.openssl}) has no ML-KEM-768, needed for post-quantum (age1pq1) keys`,
    "run on Node.js 24.7 or newer",
    error,
  );
}

/** Expands a 32-byte seed into the key pair, as draft-ietf-hpke-pq (and filippo.io/hpke's NewPrivateKey) does. */
export function hybridPrivateKey(seed: Uint8Array): HybridPrivateKey {
  const expanded = createHash("shake256", { outputLength: MLKEM_SEED_LENGTH + X25519_KEY_LENGTH })
    .update(seed)
    .digest();
  mlkemFunctions();
  let mlkem: KeyObject;
  try {
    mlkem = createPrivateKey({
      key: Buffer.concat([MLKEM_PKCS8_SEED_PREFIX, expanded.subarray(0, MLKEM_SEED_LENGTH)]),
      format: "der",
      type: "pkcs8",
    });
  } catch (error) {
    throw mlkemUnavailable(error);
  }
  // Any 32 bytes are an X25519 secret (the scalar is clamped when used), so no rejection loop is needed here.
  const x25519Secret = expanded.subarray(MLKEM_SEED_LENGTH);
  const x25519Public = x25519PublicKey(x25519Secret);
  const spki = createPublicKey(mlkem).export({ format: "der", type: "spki" });
  // Guard the fixed-layout assumption, as for X25519: another DER layout would shift the key bytes.
  if (
    spki.length !== MLKEM_SPKI_PREFIX.length + MLKEM_PUBLIC_KEY_LENGTH ||
    !spki.subarray(0, MLKEM_SPKI_PREFIX.length).equals(MLKEM_SPKI_PREFIX)
  ) {
    throw new Error("unexpected SPKI layout for an ML-KEM-768 key");
  }
  const publicKey = Buffer.concat([spki.subarray(MLKEM_SPKI_PREFIX.length), x25519Public]);
  return { seed: Buffer.from(seed), mlkem, x25519Secret, x25519Public, publicKey };
}

/**
 * Parses a 1216-byte public key; undefined when its ML-KEM half is not a valid encapsulation key (FIPS 203's
 * modulus check, done by OpenSSL on import).
 */
export function hybridPublicKey(publicKey: Uint8Array): HybridPublicKey | undefined {
  if (publicKey.length !== HYBRID_PUBLIC_KEY_LENGTH) return undefined;
  mlkemFunctions();
  try {
    const mlkem = createPublicKey({
      key: Buffer.concat([MLKEM_SPKI_PREFIX, publicKey.subarray(0, MLKEM_PUBLIC_KEY_LENGTH)]),
      format: "der",
      type: "spki",
    });
    return { mlkem, x25519Public: Buffer.from(publicKey.subarray(MLKEM_PUBLIC_KEY_LENGTH)) };
  } catch {
    return undefined;
  }
}

function mlkemFunctions(): Pick<typeof nodeCrypto, "encapsulate" | "decapsulate"> {
  const { encapsulate, decapsulate } = nodeCrypto as Partial<typeof nodeCrypto>;
  if (typeof encapsulate !== "function" || typeof decapsulate !== "function")
    throw mlkemUnavailable(undefined);
  return { encapsulate, decapsulate };
}

function combine(ssMlkem: Buffer, ssX25519: Buffer, share: Buffer, recipientX25519: Buffer): Buffer {
  return createHash("sha3-256")
    .update(ssMlkem)
    .update(ssX25519)
    .update(share)
    .update(recipientX25519)
    .update(XWING_LABEL)
    .digest();
}

/** A fresh shared secret and its encapsulation; undefined when the X25519 half is a low-order point. */
function hybridEncapsulate(recipient: HybridPublicKey): { sharedSecret: Buffer; enc: Buffer } | undefined {
  const { sharedKey, ciphertext } = mlkemFunctions().encapsulate(recipient.mlkem);
  const ephemeral = x25519GenerateSecret();
  const share = x25519PublicKey(ephemeral);
  const ssX25519 = x25519SharedSecret(ephemeral, recipient.x25519Public);
  if (ssX25519 === undefined) return undefined;
  return {
    sharedSecret: combine(sharedKey, ssX25519, share, recipient.x25519Public),
    enc: Buffer.concat([ciphertext, share]),
  };
}

/**
 * The shared secret of an encapsulation, or undefined when its X25519 half is a low-order point (an all-zero
 * X25519 secret, which the spec and age reject). ML-KEM rejects implicitly: a wrong or corrupted ciphertext gives a
 * pseudorandom secret, noticed only when the AEAD fails to open.
 */
function hybridDecapsulate(key: HybridPrivateKey, enc: Buffer): Buffer | undefined {
  const ciphertext = enc.subarray(0, MLKEM_CIPHERTEXT_LENGTH);
  const share = enc.subarray(MLKEM_CIPHERTEXT_LENGTH);
  const ssX25519 = x25519SharedSecret(key.x25519Secret, share);
  if (ssX25519 === undefined) return undefined;
  return combine(mlkemFunctions().decapsulate(key.mlkem, ciphertext), ssX25519, share, key.x25519Public);
}

// HPKE (RFC 9180) base mode, single-shot. suite_id = "HPKE" || kem 0x647a || kdf HKDF-SHA256 0x0001 || aead
// ChaCha20Poly1305 0x0003.
const SUITE_ID = Buffer.concat([
  Buffer.from("HPKE", "latin1"),
  Buffer.from([0x64, 0x7a, 0x00, 0x01, 0x00, 0x03]),
]);
const HPKE_VERSION = Buffer.from("HPKE-v1", "latin1");
const MODE_BASE = 0x00;
const AEAD_KEY_LENGTH = 32;
const AEAD_NONCE_LENGTH = 12;

function labeledExtract(salt: Uint8Array, label: string, ikm: Uint8Array): Buffer {
  // HKDF-Extract is HMAC keyed by the salt; an empty salt and HashLen zero bytes key HMAC identically.
  return hmacSha256(salt, Buffer.concat([HPKE_VERSION, SUITE_ID, Buffer.from(label, "latin1"), ikm]));
}

/** HKDF-Expand for the short outputs HPKE needs here (at most one SHA-256 block). */
function labeledExpand(prk: Uint8Array, label: string, info: Uint8Array, length: number): Buffer {
  const lengthPrefix = Buffer.from([length >> 8, length & 0xff]);
  const labeledInfo = Buffer.concat([
    lengthPrefix,
    HPKE_VERSION,
    SUITE_ID,
    Buffer.from(label, "latin1"),
    info,
  ]);
  return hmacSha256(prk, Buffer.concat([labeledInfo, Buffer.from([1])])).subarray(0, length);
}

/** The key schedule context depends on the info string only, so each info's context is computed once. */
const contexts = new Map<string, Buffer>();

function keySchedule(sharedSecret: Buffer, info: string): { key: Buffer; nonce: Buffer } {
  let context = contexts.get(info);
  if (context === undefined) {
    const empty = Buffer.alloc(0);
    context = Buffer.concat([
      Buffer.from([MODE_BASE]),
      labeledExtract(empty, "psk_id_hash", empty),
      labeledExtract(empty, "info_hash", Buffer.from(info, "latin1")),
    ]);
    contexts.set(info, context);
  }
  const secret = labeledExtract(sharedSecret, "secret", Buffer.alloc(0));
  return {
    key: labeledExpand(secret, "key", context, AEAD_KEY_LENGTH),
    // The first (and only) message uses sequence number 0, so its nonce is the base nonce itself.
    nonce: labeledExpand(secret, "base_nonce", context, AEAD_NONCE_LENGTH),
  };
}

/** HPKE SealBase with empty aad: the encapsulated key and the ciphertext; undefined for a low-order X25519 key. */
export function hpkeSeal(
  recipient: HybridPublicKey,
  info: string,
  plaintext: Uint8Array,
): { enc: Buffer; ciphertext: Buffer } | undefined {
  const encapsulated = hybridEncapsulate(recipient);
  if (encapsulated === undefined) return undefined;
  const { key, nonce } = keySchedule(encapsulated.sharedSecret, info);
  return { enc: encapsulated.enc, ciphertext: aeadSeal(key, plaintext, nonce) };
}

/**
 * HPKE OpenBase with empty aad. `enc` must be HYBRID_ENC_LENGTH bytes. Returns "low-order" when the X25519 share is
 * a low-order point (a malformed stanza), undefined when the ciphertext does not open (not for this key).
 */
export function hpkeOpen(
  key: HybridPrivateKey,
  info: string,
  enc: Buffer,
  ciphertext: Uint8Array,
): Buffer | "low-order" | undefined {
  const sharedSecret = hybridDecapsulate(key, enc);
  if (sharedSecret === undefined) return "low-order";
  const schedule = keySchedule(sharedSecret, info);
  return aeadOpen(schedule.key, ciphertext, schedule.nonce);
}
