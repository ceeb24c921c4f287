/** Snapshots a directory tree (type, mode, owner, mtime, size, content digest, link target) for exact comparisons. */
import { createHash } from "node:crypto";
import { lstat, readdir, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";

export interface TreeEntry {
  type: "file" | "directory" | "symlink" | "other";
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  size: number;
  sha256?: string;
  linkTarget?: string;
  ino: number;
}

export async function snapshotTree(root: string, options: { skip?: (relative: string) => boolean } = {}) {
  const out = new Map<string, TreeEntry>();
  async function walk(relative: string): Promise<void> {
    const names = (await readdir(join(root, relative))).sort();
    for (const name of names) {
      const rel = relative ? `${relative}/${name}` : name;
      if (options.skip?.(rel)) continue;
      const path = join(root, rel);
      const s = await lstat(path);
      const entry: TreeEntry = {
        type: s.isFile() ? "file" : s.isDirectory() ? "directory" : s.isSymbolicLink() ? "symlink" : "other",
        mode: s.mode & 0o7777,
        uid: s.uid,
        gid: s.gid,
        mtimeMs: s.mtimeMs,
        size: s.isFile() ? s.size : 0,
        ino: s.ino,
      };
      if (s.isFile())
        entry.sha256 = createHash("sha256")
          .update(await readFile(path))
          .digest("hex");
      if (s.isSymbolicLink()) entry.linkTarget = await readlink(path);
      out.set(rel, entry);
      if (s.isDirectory()) await walk(rel);
    }
  }
  await walk("");
  return out;
}

/**
 * Drops fields that legitimately differ between two copies: inode numbers, and times, which Node sets through a
 * double (sub-microsecond noise); compare those with mtimeDifferences().
 */
export function comparable(tree: Map<string, TreeEntry>) {
  return Object.fromEntries([...tree].map(([path, { ino: _ino, mtimeMs: _mtime, ...rest }]) => [path, rest]));
}

/** Paths whose mtimes differ by more than a microsecond (directories only when asked). */
export function mtimeDifferences(
  a: Map<string, TreeEntry>,
  b: Map<string, TreeEntry>,
  options: { directories?: boolean } = {},
): string[] {
  const differing: string[] = [];
  for (const [path, entry] of a) {
    if (entry.type === "directory" && options.directories === false) continue;
    const other = b.get(path);
    if (!other || Math.abs(other.mtimeMs - entry.mtimeMs) > 0.001) differing.push(path);
  }
  return differing;
}
