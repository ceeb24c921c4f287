/**
 * Authenticity: whether an archive was signed by a trusted backup key. Anyone who holds the public age recipient
 * can make an archive that decrypts and passes every catalog check; only the holder of the signing key can make
 * `<archive>.sig`. Checked on the archive's bytes as stored, before anything is decrypted or extracted.
 */

import { createHash, type Hash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { Transform, type TransformCallback } from "node:stream";
import { fileDigest } from "../crypto/digest.js";
import {
  fingerprint,
  SIGNATURE_NAMESPACE,
  SIGNER_PRINCIPAL,
  type TrustedSigners,
} from "../crypto/ssh-keys.js";
import { parseSignature, type SshsigHash, signatureMatches } from "../crypto/sshsig.js";
import { IntegrityError } from "../errors.js";

export const NOT_CHECKED_WARNING = "authenticity not checked: no trusted signers configured";

export interface SignedDigest {
  readonly algorithm: SshsigHash;
  readonly digest: Buffer;
}

export type AuthenticityResult =
  | { readonly checked: false; readonly warning: string }
  | {
      readonly checked: true;
      /** The signer's fingerprint and, from allowed_signers, its principals. */
      readonly signer: string;
      /** What the signature covers: a restore checks the bytes it decrypts are these (see DigestCheck). */
      readonly signed: SignedDigest;
    };

/**
 * With trusted signers: the archive's signature (default `<archive>.sig` beside it) must exist, be for namespace
 * looker-backup, be by a trusted key and match the archive, else an IntegrityError. Without: a warning, no check.
 */
export async function checkAuthenticity(
  archive: string,
  trusted: TrustedSigners | undefined,
  signatureFile = `${archive}.sig`,
): Promise<AuthenticityResult> {
  if (trusted === undefined) return { checked: false, warning: NOT_CHECKED_WARNING };
  const name = basename(archive);
  let text: string;
  try {
    text = await readFile(signatureFile, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    throw new IntegrityError(
      `${name} is not signed: there is no ${basename(signatureFile)} beside it, and trusted signers are configured`,
      "do not restore it: anyone with the public age recipient can make an archive; restore one signed by a trusted key (backups sign with signing-key / --signing-key)",
      error,
    );
  }
  const signature = parseSignature(text, basename(signatureFile));
  if (signature.namespace !== SIGNATURE_NAMESPACE) {
    throw new IntegrityError(
      `${name}: the signature is for namespace '${signature.namespace}', not '${SIGNATURE_NAMESPACE}'`,
      "a signature made for another purpose does not vouch for a backup; do not restore this archive",
    );
  }
  const signer = trusted.find(signature.publicKey);
  if (signer === undefined && trusted.withKey(signature.publicKey) !== undefined) {
    throw new IntegrityError(
      `${name} is signed by ${fingerprint(signature.publicKey)}, which trusted-signers lists only for other principals than ${SIGNER_PRINCIPAL}`,
      `list the key under the principal ${SIGNER_PRINCIPAL} (as \`looker-backup keygen --signing\` prints its line), as \`ssh-keygen -Y verify -I ${SIGNER_PRINCIPAL}\` requires too`,
    );
  }
  if (signer === undefined) {
    throw new IntegrityError(
      `${name} is signed by ${fingerprint(signature.publicKey)}, which is not a trusted signer`,
      "do not restore it unless that key is yours; if it is, add its public key to trusted-signers (--trusted-signers)",
    );
  }
  const digest = await fileDigest(archive, signature.hashAlgorithm);
  if (!signatureMatches(signature, digest)) {
    throw new IntegrityError(
      `${name}: bad signature: the archive is not what ${fingerprint(signature.publicKey)} signed`,
      "do not restore it: it was altered or forged after the backup; restore an earlier archive",
    );
  }
  const principals = signer.principals.length > 0 ? ` (${signer.principals.join(", ")})` : "";
  return {
    checked: true,
    signer: `${fingerprint(signature.publicKey)}${principals}`,
    signed: { algorithm: signature.hashAlgorithm, digest },
  };
}

/**
 * Passes bytes through and fails at their end unless they hash to the signed digest: the file was checked before
 * it was read, and this makes sure the bytes decrypted are the bytes checked, even if the file changed in between.
 * A restore fails before anything is moved into place.
 */
export class DigestCheck extends Transform {
  readonly #hash: Hash;

  constructor(
    private readonly expected: SignedDigest,
    private readonly name: string,
  ) {
    super();
    this.#hash = createHash(expected.algorithm);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#hash.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.#hash.digest().equals(this.expected.digest)) callback();
    else
      callback(
        new IntegrityError(
          `${this.name} changed while it was read: the bytes decrypted are not the ones whose signature was checked`,
          "nothing was restored; find out what writes to the archive's directory, then restore again",
        ),
      );
  }
}
