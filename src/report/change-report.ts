/**
 * What changed since the previous backup of an instance: files added, changed and removed (with bytes), computed
 * from two catalogs. The previous catalog travels between runs in the Actions cache; see action/catalog-cache.ts.
 */
import { BACKUP_META_PATH, type CatalogEntry } from "../archive/catalog.js";

/** One member as far as "did it change" is concerned: type, size, mode and content digest or link target. */
export type Fingerprint = string;

export interface CatalogSnapshot {
  readonly version: 1;
  readonly archive: string;
  readonly createdAt: string;
  readonly members: Record<string, { size: number; fingerprint: Fingerprint }>;
  /** Where the archive was stored, so a later run can check it is still there before skipping. */
  readonly stored?: StoredReference;
}

/** An artifact (by id, in a repository) or a file in a directory store. */
export type StoredReference =
  | { readonly kind: "artifact"; readonly artifactId: number; readonly repository?: string }
  | { readonly kind: "dir"; readonly location: string };

export interface ChangeReport {
  readonly previousArchive?: string;
  readonly previousCreatedAt?: string;
  readonly added: { files: number; bytes: number };
  readonly changed: { files: number; bytes: number };
  readonly removed: { files: number; bytes: number };
  readonly unchanged: boolean;
  /** A few example paths per kind, for the summary. */
  readonly examples: { added: string[]; changed: string[]; removed: string[] };
}

const EXAMPLES = 5;

export function snapshotOf(
  archive: string,
  createdAt: Date,
  catalog: readonly CatalogEntry[],
): CatalogSnapshot {
  const members: CatalogSnapshot["members"] = {};
  for (const entry of catalog) {
    // backup.json records the run itself (time, host) and differs every time; it is not content.
    if (entry.path === BACKUP_META_PATH) continue;
    members[entry.path] = { size: entry.size, fingerprint: fingerprintOf(entry) };
  }
  return { version: 1, archive, createdAt: createdAt.toISOString(), members };
}

function fingerprintOf(entry: CatalogEntry): Fingerprint {
  return [
    entry.type,
    entry.size,
    entry.mode.toString(8),
    entry.uid,
    entry.gid,
    entry.sha256 ?? "",
    entry.linkTarget ?? "",
  ].join("|");
}

export function compareSnapshots(
  previous: CatalogSnapshot | undefined,
  current: CatalogSnapshot,
): ChangeReport {
  const added = { files: 0, bytes: 0 };
  const changed = { files: 0, bytes: 0 };
  const removed = { files: 0, bytes: 0 };
  const examples = { added: [] as string[], changed: [] as string[], removed: [] as string[] };
  const note = (list: string[], path: string) => list.length < EXAMPLES && list.push(path);
  const before = previous?.members ?? {};
  for (const [path, member] of Object.entries(current.members)) {
    const old = before[path];
    if (!old) {
      added.files += 1;
      added.bytes += member.size;
      note(examples.added, path);
    } else if (old.fingerprint !== member.fingerprint) {
      changed.files += 1;
      changed.bytes += member.size;
      note(examples.changed, path);
    }
  }
  for (const [path, member] of Object.entries(before)) {
    if (current.members[path]) continue;
    removed.files += 1;
    removed.bytes += member.size;
    note(examples.removed, path);
  }
  const unchanged = previous !== undefined && added.files + changed.files + removed.files === 0;
  return {
    ...(previous ? { previousArchive: previous.archive, previousCreatedAt: previous.createdAt } : {}),
    added,
    changed,
    removed,
    unchanged,
    examples,
  };
}
