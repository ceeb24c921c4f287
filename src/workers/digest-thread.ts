/**
 * The digest thread: the sha256 of each archived file, from the packer's shared blocks, read in place
 * (archive/file-digests.ts: WorkerDigester). One message per batch, answered in order (see DigestBatch and
 * DigestReply).
 */
import type { Hash } from "node:crypto";
import type { MessagePort } from "node:worker_threads";
import type { ThreadRequire } from "./thread.js";

/** A batch: the blocks its segments lie in (shared memory, read in place), and the segments (see hashSegments). */
export interface DigestBatch {
  readonly id: number;
  readonly blocks: (ArrayBuffer | SharedArrayBuffer)[];
  readonly segments: number[];
}

/** File id, hex digest pairs of the files that ended in the batch; or what went wrong. */
export type DigestReply = { id: number; digests: (number | string)[] } | { id: number; error: string };

/**
 * Hashes a batch of segments: five numbers each, block index, file id, start, end, last (1 when the file ends
 * there; such an end marker may carry no bytes and block index -1). Files open across batches stay in `open`.
 * Self-contained: the thread takes it as a helper (a small archive is hashed on the main thread with it).
 */
export function hashSegments(
  views: readonly Buffer[],
  segments: readonly number[],
  open: Map<number, Hash>,
  newHash: () => Hash,
  hashWhole: (bytes: Buffer) => string,
): (number | string)[] {
  const digests: (number | string)[] = [];
  for (let i = 0; i < segments.length; i += 5) {
    const fileId = segments[i + 1] as number;
    // Most files of a home lie whole in one segment: one call, no Hash object (a tenth of this thread at 100k files).
    if (segments[i + 4] === 1 && segments[i] !== -1 && !open.has(fileId)) {
      const view = views[segments[i] as number] as Buffer;
      digests.push(fileId, hashWhole(view.subarray(segments[i + 2] as number, segments[i + 3] as number)));
      continue;
    }
    let hash = open.get(fileId);
    if (hash === undefined) {
      hash = newHash();
      open.set(fileId, hash);
    }
    const start = segments[i + 2] as number;
    const end = segments[i + 3] as number;
    if (end > start) hash.update((views[segments[i] as number] as Buffer).subarray(start, end));
    if (segments[i + 4] === 1) {
      digests.push(fileId, hash.digest("hex"));
      open.delete(fileId);
    }
  }
  return digests;
}

/** The thread's code (see runtime/eval-worker.ts: threadSource). It takes no workerData. */
export function digestThread(
  port: MessagePort,
  _data: undefined,
  require: ThreadRequire,
  hashBatch: typeof hashSegments,
): void {
  const { createHash, hash } = require("node:crypto");
  const newHash = () => createHash("sha256");
  const hashWhole = (bytes: Buffer) => hash("sha256", bytes, "hex");
  const open = new Map<number, Hash>();
  port.on("message", ({ id, blocks, segments }: DigestBatch) => {
    let reply: DigestReply;
    try {
      const views = blocks.map((block) => Buffer.from(block));
      reply = { id, digests: hashBatch(views, segments, open, newHash, hashWhole) };
    } catch (error) {
      reply = { id, error: String((error as Error)?.message || error) };
    }
    port.postMessage(reply);
  });
}
