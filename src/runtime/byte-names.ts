/**
 * Linux names are bytes; JavaScript strings are UTF-16. A name that is not valid UTF-8 (a Latin-1 "été" from an old
 * checkout, `bad-\xff\xfe-name`) is held here as a string in which each byte that is not part of a valid UTF-8
 * sequence stands as the lone low surrogate U+DC80..U+DCFF (Python's "surrogateescape"). Valid UTF-8 never decodes
 * to a lone surrogate, so the mapping is exact both ways, and a name that is valid UTF-8 is the plain string it
 * always was: the common case costs nothing.
 *
 * Such strings flow through the program like any other path (join, compare, JSON in the catalog, which escapes lone
 * surrogates as \udcXX); only where a name meets the kernel or the tar bytes is it turned back into its bytes:
 * `fsPath` for fs calls, `nameBytes` for headers.
 */
import { isUtf8 } from "node:buffer";
import { readdirSync, readlinkSync } from "node:fs";
import { readdir, readlink } from "node:fs/promises";
import { LookerBackupError } from "../errors.js";

/** The first and last escape: byte 0x80 to 0xFF (bytes below 0x80 are ASCII, always valid). */
const ESCAPE_BASE = 0xdc00;

/** The name that `bytes` spell: the UTF-8 text, with each byte outside a valid sequence as its escape. */
export function nameFromBytes(bytes: Uint8Array): string {
  if (isUtf8(bytes)) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
  let name = "";
  let i = 0;
  while (i < bytes.length) {
    const length = validSequenceLength(bytes, i);
    if (length === 0) {
      name += String.fromCharCode(ESCAPE_BASE + (bytes[i] as number));
      i += 1;
    } else {
      name += Buffer.from(bytes.buffer, bytes.byteOffset + i, length).toString("utf8");
      i += length;
    }
  }
  return name;
}

/**
 * The length of the valid UTF-8 sequence at `i`, or 0 when the byte there starts none (WHATWG/Unicode rules: no
 * overlong forms, no surrogates, nothing above U+10FFFF), the same bytes `isUtf8` and `TextDecoder` reject.
 */
function validSequenceLength(bytes: Uint8Array, i: number): number {
  const first = bytes[i] as number;
  if (first < 0x80) return 1;
  let length: number;
  let low = 0x80;
  let high = 0xbf;
  if (first >= 0xc2 && first <= 0xdf) length = 2;
  else if (first >= 0xe0 && first <= 0xef) {
    length = 3;
    if (first === 0xe0) low = 0xa0;
    if (first === 0xed) high = 0x9f;
  } else if (first >= 0xf0 && first <= 0xf4) {
    length = 4;
    if (first === 0xf0) low = 0x90;
    if (first === 0xf4) high = 0x8f;
  } else return 0;
  if (i + length > bytes.length) return 0;
  const second = bytes[i + 1] as number;
  if (second < low || second > high) return 0;
  for (let k = 2; k < length; k++) {
    const next = bytes[i + k] as number;
    if (next < 0x80 || next > 0xbf) return 0;
  }
  return length;
}

/** True for names that are plain UTF-16 text (no escapes): they go to fs calls and headers as they are. */
export function isPlainName(name: string): boolean {
  return (name as string & { isWellFormed(): boolean }).isWellFormed();
}

/** The bytes of a name made by nameFromBytes (or any well-formed string, as UTF-8). */
export function nameBytes(name: string): Buffer {
  if (isPlainName(name)) return Buffer.from(name, "utf8");
  const parts: Buffer[] = [];
  let run = 0;
  for (let i = 0; i < name.length; i++) {
    const unit = name.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = name.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i += 1; // a surrogate pair: one code point, plain text
        continue;
      }
    } else if (unit < 0xdc00 || unit > 0xdfff) continue;
    // A lone surrogate: an escaped byte, or a string no name can come from.
    if (unit < ESCAPE_BASE + 0x80 || unit > ESCAPE_BASE + 0xff) {
      throw new LookerBackupError(
        `name ${printableName(name)} holds a lone UTF-16 surrogate that is no byte`,
      );
    }
    if (i > run) parts.push(Buffer.from(name.slice(run, i), "utf8"));
    parts.push(Buffer.of(unit - ESCAPE_BASE));
    run = i + 1;
  }
  if (run < name.length) parts.push(Buffer.from(name.slice(run), "utf8"));
  return Buffer.concat(parts);
}

/** True when every lone surrogate in `name` is an escaped byte: a name nameBytes can spell. */
export function isByteName(name: string): boolean {
  return (
    isPlainName(name) ||
    !/(?<![\ud800-\udbff])[\udc00-\udc7f\udd00-\udfff]|[\ud800-\udbff](?![\udc00-\udfff])/.test(name)
  );
}

/** The length of a name in bytes, as the kernel and the tar header count it. */
export function nameByteLength(name: string): number {
  return isPlainName(name) ? Buffer.byteLength(name) : nameBytes(name).length;
}

/** What to hand to an fs call for this path: the string itself, or its bytes when it holds escapes. */
export function fsPath(path: string): string | Buffer {
  return isPlainName(path) ? path : nameBytes(path);
}

/** A name for messages and logs: each escaped byte as `\xNN`, so nothing unprintable reaches the terminal. */
export function printableName(name: string): string {
  if (isPlainName(name)) return name;
  // The lookbehind leaves the low half of a real surrogate pair (U+1F480 is \ud83d\udc80) alone.
  return name.replace(
    /(?<![\ud800-\udbff])[\udc80-\udcff]/g,
    (unit) => `\\x${(unit.charCodeAt(0) - ESCAPE_BASE).toString(16)}`,
  );
}

/**
 * A directory's entries as names. Node decodes names as UTF-8 and turns invalid bytes into U+FFFD, losing them: only
 * when some name holds U+FFFD is the directory read again as bytes, so the usual listing costs what it did.
 */
export function readdirNames(path: string): string[] {
  const names = readdirSync(fsPath(path));
  if (!names.some((name) => name.includes("\ufffd"))) return names;
  return readdirSync(fsPath(path), { encoding: "buffer" }).map(nameFromBytes);
}

/** readdirNames without blocking the event loop, for the places that list a few directories. */
export async function readdirNamesAsync(path: string): Promise<string[]> {
  const names = await readdir(fsPath(path));
  if (!names.some((name) => name.includes("\ufffd"))) return names;
  return (await readdir(fsPath(path), { encoding: "buffer" })).map(nameFromBytes);
}

/** readlinkName without blocking the event loop. */
export async function readlinkNameAsync(path: string): Promise<string> {
  return nameFromBytes(await readlink(fsPath(path), { encoding: "buffer" }));
}

/** A symlink's target, bytes and all (a target need not be UTF-8 either). */
export function readlinkName(path: string): string {
  return nameFromBytes(readlinkSync(fsPath(path), { encoding: "buffer" }));
}
