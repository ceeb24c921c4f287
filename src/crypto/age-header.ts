/**
 * The age v1 header as text: stanzas, 64-column base64 bodies and the `--- <MAC>` footer.
 * Parsing is strict like age's (one encoding per header), so any change to the header bytes either fails to
 * parse or changes what the MAC covers. The MAC is HMAC-SHA256 keyed by HKDF(fileKey, "", "header") over the
 * header up to and including `---`.
 */
import { timingSafeEqual } from "node:crypto";
import { AgeIntegrityError } from "./age-errors.js";
import { decodeBase64Raw, encodeBase64Raw, hkdfSha256, hmacSha256 } from "./primitives.js";

export const AGE_VERSION_LINE = "age-encryption.org/v1";
/**
 * A header is a few hundred bytes per recipient (about 1.6 KB for a post-quantum one). `age -d` sets no limit; ours
 * keeps garbage input from growing memory without end, and is far beyond any real header: 16 MiB holds some 10,000
 * post-quantum or 100,000 X25519 recipients, and parsing it costs about 80 MB at most (buffer, text and bodies).
 */
export const MAX_HEADER_BYTES = 16 * 1024 * 1024;

const STANZA_PREFIX = "-> ";
const FOOTER_MARK = "---";
const BODY_COLUMNS = 64;
const MAC_LENGTH = 32;
const ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----";
const NOT_AGE_HINT = "the input is not an age v1 file, or it is corrupted";

export interface Stanza {
  readonly type: string;
  readonly args: readonly string[];
  readonly body: Buffer;
}

export interface ParsedHeader {
  readonly stanzas: readonly Stanza[];
  readonly mac: Buffer;
  /** The bytes the MAC covers: the header up to and including `---`. */
  readonly macInput: Buffer;
}

function malformed(detail: string): AgeIntegrityError {
  return new AgeIntegrityError("header", `malformed age header: ${detail}`, NOT_AGE_HINT);
}

function headerMac(fileKey: Uint8Array, macInput: Uint8Array): Buffer {
  return hmacSha256(hkdfSha256(fileKey, Buffer.alloc(0), "header"), macInput);
}

function isVisibleAscii(text: string): boolean {
  if (text === "") return false;
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code < 0x21 || code > 0x7e) return false;
  }
  return true;
}

function wrapBody(body: Uint8Array): string {
  const encoded = encodeBase64Raw(body);
  const lines: string[] = [];
  for (let start = 0; start < encoded.length; start += BODY_COLUMNS) {
    lines.push(encoded.slice(start, start + BODY_COLUMNS));
  }
  // A body always ends with a line shorter than 64 columns, possibly empty: that is how a reader knows it ended.
  if (lines.length === 0 || lines[lines.length - 1]!.length === BODY_COLUMNS) lines.push("");
  return lines.map((line) => `${line}\n`).join("");
}

function formatStanza(stanza: Stanza): string {
  const words = [stanza.type, ...stanza.args];
  if (!words.every(isVisibleAscii)) throw new Error(`invalid stanza arguments: ${words.join(" ")}`);
  return `${STANZA_PREFIX}${words.join(" ")}\n${wrapBody(stanza.body)}`;
}

/** Serializes the header for the given stanzas and file key, MAC included. */
export function serializeHeader(stanzas: readonly Stanza[], fileKey: Uint8Array): Buffer {
  const macInput = Buffer.from(
    `${AGE_VERSION_LINE}\n${stanzas.map(formatStanza).join("")}${FOOTER_MARK}`,
    "latin1",
  );
  const footer = Buffer.from(` ${encodeBase64Raw(headerMac(fileKey, macInput))}\n`, "latin1");
  return Buffer.concat([macInput, footer]);
}

/** Throws IntegrityError unless the header's MAC is right for this file key. */
export function verifyHeaderMac(header: ParsedHeader, fileKey: Uint8Array): void {
  if (!timingSafeEqual(headerMac(fileKey, header.macInput), header.mac)) {
    throw new AgeIntegrityError(
      "hmac",
      "age header MAC mismatch: the archive header was modified or corrupted",
      "restore from another copy of the backup",
    );
  }
}

function parseBody(lines: readonly string[], start: number): { body: Buffer; next: number } {
  let encoded = "";
  for (let index = start; index < lines.length; index++) {
    const line = lines[index]!;
    if (line.length > BODY_COLUMNS)
      throw malformed(`stanza body line ${index + 1} is longer than 64 columns`);
    encoded += line;
    if (line.length < BODY_COLUMNS) {
      const body = decodeBase64Raw(encoded);
      if (body === undefined)
        throw malformed(`stanza body ending on line ${index + 1} is not canonical base64`);
      return { body, next: index + 1 };
    }
  }
  throw malformed("stanza body is not terminated");
}

function parseFooter(line: string, lineNumber: number): Buffer {
  const encoded = line.slice(FOOTER_MARK.length + 1);
  const mac = line.startsWith(`${FOOTER_MARK} `) ? decodeBase64Raw(encoded) : undefined;
  if (mac?.length !== MAC_LENGTH) throw malformed(`invalid MAC line ${lineNumber}`);
  return mac;
}

