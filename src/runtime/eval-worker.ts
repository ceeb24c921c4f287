/**
 * Our worker threads (zstd, file digests, restore's big-file and small-file writers) run CommonJS source given as
 * a string (`eval: true`), so they run the same from the sources and from the bundle. They start the same way: the
 * thread never keeps the process alive by itself (its owner refs it while work is pending, so an idle thread or a
 * forgotten clean-up cannot hold the process open), and any way it fails (an uncaught error, or an exit) reaches
 * the owner as one callback. They stop the same way (stopEvalWorker), and owners that let work pile up to a bound
 * wait for it the same way (backlog-waiters.ts).
 */
import { Worker } from "node:worker_threads";

export interface EvalWorkerHandlers<Reply> {
  readonly onMessage: (reply: Reply) => void;
  /** `detail` reads after the thread's name, e.g. "the digest thread exited with code 1". */
  readonly onFailure: (detail: string, cause?: unknown) => void;
  readonly onExit?: (code: number) => void;
}

export interface EvalWorkerOptions {
  /**
   * The thread runs at a lower scheduling priority than the rest of the process (see LOWER_PRIORITY): for helpers
   * that take work from a busier thread, which must not wait for a core while they have it.
   */
  readonly background?: boolean;
}

/**
 * Raises the thread's nice value by BACKGROUND_NICE (Linux schedules threads one by one: /proc/thread-self names
 * this one). Why: a backup of many small files is bound by its main thread (listing, opening and reading files,
 * tar headers), while the zstd threads it feeds share the same two cores; at equal priority the scheduler took
 * turns among them all and the main thread waited. Measured with the zstd threads in the background, paired runs
 * against the same bundle without: 100,000 small files 2.8-3.2 s -> 2.5-2.7 s (median), a 1 GB home 4.1 s -> 3.7 s.
 * (The digest thread, a small consumer, stays at normal priority: lagging, it would hold blocks.) Restore, whose
 * writer thread keeps pace with its main thread, did not gain and is left alone. A side effect, welcome on a server
 * that runs Looker: under CPU contention the backup's compression yields to processes at normal priority.
 * Where the thread cannot do this (no /proc, a sandbox), it runs as it would have.
 */
const BACKGROUND_NICE = 10;
const LOWER_PRIORITY = `
try {
  const tid = Number(require("node:fs").readlinkSync("/proc/thread-self").split("/").pop());
  const os = require("node:os");
  os.setPriority(tid, Math.min(19, os.getPriority(tid) + ${BACKGROUND_NICE}));
} catch {}
`;

export function startEvalWorker<Reply>(
  name: string,
  source: string,
  handlers: EvalWorkerHandlers<Reply>,
  workerData?: unknown,
  options: EvalWorkerOptions = {},
): Worker {
  // After the source, whose "use strict" must stay first; it runs before the thread takes its first message.
  const code = options.background ? `${source}\n${LOWER_PRIORITY}` : source;
  const thread = new Worker(code, { eval: true, workerData });
  thread.unref();
  thread.on("message", (reply: Reply) => handlers.onMessage(reply));
  thread.on("error", (error) => handlers.onFailure(error.message, error));
  thread.on("exit", (code) => {
    handlers.onExit?.(code);
    handlers.onFailure(`${name} exited with code ${code}`);
  });
  return thread;
}

/**
 * Stops a thread, if one was started. It is ref'd while it stops: an unref'd thread's exit does not keep the event
 * loop alive, and a caller awaiting this (a clean-up during a cancelled run) would then hang until node quits with
 * exit code 13.
 */
export async function stopEvalWorker(thread: Worker | undefined): Promise<void> {
  thread?.ref();
  await thread?.terminate();
}

/** A system error as a thread sends it: what the owner needs to rebuild it (code, path, syscall keep the hints). */
export interface ThreadError {
  readonly message: string;
  readonly code?: string;
  readonly path?: string;
  readonly syscall?: string;
}

/**
 * A thread's caught error as it posts it (self-contained: a thread's code embeds its source text). Anything thrown
 * reads as its message; a system error keeps its code, path and syscall.
 */
export function threadErrorOf(error: unknown): ThreadError {
  const e = error as NodeJS.ErrnoException | undefined;
  return { message: String(e?.message ?? e), code: e?.code, path: e?.path, syscall: e?.syscall };
}

/** The thread's error as the same call on the owner's thread would have thrown it. */
export function errorFromThread(detail: ThreadError): Error {
  const error = new Error(detail.message) as NodeJS.ErrnoException;
  if (detail.code !== undefined) error.code = detail.code;
  if (detail.path !== undefined) error.path = detail.path;
  if (detail.syscall !== undefined) error.syscall = detail.syscall;
  return error;
}
