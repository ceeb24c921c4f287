/**
 * Pure checks restore runs on every member BEFORE anything is written (the archive format in the README).
 *
 * Symlinks are data: their targets are kept verbatim (absolute or relative) and never followed. What
 * makes a symlink dangerous is a LATER member that goes through it (symlink home/a -> /etc, then file
 * home/a/passwd) or replaces a directory with it; so LinkTracker remembers the shape of the tree the
 * archive has built so far and refuses members that would write anywhere but where their path says.
 */

import { display } from "../archive/display.js";
import type { TarHeader } from "../archive/tar-format.js";
import { IntegrityError } from "../errors.js";
import { nameByteLength } from "../runtime/byte-names.js";

export const DEFAULT_ALLOWED_ROOTS: readonly string[] = ["meta/", "home/", "rootfs/", "mysql/"];

/**
 * The top-level names restore reads as directories when it places the home, the dumps and the rootfs files. A
 * symlink named `home` or `mysql` would make placing follow it (moving the target to `/`, or another directory's
 * files into the dumps' directory), so any member of these names that is not a directory is refused.
 */
const TOP_LEVEL_ROOTS: ReadonlySet<string> = new Set(["meta", "home", "rootfs", "mysql"]);

const HINT = "the archive was not made by looker-backup or was tampered with; nothing was written for it";

/** Linux's NAME_MAX: a longer path component cannot be created (ENAMETOOLONG). */
const NAME_MAX_BYTES = 255;
/** uid_t and gid_t are 32 bits, and (uid_t) -1 means "no change" to chown: the largest owner that can be set. */
const MAX_ID = 0xffff_fffe;

/**
 * What restore could not write, checked for verify too, so the two agree before anything is written: a component
 * longer than NAME_MAX, an owner id outside uid_t, a non-directory whose path ends in "/" (it names a directory).
 */
function unwritableProblem(header: TarHeader): string | undefined {
  const long = withoutTrailingSlash(header.path)
    .split("/")
    .find((segment) => nameByteLength(segment) > NAME_MAX_BYTES);
  if (long !== undefined) {
    return `path component of ${nameByteLength(long)} bytes (more than the ${NAME_MAX_BYTES} a Linux name may have)`;
  }
  for (const [what, id] of [
    ["uid", header.uid],
    ["gid", header.gid],
  ] as const) {
    if (!Number.isInteger(id) || id < 0 || id > MAX_ID)
      return `${what} ${id} outside the range a Linux owner may have`;
  }
  if (header.type !== "directory" && header.path.endsWith("/")) {
    return `a ${header.type} member whose path ends in "/" (that names a directory)`;
  }
  return undefined;
}

/** Throws unless `path` is relative, normalized and under one of `allowedRoots` (each ending in "/"). */
export function checkMemberPath(path: string, allowedRoots: readonly string[] = DEFAULT_ALLOWED_ROOTS): void {
  const problem = pathProblem(path, allowedRoots);
  if (problem !== undefined) refuse(path, problem);
}

function pathProblem(path: string, allowedRoots: readonly string[]): string | undefined {
  if (path === "") return "empty path";
  if (path.includes("\0")) return "NUL byte in path";
  if (path.startsWith("/")) return "absolute path";
  const segments = withoutTrailingSlash(path).split("/");
  if (segments.includes("..")) return "'..' segment in path";
  if (segments.includes(".")) return "'.' segment in path";
  if (segments.includes("")) return "empty segment ('//') in path";
  const isUnderRoot = allowedRoots.some((root) => path.startsWith(root) || `${path}/` === root);
  if (!isUnderRoot) return `path outside the allowed roots ${allowedRoots.join(" ")}`;
  return undefined;
}

/**
 * Most paths the tracker records: members and the directories above them that no member lists. Our archives list
 * every directory, so this is about MAX_ARCHIVE_MEMBERS; a hostile one can imply ~2000 directories per member
 * (a 4096-byte path of one-letter names), each a map entry.
 */
export const MAX_TRACKED_PATHS = 2_000_000;

/** What a path already is in the tree the archive builds. */
type Kind = "directory" | "symlink" | "file";

/**
 * Follows the members of one archive in order and refuses any that would escape, overwrite or
 * alias something it should not. Call admit() for every member, in archive order, before extracting it.
 */
export class LinkTracker {
  /** Every path the archive has created so far (explicitly, or implicitly as a parent), without "/". */
  private readonly kinds = new Map<string, Kind>();
  /** Regular files (not hard links): the only valid hard-link targets. */
  private readonly regularFiles = new Set<string>();
  /**
   * The parent of the last member admitted: it and all its ancestors are recorded directories, and stay so (a
   * directory can only be replaced by a directory). Members come grouped by directory, so most skip walking and
   * recording their ancestors again; at 100k small files that walk was ~5% of the restore's main thread.
   */
  private cleanParent: string | undefined;

  constructor(
    private readonly allowedRoots: readonly string[] = DEFAULT_ALLOWED_ROOTS,
    private readonly maxPaths = MAX_TRACKED_PATHS,
  ) {}

  /** Throws an IntegrityError naming the member and the rule it breaks; records it otherwise. */
  admit(header: TarHeader): void {
    const key = withoutTrailingSlash(header.path);
    const parent = parentOf(key);
    const problem = this.problemWith(header, key, parent);
    if (problem !== undefined) refuse(header.path, problem);
    this.record(header, key, parent);
  }

