/**
 * X25519 on raw 32-byte keys, on node:crypto. Node wants KeyObjects, so raw keys are wrapped in the fixed
 * DER prefixes of PKCS#8 / SPKI for OID 1.3.101.110 (the bytes never vary for X25519).
 */
import {
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  type KeyObject,
} from "node:crypto";

export const X25519_KEY_LENGTH = 32;

const PKCS8_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");
const SPKI_PREFIX = Buffer.from("302a300506032b656e032100", "hex");

function privateKeyObject(secret: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, secret]), format: "der", type: "pkcs8" });
}

function publicKeyObject(publicKey: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: "der", type: "spki" });
}

/** A fresh random secret scalar (32 bytes). */
export function x25519GenerateSecret(): Buffer {
  const { privateKey } = generateKeyPairSync("x25519");
  const der = privateKey.export({ format: "der", type: "pkcs8" });
  // Guard the fixed-layout assumption: a PKCS#8 with optional fields would shift the key bytes.
  if (
    der.length !== PKCS8_PREFIX.length + X25519_KEY_LENGTH ||
    !der.subarray(0, PKCS8_PREFIX.length).equals(PKCS8_PREFIX)
  ) {
    throw new Error("unexpected PKCS#8 layout for an X25519 key");
  }
  return der.subarray(PKCS8_PREFIX.length);
}

/** The public key (scalar times the base point) of a 32-byte secret. */
export function x25519PublicKey(secret: Uint8Array): Buffer {
  const spki = createPublicKey(privateKeyObject(secret)).export({ format: "der", type: "spki" });
  return spki.subarray(SPKI_PREFIX.length);
}

/**
 * The shared secret, or undefined when it would be all zeros (a low-order public key): age rejects those,
 * and OpenSSL refuses to derive them.
 */
export function x25519SharedSecret(secret: Uint8Array, publicKey: Uint8Array): Buffer | undefined {
  try {
    const shared = diffieHellman({
      privateKey: privateKeyObject(secret),
      publicKey: publicKeyObject(publicKey),
    });
    return shared.every((byte) => byte === 0) ? undefined : shared;
  } catch {
    return undefined;
  }
}
