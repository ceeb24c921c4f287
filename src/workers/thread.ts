/**
 * What every thread's code shares. A thread runs a function of this folder from its source text (see threadSource in
 * runtime/eval-worker.ts), so each such function is self-contained: it uses only its parameters and the globals a
 * thread has (Buffer, Map, ...). Node's modules reach it through the `require` it is given, typed here; other code
 * it shares with the main thread is passed to it as further functions, themselves self-contained.
 */

/** The node modules a thread loads, by their names. */
export interface ThreadModules {
  "node:crypto": typeof import("node:crypto");
  "node:fs": typeof import("node:fs");
  "node:os": typeof import("node:os");
  "node:zlib": typeof import("node:zlib");
}

/** A thread's `require`, typed for the modules it may load (node's own: a thread's code is not bundled). */
export type ThreadRequire = <Id extends keyof ThreadModules>(id: Id) => ThreadModules[Id];

/** A system error as a thread sends it: what the owner needs to rebuild it (code, path, syscall keep the hints). */
export interface ThreadError {
  readonly message: string;
  readonly code?: string;
  readonly path?: string;
  readonly syscall?: string;
}

/**
 * A thread's caught error as it posts it. Anything thrown reads as its message; a system error keeps its code, path
 * and syscall. Self-contained: the writer threads take it as a helper.
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
