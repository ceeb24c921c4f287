/**
 * `restore --into DIR`: the selected members added to an existing directory, without the home swap, for bringing
 * back a few paths next to a running Looker (`--include looker/models-user-7 --into /home/looker`).
 *
 * The members are staged in a private directory inside DIR (same filesystem, so every placing is a rename), the
 * whole archive is checked against its catalog, and only then is anything moved into DIR:
 *
 * - home members go to their path below DIR (`looker/models-user-7` -> `DIR/looker/models-user-7`); files from
 *   outside the home below `DIR/rootfs/` and the MySQL dumps below `DIR/mysql/`, as plain files: never to `/`.
 * - A selected path is placed whole: a selected directory is moved in as one entry. Directories above it that DIR
 *   lacks come with it, with their archived owner, mode and times; existing ones are used as they are, and must be
 *   real directories (placing never follows a symlink).
 * - A selected path that exists in DIR is refused (exit 2, nothing changed), unless --force: then the existing one,
 *   file or whole directory, is kept beside it as `<name>.pre-restore-<UTC time>` and the archived one takes its
 *   place.
 *
 * Every check runs before the first move; a move that fails undoes the ones before it, and the staging directory is
 * removed on any outcome, so a failure leaves DIR as it was.
 */
import { chmod, mkdtemp } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { InputError, IntegrityError, LookerBackupError } from "../errors.js";
import { MemberSelection, type RestoredCount } from "../extract/member-selection.js";
import { lstat, readdir, rename, rm, stat } from "../runtime/byte-fs.js";
import { fsPath } from "../runtime/byte-names.js";
import { type StagingRequest, stageVerified } from "./restore.js";
import { lockTarget } from "./restore-lock.js";
import { stamp } from "./target-swap.js";

export interface RestoreIntoRequest extends StagingRequest {
  /** An existing directory; the selected members are added to it. */
  readonly into: string;
  /** Replace selected paths that exist in DIR, keeping each as `<name>.pre-restore-<time>` beside it. */
  readonly force?: boolean;
}

export interface RestoreIntoResult {
  readonly into: string;
  /** Members and bytes read and checked against the catalog: the whole archive. */
  readonly members: number;
  readonly bytes: number;
  readonly restored: RestoredCount;
  readonly meta: Record<string, unknown>;
  /** The paths moved into DIR: each selected path, or the topmost directory DIR lacked above it. */
  readonly placed: string[];
  /** Existing paths that --force replaced, and where each was kept. */
  readonly replaced: { readonly path: string; readonly keptAt: string }[];
  readonly warnings: string[];
}

/** The lock inside DIR: its parent may not be writable for the user restoring into it (e.g. /home). */
export const INTO_LOCK = ".looker-backup-into.lock";
/** The staging directory's name inside DIR; one left by an interrupted restore is removed by the next. */
const STAGING_PREFIX = ".looker-backup-into-";

const PLACE_HINT =
  "placing never follows a symlink or replaces a directory above a selected path; fix that path in the directory, or restore --into an empty directory and move the files by hand";

interface Move {
  readonly from: string;
  readonly to: string;
  /** `to` exists: with --force it is kept aside, as `kept`. */
  readonly replaces: boolean;
  kept?: string;
  keptDone?: boolean;
  placed?: boolean;
}

export async function restoreInto(request: RestoreIntoRequest): Promise<RestoreIntoResult> {
  const into = resolve(request.into);
  const selection = new MemberSelection(request);
  const info = await stat(into).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined;
    throw error;
  });
  if (!info?.isDirectory()) {
    throw new InputError(
      `--into ${into} is not an existing directory`,
      "create it first, or restore into a new directory with --target",
    );
  }
  const warnings: string[] = [];
  const lock = await lockTarget(into, join(into, INTO_LOCK));
  try {
    for (const name of await readdir(into)) {
      if (!name.startsWith(STAGING_PREFIX)) continue;
      const stale = join(into, name);
      if (!(await lstat(stale)).isDirectory()) continue;
      await rm(stale, { recursive: true, force: true });
      warnings.push(`removed ${stale}, the staging directory of an interrupted restore into ${into}`);
    }
    const staging = await mkdtemp(join(into, STAGING_PREFIX));
    try {
      const { outcome, restored } = await stageVerified(request, staging, selection, warnings);
      const moves = await plan(staging, into, selection);
      const existing = moves.filter((move) => move.replaces);
      if (existing.length > 0 && !request.force) {
        const shown = existing.slice(0, 5).map((move) => move.to);
        const more = existing.length > 5 ? `, and ${existing.length - 5} more` : "";
        throw new InputError(
          `${existing.length} selected path(s) exist in ${into} already: ${shown.join(", ")}${more}; nothing was placed`,
          "pass --force to replace them (each is kept beside as <name>.pre-restore-<time>), narrow the selection with --exclude, or restore --into an empty directory",
        );
      }
      const at = stamp((request.now ?? (() => new Date()))());
      for (const move of existing) move.kept = `${move.to}.pre-restore-${at}`;
      await place(moves);
      return {
        into,
        members: outcome.members,
        bytes: outcome.bytes,
        restored,
        meta: outcome.meta,
        placed: moves.map((move) => move.to),
        replaced: existing.map((move) => ({ path: move.to, keptAt: move.kept! })),
        warnings,
      };
    } finally {
      await rm(staging, { recursive: true, force: true }).catch((error: Error) => {
        warnings.push(`could not remove the staging directory ${staging}: ${error.message}`);
      });
    }
  } finally {
    await lock.release(warnings);
  }
}

