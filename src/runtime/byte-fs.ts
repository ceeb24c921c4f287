/**
 * The fs/promises calls placement makes, taking names as runtime/byte-names.ts holds them: a path with a name that
 * is not UTF-8 reaches the kernel as its bytes. A module of its own so a caller cannot mix the two kinds of call.
 */
import type { MakeDirectoryOptions, RmOptions, Stats } from "node:fs";
import * as fsp from "node:fs/promises";
import { fsPath, readdirNamesAsync, readlinkNameAsync } from "./byte-names.js";

export const lstat = (path: string): Promise<Stats> => fsp.lstat(fsPath(path));
export const stat = (path: string): Promise<Stats> => fsp.stat(fsPath(path));
export const mkdir = (path: string, options?: MakeDirectoryOptions): Promise<string | undefined> =>
  fsp.mkdir(fsPath(path), options);
export const link = (existing: string, created: string): Promise<void> =>
  fsp.link(fsPath(existing), fsPath(created));
export const rename = (from: string, to: string): Promise<void> => fsp.rename(fsPath(from), fsPath(to));
export const unlink = (path: string): Promise<void> => fsp.unlink(fsPath(path));
export const rm = (path: string, options?: RmOptions): Promise<void> => fsp.rm(fsPath(path), options);
export const rmdir = (path: string): Promise<void> => fsp.rmdir(fsPath(path));
export const readdir = readdirNamesAsync;

/**
 * Copies a file or a symlink (as a symlink) with its mode, times and, as root, owner: what rename would have kept,
 * for a destination on another filesystem.
 */
export async function copyEntry(source: string, destination: string): Promise<void> {
  const info = await lstat(source);
  const to = fsPath(destination);
  if (info.isSymbolicLink()) {
    await fsp.symlink(fsPath(await readlinkNameAsync(source)), to);
  } else {
    await fsp.copyFile(fsPath(source), to, fsp.constants.COPYFILE_EXCL);
  }
  if (process.getuid?.() === 0) await fsp.lchown(to, info.uid, info.gid);
  // After chown, which clears setuid and setgid; a symlink's own mode means nothing on Linux.
  if (!info.isSymbolicLink()) await fsp.chmod(to, info.mode & 0o7777);
  await fsp.lutimes(to, utimesSeconds(info.atimeMs / 1000), utimesSeconds(info.mtimeMs / 1000));
}

/**
 * A time in seconds as utimes and lutimes take it: Node takes a negative number as "now" but a numeric string as it
 * stands (documented), so a pre-1970 time goes as a string. The writer threads do the same inline (their code must
 * be self-contained, see workers/file-metadata.ts).
 */
export function utimesSeconds(seconds: number): number | string {
  return seconds < 0 ? String(seconds) : seconds;
}
