/**
 * What changed since the previous backup of an instance: files added, changed and removed (with bytes), computed
 * from two catalogs. The previous catalog travels between runs in the Actions cache; see action/catalog-cache.ts.
 * `looker-backup diff` lists the same changes between any two archives.
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

/** One member that differs between two catalogs: its size now, and before (changed) or then (removed). */
export interface MemberChange {
  readonly path: string;
  readonly size: number;
  /** A changed member's size in the earlier catalog. */
  readonly previousSize?: number;
}

/** Every member added, changed (type, size, mode, owner, content or link target) and removed, in catalog order. */
export interface ChangeList {
  readonly added: MemberChange[];
  readonly changed: MemberChange[];
  readonly removed: MemberChange[];
}

/** The members of `current` that are new or differ from `previous`, and those of `previous` that are gone. */
export function listChanges(
  previous: CatalogSnapshot["members"],
  current: CatalogSnapshot["members"],
): ChangeList {
  const list: ChangeList = { added: [], changed: [], removed: [] };
  for (const [path, member] of Object.entries(current)) {
    const old = previous[path];
    if (!old) list.added.push({ path, size: member.size });
    else if (old.fingerprint !== member.fingerprint)
      list.changed.push({ path, size: member.size, previousSize: old.size });
  }
  for (const [path, member] of Object.entries(previous)) {
    if (!current[path]) list.removed.push({ path, size: member.size });
  }
  return list;
}

export function compareSnapshots(
  previous: CatalogSnapshot | undefined,
  current: CatalogSnapshot,
): ChangeReport {
  const list = listChanges(previous?.members ?? {}, current.members);
  const tally = (changes: readonly MemberChange[]) => ({
    files: changes.length,
    bytes: changes.reduce((sum, change) => sum + change.size, 0),
  });
  const first = (changes: readonly MemberChange[]) => changes.slice(0, EXAMPLES).map((change) => change.path);
  const [added, changed, removed] = [tally(list.added), tally(list.changed), tally(list.removed)];
  const unchanged = previous !== undefined && added.files + changed.files + removed.files === 0;
  return {
    ...(previous ? { previousArchive: previous.archive, previousCreatedAt: previous.createdAt } : {}),
    added,
    changed,
    removed,
    unchanged,
    examples: { added: first(list.added), changed: first(list.changed), removed: first(list.removed) },
  };
}
