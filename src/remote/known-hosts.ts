/**
 * OpenSSH known_hosts, parsed and checked the way `ssh -o StrictHostKeyChecking=yes` does: plain names with
 * `*`/`?` wildcards and `!` negation, comma-separated name lists, `[host]:port` for non-standard ports, hashed
 * `|1|salt|hash` names (HMAC-SHA1 of the name keyed by the salt) and the `@revoked` marker. Host keys are compared
 * as raw SSH wire blobs, so every key type (ed25519, ecdsa, rsa, ...) is handled alike.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import { InputError } from "../errors.js";

export interface KnownHostEntry {
  /** 1-based line number in the known_hosts text, for messages. */
  readonly line: number;
  /** `@revoked` keys are refused for the hosts they name; `@cert-authority` lines are kept but never match. */
  readonly marker: "revoked" | "cert-authority" | undefined;
  /** The host field as written: a comma-separated pattern list or one hashed `|1|salt|hash` name. */
  readonly hosts: string;
  readonly keyType: string;
  /** The public key in SSH wire format (what the server sends during key exchange). */
  readonly key: Buffer;
}

export interface KnownHosts {
  readonly entries: readonly KnownHostEntry[];
  /** Lines that were not blank, not comments and not parseable: ignored, like OpenSSH, but worth a mention. */
  readonly malformedLines: readonly number[];
}

export type HostKeyVerdict =
  | { readonly kind: "known" }
  | { readonly kind: "unknown" }
  /** The host is listed, but not with this key: a changed key, never accepted. */
  | { readonly kind: "mismatch"; readonly knownKeyTypes: readonly string[] }
  | { readonly kind: "revoked" };

export function parseKnownHosts(text: string): KnownHosts {
  const entries: KnownHostEntry[] = [];
  const malformedLines: number[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const entry = parseLine(line, index + 1);
    if (entry === undefined) malformedLines.push(index + 1);
    else entries.push(entry);
  });
  return { entries, malformedLines };
}

export async function readKnownHostsFile(path: string): Promise<KnownHosts> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new InputError(
      `could not read known_hosts file ${path}: ${(error as Error).message}`,
      "give the path of an OpenSSH known_hosts file (ssh-keyscan output works)",
      error,
    );
  }
  return parseKnownHosts(text);
}

/** The name OpenSSH looks up: `host` on port 22, `[host]:port` otherwise. */
export function knownHostName(host: string, port = 22): string {
  const name = host.toLowerCase();
  return port === 22 ? name : `[${name}]:${port}`;
}

/** Decides whether `offeredKey` (wire format) is the key known_hosts lists for host:port. */
export function checkHostKey(
  known: KnownHosts,
  host: string,
  port: number,
  offeredKey: Buffer,
): HostKeyVerdict {
  const forHost = entriesForHost(known, host, port);
  if (forHost.some((e) => e.marker === "revoked" && e.key.equals(offeredKey))) return { kind: "revoked" };
  const listed = forHost.filter((e) => e.marker === undefined);
  if (listed.some((e) => e.key.equals(offeredKey))) return { kind: "known" };
  if (listed.length === 0) return { kind: "unknown" };
  return { kind: "mismatch", knownKeyTypes: [...new Set(listed.map((e) => e.keyType))] };
}

/** The entries (of any marker) whose host field matches host:port. */
export function entriesForHost(known: KnownHosts, host: string, port: number): KnownHostEntry[] {
  const names = candidateNames(host, port);
  return known.entries.filter((entry) => names.some((name) => hostFieldMatches(entry.hosts, name)));
}

/**
 * Host key algorithms to offer first: those of the keys already known for the host, so a server with several
 * host keys presents the one we can check (OpenSSH orders its HostKeyAlgorithms the same way).
 */
export function preferredHostKeyAlgorithms(known: KnownHosts, host: string, port: number): string[] {
  const types = entriesForHost(known, host, port)
    .filter((e) => e.marker === undefined)
    .map((e) => e.keyType);
  return [...new Set(types.flatMap(algorithmsForKeyType))];
}

