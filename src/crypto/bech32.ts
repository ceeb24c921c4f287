/**
 * Bech32 (BIP173, not bech32m) as age uses it for `age1...` recipients and `AGE-SECRET-KEY-1...` identities.
 * Unlike BIP173 there is no 90-character limit: age strings are longer than segwit addresses.
 * Functions return `undefined` for malformed input so callers can raise errors that name where the text came from.
 */

const CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
const GENERATOR = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
const CHECKSUM_LENGTH = 6;

const CHARSET_INDEX = new Map<string, number>([...CHARSET].map((char, index) => [char, index]));

function polymod(values: readonly number[]): number {
  let checksum = 1;
  for (const value of values) {
    const top = checksum >>> 25;
    checksum = ((checksum & 0x1ffffff) << 5) ^ value;
    for (let bit = 0; bit < 5; bit++) {
      if ((top >>> bit) & 1) checksum ^= GENERATOR[bit]!;
    }
  }
  return checksum >>> 0;
}

function expandHrp(hrp: string): number[] {
  const codes = [...hrp].map((char) => char.charCodeAt(0));
  return [...codes.map((code) => code >>> 5), 0, ...codes.map((code) => code & 31)];
}

function createChecksum(hrp: string, words: readonly number[]): number[] {
  const mod = polymod([...expandHrp(hrp), ...words, 0, 0, 0, 0, 0, 0]) ^ 1;
  return Array.from({ length: CHECKSUM_LENGTH }, (_, index) => (mod >>> (5 * (5 - index))) & 31);
}

/** Regroups bits (8 -> 5 to encode, 5 -> 8 to decode); strict decoding rejects leftover or non-zero padding bits. */
function convertBits(
  data: ArrayLike<number>,
  fromBits: number,
  toBits: number,
  pad: boolean,
): number[] | undefined {
  let accumulator = 0;
  let bits = 0;
  const result: number[] = [];
  const maxValue = (1 << toBits) - 1;
  for (let index = 0; index < data.length; index++) {
    const value = data[index]!;
    if (value < 0 || value >>> fromBits !== 0) return undefined;
    accumulator = ((accumulator << fromBits) | value) & 0xffffff;
    bits += fromBits;
    while (bits >= toBits) {
      bits -= toBits;
      result.push((accumulator >>> bits) & maxValue);
    }
  }
  if (pad) {
    if (bits > 0) result.push((accumulator << (toBits - bits)) & maxValue);
  } else if (bits >= fromBits || ((accumulator << (toBits - bits)) & maxValue) !== 0) {
    return undefined;
  }
  return result;
}

/** Bytes -> 5-bit words. */
export function toWords(bytes: Uint8Array): number[] {
  return convertBits(bytes, 8, 5, true)!;
}

/** 5-bit words -> bytes, or undefined when the padding is not canonical. */
export function fromWords(words: readonly number[]): Buffer | undefined {
  const bytes = convertBits(words, 5, 8, false);
  return bytes === undefined ? undefined : Buffer.from(bytes);
}

/** Encodes 5-bit words under a human-readable part; the result is lower case (upper-case it for identities). */
export function bech32Encode(hrp: string, words: readonly number[]): string {
  const lowerHrp = hrp.toLowerCase();
  const all = [...words, ...createChecksum(lowerHrp, words)];
  return `${lowerHrp}1${all.map((word) => CHARSET[word]).join("")}`;
}

/** Decodes a bech32 string (all upper or all lower case) to its lower-case hrp and 5-bit words. */
export function bech32Decode(text: string): { hrp: string; words: number[] } | undefined {
  if (text !== text.toLowerCase() && text !== text.toUpperCase()) return undefined;
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code < 33 || code > 126) return undefined;
  }
  const lower = text.toLowerCase();
  const separator = lower.lastIndexOf("1");
  if (separator < 1 || separator + 1 + CHECKSUM_LENGTH > lower.length) return undefined;
  const hrp = lower.slice(0, separator);
  const words: number[] = [];
  for (const char of lower.slice(separator + 1)) {
    const word = CHARSET_INDEX.get(char);
    if (word === undefined) return undefined;
    words.push(word);
  }
  if (polymod([...expandHrp(hrp), ...words]) !== 1) return undefined;
  return { hrp, words: words.slice(0, -CHECKSUM_LENGTH) };
}

/** Bytes -> bech32 string (lower case). */
export function encodeBech32Bytes(hrp: string, bytes: Uint8Array): string {
  return bech32Encode(hrp, toWords(bytes));
}

/** Bech32 string -> hrp and bytes, or undefined when malformed (checksum, case, characters, padding). */
export function decodeBech32Bytes(text: string): { hrp: string; bytes: Buffer } | undefined {
  const decoded = bech32Decode(text);
  if (decoded === undefined) return undefined;
  const bytes = fromWords(decoded.words);
  return bytes === undefined ? undefined : { hrp: decoded.hrp, bytes };
}
