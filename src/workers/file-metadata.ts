/**
 * The last steps of every restored file, shared by the staging sink on the main thread and the small- and big-file
 * writer threads.
 */

/**
 * Gives a written file its owner (when given), then its mode (chown clears setuid/setgid, so chmod comes after; no
 * mode when the file was created with it), then its times (after the last write, which would change them).
 * Self-contained: the writer threads take it as a helper, so the fs calls are passed in.
 */
export function finishRestoredFile(
  fs: Pick<typeof import("node:fs"), "fchownSync" | "fchmodSync" | "futimesSync">,
  fd: number,
  owner: readonly [uid: number, gid: number] | undefined,
  mode: number | undefined,
  mtime: number,
): void {
  if (owner !== undefined) fs.fchownSync(fd, owner[0], owner[1]);
  if (mode !== undefined) fs.fchmodSync(fd, mode);
  // Node takes a negative number of seconds as "now" and a numeric string as it stands (documented for utimes):
  // a 1960 mtime must come back as 1960. libuv sets times to the microsecond.
  const time = mtime < 0 ? String(mtime) : mtime;
  fs.futimesSync(fd, time, time);
}