/** `SHA256:base64` without padding, as `ssh-keygen -lf` prints it. */
export function fingerprintSha256(key: Buffer): string {
  return `SHA256:${createHash("sha256").update(key).digest("base64").replace(/=+$/, "")}`;
}

/** The key type named inside a wire-format key blob (its first SSH string), e.g. `ssh-ed25519`. */
export function keyTypeOf(key: Buffer): string | undefined {
  if (key.length < 4) return undefined;
  const length = key.readUInt32BE(0);
  if (length === 0 || length > 64 || 4 + length > key.length) return undefined;
  return key.subarray(4, 4 + length).toString("latin1");
}

/** The known_hosts line that records `key` for host:port (what `ssh-keyscan` would print). */
export function knownHostsLine(host: string, port: number, key: Buffer): string {
  return `${knownHostName(host, port)} ${keyTypeOf(key) ?? "unknown"} ${key.toString("base64")}`;
}

/** The keyed hash OpenSSH stores for a hashed name (HashKnownHosts): HMAC-SHA1(key = salt, name). */
export function hashHostName(name: string, salt: Buffer): Buffer {
  return createHmac("sha1", salt).update(name).digest();
}

// ---------------------------------------------------------------------------------------------------

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

function parseLine(line: string, lineNumber: number): KnownHostEntry | undefined {
  const fields = line.split(/\s+/);
  let marker: KnownHostEntry["marker"];
  if (fields[0]?.startsWith("@")) {
    const name = fields.shift();
    if (name === "@revoked") marker = "revoked";
    else if (name === "@cert-authority") marker = "cert-authority";
    else return undefined;
  }
  const [hosts, keyType, encoded] = fields;
  if (hosts === undefined || keyType === undefined || encoded === undefined || !BASE64.test(encoded)) {
    return undefined;
  }
  const key = Buffer.from(encoded, "base64");
  // The blob names its own type; a line whose two types disagree is corrupt (or tampered with).
  if (keyTypeOf(key) !== keyType) return undefined;
  return { line: lineNumber, marker, hosts, keyType, key };
}

/** Port 22 hosts are written plain; `[host]:22` is accepted too, as it names the same endpoint. */
function candidateNames(host: string, port: number): string[] {
  const names = [knownHostName(host, port)];
  if (port === 22) names.push(`[${host.toLowerCase()}]:22`);
  return names;
}

function hostFieldMatches(field: string, name: string): boolean {
  if (field.startsWith("|")) return hashedNameMatches(field, name);
  // OpenSSH's match_hostlist: any matching negated pattern vetoes, otherwise any positive match wins.
  let matched = false;
  for (const pattern of field.split(",")) {
    if (pattern.startsWith("!")) {
      if (wildcardMatches(pattern.slice(1), name)) return false;
    } else if (wildcardMatches(pattern, name)) {
      matched = true;
    }
  }
  return matched;
}

function hashedNameMatches(field: string, name: string): boolean {
  const [, version, salt, hash] = field.split("|");
  if (version !== "1" || salt === undefined || hash === undefined) return false;
  if (!BASE64.test(salt) || !BASE64.test(hash)) return false;
  const expected = Buffer.from(hash, "base64");
  const actual = hashHostName(name, Buffer.from(salt, "base64"));
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

function wildcardMatches(pattern: string, name: string): boolean {
  const source = [...pattern.toLowerCase()]
    .map((c) => (c === "*" ? ".*" : c === "?" ? "." : c.replace(/[\\^$.|+()[\]{}]/g, "\\$&")))
    .join("");
  return new RegExp(`^${source}$`).test(name);
}

function algorithmsForKeyType(keyType: string): string[] {
  switch (keyType) {
    case "ssh-ed25519":
    case "ecdsa-sha2-nistp256":
    case "ecdsa-sha2-nistp384":
    case "ecdsa-sha2-nistp521":
      return [keyType];
    // One RSA key signs with any of these; prefer the SHA-2 ones (RFC 8332).
    case "ssh-rsa":
      return ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"];
    default:
      return [];
  }
}
