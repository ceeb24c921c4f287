/**
 * Where a restore stages, and how the staged home takes the target's place.
 *
 * The usual way is two renames of whole directories beside the target. A target that is a mount point (a fresh
 * volume mounted at /home/looker, the normal disaster-recovery target) cannot be renamed or removed (EBUSY), and a
 * staging directory beside it would sit on another filesystem (EXDEV). Then the restore stages inside the target and
 * swaps its contents instead: the previous contents move to `.pre-restore-<time>` inside the target, the staged
 * entries move in, and the target directory itself takes the archived mode, owner and times. Every move is a rename
 * within one filesystem, and a failure moves everything back.
 */
import { chmod, lchown, lstat, mkdtemp, stat, utimes } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { InputError } from "../errors.js";
import { mkdir, readdir, rename, rm, rmdir, utimesSeconds } from "../runtime/byte-fs.js";
import { fsPath } from "../runtime/byte-names.js";

export type TargetState = "missing" | "empty" | "non-empty";

/**
 * What the target is now. A fresh ext4 volume holds only `lost+found`: as a mount point it counts as empty, and that
 * directory stays where it is (fsck wants it at the filesystem's root).
 */
export async function inspectTarget(target: string): Promise<TargetState> {
  try {
    const info = await stat(target);
    if (!info.isDirectory()) {
      throw new InputError(
        `target ${target} exists and is not a directory`,
        "choose a directory as --target",
      );
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return "missing";
    throw error;
  }
  const names = (await readdir(target)).filter((name) => name !== LOST_FOUND);
  if (names.length > 0) return "non-empty";
  return (await readdir(target)).length === 0 || (await isMountPoint(target)) ? "empty" : "non-empty";
}

const LOST_FOUND = "lost+found";

/** The name of a staging directory made inside a target that is a mount point. */
const INSIDE_PREFIX = ".looker-backup-restore-";

/** A private staging directory on the target's filesystem: beside it, or inside it when it is a mount point. */
export async function makeStaging(
  target: string,
  state: TargetState,
): Promise<{ staging: string; inside: boolean }> {
  const inside = state !== "missing" && (await isMountPoint(target));
  const prefix = inside
    ? join(target, INSIDE_PREFIX)
    : join(dirname(target), `.${basename(target)}.restore-`);
  return { staging: await mkdtemp(prefix), inside };
}

/** A directory on another device than its parent is a mount point (bind mounts of one filesystem show as EBUSY). */
async function isMountPoint(path: string): Promise<boolean> {
  const [self, parent] = await Promise.all([stat(path), stat(dirname(path))]);
  return self.dev !== parent.dev;
}

/**
 * Removes staging directories that an interrupted restore of this target left behind (a second Ctrl-C, a killed
 * process); the caller holds the target's lock, so no running restore owns them. Returns what was removed.
 */
export async function removeStaleStaging(target: string): Promise<string[]> {
  const stale: string[] = [];
  const besidePrefix = `.${basename(target)}.restore-`;
  for (const name of await readdir(dirname(target)).catch(() => [] as string[])) {
    if (name.startsWith(besidePrefix) && !name.includes("-old-") && !name.includes("-new-"))
      stale.push(join(dirname(target), name));
  }
  for (const name of await readdir(target).catch(() => [] as string[])) {
    if (name.startsWith(INSIDE_PREFIX)) stale.push(join(target, name));
  }
  const removed: string[] = [];
  for (const path of stale) {
    if (!(await lstat(fsPath(path))).isDirectory()) continue;
    await rm(path, { recursive: true, force: true });
    removed.push(path);
  }
  return removed;
}

/**
 * Puts the staged home in the target's place. Returns where the previous content was kept (non-empty target), if
 * anywhere. When it fails, the target is as it was.
 */
export async function swapIntoPlace(
  staged: string,
  target: string,
  state: TargetState,
  at: Date,
  inside: boolean,
): Promise<string | undefined> {
  if (state === "missing") {
    await rename(staged, target);
    return undefined;
  }
  if (!inside) {
    try {
      return await swapDirectories(staged, target, state, at);
    } catch (error) {
      // A mount point on the parent's device (a bind mount) shows only here.
      if ((error as NodeJS.ErrnoException).code !== "EBUSY") throw error;
    }
  }
  return swapContents(staged, target, state, at);
}

function keptName(target: string, at: Date): string {
  return `${target}.pre-restore-${stamp(at)}`;
}

/** `20250102T030405Z`: the time in the names of content a restore keeps aside. */
export function stamp(at: Date): string {
  return at
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}Z$/, "Z");
}

/** Two renames on one filesystem; if the second fails, the first is undone so the target is as it was. */
async function swapDirectories(
  staged: string,
  target: string,
  state: TargetState,
  at: Date,
): Promise<string | undefined> {
  if (state === "empty") {
    await rmdir(target);
    try {
      await rename(staged, target);
    } catch (error) {
      await mkdir(target);
      throw error;
    }
    return undefined;
  }
  const kept = keptName(target, at);
  await rename(target, kept);
  try {
    await rename(staged, target);
  } catch (error) {
    await rename(kept, target);
    throw error;
  }
  return kept;
}

/** The contents swap for a target that cannot be renamed (see the module comment). */
async function swapContents(
  staged: string,
  target: string,
  state: TargetState,
  at: Date,
): Promise<string | undefined> {
  const stagingDir = dirname(staged);
  const own = (name: string) => join(target, name) === stagingDir;
  const kept = state === "non-empty" ? join(target, `.pre-restore-${stamp(at)}`) : undefined;
  const movedOut: string[] = [];
  const movedIn: string[] = [];
  try {
    if (kept !== undefined) {
      await mkdir(kept, { mode: 0o700 });
      for (const name of await readdir(target)) {
        if (own(name) || join(target, name) === kept || name === LOST_FOUND) continue;
        await rename(join(target, name), join(kept, name));
        movedOut.push(name);
      }
    }
    for (const name of await readdir(staged)) {
      await rename(join(staged, name), join(target, name));
      movedIn.push(name);
    }
    await takeMetadata(staged, target);
    return kept;
  } catch (error) {
    for (const name of movedIn.reverse())
      await rename(join(target, name), join(staged, name)).catch(() => undefined);
    if (kept !== undefined) {
      for (const name of movedOut.reverse())
        await rename(join(kept, name), join(target, name)).catch(() => undefined);
      await rmdir(kept).catch(() => undefined);
    }
    throw error;
  }
}

/** The target directory takes the staged home's owner (as root), mode and times, as a renamed home would have. */
async function takeMetadata(staged: string, target: string): Promise<void> {
  const info = await lstat(fsPath(staged));
  if (process.getuid?.() === 0) await lchown(target, info.uid, info.gid);
  await chmod(target, info.mode & 0o7777);
  await utimes(target, utimesSeconds(info.atimeMs / 1000), utimesSeconds(info.mtimeMs / 1000));
}
