/**
 * sha256 of restored files on a thread of its own: the backup's digest thread, fed copies instead of shared blocks.
 * Why: restore's main thread (decrypt, tar, safety checks, writes) is what limits it on 2 cores, and hashing the big
 * files' bytes was ~0.3 s of it per 512 MB. Each part is copied once (a memcpy, ~15x cheaper than hashing it) and
 * moved to the thread; small files stay inline, where a round trip would cost more than the hash.
 */
import { createHash, type Hash } from "node:crypto";
import type { Worker } from "node:worker_threads";
import { LookerBackupError } from "../errors.js";
import { startEvalWorker, stopEvalWorker } from "../runtime/eval-worker.js";
import { DIGEST_WORKER_SOURCE } from "./file-digests.js";

/** One file's running digest, fed in order. */
export interface FileHash {
  update(part: Buffer): void;
  digest(): Promise<string>;
}

export class InlineFileHash implements FileHash {
  private readonly hash: Hash = createHash("sha256");

  update(part: Buffer): void {
    this.hash.update(part);
  }

  async digest(): Promise<string> {
    return this.hash.digest("hex");
  }
}

export class HashThread {
  private thread: Worker | undefined;
  private nextId = 0;
  private readonly pending = new Map<
    number,
    { resolve: (digest: string) => void; reject: (e: Error) => void }
  >();
  private failure: Error | undefined;

  /** A digest for one file, hashed on the thread (started at the first use). */
  open(): FileHash {
    const id = this.nextId++;
    return {
      update: (part) => this.send(id, part),
      digest: () => this.finish(id),
    };
  }

  async close(): Promise<void> {
    this.failure ??= hashFailed("the hash thread was closed");
    await stopEvalWorker(this.thread);
  }

  private send(id: number, part: Buffer): void {
    if (this.failure) throw this.failure;
    // A copy of just this part, moved to the thread: the part may be a view into a larger buffer that the tar
    // reader frees once the next part is asked for.
    const data = (part.buffer as ArrayBuffer).slice(part.byteOffset, part.byteOffset + part.length);
    this.started().postMessage({ id, blocks: [data], segments: [0, id, 0, data.byteLength, 0] }, [data]);
  }

  private finish(id: number): Promise<string> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const thread = this.started();
      thread.ref();
      thread.postMessage({ id, blocks: [], segments: [-1, id, 0, 0, 1] });
    });
  }

  private started(): Worker {
    if (this.thread !== undefined) return this.thread;
    // The digest thread's code and protocol (file-digests.ts): a part is one segment covering its whole buffer.
    // Unref'd: only a pending digest keeps the process alive (see finish).
    this.thread = startEvalWorker<HashReply>("the hash thread", DIGEST_WORKER_SOURCE, {
      onMessage: (reply) => this.receive(reply),
      onFailure: (detail, cause) => this.fail(hashFailed(detail, cause)),
    });
    return this.thread;
  }

  private receive(reply: HashReply): void {
    if ("error" in reply) {
      this.fail(hashFailed(reply.error));
      return;
    }
    for (let i = 0; i < reply.digests.length; i += 2)
      this.settle(reply.digests[i] as number, reply.digests[i + 1] as string);
  }

  private settle(id: number, digest: string): void {
    const waiter = this.pending.get(id);
    this.pending.delete(id);
    if (this.pending.size === 0) this.thread?.unref();
    waiter?.resolve(digest);
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const waiter of this.pending.values()) waiter.reject(this.failure);
    this.pending.clear();
    this.thread?.unref();
  }
}

type HashReply = { digests: (number | string)[] } | { error: string };

function hashFailed(detail: string, cause?: unknown): LookerBackupError {
  return new LookerBackupError(`hashing the restored files failed: ${detail}`, { cause });
}
