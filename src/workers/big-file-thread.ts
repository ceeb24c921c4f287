/**
 * The big-file writer thread: writes and hashes restore's big files part by part, then finishes each
 * (extract/big-file-writer.ts). It opens each file itself and alone closes it (finish or abandon), after every write
 * before it. Parts and the end of a file are answered in order; open and abandon are not.
 */
import type { Hash } from "node:crypto";
import type { MessagePort } from "node:worker_threads";
import type { finishRestoredFile } from "./file-metadata.js";
import type { ThreadError, ThreadRequire, threadErrorOf } from "./thread.js";

/** What the thread is told. */
export type BigFileMessage =
  | { op: "open"; file: number; path: string | Uint8Array }
  | { op: "part"; file: number; buffer: ArrayBuffer; length: number }
  | { op: "finish"; file: number; owner: [number, number] | undefined; mode: number; mtime: number }
  | { op: "abandon"; file: number };

export type BigFileReply =
  | { op: "part"; file: number }
  | { op: "finish"; file: number; digest: string }
  | { op: "failed"; file: number; error: ThreadError };

/** A file the thread has open: its descriptor (none if it could not be created), running digest and length. */
export interface OpenFile {
  fd?: number;
  readonly hash: Hash;
  position: number;
  /** The first failure; the file takes no more writes and its finish answers with it. */
  error?: unknown;
}

/**
 * The thread's handling of one message. A file whose write failed takes no more parts and answers its finish with
 * the error. Self-contained: the thread takes it as a helper.
 */
export function handleMessage(
  fs: typeof import("node:fs"),
  createHash: typeof import("node:crypto").createHash,
  finish: typeof finishRestoredFile,
  errorOf: typeof threadErrorOf,
  files: Map<number, OpenFile>,
  message: BigFileMessage,
): BigFileReply | undefined {
  const failed = (error: unknown): BigFileReply => ({
    op: "failed",
    file: message.file,
    error: errorOf(error),
  });
  if (message.op === "open") {
    const state: OpenFile = { hash: createHash("sha256"), position: 0 };
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

/** The thread's code (see runtime/eval-worker.ts: threadSource). It takes no workerData. */
export function bigFileThread(
  port: MessagePort,
  _data: undefined,
  require: ThreadRequire,
  handle: typeof handleMessage,
  finish: typeof finishRestoredFile,
  errorOf: typeof threadErrorOf,
): void {
  const fs = require("node:fs");
  const { createHash } = require("node:crypto");
  const files = new Map<number, OpenFile>();
  port.on("message", (message: BigFileMessage) => {
    const reply = handle(fs, createHash, finish, errorOf, files, message);
    if (reply !== undefined) port.postMessage(reply);
  });
}
