/**
 * The SSH wire encoding (RFC 4251 section 5) that OpenSSH's key files and signatures are made of: uint32 and
 * length-prefixed strings. The reader never trusts a length: reading past the end is an error, not a short read.
 */

export function sshString(value: Uint8Array | string): Buffer {
  const bytes = typeof value === "string" ? Buffer.from(value, "utf8") : Buffer.from(value);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

export function sshUint32(value: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value);
  return bytes;
}

/** Thrown on a truncated or malformed encoding; callers turn it into their own typed error. */
export class WireError extends Error {}

export class WireReader {
  private offset = 0;

  constructor(private readonly bytes: Buffer) {}

  bytesRaw(length: number): Buffer {
    if (length < 0 || this.offset + length > this.bytes.length) throw new WireError("truncated");
    const value = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  uint32(): number {
    return this.bytesRaw(4).readUInt32BE(0);
  }

  string(): Buffer {
    return this.bytesRaw(this.uint32());
  }

  text(): string {
    return this.string().toString("utf8");
  }

  get remaining(): number {
    return this.bytes.length - this.offset;
  }

  rest(): Buffer {
    return this.bytesRaw(this.remaining);
  }
}

/** Base64 in lines of `width` characters, as ssh-keygen writes its armored files (70 columns). */
export function wrapBase64(bytes: Uint8Array, width = 70): string {
  const text = Buffer.from(bytes).toString("base64");
  const lines: string[] = [];
  for (let i = 0; i < text.length; i += width) lines.push(text.slice(i, i + width));
  return lines.join("\n");
}

/**
 * The bytes between an armor's header and footer; undefined when the header or footer is missing or the body is not
 * base64 (node's decoder skips junk silently, so the alphabet is checked first).
 */
export function unarmor(text: string, label: string): Buffer | undefined {
  const begin = `-----BEGIN ${label}-----`;
  const end = `-----END ${label}-----`;
  const trimmed = text.trim();
  if (!trimmed.startsWith(begin) || !trimmed.endsWith(end)) return undefined;
  const body = trimmed.slice(begin.length, trimmed.length - end.length).replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) return undefined;
  return Buffer.from(body, "base64");
}
