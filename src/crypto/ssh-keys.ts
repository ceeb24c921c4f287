/**
 * Ed25519 signing keys in OpenSSH's own formats, so the keys and signatures work with stock ssh-keygen:
 * the private key file (PROTOCOL.key, unencrypted only), the public key line (`ssh-ed25519 AAAA... comment`) and
 * allowed_signers files (ssh-keygen(1), "ALLOWED SIGNERS"). Signing and verifying run on node:crypto.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomInt,
} from "node:crypto";
import { InputError } from "../errors.js";
import { sshString, sshUint32, unarmor, WireError, WireReader, wrapBase64 } from "./ssh-wire.js";

export const ED25519 = "ssh-ed25519";
const AUTH_MAGIC = Buffer.from("openssh-key-v1\0", "latin1");
const PRIVATE_KEY_LABEL = "OPENSSH PRIVATE KEY";
// An Ed25519 private key as PKCS#8 DER is this prefix and the 32-byte seed (RFC 8410): lets node import the seed
// from a Buffer the caller can wipe, instead of a base64 string that lingers until the next collection.
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_ED25519_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

export interface SigningKey {
  readonly privateKey: KeyObject;
  /** The raw 32-byte public key. */
  readonly publicKey: Buffer;
  readonly comment: string;
}

/** The SSH encoding of an Ed25519 public key: what signatures carry and allowed_signers lists. */
export function publicKeyBlob(publicKey: Uint8Array): Buffer {
  return Buffer.concat([sshString(ED25519), sshString(publicKey)]);
}

export function publicKeyLine(publicKey: Uint8Array, comment = ""): string {
  const line = `${ED25519} ${publicKeyBlob(publicKey).toString("base64")}`;
  return comment ? `${line} ${comment}` : line;
}

/** `SHA256:...` as ssh-keygen -l prints it: how a human tells keys apart in a message. */
export function fingerprint(publicKey: Uint8Array): string {
  return `SHA256:${createHash("sha256").update(publicKeyBlob(publicKey)).digest("base64").replace(/=+$/, "")}`;
}

export function ed25519PublicKeyObject(publicKey: Uint8Array): KeyObject {
  return createPublicKey({
    key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey]),
    format: "der",
    type: "spki",
  });
}

function rawPublicKeyOf(key: KeyObject): Buffer {
  const spki = createPublicKey(key).export({ format: "der", type: "spki" });
  return Buffer.from(spki.subarray(SPKI_ED25519_PREFIX.length));
}

function privateKeyFromSeed(seed: Buffer): KeyObject {
  const der = Buffer.concat([PKCS8_ED25519_PREFIX, seed]);
  try {
    return createPrivateKey({ key: der, format: "der", type: "pkcs8" });
  } finally {
    der.fill(0);
  }
}

/** A new key and its private key file text (unencrypted OpenSSH format). */
export function generateSigningKey(comment: string): { key: SigningKey; file: string } {
  const { privateKey } = generateKeyPairSync("ed25519");
  const pkcs8 = privateKey.export({ format: "der", type: "pkcs8" });
  const seed = Buffer.from(pkcs8.subarray(PKCS8_ED25519_PREFIX.length));
  pkcs8.fill(0);
  const publicKey = rawPublicKeyOf(privateKey);
  try {
    return { key: { privateKey, publicKey, comment }, file: formatPrivateKeyFile(seed, publicKey, comment) };
  } finally {
    seed.fill(0);
  }
}

/** PROTOCOL.key with cipher and kdf "none": the layout `ssh-keygen -t ed25519 -N ''` writes. */
function formatPrivateKeyFile(seed: Buffer, publicKey: Buffer, comment: string): string {
  const check = sshUint32(randomInt(0, 2 ** 32 - 1));
  const secret = Buffer.concat([seed, publicKey]);
  const body = [
    check,
    check,
    sshString(ED25519),
    sshString(publicKey),
    sshString(secret),
    sshString(comment),
  ];
  let length = body.reduce((sum, part) => sum + part.length, 0);
  const padding: number[] = [];
  for (let i = 1; length % 8 !== 0; i++, length++) padding.push(i);
  const section = Buffer.concat([...body, Buffer.from(padding)]);
  const blob = Buffer.concat([
    AUTH_MAGIC,
    sshString("none"),
    sshString("none"),
    sshString(""),
    sshUint32(1),
    sshString(publicKeyBlob(publicKey)),
    sshString(section),
  ]);
  const text = `-----BEGIN ${PRIVATE_KEY_LABEL}-----\n${wrapBase64(blob)}\n-----END ${PRIVATE_KEY_LABEL}-----\n`;
  secret.fill(0);
  section.fill(0);
  blob.fill(0);
  return text;
}

