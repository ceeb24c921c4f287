/**
 * Big restored files are written and hashed on a thread of their own. Why: restore's main thread (decrypt, tar,
 * safety checks) is what limits it on 2 cores. Hashing a big file's bytes was ~0.3 s of it per 512 MB, and waiting
 * for each 4 MiB part to be written before asking for the next left it idle a fifth of the time.
 *
 * A part is moved to the thread, not copied, when it is a whole buffer its producer gave up (a frame decompressed
 * into one file, see takeOwnership); any other part (a file's share of a frame, a view the tar reader will free) is
 * copied first, a memcpy ~15x cheaper than hashing it. The thread writes each part where it belongs, hashes it, and
 * at the end gives the file its owner, mode and times, closes it and answers with the digest.
 *
 * The thread opens each file itself and alone closes it (finish or abandon), after every write before it: a
 * descriptor closed by the main thread while writes were queued could be reused by the next file, and those writes
 * land there. (Node also warns when a thread closes a descriptor it did not open, and closes a thread's own ones
 * when it stops, so a failed restore leaves none open.)
 */
import type { Hash } from "node:crypto";
import type { Worker } from "node:worker_threads";
import { BacklogWaiters } from "../runtime/backlog-waiters.js";
import { takeOwnership } from "../runtime/buffers.js";
import { fsPath } from "../runtime/byte-names.js";
import { startEvalWorker, stopEvalWorker } from "../runtime/eval-worker.js";
import { errorFromThread, type ThreadError, threadErrorOf } from "../workers/thread.js";
import { finishRestoredFile, writeFailed } from "./restored-file.js";
import type { TarHeader } from "./tar-format.js";

/** Parts the thread may lag behind by (each up to a 4 MiB frame) before a file's writer waits. */
const MAX_PARTS_IN_FLIGHT = 4;
/**
 * A part larger than our frames counts as one part per started PART_UNIT bytes, so the backlog stays ~16 MiB
 * whatever the archive's frames (a hand-made one has 16 MiB frames; four of them in flight were 64 MiB).
 */
const PART_UNIT = 4 * 1024 * 1024;

/** What the thread is told. Parts and the end of a file are answered in order; open and abandon are not. */
type WriterMessage =
  | { op: "open"; file: number; path: string | Uint8Array }
  | { op: "part"; file: number; buffer: ArrayBuffer; length: number }
  | { op: "finish"; file: number; owner: [number, number] | undefined; mode: number; mtime: number }
  | { op: "abandon"; file: number };

type WriterReply =
  | { op: "part"; file: number }
  | { op: "finish"; file: number; digest: string }
  | { op: "failed"; file: number; error: ThreadError };

/** A file the thread has open: its descriptor (none if it could not be created), running digest and length. */
interface FileState {
  fd?: number;
  readonly hash: Hash;
  position: number;
  /** The first failure; the file takes no more writes and its finish answers with it. */
  error?: unknown;
}

/**
 * The thread's handling of one message. Self-contained: its source text is the thread's code (see WRITER_SOURCE).
 * A file whose write failed takes no more parts and answers its finish with the error.
 */
function handleMessage(
  fs: typeof import("node:fs"),
  createHash: typeof import("node:crypto").createHash,
  finish: typeof finishRestoredFile,
  errorOf: typeof threadErrorOf,
  files: Map<number, FileState>,
  message: WriterMessage,
): WriterReply | undefined {
  const failed = (error: unknown): WriterReply => ({
    op: "failed",
    file: message.file,
    error: errorOf(error),
  });
  if (message.op === "open") {
    const state: FileState = { hash: createHash("sha256"), position: 0 };
    try {
      // 'wx': staging is fresh and private, so an existing file here means the archive tried to write twice.
      state.fd = fs.openSync(message.path as string | Buffer, "wx", 0o600);
    } catch (error) {
      state.error = error;
    }
    files.set(message.file, state);
    return undefined;
  }
  const state = files.get(message.file);
  if (state === undefined) throw new Error(`file ${message.file} was not opened`);
  if (message.op === "part") {
    const bytes = new Uint8Array(message.buffer, 0, message.length);
    if (state.fd !== undefined && state.error === undefined) {
      try {
        for (let done = 0; done < bytes.length; )
          done += fs.writeSync(state.fd, bytes, done, bytes.length - done, state.position + done);
        state.hash.update(bytes);
        state.position += bytes.length;
      } catch (error) {
        state.error = error;
      }
    }
    // Freed now rather than whenever V8 collects it (dead buffers are external memory it lets pile up).
    (message.buffer as ArrayBuffer & { transfer?: (length: number) => ArrayBuffer }).transfer?.(0);
    return { op: "part", file: message.file };
  }
  files.delete(message.file);
  if (state.fd === undefined) return message.op === "abandon" ? undefined : failed(state.error);
  if (message.op === "finish" && state.error === undefined) {
    try {
      finish(fs, state.fd, message.owner, message.mode, message.mtime);
    } catch (error) {
      state.error = error;
    }
  }
  try {
    fs.closeSync(state.fd);
  } catch (error) {
    state.error ??= error;
  }
  if (message.op === "abandon") return undefined;
  if (state.error !== undefined) return failed(state.error);
  return { op: "finish", file: message.file, digest: state.hash.digest("hex") };
}

