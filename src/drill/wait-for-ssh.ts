/**
 * A freshly provisioned host takes a while to answer SSH (boot, cloud-init, sshd start). We retry the whole
 * handshake until a deadline: a TCP connect alone proves nothing (some networks accept any connection themselves),
 * only a completed SSH handshake and key authentication count.
 */

import { DEFAULT_SSH_PORT } from "../defaults.js";
import { ExitCode, InputError, LookerBackupError } from "../errors.js";
import { type SshConnectOptions, SshHost } from "../remote/ssh-host.js";

export interface WaitForSshOptions {
  readonly timeoutMs: number;
  /** Pause between attempts (default 2 s). */
  readonly retryDelayMs?: number;
  readonly signal?: AbortSignal;
  readonly onAttemptFailed?: (error: Error, attempt: number) => void;
}

const MAX_ATTEMPT_MS = 20_000;
const MIN_ATTEMPT_MS = 1_000;

/** Retrying never fixes these: a changed or revoked host key (an attack until proven otherwise) or a bad key. */
const PERMANENT =
  /HOST KEY MISMATCH|@revoked|private key|invalid ssh port|ssh host is empty|ssh user name is empty/;

export async function waitForSsh(connect: SshConnectOptions, options: WaitForSshOptions): Promise<SshHost> {
  const deadline = Date.now() + options.timeoutMs;
  const name = `${connect.username}@${connect.host}:${connect.port ?? DEFAULT_SSH_PORT}`;
  let lastError: Error | undefined;
  for (let attempt = 1; ; attempt++) {
    options.signal?.throwIfAborted();
    const remaining = deadline - Date.now();
    try {
      return await SshHost.connect({
        ...connect,
        connectTimeoutMs: Math.max(MIN_ATTEMPT_MS, Math.min(MAX_ATTEMPT_MS, remaining)),
      });
    } catch (error) {
      lastError = error as Error;
      if (PERMANENT.test(lastError.message)) throw error;
      options.onAttemptFailed?.(lastError, attempt);
    }
    const pause = Math.min(options.retryDelayMs ?? 2_000, deadline - Date.now());
    if (pause <= 0) break;
    await new Promise((resolve) => setTimeout(resolve, pause));
    if (Date.now() >= deadline) break;
  }
  const seconds = Math.round(options.timeoutMs / 1000);
  const hint =
    lastError instanceof LookerBackupError && lastError.hint
      ? lastError.hint
      : "check that the host is up, its address and port, and any firewall";
  throw new LookerBackupError(
    `target ${name} did not answer SSH within ${seconds} s (last error: ${lastError?.message ?? "none"})`,
    {
      exitCode: lastError instanceof InputError ? ExitCode.BadInput : ExitCode.Failed,
      hint,
      cause: lastError,
    },
  );
}