const SIGNING_KEY_HINT =
  "make one with `looker-backup keygen --signing --output FILE` or `ssh-keygen -t ed25519 -N '' -f FILE`";

/** Reads an unencrypted Ed25519 key in OpenSSH's format; anything else is an InputError naming what it is. */
export function parseSigningKey(text: string, where: string): SigningKey {
  const blob = unarmor(text, PRIVATE_KEY_LABEL);
  if (blob === undefined) {
    const kind = /-----BEGIN ([A-Z0-9 ]+)-----/.exec(text)?.[1];
    throw new InputError(
      `${where}: not an OpenSSH private key${kind ? ` (found ${kind.toLowerCase()})` : ""}`,
      SIGNING_KEY_HINT,
    );
  }
  try {
    if (!blob.subarray(0, AUTH_MAGIC.length).equals(AUTH_MAGIC)) throw new WireError("bad magic");
    const reader = new WireReader(blob.subarray(AUTH_MAGIC.length));
    const cipher = reader.text();
    const kdf = reader.text();
    reader.string(); // kdf options
    if (cipher !== "none" || kdf !== "none") {
      throw new InputError(
        `${where}: the signing key is encrypted with a passphrase (${cipher}), which an unattended backup cannot type`,
        "keep the key in a secret instead, unencrypted: `ssh-keygen -p -N '' -f FILE` removes the passphrase from a copy",
      );
    }
    if (reader.uint32() !== 1) throw new WireError("not one key");
    const outerPublic = new WireReader(reader.string());
    const type = outerPublic.text();
    if (type !== ED25519) {
      throw new InputError(
        `${where}: the signing key is ${type}; only ${ED25519} keys sign backups`,
        SIGNING_KEY_HINT,
      );
    }
    const section = new WireReader(reader.string());
    // Two equal check numbers: how OpenSSH tells a wrong passphrase from a right one; here, a damaged file.
    const check = section.uint32();
    if (section.uint32() !== check) throw new WireError("check bytes differ");
    if (section.text() !== ED25519) throw new WireError("key types differ");
    const publicKey = Buffer.from(section.string());
    const secret = section.string();
    const comment = section.text();
    if (publicKey.length !== 32 || secret.length !== 64 || !secret.subarray(32).equals(publicKey)) {
      throw new WireError("bad key lengths");
    }
    const seed = Buffer.from(secret.subarray(0, 32));
    const privateKey = privateKeyFromSeed(seed);
    seed.fill(0);
    if (!rawPublicKeyOf(privateKey).equals(publicKey)) throw new WireError("public key does not match");
    return { privateKey, publicKey, comment };
  } catch (error) {
    if (error instanceof InputError) throw error;
    throw new InputError(`${where}: the OpenSSH private key is damaged`, SIGNING_KEY_HINT, error);
  } finally {
    blob.fill(0);
  }
}

export interface TrustedSigner {
  readonly publicKey: Buffer;
  /** Principals from allowed_signers (empty for a bare public key line). */
  readonly principals: readonly string[];
}

/** Keys whose signatures restore accepts, by their SSH public key blob (base64). */
export class TrustedSigners {
  readonly #byBlob = new Map<string, TrustedSigner>();

  add(signer: TrustedSigner): void {
    this.#byBlob.set(publicKeyBlob(signer.publicKey).toString("base64"), signer);
  }

  /**
   * The signer with this key, when its line trusts it for `principal`: a bare key line for any, an allowed_signers
   * line only for a principal its pattern list matches, as `ssh-keygen -Y verify -I <principal>` decides.
   */
  find(publicKey: Uint8Array, principal = SIGNER_PRINCIPAL): TrustedSigner | undefined {
    const signer = this.#byBlob.get(publicKeyBlob(publicKey).toString("base64"));
    if (signer === undefined || signer.principals.length === 0) return signer;
    return matchesPatternList(signer.principals, principal) ? signer : undefined;
  }

  /** A signer with this key whatever its principals: to tell "not trusted" from "trusted for other principals". */
  withKey(publicKey: Uint8Array): TrustedSigner | undefined {
    return this.#byBlob.get(publicKeyBlob(publicKey).toString("base64"));
  }

