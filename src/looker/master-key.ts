/**
 * The customer master key (CMK) Looker uses to protect its keystore. It reaches Looker either as a file on the host
 * (LKR_MASTER_KEY_FILE, a path: not secret itself) or as a value (LKR_MASTER_KEY_ENV, secret: only ever passed as a
 * secret environment variable, never in argv or logs).
 */
import type { RunOptions } from "../remote/host.js";

export type MasterKey =
  | { readonly kind: "file"; readonly path: string }
  | { readonly kind: "env"; readonly value: string };

export function masterKeyEnvironment(key: MasterKey | undefined): Pick<RunOptions, "env" | "secretEnv"> {
  if (key === undefined) return {};
  return key.kind === "file"
    ? { env: { LKR_MASTER_KEY_FILE: key.path } }
    : { secretEnv: { LKR_MASTER_KEY_ENV: key.value } };
}
