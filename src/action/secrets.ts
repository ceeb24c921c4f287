import * as core from "@actions/core";
import { RECIPIENT_INPUTS, SECRET_INPUTS } from "../config/backup-settings.js";
import { recipientInputSecrets } from "../crypto/age-keys.js";

/**
 * Masks every secret input before anything else can print it. Multi-line secrets (SSH keys) are masked line by
 * line too, because the runner matches masks per line of log output.
 */
export function maskSecretInputs(read: (name: string) => string = (name) => core.getInput(name)): void {
  for (const name of SECRET_INPUTS) maskValue(read(name));
  // Recipients are public, but an identity or a private key pasted there by mistake is not: it is masked before the
  // settings are read, so neither the refusal nor anything after it can print it.
  for (const name of RECIPIENT_INPUTS)
    for (const secret of recipientInputSecrets(read(name))) maskValue(secret);
}

export function maskValue(value: string): void {
  if (!value.trim()) return;
  core.setSecret(value);
  for (const line of value.split(/\r?\n/)) if (line.trim().length >= 4) core.setSecret(line.trim());
}
