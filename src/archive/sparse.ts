/**
 * Sparse files: GNU tar's pax sparse format 1.0 (GNU tar manual, "Sparse Formats", "PAX 1"), which GNU tar (1.15.92
 * and later), bsdtar and Go read. A sparse member's pax header carries GNU.sparse.major=1, GNU.sparse.minor=0,
 * GNU.sparse.name (the real path) and GNU.sparse.realsize (the file's length, holes included); its ustar path is a
 * stand-in, `<dir>/GNUSparseFile.0/<name>`, so a reader that knows none of this extracts the condensed form beside
 * the real path instead of a wrong file at it. Its body starts with the map in decimal text (the number of
 * segments, then each segment's offset and length, one number a line), zero-padded to a 512-byte block, followed by
 * the data segments concatenated; between and after them the file is holes.
 *
 * How holes are found: Node has no lseek(SEEK_DATA/SEEK_HOLE), and we load no native code. So, as GNU tar did before
 * SEEK_HOLE existed, only a regular file whose allocated blocks are fewer than its size needs (lstat's `blocks`) is
 * scanned, and its 4 KiB blocks that read as all zeros become holes. Reading a hole costs no disk I/O (the kernel
 * hands out zero pages): a 2 GiB file of holes scans in ~0.3 s. The difference from SEEK_HOLE: an allocated block
 * of zeros in such a file is archived and restored as a hole too (same content, fewer blocks on disk). Every other
 * file is archived as before, byte for byte.
 */
import { createHash, type Hash } from "node:crypto";
import { readSync } from "node:fs";

/** Where a sparse file's data lies; the rest of it is holes. */
export interface SparseMap {
  /** Offset, length pairs, flat, in file order, disjoint; a last one of length 0 may mark the end (as GNU tar's). */
  readonly segments: readonly number[];
}

/**
 * Most segments a sparse map may list when read: GNU tar sets no limit, but the map is held whole (16 bytes a
 * segment) and its text buffered while read (up to ~42 bytes a segment), so it is bounded.
 */
export const MAX_SPARSE_SEGMENTS = 1_000_000;
/**
 * Most bytes of holes in one archive. Restore and verify hash a sparse file's holes as zeros (the catalog's sha256
 * is of the file's content), ~2 GB/s: without a limit, a hostile archive of a few kilobytes could keep them busy
 * for days. 1 TiB is ~10 minutes of that, what a ~35 MB zstd archive of zeros already costs.
 */
export const MAX_ARCHIVE_HOLE_BYTES = 2 ** 40;
/** GNU tar reads each number of the map into a buffer of 21 bytes with its NUL: 20 digits at most. */
const MAX_DIGITS = 20;

const ZERO_BYTES = 1 << 20;
let zeroBuffer: Buffer | undefined;
/** Zeros, shared: holes are hashed from them (and compared with them). Never written to. */
function zeros(): Buffer {
  zeroBuffer ??= Buffer.alloc(ZERO_BYTES);
  return zeroBuffer;
}

/** GNU tar's stand-in path for a sparse member: `<dir>/GNUSparseFile.<pid>/<name>`, with 0 for the pid (as bsdtar). */
export function sparseStandIn(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0
    ? `GNUSparseFile.0/${path}`
    : `${path.slice(0, slash)}/GNUSparseFile.0/${path.slice(slash + 1)}`;
}

/** The bytes of a sparse member's data segments. */
export function sparseDataSize(map: SparseMap): number {
  let total = 0;
  for (let i = 1; i < map.segments.length; i += 2) total += map.segments[i]!;
  return total;
}

/** The bytes the map takes at the start of the member's body, padding included. */
export function sparseMapLength(map: SparseMap): number {
  let length = decimalLength(map.segments.length / 2) + 1;
  for (const value of map.segments) length += decimalLength(value) + 1;
  return padded(length);
}

/** The member's body length as stored: its map, then its data. */
export function sparseStoredSize(map: SparseMap): number {
  return sparseMapLength(map) + sparseDataSize(map);
}

