/**
 * Which stage of age decryption refused a file. The message says what happened; `failure` lets callers (and the
 * conformance tests, whose vectors name the expected stage) tell a header that does not parse from a key that does
 * not match, a header MAC that does not check out, or a payload that does not authenticate, without reading prose.
 */
import { IntegrityError } from "../errors.js";

export type AgeFailure =
  /** The header (or the nonce after it) does not parse, or a stanza for one of our key types is malformed. */
  | "header"
  /** The header parses, but no identity or passphrase unwraps the file key. */
  | "no-match"
  /** A file key was unwrapped, but the header MAC is wrong for it. */
  | "hmac"
  /** The STREAM payload fails to decrypt all the way to its final chunk. */
  | "payload"
  /** The input is ASCII-armored, and the armor is not strict PEM as age writes it. */
  | "armor";

export class AgeIntegrityError extends IntegrityError {
  readonly failure: AgeFailure;

  constructor(failure: AgeFailure, message: string, hint?: string, cause?: unknown) {
    super(message, hint, cause);
    this.failure = failure;
  }
}
