/**
 * Our worker threads (zstd, file digests, restore's big-file and small-file writers) run CommonJS source given as
 * a string (`eval: true`), so they run the same from the sources, from the bundle and from the single executable
 * (one embedded script: a worker file beside it would not be there). That source is a real function's text: each
 * thread's code is a self-contained function in src/workers/, type-checked and linted like the rest, which
 * threadSource turns into the thread's script. They start the same way: the thread never keeps the process alive
 * by itself (its owner refs it while work is pending, so an idle thread or a forgotten clean-up cannot hold the
 * process open), and any way it fails (an uncaught error, or an exit) reaches the owner as one callback. They stop
 * the same way (stopEvalWorker), and owners that let work pile up to a bound wait for it the same way
 * (backlog-waiters.ts).
 */
import { type MessagePort, Worker } from "node:worker_threads";

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

/** Lowers the calling thread's priority by `nice` (see BACKGROUND_NICE). Self-contained: it runs in the thread. */
function lowerThreadPriority(require: NodeJS.Require, nice: number): void {
  try {
    const fs: typeof import("node:fs") = require("node:fs");
    const os: typeof import("node:os") = require("node:os");
    const tid = Number(fs.readlinkSync("/proc/thread-self").split("/").pop());
    os.setPriority(tid, Math.min(19, os.getPriority(tid) + nice));
  } catch {}
}

/**
 * A thread's whole code: called with the thread's port to its owner, the workerData it was started with, node's
 * `require`, and the helpers threadSource was given. Self-contained: it refers to nothing outside itself but its
 * parameters and the globals every thread has, since only its text reaches the thread.
 */
export type ThreadMain<Data, Helpers extends readonly unknown[]> = (
  port: MessagePort,
  data: Data,
  require: NodeJS.Require,
  ...helpers: Helpers
) => void;

/**
 * The CommonJS source of a thread that runs `main`, with `helpers` (functions it shares with the main thread,
 * self-contained too) as its last arguments. Only text is passed on, so names do not matter: a bundler may rename
 * the functions, and nothing refers to them by name.
 */
export function threadSource<Data, Helpers extends readonly ((...args: never[]) => unknown)[]>(
  main: ThreadMain<Data, Helpers>,
  ...helpers: Helpers
): string {
  const threads = 'require("node:worker_threads")';
  const args = [`${threads}.parentPort`, `${threads}.workerData`, "require"];
  for (const helper of helpers) args.push(`(${helper.toString()})`);
  return `"use strict";\n(${main.toString()})(${args.join(", ")});\n`;
}

/** What a thread started with these options runs: its source, and then what the options add. */
export function evalWorkerCode(source: string, options: EvalWorkerOptions = {}): string {
  // After the source, whose "use strict" must stay first; it runs before the thread takes its first message.
  if (options.background)
    return `${source}(${lowerThreadPriority.toString()})(require, ${BACKGROUND_NICE});\n`;
  return source;
}

export function startEvalWorker<Reply>(
  name: string,
  source: string,
  handlers: EvalWorkerHandlers<Reply>,
  workerData?: unknown,
  options: EvalWorkerOptions = {},
): Worker {
  const thread = new Worker(evalWorkerCode(source, options), { eval: true, workerData });
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