/** The map as it starts the member's body, zero-padded to a block. */
export function encodeSparseMap(map: SparseMap): Buffer {
  let text = `${map.segments.length / 2}\n`;
  for (const value of map.segments) text += `${value}\n`;
  const out = Buffer.alloc(padded(text.length));
  out.write(text, "latin1");
  return out;
}

/** Up to the next tar block (512 bytes). Not tar-format's paddingFor: that module imports this one. */
function padded(length: number): number {
  return Math.ceil(length / 512) * 512;
}

function decimalLength(value: number): number {
  return String(value).length;
}

/** What is wrong with a map for a file of `size` bytes, for a writer; undefined when it is sound. */
export function sparseMapProblem(map: SparseMap, size: number): string | undefined {
  const { segments } = map;
  if (segments.length % 2 !== 0) return "a sparse map needs an offset and a length per segment";
  if (segments.length / 2 > MAX_SPARSE_SEGMENTS)
    return `${segments.length / 2} segments, more than the ${MAX_SPARSE_SEGMENTS} a sparse map may have`;
  let end = 0;
  for (let i = 0; i < segments.length; i += 2) {
    const problem = segmentProblem(i / 2 + 1, end, segments[i]!, segments[i + 1]!, size);
    if (problem !== undefined) return problem;
    end = segments[i]! + segments[i + 1]!;
  }
  return undefined;
}

/**
 * Segments lie in file order, none overlapping another, all within the file. GNU tar only checks the last; an
 * archive whose segments overlap would read differently depending on the order of writes, so it is refused.
 */
function segmentProblem(
  number: number,
  previousEnd: number,
  offset: number,
  length: number,
  size: number,
): string | undefined {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0)
    return `segment ${number} is not a pair of non-negative integers`;
  if (offset < previousEnd)
    return `segment ${number} at offset ${offset} starts before the previous one ends (${previousEnd}): overlapping or out of order`;
  if (offset + length > size)
    return `segment ${number} (offset ${offset}, ${length} bytes) ends beyond the file's size of ${size} bytes`;
  return undefined;
}

/**
 * Reads a map block by block, as a tar reader gets them. Strict where GNU tar is lenient, so that what we accept
 * reads the same in GNU tar: the count must match the numbers given (its last block holds nothing but zeros after
 * them), and segments must be in order, disjoint and within the file.
 */
export class SparseMapParser {
  readonly segments: number[] = [];
  private count = -1;
  private value = 0;
  private digits = 0;
  private complete = false;

  /** @param fail throws the error for a problem with the map (the caller names the member) */
  constructor(
    private readonly size: number,
    private readonly maxSegments: number,
    private readonly fail: (problem: string) => never,
  ) {}

  /** Takes the map's next 512-byte block; true once the map is complete (the rest of this block is padding). */
  block(bytes: Buffer): boolean {
    for (let i = 0; i < bytes.length; i++) {
      const byte = bytes[i]!;
      if (this.complete) {
        if (byte !== 0) this.fail(`bytes after its last segment (it announces ${this.count})`);
        continue;
      }
      if (byte >= 0x30 && byte <= 0x39) {
        if (++this.digits > MAX_DIGITS) this.fail(`a number of more than ${MAX_DIGITS} digits in its map`);
        this.value = this.value * 10 + (byte - 0x30);
        continue;
      }
      if (byte === 0 && this.digits === 0) this.fail(this.endedEarly());
      if (byte !== 0x0a || this.digits === 0) this.fail("its map holds something other than decimal numbers");
      this.number(this.value);
      this.value = 0;
      this.digits = 0;
    }
    return this.complete;
  }

  private number(value: number): void {
    if (!Number.isSafeInteger(value)) this.fail("a number beyond 2^53 in its map");
    if (this.count < 0) {
      if (value > this.maxSegments)
        this.fail(`its map announces ${value} segments, more than the limit of ${this.maxSegments}`);
      this.count = value;
      this.complete = value === 0;
      return;
    }
    const segments = this.segments;
    segments.push(value);
    const n = segments.length;
    if (n % 2 !== 0) return;
    const previousEnd = n >= 4 ? segments[n - 4]! + segments[n - 3]! : 0;
    const problem = segmentProblem(n / 2, previousEnd, segments[n - 2]!, value, this.size);
    if (problem !== undefined) this.fail(problem);
    this.complete = n / 2 === this.count;
  }