/**
 * The thread, a CommonJS script for `new Worker(source, { eval: true })` (as the other threads, so it runs the same
 * from the sources and from the bundle).
 */
const WRITER_SOURCE = `
"use strict";
const { parentPort } = require("node:worker_threads");
const fs = require("node:fs");
const { createHash } = require("node:crypto");
const finishRestoredFile = ${finishRestoredFile.toString()};
const threadErrorOf = ${threadErrorOf.toString()};
const handleMessage = ${handleMessage.toString()};
const files = new Map();
parentPort.on("message", (message) => {
  const reply = handleMessage(fs, createHash, finishRestoredFile, threadErrorOf, files, message);
  if (reply !== undefined) parentPort.postMessage(reply);
});
`;

/** One file being written on the thread. */
export interface ThreadWrittenFile {
  /** Hands the next part over; the caller must not use it afterwards. A promise when the thread lags too far. */
  add(part: Buffer): Promise<void> | undefined;
  /** Owner (when given), mode and times, then closes the file; resolves to the sha256 of its bytes. */
  finish(header: TarHeader, canChown: boolean): Promise<string>;
  /** Closes the file without finishing it (the restore failed), after the writes already handed over. */
  abandon(): void;
}

export class BigFileWriter {
  private thread: Worker | undefined;
  private nextFile = 0;
  private partsInFlight = 0;
  /** The parts' weights (see PART_UNIT), oldest first: the thread answers parts in order. */
  private readonly weights: number[] = [];
  private weightInFlight = 0;
  private failure: Error | undefined;
  private readonly waiters = new BacklogWaiters(() => this.weightInFlight);
  private readonly finishing = new Map<
    number,
    { resolve: (digest: string) => void; reject: (error: Error) => void }
  >();

  /** Creates the file at `path` (it must not exist yet) on the thread; failing that is reported by finish(). */
  open(path: string): ThreadWrittenFile {
    if (this.failure) throw this.failure;
    const file = this.nextFile++;
    // A name that is not UTF-8 travels as its bytes (runtime/byte-names.ts).
    this.post({ op: "open", file, path: fsPath(path) });
    return {
      add: (part) => this.add(file, part),
      finish: (header, canChown) => this.finish(file, header, canChown),
      abandon: () => {
        // After a failure the thread is stopping or gone, and its descriptors with it.
        if (this.failure === undefined) this.post({ op: "abandon", file });
      },
    };
  }

  /** Stops the thread, if it was started; files not finished are not. */
  async close(): Promise<void> {
    this.fail(writeFailed("the file writer was closed"));
    await stopEvalWorker(this.thread);
  }

  private add(file: number, part: Buffer): Promise<void> | undefined {
    if (this.failure) throw this.failure;
    const buffer =
      takeOwnership(part) ??
      (part.buffer as ArrayBuffer).slice(part.byteOffset, part.byteOffset + part.length);
    if (this.partsInFlight++ === 0) this.started().ref();
    const weight = Math.max(1, Math.ceil(part.length / PART_UNIT));
    this.weights.push(weight);
    this.weightInFlight += weight;
    this.post({ op: "part", file, buffer, length: part.length }, [buffer]);
    return this.weightInFlight >= MAX_PARTS_IN_FLIGHT ? this.waitUntil(MAX_PARTS_IN_FLIGHT - 1) : undefined;
  }

  private finish(file: number, header: TarHeader, canChown: boolean): Promise<string> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.finishing.set(file, { resolve, reject });
      this.started().ref();
      const owner: [number, number] | undefined = canChown ? [header.uid, header.gid] : undefined;
      this.post({ op: "finish", file, owner, mode: header.mode, mtime: header.mtime });
    });
  }

  private post(message: WriterMessage, transfer: ArrayBuffer[] = []): void {
    this.started().postMessage(message, transfer);
  }

  private started(): Worker {
    if (this.thread !== undefined) return this.thread;
    // Unref'd: only a pending part or file keeps the process alive (see add and finish).
    this.thread = startEvalWorker<WriterReply>("the big-file writer", WRITER_SOURCE, {
      onMessage: (reply) => this.receive(reply),
      onFailure: (detail, cause) => this.fail(writeFailed(detail, cause)),
    });
    return this.thread;
  }

  private receive(reply: WriterReply): void {
    if (reply.op === "part") {
      this.partsInFlight -= 1;
      this.weightInFlight -= this.weights.shift() ?? 0;
      this.waiters.wake();
    } else {
      const waiter = this.finishing.get(reply.file);
      this.finishing.delete(reply.file);
      if (reply.op === "finish") waiter?.resolve(reply.digest);
      // A system error (a full disk) as the same call here would have thrown it, so its hint reaches the user.
      else waiter?.reject(errorFromThread(reply.error));
    }
    if (this.partsInFlight === 0 && this.finishing.size === 0) this.thread?.unref();
  }

  private waitUntil(inFlight: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return this.waiters.until(inFlight);
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.waiters.rejectAll(this.failure);
    for (const waiter of this.finishing.values()) waiter.reject(this.failure);
    this.finishing.clear();
    this.thread?.unref();
  }
}