/** What moves where: the staged `home` below DIR, `rootfs` and `mysql` as DIR's subdirectories of those names. */
async function plan(staging: string, into: string, selection: MemberSelection): Promise<Move[]> {
  const moves: Move[] = [];
  const roots = [
    ["home", into],
    ["rootfs", join(into, "rootfs")],
    ["mysql", join(into, "mysql")],
  ] as const;
  for (const [name, destination] of roots) {
    const staged = join(staging, name);
    const info = await lstatOrUndefined(staged);
    if (info === undefined) continue;
    if (!info.isDirectory()) {
      throw new IntegrityError(`the archive's top-level ${name} is not a directory; nothing was placed`);
    }
    // The three roots are never replaced: what is selected goes into them.
    const existing = await lstatOrUndefined(destination);
    if (existing === undefined) moves.push({ from: staged, to: destination, replaces: false });
    else if (existing.isDirectory()) await planBelow(staged, destination, `${name}/`, selection, moves);
    else throw notADirectory(destination, existing.isSymbolicLink());
  }
  // A home directory named rootfs or mysql, selected with files from outside the home or dumps, would land on them.
  const destinations = moves.map((move) => move.to).sort();
  for (let i = 1; i < destinations.length; i++) {
    const [before, path] = [destinations[i - 1]!, destinations[i]!];
    if (path === before || path.startsWith(`${before}/`)) {
      throw new InputError(
        `two selected paths would both be placed at ${path}: the home's own ${basename(before)} and the archive's ${basename(before)} files`,
        "restore them in two runs, each --into its own directory, or --exclude one of them",
      );
    }
  }
  return moves;
}

async function planBelow(
  stagedDir: string,
  destinationDir: string,
  archiveDir: string,
  selection: MemberSelection,
  moves: Move[],
): Promise<void> {
  // Staging is ours: entries can be moved out of a directory whose archived mode has no write bit.
  const mode = (await lstat(stagedDir)).mode & 0o7777;
  if ((mode & 0o200) === 0) await chmod(fsPath(stagedDir), mode | 0o200);
  for (const name of (await readdir(stagedDir)).sort()) {
    const from = join(stagedDir, name);
    const to = join(destinationDir, name);
    const staged = await lstat(from);
    const archivePath = `${archiveDir}${name}${staged.isDirectory() ? "/" : ""}`;
    const existing = await lstatOrUndefined(to);
    if (existing === undefined) {
      moves.push({ from, to, replaces: false });
    } else if (staged.isDirectory() && !selection.selects(archivePath)) {
      // Staged only as the parent of selected members: they go into the existing directory.
      if (!existing.isDirectory()) throw notADirectory(to, existing.isSymbolicLink());
      await planBelow(from, to, archivePath, selection, moves);
    } else {
      moves.push({ from, to, replaces: true });
    }
  }
}

/** The moves in order; on a failure, the ones done are undone in reverse and the error is thrown. */
async function place(moves: Move[]): Promise<void> {
  try {
    for (const move of moves) {
      if (move.kept !== undefined) {
        if ((await lstatOrUndefined(move.kept)) !== undefined) {
          throw new InputError(
            `cannot keep ${move.to} as ${move.kept}: that name exists already; nothing was placed`,
            "move it away, or run the restore again a second later",
          );
        }
        await rename(move.to, move.kept);
        move.keptDone = true;
      } else if ((await lstatOrUndefined(move.to)) !== undefined) {
        // Checked again just before the move: rename would replace a file (or an empty directory) made meanwhile.
        throw new InputError(
          `${move.to} appeared while the restore ran; nothing was placed`,
          "restore again (with --force to replace it)",
        );
      }
      await rename(move.from, move.to);
      move.placed = true;
    }
  } catch (error) {
    const failures: string[] = [];
    for (const move of [...moves].reverse()) {
      try {
        if (move.placed) await rename(move.to, move.from);
        if (move.keptDone) await rename(move.kept!, move.to);
      } catch (undo) {
        failures.push(`${move.to}: ${(undo as Error).message}`);
      }
    }
    if (failures.length > 0) {
      throw new LookerBackupError(
        `restore failed (${(error as Error).message}) and undoing its moves failed too: ${failures.join("; ")}`,
        { hint: "a replaced path's previous content is beside it as <name>.pre-restore-<time>" },
      );
    }
    throw error;
  }
}

async function lstatOrUndefined(path: string) {
  return lstat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined;
    throw error;
  });
}

function notADirectory(path: string, symlink: boolean): InputError {
  return new InputError(
    `cannot place files below ${path}: it is ${symlink ? "a symlink" : "not a directory"}; nothing was placed`,
    PLACE_HINT,
  );
}
