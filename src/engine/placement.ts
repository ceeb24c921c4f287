/**
 * Places the staged `rootfs/` files and MySQL dumps as one unit with the home swap (see restore.ts):
 *
 * 1. plan: every staged directory is lstat-ed before it is read and every destination (and each of its parent
 *    directories below the placement root) before anything is changed. Placing never follows a symlink: a staged
 *    entry is moved as what it is, and a symlink or non-directory where a parent directory should be is refused.
 * 2. prepare: missing parent directories are created and each staged entry is moved (or copied, across
 *    filesystems) to a new name beside its destination. Nothing that existed has changed yet.
 * 3. commit: each destination keeps its old content under a hard link beside it, then the new entry is renamed
 *    over it, so each destination always holds either its old or its new content.
 * 4. rollBack (any failure up to and including the home swap) puts the old content back and removes what was
 *    created; finish (after success) removes the kept old content, and a failure to do so is only a warning.
 *
 * All-or-nothing against errors; not against a crash or kill during commit, which can leave some files placed and
 * `.<name>.restore-old-*` / `.<name>.restore-new-*` entries beside them (the old and the new content).
 */
import { randomBytes } from "node:crypto";
import { basename, dirname, join, resolve } from "node:path";
import { display } from "../archive/display.js";
import { InputError, IntegrityError, LookerBackupError } from "../errors.js";
import {
  copyEntry,
  link,
  lstat,
  mkdir,
  readdir,
  rename,
  rm,
  rmdir,
  stat,
  unlink,
} from "../runtime/byte-fs.js";

type Kind = "rootfs" | "mysql";

interface Item {
  readonly kind: Kind;
  readonly source: string;
  readonly destination: string;
  /** The new content beside the destination, until it is renamed over it. */
  temporary?: string;
  /** The old content, kept under a further name until the restore succeeded. */
  old?: string;
  /** The old content was renamed away (hard link refused), so the destination was briefly missing. */
  oldMoved?: boolean;
  placed?: boolean;
}

const HOST_HINT =
  "placing never follows a symlink or replaces a directory; fix that path on this host, or restore without --rootfs and place the files by hand";

/** The staged `<name>` directory, or undefined when the archive had none; anything but a directory is refused. */
export async function stagedRoot(staging: string, name: string): Promise<string | undefined>;
export async function stagedRoot(staging: string, name: string, options: { create: true }): Promise<string>;
export async function stagedRoot(
  staging: string,
  name: string,
  options: { create?: boolean } = {},
): Promise<string | undefined> {
  const path = join(staging, name);
  const info = await lstat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined;
    throw error;
  });
  if (info === undefined) {
    if (!options.create) return undefined;
    await mkdir(path);
    return path;
  }
  if (!info.isDirectory()) {
    throw new IntegrityError(`the archive's top-level ${name} is not a directory; nothing was placed`);
  }
  return path;
}

export class Placement {
  private readonly items: Item[] = [];
  /** Directories to create, parents first; then those created, to remove again on roll-back. */
  private readonly toCreate: { path: string; mode: number }[] = [];
  private readonly planned = new Set<string>();
  private readonly created: string[] = [];

  /** Files and symlinks of the staged rootfs, each to its path under `root`. */
  async planRootfs(staged: string | undefined, root: string): Promise<void> {
    if (staged === undefined) return;
    const rootInfo = await stat(root).catch(() => undefined);
    if (!rootInfo?.isDirectory()) {
      throw new InputError(
        `--rootfs ${root} is not a directory`,
        "give --rootfs an existing directory, e.g. /",
      );
    }
    for await (const relative of stagedEntries(staged, "")) {
      const parts = relative.split("/");
      for (let depth = 1; depth < parts.length; depth++) {
        await this.planDirectory(join(root, ...parts.slice(0, depth)), 0o755);
      }
      await this.planItem("rootfs", join(staged, relative), join(root, relative));
    }
  }

  /** The staged dumps (regular files only; extract.ts allows nothing else there) into `mysqlDir`. */
  async planMysql(staged: string | undefined, mysqlDir: string): Promise<void> {
    if (staged === undefined) return;
    const names = (await readdir(staged)).sort();
    if (names.length === 0) return;
    const dir = resolve(mysqlDir);
    // The directories above it are the operator's choice; the first existing one may be reached via a symlink.
    const missing: string[] = [];
    for (let path = dir; ; path = dirname(path)) {
      const info = await (path === dir ? lstat(path) : stat(path)).catch((error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT") return undefined;
        throw error;
      });
      if (info === undefined && path !== dirname(path)) {
        missing.unshift(path);
        continue;
      }
      if (!info?.isDirectory()) {
        throw new InputError(
          `cannot place the MySQL dumps: ${path} is not a directory`,
          "choose another --mysql-dir",
        );
      }
      break;
    }
    for (const path of missing) await this.planDirectory(path, 0o700);
    for (const name of names) {
      const source = join(staged, name);
      if (!(await lstat(source)).isFile()) {
        throw new IntegrityError(
          `the staged dump ${display(name)} is not a regular file; nothing was placed`,
        );
      }
      await this.planItem("mysql", source, join(dir, name));
    }
  }

