import { loadIdentities, loadTrustedSigners, passphraseFromEnv } from "../config/keys.js";
import type { TrustedSigners } from "../crypto/ssh-keys.js";
import type { DecryptionKeys } from "../engine/restore.js";
import { optionalString, type ParsedOptions, stringList } from "./args.js";

/** `--identity FILE` (repeatable) and/or `--passphrase-env VAR`: what decrypts an archive. */
export async function decryptionKeysFrom(values: ParsedOptions, command: string): Promise<DecryptionKeys> {
  const passphrase = passphraseFromEnv(optionalString(values, "passphrase-env"), "--passphrase-env");
  const identityFiles = stringList(values, "identity");
  const identities =
    passphrase && identityFiles.length === 0
      ? []
      : await loadIdentities(identityFiles, `${command}: --identity`);
  return { identities, ...(passphrase ? { passphrase } : {}) };
}

export const trustedSignersOption = {
  type: "string",
  placeholder: "FILE",
  help: "OpenSSH allowed_signers (or ssh-ed25519 public keys): refuse archives not signed by one of them (exit 4)",
} as const;

/** `--trusted-signers FILE`; undefined when not given (authenticity is then not checked, with a warning). */
export async function trustedSignersFrom(
  values: ParsedOptions,
  command: string,
): Promise<TrustedSigners | undefined> {
  const file = optionalString(values, "trusted-signers");
  return file === undefined ? undefined : loadTrustedSigners(file, `${command}: --trusted-signers`);
}
