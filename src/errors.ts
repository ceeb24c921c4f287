/**
 * One place for exit codes and the typed errors that carry them.
 * Messages are lower-case and say what went wrong; the hint says how to fix it (the age CLI's style).
 */
export const ExitCode = {
  Ok: 0,
  Failed: 1,
  BadInput: 2,
  Warnings: 3,
  Integrity: 4,
  LookerFailed: 5,
  Cancelled: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export class LookerBackupError extends Error {
  readonly exitCode: ExitCode;
  readonly hint: string | undefined;

  constructor(message: string, options: { exitCode?: ExitCode; hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.exitCode = options.exitCode ?? ExitCode.Failed;
    this.hint = options.hint;
  }
}

/** Bad input or configuration: a flag, an action input, a manifest, a key file. Exit 2. */
export class InputError extends LookerBackupError {
  constructor(message: string, hint?: string, cause?: unknown) {
    super(message, { exitCode: ExitCode.BadInput, hint, cause });
  }
}

/** The archive is not what was written: digest, authentication tag, catalog or structure mismatch. Exit 4. */
export class IntegrityError extends LookerBackupError {
  constructor(message: string, hint?: string, cause?: unknown) {
    super(message, { exitCode: ExitCode.Integrity, hint, cause });
  }
}

/** Looker did not stop, start or pass its boot checks. Exit 5. */
export class LookerError extends LookerBackupError {
  readonly logTail: string | undefined;
  constructor(message: string, options: { hint?: string; logTail?: string; cause?: unknown } = {}) {
    super(message, { exitCode: ExitCode.LookerFailed, hint: options.hint, cause: options.cause });
    this.logTail = options.logTail;
  }
}

/**
 * GitHub's API refused for now because a rate limit is used up, not for want of permission. Exit 1: nothing to fix
 * in the inputs, only to wait (until `resetAt`, when GitHub said).
 */
export class RateLimitError extends LookerBackupError {
  readonly resetAt: Date | undefined;
  constructor(message: string, options: { resetAt?: Date | undefined; hint?: string; cause?: unknown } = {}) {
    super(message, { exitCode: ExitCode.Failed, hint: options.hint, cause: options.cause });
    this.resetAt = options.resetAt;
  }
}

/** The run was interrupted by SIGINT/SIGTERM or a cancelled workflow. Exit 130. */
export class CancelledError extends LookerBackupError {
  constructor(message = "cancelled") {
    super(message, { exitCode: ExitCode.Cancelled });
  }
}

/** Maps anything thrown to the exit code the process should end with. */
export function exitCodeOf(error: unknown): ExitCode {
  return error instanceof LookerBackupError ? error.exitCode : ExitCode.Failed;
}

/** "error: message\nhint: hint" for humans; the hint line only when there is one. */
export function describeError(error: unknown): string {
  if (error instanceof LookerBackupError) {
    return error.hint ? `${error.message}\nhint: ${error.hint}` : error.message;
  }
  const message = error instanceof Error ? error.message : String(error);
  const hint = SYSTEM_ERROR_HINTS[(error as NodeJS.ErrnoException | undefined)?.code ?? ""];
  return hint ? `${message}\nhint: ${hint}` : message;
}

/** System errors that need no stack trace but a next step. */
const SYSTEM_ERROR_HINTS: Record<string, string> = {
  ENOSPC:
    "the disk is full: free space or write elsewhere (--out, the restore target, or TMPDIR); partial files were removed and nothing older was changed",
  EDQUOT: "the disk quota is exhausted: free space or write elsewhere",
  EACCES: "permission denied: run as root or as the looker user, or fix the permissions of that path",
  EROFS: "the filesystem is read-only: write elsewhere",
};