  /** Creates the missing directories and moves every staged entry beside its destination. */
  async prepare(): Promise<void> {
    for (const { path, mode } of this.toCreate) {
      await mkdir(path, { mode });
      this.created.push(path);
    }
    for (const item of this.items) {
      const temporary = beside(item.destination, "new");
      await moveOrCopy(item.source, temporary);
      item.temporary = temporary;
    }
  }

  /** Replaces every destination, keeping its old content for rollBack. */
  async commit(): Promise<void> {
    for (const item of this.items) {
      const old = beside(item.destination, "old");
      try {
        // link() does not follow a symlink: it keeps the link itself.
        await link(item.destination, old);
        item.old = old;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== "ENOENT") {
          if (code !== "EPERM" && code !== "EMLINK") throw error;
          await rename(item.destination, old);
          item.old = old;
          item.oldMoved = true;
        }
      }
      await rename(item.temporary!, item.destination);
      item.temporary = undefined;
      item.placed = true;
    }
  }

  /** Puts back what was there before; throws when that failed, naming what is left to fix. */
  async rollBack(): Promise<void> {
    const failures: string[] = [];
    const attempt = async (what: string, step: () => Promise<void>) => {
      try {
        await step();
      } catch (error) {
        failures.push(`${what}: ${(error as Error).message}`);
      }
    };
    for (const item of [...this.items].reverse()) {
      const { destination, old, temporary } = item;
      if (item.placed || item.oldMoved) {
        if (old !== undefined) await attempt(`restoring ${destination}`, () => rename(old, destination));
        else await attempt(`removing ${destination}`, () => unlink(destination));
      } else if (old !== undefined) {
        await attempt(`removing ${old}`, () => unlink(old));
      }
      if (temporary !== undefined)
        await attempt(`removing ${temporary}`, () => rm(temporary, { force: true }));
    }
    for (const path of [...this.created].reverse()) await attempt(`removing ${path}`, () => rmdir(path));
    if (failures.length > 0) {
      throw new LookerBackupError(
        `restore failed and undoing its placed files failed too: ${failures.join("; ")}`,
        {
          hint: "the old content of each file named here is beside it as .<name>.restore-old-*",
        },
      );
    }
  }

  /** After success: drops the kept old content. Returns warnings; none of this can undo the restore. */
  async finish(): Promise<string[]> {
    const warnings: string[] = [];
    for (const { old } of this.items) {
      if (old === undefined) continue;
      await unlink(old).catch((error: Error) => {
        warnings.push(`could not remove the previous content kept at ${old}: ${error.message}`);
      });
    }
    return warnings;
  }

  placed(kind: Kind): string[] {
    return this.items.filter((item) => item.kind === kind).map((item) => item.destination);
  }

  private async planDirectory(path: string, mode: number): Promise<void> {
    if (this.planned.has(path)) return;
    const info = await lstat(path).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return undefined;
      throw error;
    });
    if (info === undefined) this.toCreate.push({ path, mode });
    else if (!info.isDirectory()) {
      const what = info.isSymbolicLink() ? "a symlink" : "not a directory";
      throw new InputError(`cannot place files below ${path}: it is ${what}`, HOST_HINT);
    }
    this.planned.add(path);
  }

  private async planItem(kind: Kind, source: string, destination: string): Promise<void> {
    const info = await lstat(destination).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return undefined;
      throw error;
    });
    if (info !== undefined && !info.isFile() && !info.isSymbolicLink()) {
      const what = info.isDirectory() ? "a directory" : "neither a file nor a symlink";
      throw new InputError(`cannot place ${destination}: it is ${what}`, HOST_HINT);
    }
    this.items.push({ kind, source, destination });
  }
}

/**
 * The staged files and symlinks below `dir`, relative to the staged root, sorted. Each directory is lstat-ed
 * before it is read, so nothing is read through a symlink.
 */
async function* stagedEntries(root: string, relative: string): AsyncGenerator<string> {
  const dir = relative === "" ? root : join(root, relative);
  if (!(await lstat(dir)).isDirectory()) {
    throw new IntegrityError(`the staged ${display(relative)} is not a directory; nothing was placed`);
  }
  for (const name of (await readdir(dir)).sort()) {
    const path = relative === "" ? name : `${relative}/${name}`;
    const info = await lstat(join(root, path));
    if (info.isDirectory()) yield* stagedEntries(root, path);
    else if (info.isFile() || info.isSymbolicLink()) yield path;
    else throw new IntegrityError(`the staged ${display(path)} is not a file, directory or symlink`);
  }
}

/** `.<name>.restore-<what>-<random>` in the destination's directory: on its filesystem, for an atomic rename. */
function beside(destination: string, what: "new" | "old"): string {
  return join(
    dirname(destination),
    `.${basename(destination)}.restore-${what}-${randomBytes(6).toString("hex")}`,
  );
}

/** rename() when on one filesystem; otherwise a copy (symlinks as symlinks), with the owner when we are root. */
async function moveOrCopy(source: string, destination: string): Promise<void> {
  try {
    await rename(source, destination);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EXDEV") throw error;
    await copyEntry(source, destination);
  }
}
