import { loadIdentities, passphraseFromEnv } from "../config/keys.js";
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