  private endedEarly(): string {
    if (this.count < 0) return "its map is empty";
    return `its map ends after ${Math.floor(this.segments.length / 2)} of the ${this.count} segments it announces`;
  }
}

/**
 * The content of a sparse file from its data, in order: places each slice of data at its offset in the file (for
 * restore's positional writes) and hashes the whole content, the holes as zeros from one shared buffer. The
 * catalog's sha256 is of what the user's file holds, holes included, so a restore by any tool compares the same.
 */
export class SparseContent {
  private readonly hash: Hash = createHash("sha256");
  /** Index of the current segment's offset in the map. */
  private index = 0;
  /** Bytes of the current segment taken so far. */
  private taken = 0;
  /** Bytes of the file hashed so far. */
  private position = 0;

  constructor(
    private readonly map: SparseMap,
    private readonly size: number,
  ) {}

  /** The next bytes of data; `place` gets each slice of them with its offset in the file. */
  add(part: Buffer, place?: (bytes: Buffer, position: number) => void): void {
    const { segments } = this.map;
    for (let at = 0; at < part.length; ) {
      if (this.index >= segments.length) throw new Error("more data than the sparse map lists");
      const offset = segments[this.index]!;
      const length = segments[this.index + 1]!;
      if (this.taken === length) {
        this.index += 2;
        this.taken = 0;
        continue;
      }
      if (this.position < offset) this.hashZeros(offset - this.position);
      const slice = part.subarray(at, at + Math.min(length - this.taken, part.length - at));
      this.hash.update(slice);
      place?.(slice, this.position);
      this.position += slice.length;
      this.taken += slice.length;
      at += slice.length;
    }
  }

  /** The sha256 (hex) of the whole file, once all its data was added. */
  digest(): string {
    if (this.remainingData() > 0) throw new Error("less data than the sparse map lists");
    this.hashZeros(this.size - this.position);
    return this.hash.digest("hex");
  }

  private remainingData(): number {
    const { segments } = this.map;
    let left = this.index < segments.length ? segments[this.index + 1]! - this.taken : 0;
    for (let i = this.index + 3; i < segments.length; i += 2) left += segments[i]!;
    return left;
  }

  private hashZeros(length: number): void {
    const zero = zeros();
    for (let left = length; left > 0; left -= zero.length)
      this.hash.update(zero.subarray(0, Math.min(left, zero.length)));
    this.position += length;
  }
}

// Finding holes, at backup.

/** Holes are found in aligned blocks of this size: the block size of ext4 and xfs, and GNU tar's granularity. */
export const HOLE_BLOCK = 4096;
/**
 * Smaller files are never scanned. A file on btrfs or ext4 with inline data, or on a compressing filesystem, has
 * fewer blocks than its size without holes; scanning it reads it twice. Below this, holes could save little anyway.
 */
export const MIN_SPARSE_SIZE = 64 * 1024;
/**
 * Most segments the backup writes for one file. A file more fragmented than that gets coarser holes (small holes
 * between data become data, see DataSegments), so the map it holds while reading stays ~1 MiB.
 */
const MAX_WRITTEN_SEGMENTS = 1 << 16;
/** The scan's reads: a whole read of zeros is one compare with the shared zeros. */
const SCAN_READ = ZERO_BYTES;

let scanBuffer: Buffer | undefined;

/**
 * The scan's read buffer, page-aligned: the kernel copies zero pages ~6x slower into a buffer that is not
 * (a 2 GiB hole read in 1.7 s instead of 0.25 s here). Node's buffers sit 16 bytes past a page (malloc's header);
 * a WebAssembly memory is mapped whole pages, so its start is page-aligned.
 */
