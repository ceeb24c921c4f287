import type { Readable, Writable } from "node:stream";

/** One stored backup file (the archive, or a file stored beside it: key file, signature, catalog sidecar). */
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

/** How many archives of an instance to keep after a backup (see retention.ts for the semantics). */
export interface RetentionPolicy {
  /** Keep at least this many newest archives of the instance. */
  readonly keepLast?: number;
  /** Keep archives younger than this many days. */
  readonly keepDays?: number;
  /** The newest archive of each of the last N days that have one. */
  readonly keepDaily?: number;
  /** The newest archive of each of the last N ISO weeks that have one. */
  readonly keepWeekly?: number;
  /** The newest archive of each of the last N months that have one. */
  readonly keepMonthly?: number;
  /**
   * Prune even when the new archive is less than half the size of the one before it. Without it such a backup
   * (a wrong or emptied home, say) keeps every archive, with a warning: pruning after it could leave only bad ones.
   */
  readonly forcePrune?: boolean;
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
  /** Deletes archives (and their key files, signatures and catalog sidecars) that the policy no longer keeps; returns the names removed. */
  prune(instance: string, policy: RetentionPolicy, now?: Date): Promise<string[]>;
}
