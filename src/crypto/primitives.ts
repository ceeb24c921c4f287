/**
 * The few primitives age is built from, on node:crypto: HKDF-SHA256, HMAC-SHA256, ChaCha20-Poly1305 one-shot
 * seal/open (for the small header payloads; the STREAM payload has its own batched loop) and strict base64.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync } from "node:crypto";

export const AEAD_TAG_LENGTH = 16;
export const AEAD_NONCE_LENGTH = 12;
const ZERO_NONCE = Buffer.alloc(AEAD_NONCE_LENGTH);

/** HKDF-SHA256 with a 32-byte output, as everywhere in age. */
export function hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: string): Buffer {
  return Buffer.from(hkdfSync("sha256", ikm, salt, info, 32));
}

export function hmacSha256(key: Uint8Array, message: Uint8Array): Buffer {
  return createHmac("sha256", key).update(message).digest();
}

/** ChaCha20-Poly1305 encrypt; returns ciphertext || tag. Defaults to the all-zero nonce age uses for stanzas. */
export function aeadSeal(key: Uint8Array, plaintext: Uint8Array, nonce: Uint8Array = ZERO_NONCE): Buffer {
  const cipher = createCipheriv("chacha20-poly1305", key, nonce, { authTagLength: AEAD_TAG_LENGTH });
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

/** ChaCha20-Poly1305 decrypt of ciphertext || tag; undefined when authentication fails. */
export function aeadOpen(
  key: Uint8Array,
  sealed: Uint8Array,
  nonce: Uint8Array = ZERO_NONCE,
): Buffer | undefined {
  if (sealed.length < AEAD_TAG_LENGTH) return undefined;
  const decipher = createDecipheriv("chacha20-poly1305", key, nonce, { authTagLength: AEAD_TAG_LENGTH });
  decipher.setAuthTag(sealed.subarray(sealed.length - AEAD_TAG_LENGTH));
  const plaintext = decipher.update(sealed.subarray(0, sealed.length - AEAD_TAG_LENGTH));
  try {
    decipher.final();
  } catch {
    return undefined;
  }
  return plaintext;
}

/** Standard base64 without padding, as age writes it. */
export function encodeBase64Raw(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64").replace(/=+$/, "");
}

const BASE64_RAW = /^[A-Za-z0-9+/]*$/;

/**
 * Strict decoding of unpadded standard base64: no padding, no whitespace, and canonical (unused trailing bits
 * must be zero), so that every byte string has exactly one encoding, as in Go's RawStdEncoding.Strict.
 */
export function decodeBase64Raw(text: string): Buffer | undefined {
  if (!BASE64_RAW.test(text) || text.length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, "base64");
  return encodeBase64Raw(bytes) === text ? bytes : undefined;
}
