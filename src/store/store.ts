import type { Readable, Writable } from "node:stream";

/** One stored backup file (the archive or its companion key file). */
export interface StoredObject {
  readonly name: string;
  readonly size: number;
  /** Where a human finds it: a path for the dir store, an artifact id/name for the artifact store. */
  readonly location: string;
  readonly createdAt: Date;
}

/**
 * A file being written to a store. Bytes go to `stream`; nothing is visible under `name` until `commit` succeeds,
 * and `abort` removes every trace, so a failed backup never replaces or damages an earlier one.
 */
export interface PendingObject {
  readonly stream: Writable;
  commit(): Promise<StoredObject>;
  abort(): Promise<void>;
}

export interface RetentionPolicy {
  /** Keep at least this many newest archives of the instance. */
  readonly keepLast?: number;
  /** Keep archives younger than this many days. */
  readonly keepDays?: number;
}

/**
 * Where archives live. Small on purpose (restic's backend idea): an object store can be added without touching the
 * pipeline.
 */
export interface Store {
  readonly kind: string;
  create(name: string): Promise<PendingObject>;
  /** Archives (not companions) of one instance, newest first. */
  list(instance?: string): Promise<StoredObject[]>;
  open(name: string): Promise<Readable>;
  /** Deletes archives (and their key files and signatures) that the policy no longer keeps; returns the names removed. */
  prune(instance: string, policy: RetentionPolicy, now?: Date): Promise<string[]>;
}

/** Names a policy drops from a newest-first list: an archive is kept when either rule keeps it. */
export function namesToPrune(
  archives: readonly StoredObject[],
  policy: RetentionPolicy,
  now: Date,
): string[] {
  if (policy.keepLast === undefined && policy.keepDays === undefined) return [];
  const cutoff = policy.keepDays === undefined ? undefined : now.getTime() - policy.keepDays * 86_400_000;
  return archives
    .filter((archive, index) => {
      const keptByCount = policy.keepLast !== undefined && index < policy.keepLast;
      const keptByAge = cutoff !== undefined && archive.createdAt.getTime() >= cutoff;
      return !keptByCount && !keptByAge;
    })
    .map((archive) => archive.name);
}