  /** True when `path` (an archive path) was restored as a symlink. */
  isSymlink(path: string): boolean {
    return this.kinds.get(withoutTrailingSlash(path)) === "symlink";
  }

  /** `key` is the path without a trailing "/", `parent` its directory (see parentOf). */
  private problemWith(header: TarHeader, key: string, parent: string): string | undefined {
    switch (header.type) {
      case "character-device":
      case "block-device":
        return "device nodes are not restored";
      case "fifo":
        return "fifos are not restored";
      case "other":
        return "unsupported member type (only files, directories, symlinks and hard links are restored)";
      default:
        break;
    }
    const pathProblemFound = pathProblem(header.path, this.allowedRoots);
    if (pathProblemFound !== undefined) return pathProblemFound;
    const writable = unwritableProblem(header);
    if (writable !== undefined) return writable;
    if (TOP_LEVEL_ROOTS.has(key) && header.type !== "directory") {
      return `top-level ${key} must be a directory, not a ${header.type}`;
    }
    if (parent !== this.cleanParent) {
      const throughProblem = this.ancestorProblem(key);
      if (throughProblem !== undefined) return throughProblem;
    }
    const existingProblem = this.replacementProblem(key, header);
    if (existingProblem !== undefined) return existingProblem;
    if (header.type === "symlink") return symlinkProblem(header);
    if (header.type === "hardlink") return this.hardlinkProblem(header);
    return undefined;
  }

  /**
   * A member must not sit below a symlink (the write would land at the link's target) or a file. Walks up from the
   * parent only to the first recorded directory: every ancestor of a recorded directory is one too (see record), so
   * a member in an existing directory costs one lookup. Walking every ancestor made 20k members at depth ~2000 in
   * alternating directories take 288 s.
   */
  private ancestorProblem(key: string): string | undefined {
    for (let ancestor = parentOf(key); ancestor !== ""; ancestor = parentOf(ancestor)) {
      const kind = this.kinds.get(ancestor);
      if (kind === "directory") return undefined;
      if (kind === "symlink") return `path passes through symlink ${display(ancestor)}`;
      if (kind === "file") return `path passes through non-directory ${display(ancestor)}`;
    }
    return undefined;
  }

  /** Only a directory may appear twice (as a directory); anything else would overwrite an earlier member. */
  private replacementProblem(key: string, header: TarHeader): string | undefined {
    const kind = this.kinds.get(key);
    if (kind === undefined) return undefined;
    if (kind === "directory" && header.type === "directory") return undefined;
    if (kind === "directory") return `directory ${display(key)} replaced by a ${header.type}`;
    if (kind === "symlink") return `replaces symlink ${display(key)}`;
    return `duplicate member ${display(key)}`;
  }

  private hardlinkProblem(header: TarHeader): string | undefined {
    const target = header.linkTarget;
    if (target === undefined || target === "") return "hard link without target";
    const targetProblem = pathProblem(target, this.allowedRoots);
    if (targetProblem !== undefined) return `hard link target ${display(target)}: ${targetProblem}`;
    if (!this.regularFiles.has(target)) {
      return `hard link target ${display(target)} is not an earlier regular file of this archive`;
    }
    return undefined;
  }

  /**
   * Records the member and, as directories, its ancestors not recorded yet: up to the first recorded one, which is a
   * directory whose ancestors are all recorded directories already (ancestorProblem let nothing else through, and a
   * directory is never replaced by anything but a directory).
   */
  private record(header: TarHeader, key: string, parent: string): void {
    if (parent !== this.cleanParent) {
      for (
        let ancestor = parent;
        ancestor !== "" && !this.kinds.has(ancestor);
        ancestor = parentOf(ancestor)
      ) {
        this.kinds.set(ancestor, "directory");
        this.checkSize();
      }
      this.cleanParent = parent;
    }
    this.kinds.set(key, kindOf(header));
    this.checkSize();
    if (header.type === "file") this.regularFiles.add(key);
  }

  private checkSize(): void {
    if (this.kinds.size > this.maxPaths) {
      throw new IntegrityError(
        `the archive's tree has more than ${this.maxPaths} paths (members and the directories above them), the limit`,
        "the archive is far larger than any Looker home, so it was not written by looker-backup from one; nothing was restored",
      );
    }
  }
}

function symlinkProblem(header: TarHeader): string | undefined {
  // The target itself is data and is never checked or followed; it only has to be creatable.
  if (header.linkTarget === undefined || header.linkTarget === "") return "symlink without target";
  if (header.linkTarget.includes("\0")) return "NUL byte in symlink target";
  return undefined;
}

function kindOf(header: TarHeader): Kind {
  if (header.type === "directory") return "directory";
  if (header.type === "symlink") return "symlink";
  return "file";
}

/** "a/b/c" -> "a/b"; "a" -> "" (the root, which has no ancestors to check). */
function parentOf(key: string): string {
  return key.slice(0, Math.max(0, key.lastIndexOf("/")));
}

function withoutTrailingSlash(path: string): string {
  return path.endsWith("/") ? path.slice(0, -1) : path;
}

/** Throws the IntegrityError for a member that breaks one of restore's rules. */
export function refuse(path: string, rule: string): never {
  throw new IntegrityError(`refusing member ${display(path)}: ${rule}`, HINT);
}
