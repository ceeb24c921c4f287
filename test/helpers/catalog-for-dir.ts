/** Writes a catalog for a directory tree the way looker-backup does, so shell-made archives can be restored. */
import { createHash } from "node:crypto";
import { lstat, readdir, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";
import { type CatalogEntry, catalogLine } from "../../src/archive/catalog.js";

export async function buildCatalogForDir(root: string, tops: string[]): Promise<string> {
  const lines: string[] = [];
  async function add(relative: string): Promise<void> {
    const path = join(root, relative);
    const s = await lstat(path);
    const type = s.isDirectory() ? "directory" : s.isSymbolicLink() ? "symlink" : "file";
    const entry: CatalogEntry = {
      path: type === "directory" ? `${relative}/` : relative,
      type,
      size: type === "file" ? s.size : 0,
      mode: s.mode & 0o7777,
      uid: s.uid,
      gid: s.gid,
      // GNU tar --format=pax records the time to the nanosecond; the catalog holds it to what restore compares.
      mtime: s.mtimeMs / 1000,
    };
    if (type === "file")
      entry.sha256 = createHash("sha256")
        .update(await readFile(path))
        .digest("hex");
    if (type === "symlink") entry.linkTarget = await readlink(path);
    lines.push(catalogLine(entry));
    if (type === "directory")
      for (const name of (await readdir(path)).sort()) await add(`${relative}/${name}`);
  }
  for (const top of tops) await add(top);
  return lines.join("");
}
