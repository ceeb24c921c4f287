/**
 * What ls, find, diff and show share: their flags, the archives the command line names (files, `latest`, `latest~N`),
 * each archive's catalog read from its sidecar or from the archive itself (said on stderr), and members' paths as
 * the home has them.
 */
import { basename } from "node:path";
import type { CatalogEntry } from "../archive/catalog.js";
import { type CatalogRead, readArchiveCatalog } from "../engine/archive-catalog.js";
import type { DecryptionKeys } from "../engine/restore.js";
import { printableName } from "../runtime/byte-names.js";
import type { ParsedOptions } from "./args.js";
import type { CommandContext } from "./command.js";
import {
  identity,
  json,
  passphraseEnv,
  progressFor,
  quiet,
  resolveArchive,
  storeRefOptions,
} from "./common-options.js";

export const catalogOptions = {
  identity,
  "passphrase-env": passphraseEnv,
  ...storeRefOptions,
  "from-archive": {
    type: "boolean",
    help: "read the archive itself (every member verified) even when its catalog sidecar is there, and compare the two",
  },
  json,
  quiet,
} as const;

export interface ReadCatalog extends CatalogRead {
  /** The archive file. */
  readonly archive: string;
}

/**
 * Reads the catalog of the archive `ref` names, telling on stderr where it comes from: the sidecar (quick) or the
 * archive (every member decrypted and verified; progress on stderr). Warnings (a sidecar that cannot be read or
 * disagrees) are printed at once and kept in the result.
 */
export async function readCatalogOf(
  ref: string,
  keys: DecryptionKeys,
  values: ParsedOptions,
  context: CommandContext,
  command: string,
): Promise<ReadCatalog> {
  const archive = await resolveArchive(ref, values, command);
  const name = basename(archive);
  const progress = progressFor(command, values, context);
  const read = await readArchiveCatalog(archive, keys, {
    fromArchive: Boolean(values["from-archive"]),
    ...(context.signal ? { signal: context.signal } : {}),
    onReading: (source, sidecar) =>
      context.stderr(
        source === "sidecar"
          ? `catalog of ${name}: from its sidecar ${basename(sidecar ?? "")}\n`
          : `catalog of ${name}: reading the archive itself, every member verified${sidecar === undefined ? " (no sidecar beside it)" : ""}\n`,
      ),
    ...(progress ? { onProgress: (p: { bytes: number }) => progress.update(p.bytes) } : {}),
  });
  for (const warning of read.warnings) context.stderr(`warning: ${warning}\n`);
  return { ...read, archive };
}

/**
 * A member's path as the home has it: `home/looker/x` is `looker/x` (the home itself `./`), `rootfs/etc/x` is
 * `/etc/x`, a MySQL dump `mysql:<database>.sql`. Undefined for the archive's own members (meta/).
 */
export function homePath(archivePath: string): string | undefined {
  if (archivePath.startsWith("home/")) return archivePath === "home/" ? "./" : archivePath.slice(5);
  if (archivePath.startsWith("rootfs/")) return `/${archivePath.slice(7)}`;
  if (archivePath.startsWith("mysql/")) return `mysql:${archivePath.slice(6)}`;
  return undefined;
}

/** The path a pattern is matched against: the home path without a directory's trailing slash. */
export function matchPath(path: string): string {
  return path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
}

/** A path for a line of text output: stray bytes as \xNN, control characters escaped, so one member is one line. */
export function printable(path: string): string {
  return printableName(path).replace(
    /[\x00-\x1f\x7f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
}

/** An mtime (seconds) as UTC to the second, as archive names and `list` print times. */
export function isoSeconds(mtime: number): string {
  const date = new Date(Math.floor(mtime) * 1000);
  return Number.isNaN(date.getTime()) ? String(mtime) : date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** The members with a home path (the archive's own meta/ members left out), in catalog order. */
export function* homeMembers(
  catalog: ReadonlyMap<string, CatalogEntry>,
): Generator<{ path: string; entry: CatalogEntry }> {
  for (const entry of catalog.values()) {
    const path = homePath(entry.path);
    if (path !== undefined) yield { path, entry };
  }
}

/** A member for --json: the home path, the archive's path, and the catalog's fields. */
export function memberJson(path: string, entry: CatalogEntry): Record<string, unknown> {
  return {
    path,
    archivePath: entry.path,
    type: entry.type,
    size: entry.size,
    mtime: isoSeconds(entry.mtime),
    mode: entry.mode.toString(8).padStart(4, "0"),
    uid: entry.uid,
    gid: entry.gid,
    ...(entry.sha256 !== undefined ? { sha256: entry.sha256 } : {}),
    ...(entry.linkTarget !== undefined ? { linkTarget: entry.linkTarget } : {}),
    ...(entry.warning !== undefined ? { warning: entry.warning } : {}),
  };
}