  get size(): number {
    return this.#byBlob.size;
  }
}

export const SIGNATURE_NAMESPACE = "looker-backup";
/**
 * The principal a backup's signer must be listed under: what `keygen --signing` writes in its allowed_signers line
 * and what the README's `ssh-keygen -Y verify -I looker-backup` names.
 */
export const SIGNER_PRINCIPAL = "looker-backup";

const TRUSTED_HINT =
  "give OpenSSH allowed_signers lines (`looker-backup ssh-ed25519 AAAA...`) or bare `ssh-ed25519 AAAA...` public keys, as `looker-backup keygen --signing` prints them";

/**
 * Parses allowed_signers lines or bare public key lines. A line naming other namespaces (`namespaces="git"`) is
 * not trusted for backups; cert-authority and validity options are refused rather than half-honoured.
 */
export function parseTrustedSigners(text: string, where: string): TrustedSigners {
  const signers = new TrustedSigners();
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, index) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const at = `${where} line ${index + 1}`;
    const fields = splitFields(line);
    const keyAt = fields.findIndex((field) => field === ED25519 || /^(ssh|ecdsa|sk)-/.test(field));
    if (keyAt < 0 || keyAt > 2 || fields[keyAt + 1] === undefined) {
      throw new InputError(`${at}: not a public key or allowed_signers line`, TRUSTED_HINT);
    }
    if (fields[keyAt] !== ED25519) {
      throw new InputError(
        `${at}: ${fields[keyAt]} keys cannot have signed a backup; only ${ED25519}`,
        TRUSTED_HINT,
      );
    }
    const principals = keyAt > 0 ? fields[0]!.split(",") : [];
    if (keyAt === 2 && !optionsAllowBackups(fields[1]!, at)) return;
    signers.add({ publicKey: publicKeyOf(fields[keyAt + 1]!, at), principals });
  });
  if (signers.size === 0) {
    throw new InputError(
      `${where}: no ${ED25519} key trusted for namespace ${SIGNATURE_NAMESPACE}`,
      TRUSTED_HINT,
    );
  }
  return signers;
}

function publicKeyOf(base64: string, at: string): Buffer {
  try {
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) throw new WireError("not base64");
    const reader = new WireReader(Buffer.from(base64, "base64"));
    const type = reader.text();
    const key = reader.string();
    if (type !== ED25519 || key.length !== 32 || reader.remaining !== 0) throw new WireError("not ed25519");
    return Buffer.from(key);
  } catch (error) {
    throw new InputError(`${at}: the ${ED25519} public key is damaged`, TRUSTED_HINT, error);
  }
}

/** Whitespace-separated fields; a double-quoted stretch (an option's value) may hold spaces. */
function splitFields(line: string): string[] {
  return line.match(/(?:[^\s"]+|"[^"]*")+/g) ?? [];
}

function optionsAllowBackups(options: string, at: string): boolean {
  let allowed = true;
  for (const option of options.match(/(?:[^,"]+|"[^"]*")+/g) ?? []) {
    const [name = "", value = ""] = option.split(/=(.*)/s);
    if (name.toLowerCase() === "namespaces") {
      const patterns = value.replace(/^"|"$/g, "").split(",");
      allowed = matchesPatternList(patterns, SIGNATURE_NAMESPACE);
    } else {
      throw new InputError(
        `${at}: the allowed_signers option ${name} is not supported here`,
        "list the signing key without it (namespaces= is the only option honoured)",
      );
    }
  }
  return allowed;
}

/**
 * OpenSSH's match_pattern_list: a pattern starting with "!" that matches rules the text out, whatever else matches;
 * otherwise any matching pattern lets it in.
 */
function matchesPatternList(patterns: readonly string[], text: string): boolean {
  let matched = false;
  for (const raw of patterns) {
    const pattern = raw.trim();
    if (pattern.startsWith("!")) {
      if (globMatches(pattern.slice(1), text)) return false;
    } else if (globMatches(pattern, text)) matched = true;
  }
  return matched;
}

/** OpenSSH's match_pattern: `*` and `?` wildcards, nothing else. */
function globMatches(pattern: string, text: string): boolean {
  const regex = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, "\\$&")
      .replace(/\*/g, ".*")
      .replace(/\?/g, ".")}$`,
  );
  return regex.test(text);
}
