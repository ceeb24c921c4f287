/**
 * Loading age keys from where users keep them: recipients on the command line or in a file (age's `-R` format),
 * identities in an age identity file; and the signing keys a restore trusts. Everything is validated here, before
 * any work starts.
 */
import { readFile } from "node:fs/promises";
import {
  type AgeRecipient,
  checkRecipientMix,
  parseIdentities,
  parseRecipient,
  parseRecipients,
} from "../crypto/age-keys.js";
import { parseTrustedSigners, type TrustedSigners } from "../crypto/ssh-keys.js";
import { InputError } from "../errors.js";

export async function loadRecipients(
  inline: readonly string[],
  files: readonly string[],
  where: string,
): Promise<string[]> {
  const recipients: AgeRecipient[] = inline.map((text) => parseRecipient(text, where));
  for (const file of files) {
    recipients.push(...parseRecipients(await readKeyFile(file, "recipients file"), file));
  }
  if (recipients.length === 0) {
    throw new InputError(
      `${where}: no recipients given`,
      "pass --recipient age1... or age1pq1... (from `looker-backup keygen [--pq]` or `age-keygen -y`), or --recipients-file FILE",
    );
  }
  checkRecipientMix(recipients, files.length > 0 ? `${where} and --recipients-file` : where);
  return [...new Set(recipients.map((recipient) => recipient.text))];
}

/** Returns the identity lines of the given files, validated (the text is what the decryptor consumes). */
export async function loadIdentities(files: readonly string[], where: string): Promise<string[]> {
  if (files.length === 0) {
    throw new InputError(
      `${where}: no identity given`,
      "pass --identity FILE (an age identity file, AGE-SECRET-KEY-1... or AGE-SECRET-KEY-PQ-1...)",
    );
  }
  const identities: string[] = [];
  for (const file of files) {
    const text = await readKeyFile(file, "identity file");
    parseIdentities(text, file);
    identities.push(
      ...text
        .split(/\r?\n/)
        .map((line) => line.trim())
        .filter((line) => line !== "" && !line.startsWith("#")),
    );
  }
  return identities;
}

/** Public keys whose signatures restore accepts: allowed_signers lines or bare `ssh-ed25519 AAAA...` lines. */
export async function loadTrustedSigners(file: string, where: string): Promise<TrustedSigners> {
  return parseTrustedSigners(await readKeyFile(file, "trusted signers file"), `${where} ${file}`);
}

async function readKeyFile(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (error) {
    throw new InputError(`cannot read ${what} ${file}: ${(error as Error).message}`, "check the path", error);
  }
}

/** A passphrase comes from an environment variable named by the user, never from argv (visible in `ps`). */
export function passphraseFromEnv(variable: string | undefined, where: string): string | undefined {
  if (variable === undefined) return undefined;
  const value = process.env[variable];
  if (value === undefined || value === "") {
    throw new InputError(
      `${where}: environment variable ${variable} is empty or unset`,
      `export ${variable} first`,
    );
  }
  return value;
}
