/** Names and values from an archive as messages quote them: readable, and short whatever the archive holds. */
import { printableName } from "../runtime/byte-names.js";

/** Hostile values are quoted up to this many bytes, so a message stays readable whatever the archive holds. */
const MAX_QUOTED_BYTES = 200;

/**
 * Paths as-is (stray bytes as \xNN) unless they hold control characters (newlines, NUL), which would garble the
 * message; cut after MAX_QUOTED_BYTES bytes.
 */
export function display(name: string): string {
  // Bytes that are not UTF-8 show as \xNN (runtime/byte-names.ts).
  const path = printableName(name);
  const bytes = Buffer.from(path);
  const cut = bytes.length > MAX_QUOTED_BYTES ? `${bytes.subarray(0, MAX_QUOTED_BYTES).toString()}...` : path;
  return /[\x00-\x1f\x7f]/.test(cut) ? JSON.stringify(cut) : cut;
}
