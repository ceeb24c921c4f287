/**
 * The text format of `getfattr --dump -e base64` and `setfattr --restore` (the attr package): Node has no xattr
 * calls, so extended attributes are read and written through these two tools, one process per backup or restore.
 *
 *   # file: /home/looker/looker/models-user-a/view.lkml
 *   user.origin=0sZ2l0
 *   <blank line>
 *
 * getfattr writes a name's bytes as they are, except backslash, control characters and (in attribute names) "=",
 * which it writes as \ooo octal escapes; setfattr reads \ooo back. Values are base64 ("0s" prefix) so any bytes pass.
 */
import { nameBytes, nameFromBytes } from "./byte-names.js";

/** One extended attribute: its name (e.g. "user.origin", "security.capability") and its value's bytes. */
export type Xattr = readonly [name: string, value: Buffer];

/** Reads a dump line by line; `onFile` is called for each file with its attributes. */
export class AttrDumpParser {
  private path: string | undefined;
  private attrs: Xattr[] = [];

  constructor(private readonly onFile: (path: string, attrs: Xattr[]) => void) {}

  /** One line of getfattr's output, without its "\n", as bytes (file names need not be UTF-8). */
  line(bytes: Buffer): void {
    if (bytes.length === 0) {
      this.end();
      return;
    }
    const text = bytes.toString("latin1");
    if (text.startsWith("# file: ")) {
      this.end();
      this.path = nameFromBytes(unescapeOctal(bytes.subarray("# file: ".length)));
      return;
    }
    if (this.path === undefined || text.startsWith("#")) return;
    const equals = text.indexOf("=");
    if (equals <= 0) throw new Error(`unexpected getfattr output: ${JSON.stringify(text.slice(0, 120))}`);
    const name = nameFromBytes(unescapeOctal(bytes.subarray(0, equals)));
    this.attrs.push([name, decodeValue(text.slice(equals + 1))]);
  }

  /** Ends the last file (output without a final blank line). */
  end(): void {
    if (this.path !== undefined && this.attrs.length > 0) this.onFile(this.path, this.attrs);
    this.path = undefined;
    this.attrs = [];
  }
}

/** A file's section of a dump for `setfattr --restore`. */
export function formatAttrDump(path: string, attrs: readonly Xattr[]): Buffer {
  const lines: Buffer[] = [Buffer.from("# file: "), escapeOctal(nameBytes(path), false), Buffer.from("\n")];
  for (const [name, value] of attrs) {
    lines.push(escapeOctal(nameBytes(name), true), Buffer.from(`=0s${value.toString("base64")}\n`));
  }
  lines.push(Buffer.from("\n"));
  return Buffer.concat(lines);
}

/** getfattr's values: "0s" base64, "0x" hex, or a quoted string (we ask for base64; the others for safety). */
function decodeValue(text: string): Buffer {
  if (text.startsWith("0s")) return Buffer.from(text.slice(2), "base64");
  if (text.startsWith("0x")) return Buffer.from(text.slice(2), "hex");
  if (text.startsWith('"') && text.endsWith('"'))
    return unescapeOctal(Buffer.from(text.slice(1, -1), "latin1"));
  return Buffer.from(text, "latin1");
}

/** \ooo -> the byte; everything else as it is. */
function unescapeOctal(bytes: Buffer): Buffer {
  if (!bytes.includes(0x5c)) return bytes;
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i] as number;
    if (byte === 0x5c && i + 3 < bytes.length && /^[0-7]{3}$/.test(bytes.toString("latin1", i + 1, i + 4))) {
      out.push(Number.parseInt(bytes.toString("latin1", i + 1, i + 4), 8));
      i += 3;
    } else out.push(byte);
  }
  return Buffer.from(out);
}

/** The bytes setfattr would misread, as \ooo: backslash, control characters, DEL and (in a name) "=". */
function escapeOctal(bytes: Buffer, isAttrName: boolean): Buffer {
  const needs = (byte: number) =>
    byte === 0x5c || byte < 0x20 || byte === 0x7f || (isAttrName && byte === 0x3d);
  if (!bytes.some(needs)) return bytes;
  const parts: string[] = [];
  for (const byte of bytes) {
    parts.push(needs(byte) ? `\\${byte.toString(8).padStart(3, "0")}` : String.fromCharCode(byte));
  }
  return Buffer.from(parts.join(""), "latin1");
}
