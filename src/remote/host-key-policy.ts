/**
 * What a connection does with the host key the server offers: known_hosts decides (strict), or an unknown host is
 * accepted and its line reported (accept-new, OpenSSH's StrictHostKeyChecking=accept-new); a changed or revoked key
 * is always refused. Parsing and matching known_hosts is known-hosts.ts.
 */
import type { ConnectConfig, ServerHostKeyAlgorithm } from "ssh2";
import { InputError, LookerBackupError } from "../errors.js";
import {
  checkHostKey,
  fingerprintSha256,
  type KnownHosts,
  keyTypeOf,
  knownHostName,
  knownHostsLine,
  preferredHostKeyAlgorithms,
} from "./known-hosts.js";

export type HostKeyPolicy = "strict" | "accept-new";

/** The connection as the checks name it. */
export interface HostKeyTarget {
  readonly host: string;
  readonly port: number;
  readonly policy: HostKeyPolicy;
  /** "looker@node-2:22" */
  readonly name: string;
}

/** Offers the host key types known_hosts lists for this host first, so the server presents a checkable key. */
export function hostKeyAlgorithms(
  known: KnownHosts,
  host: string,
  port: number,
): ConnectConfig["algorithms"] {
  const preferred = preferredHostKeyAlgorithms(known, host, port) as ServerHostKeyAlgorithm[];
  if (preferred.length === 0) return undefined;
  // ssh2 applies these in key order: take them out of the default list, then put them in front.
  return { serverHostKey: { remove: preferred, prepend: preferred, append: [] } };
}

export function hostKeyVerifier(
  settings: HostKeyTarget,
  known: KnownHosts,
  onNewHostKey: ((knownHostsLine: string) => void) | undefined,
) {
  let refusal: LookerBackupError | undefined;
  const verify = (key: Buffer): boolean => {
    try {
      const verdict = checkHostKey(known, settings.host, settings.port, key);
      switch (verdict.kind) {
        case "known":
          return true;
        case "unknown":
          if (settings.policy === "accept-new") {
            onNewHostKey?.(knownHostsLine(settings.host, settings.port, key));
            return true;
          }
          refusal = unknownHostError(settings, known, key);
          return false;
        case "mismatch":
          refusal = mismatchError(settings, key, verdict.knownKeyTypes);
          return false;
        case "revoked":
          refusal = new LookerBackupError(
            `the host key of ${knownHostName(settings.host, settings.port)} (${fingerprintSha256(key)}) is marked @revoked in known_hosts; refusing to connect`,
            { hint: "the host's key was revoked: give it a new host key and list that one in known_hosts" },
          );
          return false;
      }
    } catch (error) {
      refusal = new LookerBackupError(
        `host key check for ${settings.name} failed: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
      return false;
    }
  };
  return { verify, refusal: () => refusal };
}

function unknownHostError(settings: HostKeyTarget, known: KnownHosts, key: Buffer): InputError {
  const malformed =
    known.malformedLines.length > 0
      ? ` (note: known_hosts lines ${known.malformedLines.join(", ")} could not be parsed and were ignored)`
      : "";
  return new InputError(
    `host key for ${knownHostName(settings.host, settings.port)} is not in known_hosts ` +
      `(the server offered ${keyTypeOf(key) ?? "a"} key ${fingerprintSha256(key)})`,
    `run \`ssh-keyscan -p ${settings.port} ${settings.host}\`, verify the fingerprint out of band ` +
      `(e.g. \`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\` on the host's console) and add the line to ` +
      `known_hosts${malformed}`,
  );
}

function mismatchError(
  settings: HostKeyTarget,
  key: Buffer,
  knownKeyTypes: readonly string[],
): LookerBackupError {
  const hostName = knownHostName(settings.host, settings.port);
  return new LookerBackupError(
    `HOST KEY MISMATCH for ${hostName}: the server offered ${keyTypeOf(key) ?? "a"} key ${fingerprintSha256(key)}, ` +
      `but known_hosts lists a different key (${knownKeyTypes.join(", ")}) for this host; ` +
      "possible man-in-the-middle attack, refusing to connect",
    {
      hint:
        "if the host was legitimately rebuilt, verify its new key out of band and replace its line in " +
        "known_hosts; otherwise treat this as a security incident",
    },
  );
}