function alignedScanBuffer(): Buffer {
  // The lib we compile against (ES2023, no DOM) declares no WebAssembly; Node has it.
  const { WebAssembly } = globalThis as unknown as { WebAssembly: WasmApi };
  const pages = SCAN_READ / WASM_PAGE;
  scanBuffer ??= Buffer.from(new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer);
  return scanBuffer;
}

const WASM_PAGE = 65536;

interface WasmApi {
  Memory: new (descriptor: { initial: number; maximum: number }) => { readonly buffer: ArrayBuffer };
}

/**
 * Whether a file is worth scanning for holes: blocks allocated for fewer bytes than its size (lstat's `blocks` are
 * 512-byte units whatever the filesystem's block size). Everything else is archived as it always was.
 */
export function mayHaveHoles(stats: { readonly size: number; readonly blocks: number }): boolean {
  return stats.size >= MIN_SPARSE_SIZE && stats.blocks * 512 < stats.size;
}

/**
 * Reads the first `size` bytes of an open file and finds its data: the segments holding the 4 KiB blocks that are
 * not all zeros. Undefined when there is no hole (archive the file as usual). The map ends with a segment of no
 * bytes at the file's end, as GNU tar writes every map (its extraction sizes a file that ends in a hole there). A
 * file that shrinks while scanned reads as holes past its end; the packer's check afterwards warns that it changed.
 */
export function scanForData(
  fd: number,
  size: number,
  options: { readonly signal?: AbortSignal | undefined; readonly maxSegments?: number } = {},
): SparseMap | undefined {
  const { signal, maxSegments = MAX_WRITTEN_SEGMENTS } = options;
  const buffer = alignedScanBuffer();
  const found = new DataSegments(maxSegments);
  for (let position = 0; position < size; ) {
    const bytesRead = readSync(fd, buffer, 0, Math.min(SCAN_READ, size - position), position);
    if (bytesRead === 0) break;
    // Holes come in long runs: one compare (memcmp) for a whole read of zeros, block by block only around data.
    if (!isZero(buffer, 0, bytesRead)) {
      for (let at = 0; at < bytesRead; at += HOLE_BLOCK) {
        const end = Math.min(at + HOLE_BLOCK, bytesRead);
        if (!isZero(buffer, at, end)) found.add(position + at, end - at);
      }
    }
    position += bytesRead;
    signal?.throwIfAborted();
  }
  const segments = found.segments;
  const dataEnd = segments.length === 0 ? 0 : segments.at(-2)! + segments.at(-1)!;
  if (segments.length === 2 && segments[0] === 0 && dataEnd === size) return undefined;
  segments.push(size, 0);
  return { segments };
}

function isZero(buffer: Buffer, start: number, end: number): boolean {
  return buffer.subarray(start, end).equals(zeros().subarray(0, end - start));
}

/**
 * Data segments as the scan finds them, merged where they touch. Past `maxSegments` the smallest holes give way:
 * the least hole kept doubles, and holes shorter than that become data, until half the limit is left.
 */
class DataSegments {
  readonly segments: number[] = [];
  private minHole = HOLE_BLOCK;

  constructor(private readonly maxSegments: number) {}

  add(offset: number, length: number): void {
    const list = this.segments;
    const n = list.length;
    if (n > 0 && offset - (list[n - 2]! + list[n - 1]!) < this.minHole) {
      list[n - 1] = offset + length - list[n - 2]!;
      return;
    }
    list.push(offset, length);
    if (list.length / 2 > this.maxSegments) this.coarsen();
  }

  private coarsen(): void {
    const list = this.segments;
    while (list.length / 2 > this.maxSegments / 2) {
      this.minHole *= 2;
      let kept = 2;
      for (let i = 2; i < list.length; i += 2) {
        const keptEnd = list[kept - 2]! + list[kept - 1]!;
        if (list[i]! - keptEnd < this.minHole) list[kept - 1] = list[i]! + list[i + 1]! - list[kept - 2]!;
        else {
          list[kept] = list[i]!;
          list[kept + 1] = list[i + 1]!;
          kept += 2;
        }
      }
      list.length = kept;
    }
  }
}
