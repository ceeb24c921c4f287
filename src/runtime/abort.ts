/**
 * The work, or the abort if that comes first. Why: on cancel a pipeline destroys every stage and settles only when
 * the last one has closed, and a reader waiting on a stream destroyed under it may never hear of it. Awaiting such
 * work would leave the backup's partial archive or the restore's staging behind, and node would then quit with exit
 * code 13 (an unsettled top-level await) instead of 130. The work still ends on its own; the cancelled run cleans up
 * without waiting for it.
 */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return work;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
