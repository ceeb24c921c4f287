/**
 * OpenSSH signatures (PROTOCOL.sshsig), the format of `ssh-keygen -Y sign`: a detached, armored signature over
 * H(message), so the archive is hashed while it streams and only the digest is signed. Stock
 * `ssh-keygen -Y verify` checks what this writes, and this checks what ssh-keygen writes (Ed25519 keys).
 */
import { sign, verify } from "node:crypto";
import { IntegrityError } from "../errors.js";
import { ED25519, ed25519PublicKeyObject, publicKeyBlob, type SigningKey } from "./ssh-keys.js";
import { sshString, sshUint32, unarmor, WireError, WireReader, wrapBase64 } from "./ssh-wire.js";

const MAGIC = Buffer.from("SSHSIG", "latin1");
const VERSION = 1;
const LABEL = "SSH SIGNATURE";

export type SshsigHash = "sha256" | "sha512";

/** The bytes the key signs: the magic preamble, namespace, reserved, hash algorithm and H(message). */
function signedData(namespace: string, hashAlgorithm: string, digest: Uint8Array): Buffer {
  return Buffer.concat([
    MAGIC,
    sshString(namespace),
    sshString(""),
    sshString(hashAlgorithm),
    sshString(digest),
  ]);
}

/** Signs a message's sha512 digest; returns the armored signature, lines of 70 columns as ssh-keygen writes. */
export function signDigest(key: SigningKey, namespace: string, sha512: Uint8Array): string {
  if (sha512.length !== 64) throw new Error("signDigest needs a sha512 digest");
  const signature = sign(null, signedData(namespace, "sha512", sha512), key.privateKey);
  const blob = Buffer.concat([
    MAGIC,
    sshUint32(VERSION),
    sshString(publicKeyBlob(key.publicKey)),
    sshString(namespace),
    sshString(""),
    sshString("sha512"),
    sshString(Buffer.concat([sshString(ED25519), sshString(signature)])),
  ]);
  return `-----BEGIN ${LABEL}-----\n${wrapBase64(blob)}\n-----END ${LABEL}-----\n`;
}

export interface ParsedSignature {
  readonly publicKey: Buffer;
  readonly namespace: string;
  readonly hashAlgorithm: SshsigHash;
  readonly signature: Buffer;
}

/** Reads an armored signature; a malformed one is an IntegrityError (it came with the archive). */
export function parseSignature(text: string, where: string): ParsedSignature {
  const blob = unarmor(text, LABEL);
  const damaged = (detail: string, cause?: unknown) =>
    new IntegrityError(
      `${where}: not a usable ssh signature (${detail})`,
      "do not restore this archive: its signature file is damaged or not one `looker-backup backup --signing-key` wrote",
      cause,
    );
  if (blob === undefined) throw damaged("no -----BEGIN SSH SIGNATURE----- armor");
  try {
    if (!blob.subarray(0, MAGIC.length).equals(MAGIC)) throw new WireError("no SSHSIG preamble");
    const reader = new WireReader(blob.subarray(MAGIC.length));
    const version = reader.uint32();
    if (version !== VERSION) throw new WireError(`version ${version}`);
    const key = new WireReader(reader.string());
    const keyType = key.text();
    const publicKey = Buffer.from(key.string());
    const namespace = reader.text();
    reader.string(); // reserved: ignored, as PROTOCOL.sshsig says
    const hashAlgorithm = reader.text();
    const sig = new WireReader(reader.string());
    const sigType = sig.text();
    const signature = Buffer.from(sig.string());
    if (reader.remaining !== 0) throw new WireError("trailing bytes");
    if (keyType !== ED25519 || sigType !== ED25519 || publicKey.length !== 32 || signature.length !== 64) {
      throw new WireError(`${keyType} key, ${sigType} signature: only ${ED25519} is accepted`);
    }
    if (hashAlgorithm !== "sha256" && hashAlgorithm !== "sha512") {
      throw new WireError(`hash algorithm ${hashAlgorithm}`);
    }
    return { publicKey, namespace, hashAlgorithm, signature };
  } catch (error) {
    throw damaged(error instanceof Error ? error.message : String(error), error);
  }
}

/** Whether the signature is the key's over this digest in this namespace (the caller checks the key is trusted). */
export function signatureMatches(parsed: ParsedSignature, digest: Uint8Array): boolean {
  return verify(
    null,
    signedData(parsed.namespace, parsed.hashAlgorithm, digest),
    ed25519PublicKeyObject(parsed.publicKey),
    parsed.signature,
  );
}