/**
 * Parses a complete header: `bytes` holds exactly the header (through the footer's newline), as
 * HeaderReader hands it over.
 */
export function parseHeader(bytes: Buffer): ParsedHeader {
  const text = bytes.toString("latin1");
  if (!text.endsWith("\n")) throw malformed("header does not end with a newline");
  const lines = text.slice(0, -1).split("\n");
  if (lines[0] !== AGE_VERSION_LINE) throw malformed(`first line is not "${AGE_VERSION_LINE}"`);
  const stanzas: Stanza[] = [];
  let index = 1;
  while (index < lines.length) {
    const line = lines[index]!;
    if (line.startsWith(FOOTER_MARK)) {
      if (index !== lines.length - 1) throw malformed(`unexpected data after the MAC line ${index + 1}`);
      const macInput = bytes.subarray(0, bytes.length - (line.length + 1) + FOOTER_MARK.length);
      return { stanzas, mac: parseFooter(line, index + 1), macInput };
    }
    if (!line.startsWith(STANZA_PREFIX)) throw malformed(`unexpected line ${index + 1}`);
    const words = line.slice(STANZA_PREFIX.length).split(" ");
    if (!words.every(isVisibleAscii)) throw malformed(`invalid stanza arguments on line ${index + 1}`);
    const { body, next } = parseBody(lines, index + 1);
    stanzas.push({ type: words[0]!, args: words.slice(1), body });
    index = next;
  }
  throw malformed("missing MAC line");
}

/**
 * Collects input until the header is complete, then hands back the parsed header and the bytes after it.
 * Fails fast when the first bytes cannot start an age header, and after MAX_HEADER_BYTES without a footer.
 */
export class HeaderReader {
  /** The bytes so far; grows by doubling so that many small writes cost linear time. */
  #buffer: Buffer = Buffer.alloc(0);
  #length = 0;
  /** Where the search for "\n---" resumes, so that many small writes do not rescan from the start. */
  #scanFrom = 0;

  /** Returns the header and the remaining bytes once the header is complete, else undefined. */
  push(chunk: Buffer): { header: ParsedHeader; rest: Buffer } | undefined {
    const buffered = this.#append(chunk);
    this.#checkStart(buffered);
    const end = this.#findEnd(buffered);
    if (end === undefined ? buffered.length > MAX_HEADER_BYTES : end > MAX_HEADER_BYTES) {
      throw malformed(`no header end within the first ${MAX_HEADER_BYTES} bytes`);
    }
    if (end !== undefined)
      return { header: parseHeader(buffered.subarray(0, end)), rest: buffered.subarray(end) };
    // Keep a copy, not the caller's buffer: a producer may reuse it once the write is acknowledged.
    if (buffered === chunk) this.#buffer = Buffer.from(chunk);
    return undefined;
  }

  /** The bytes so far; the first chunk is used as is (usually it holds the whole header). */
  #append(chunk: Buffer): Buffer {
    if (this.#length === 0) {
      this.#buffer = chunk;
    } else {
      if (this.#length + chunk.length > this.#buffer.length) {
        const grown = Buffer.allocUnsafe(Math.max(2 * this.#buffer.length, this.#length + chunk.length));
        this.#buffer.copy(grown, 0, 0, this.#length);
        this.#buffer = grown;
      }
      chunk.copy(this.#buffer, this.#length);
    }
    this.#length += chunk.length;
    return this.#length === this.#buffer.length ? this.#buffer : this.#buffer.subarray(0, this.#length);
  }

  /** Call at end of input when push never returned a header. */
  end(): never {
    if (this.#length === 0) throw new AgeIntegrityError("header", "the age input is empty", NOT_AGE_HINT);
    throw malformed("the input ends inside the header (truncated)");
  }

  #checkStart(buffered: Buffer): void {
    const start = buffered.subarray(0, AGE_VERSION_LINE.length + 1).toString("latin1");
    if (`${AGE_VERSION_LINE}\n`.startsWith(start)) return;
    // The decrypt stream removes armor before the header is read; this guards a direct caller handed armor.
    // Only claim armor once enough bytes are in to tell; a lone "-" is just not age.
    if (start.length >= "-----BEGIN".length && ARMOR_BEGIN.startsWith(start)) {
      throw new AgeIntegrityError(
        "header",
        "the input is an ASCII-armored age file, and the header reader takes binary age",
        "decode the armor first (createAgeDecryptStream does), or write the file without `age -a`",
      );
    }
    throw new AgeIntegrityError(
      "header",
      `the input is not an age v1 file (it does not start with "${AGE_VERSION_LINE}")`,
    );
  }

  #findEnd(buffered: Buffer): number | undefined {
    const footer = buffered.indexOf(`\n${FOOTER_MARK}`, this.#scanFrom, "latin1");
    if (footer < 0) {
      this.#scanFrom = Math.max(0, buffered.length - FOOTER_MARK.length);
      return undefined;
    }
    this.#scanFrom = footer;
    const newline = buffered.indexOf(0x0a, footer + 1);
    return newline < 0 ? undefined : newline + 1;
  }
}
