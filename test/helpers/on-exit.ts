/**
 * Runs a synchronous clean-up when the test process ends, normally or by SIGTERM/SIGINT/SIGHUP (vitest stops its
 * workers with SIGTERM, which skips 'exit' handlers), then lets the signal end the process as it would have.
 */
export function onProcessExit(cleanUp: () => void): void {
  process.on("exit", cleanUp);
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
    process.once(signal, () => {
      cleanUp();
      // Die of the signal as we would have without this handler, unless someone else handles it.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  }
}
