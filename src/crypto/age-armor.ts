/**
 * Reading ASCII-armored age files (`age -a`): strict PEM with type "AGE ENCRYPTED FILE", as age's own reader
 * takes it (age.md, "ASCII armor"; filippo.io/age/armor). Whitespace-only lines before the armor and whitespace after
 * it (up to 1 KiB each), LF or CRLF line ends, and nothing else: no PEM headers, no empty or long lines, canonical
 * padded base64 in 64-column lines, the last one shorter or followed straight by the footer. Anything else is an
 * armor failure, so an armored file has exactly one encoding, like the binary format under it.
 * Streaming: memory stays at one line whatever the file's size. We only read armor; backups are written binary.
 */
import { AgeIntegrityError } from "./age-errors.js";

export const ARMOR_HEADER = "-----BEGIN AGE ENCRYPTED FILE-----";
const ARMOR_FOOTER = "-----END AGE ENCRYPTED FILE-----";
const COLUMNS = 64;
const BYTES_PER_LINE = 48;
const MAX_WHITESPACE = 1024;
/** The longest line worth buffering: the header, or a full line and its CR. */
const MAX_LINE = Math.max(ARMOR_HEADER.length, COLUMNS) + 1;
const LF = 0x0a;
const PADDED_BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function armorError(detail: string): AgeIntegrityError {
  return new AgeIntegrityError(
    "armor",
    `invalid ASCII armor: ${detail}`,
    "the armored file is damaged or was changed by hand; age -a writes it as age reads it",
  );
}

/** ASCII whitespace: what age skips around the armor (tab, LF, VT, FF, CR, space). */
export function isWhitespace(byte: number): boolean {
  return byte === 0x20 || (byte >= 0x09 && byte <= 0x0d);
}

type State = "before" | "body" | "footer" | "after";

export class ArmorDecoder {
  #state: State = "before";
  /** The line so far (without its LF), kept across chunks. */
  #line = "";
  /** Whitespace skipped before the header, then after the footer: each is bounded. */
  #whitespace = 0;

  /** Decodes what the chunk completes; throws an armor failure as soon as the armor is wrong. */
  push(chunk: Buffer): Buffer {
    const out: Buffer[] = [];
    let start = 0;
    while (start < chunk.length) {
      if (this.#state === "after") {
        this.#trailing(chunk.subarray(start));
        break;
      }
      const newline = chunk.indexOf(LF, start);
      const end = newline < 0 ? chunk.length : newline;
      this.#line += chunk.toString("latin1", start, end);
      if (this.#line.length > MAX_LINE + (this.#state === "before" ? MAX_WHITESPACE : 0)) {
        throw armorError(this.#state === "before" ? "too much leading whitespace" : "column limit exceeded");
      }
      if (newline < 0) break;
      const line = this.#line;
      this.#line = "";
      this.#onLine(line, out);
      start = newline + 1;
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  /** At the end of input: decodes a last line without LF, then insists the armor was closed. */
  end(): Buffer {
    const out: Buffer[] = [];
    // A last line without LF counts as a line, as age reads it; at its end an empty one means the input ended.
    if (this.#line !== "" && this.#state !== "after") this.#onLine(this.#line, out);
    this.#line = "";
    if (this.#state !== "after") throw armorError("the input ends before the END line (truncated)");
    return Buffer.concat(out);
  }

  #onLine(raw: string, out: Buffer[]): void {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    switch (this.#state) {
      case "before":
        if ([...line].every((char) => isWhitespace(char.charCodeAt(0)))) {
          this.#whitespace += raw.length + 1;
          if (this.#whitespace > MAX_WHITESPACE) throw armorError("too much leading whitespace");
          return;
        }
        if (line !== ARMOR_HEADER) throw armorError(`the first line is not "${ARMOR_HEADER}"`);
        this.#state = "body";
        return;
      case "body":
        if (line === ARMOR_FOOTER) {
          this.#closed();
          return;
        }
        out.push(this.#decode(line));
        return;
      case "footer":
        if (line !== ARMOR_FOOTER)
          throw armorError(`the line after the last short line is not "${ARMOR_FOOTER}"`);
        this.#closed();
        return;
      case "after":
        return;
    }
  }

  #closed(): void {
    this.#state = "after";
    this.#whitespace = 0;
  }

  #decode(line: string): Buffer {
    if (line === "") throw armorError("empty line in the armored data");
    if (line.length > COLUMNS) throw armorError("column limit exceeded");
    if (line.length % 4 !== 0 || !PADDED_BASE64.test(line)) throw armorError("invalid base64 line");
    const bytes = Buffer.from(line, "base64");
    // Canonical only: unused bits must be zero, so that one file has one armored form.
    if (bytes.toString("base64") !== line) throw armorError("non-canonical base64 line");
    if (bytes.length < BYTES_PER_LINE) this.#state = "footer";
    return bytes;
  }

  #trailing(bytes: Buffer): void {
    this.#whitespace += bytes.length;
    if (!bytes.every(isWhitespace)) throw armorError("data after the END line");
    if (this.#whitespace >= MAX_WHITESPACE) throw armorError("too much trailing whitespace");
  }
}

/** Splits the start of an input: "armor" if its first non-whitespace byte begins a PEM line, else "binary". */
export function sniffArmor(bytes: Buffer): "armor" | "binary" | undefined {
  for (const byte of bytes) {
    if (isWhitespace(byte)) continue;
    return byte === ARMOR_HEADER.charCodeAt(0) ? "armor" : "binary";
  }
  return bytes.length > MAX_WHITESPACE ? "armor" : undefined;
}
