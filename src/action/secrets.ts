import * as core from "@actions/core";
import { SECRET_INPUTS } from "../config/backup-settings.js";

/**
 * Masks every secret input before anything else can print it. Multi-line secrets (SSH keys) are masked line by
 * line too, because the runner matches masks per line of log output.
 */
export function maskSecretInputs(read: (name: string) => string = (name) => core.getInput(name)): void {
  for (const name of SECRET_INPUTS) maskValue(read(name));
}

export function maskValue(value: string): void {
  if (!value.trim()) return;
  core.setSecret(value);
  for (const line of value.split(/\r?\n/)) if (line.trim().length >= 4) core.setSecret(line.trim());
}
