/**
 * Our worker threads (zstd, file digests, restore's hash thread and small-file writer) run CommonJS source given as
 * a string (`eval: true`), so they run the same from the sources and from the bundle. They start the same way: the
 * thread never keeps the process alive by itself (its owner refs it while work is pending, so an idle thread or a
 * forgotten clean-up cannot hold the process open), and any way it fails (an uncaught error, or an exit) reaches
 * the owner as one callback. They stop the same way (stopEvalWorker), and owners that let work pile up to a bound
 * wait for it the same way (BacklogWaiters).
 */
import { Worker } from "node:worker_threads";

export interface EvalWorkerHandlers<Reply> {
  readonly onMessage: (reply: Reply) => void;
  /** `detail` reads after the thread's name, e.g. "the digest thread exited with code 1". */
  readonly onFailure: (detail: string, cause?: unknown) => void;
  readonly onExit?: (code: number) => void;
}

export function startEvalWorker<Reply>(
  name: string,
  source: string,
  handlers: EvalWorkerHandlers<Reply>,
  workerData?: unknown,
): Worker {
  const thread = new Worker(source, { eval: true, workerData });
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

/**
 * Callers waiting for a thread's backlog (work sent, not answered yet) to shrink to a bound. The owner tells it
 * when the backlog shrank (wake) or the thread failed (rejectAll).
 */
export class BacklogWaiters {
  private waiting: { resolve: () => void; reject: (error: Error) => void; until: number }[] = [];

  /** @param backlog the owner's current backlog */
  constructor(private readonly backlog: () => number) {}

  /** Resolves once the backlog is at most `until`. */
  until(until: number): Promise<void> {
    if (this.backlog() <= until) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject, until }));
  }

  /** Resolves the waiters whose bound the backlog has reached. */
  wake(): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const waiter of waiting) {
      if (this.backlog() <= waiter.until) waiter.resolve();
      else this.waiting.push(waiter);
    }
  }

  rejectAll(error: Error): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const waiter of waiting) waiter.reject(error);
  }
}

/** A system error as a thread sends it: what the owner needs to rebuild it (code, path, syscall keep the hints). */
export interface ThreadError {
  readonly message: string;
  readonly code?: string;
  readonly path?: string;
  readonly syscall?: string;
}

/** The thread's error as the same call on the owner's thread would have thrown it. */
export function errorFromThread(detail: ThreadError): Error {
  const error = new Error(detail.message) as NodeJS.ErrnoException;
  if (detail.code !== undefined) error.code = detail.code;
  if (detail.path !== undefined) error.path = detail.path;
  if (detail.syscall !== undefined) error.syscall = detail.syscall;
  return error;
}
