/** `looker-backup ls`: the members of an archive, from its catalog, without restoring anything. */

import type { CatalogEntry } from "../archive/catalog.js";
import { ExitCode } from "../errors.js";
import { compilePattern } from "../manifest/glob.js";
import {
  catalogOptions,
  homeMembers,
  homePath,
  isoSeconds,
  matchPath,
  memberJson,
  printable,
  readCatalogOf,
} from "./catalog-source.js";
import type { Command } from "./command.js";
import { ARCHIVE_REF_HELP } from "./common-options.js";
import { decryptionKeysFrom } from "./key-options.js";

export const lsCommand: Command = {
  spec: {
    name: "ls",
    summary:
      "List the members of an archive (from its catalog sidecar, or the archive itself), restoring nothing.",
    usage: "looker-backup ls ARCHIVE|latest[~N] [PATH] --identity FILE [--out DIR] [--long] [--json]",
    positionals: [
      { name: "archive", help: ARCHIVE_REF_HELP },
      {
        name: "path",
        optional: true,
        help: "only this subtree: a home path (looker/models), /etc/... outside the home; * ? ** globs",
      },
    ],
    options: {
      ...catalogOptions,
      long: { type: "boolean", short: "l", help: "also the mode, owner, type and sha256 of each member" },
    },
  },
  async run(values, context) {
    const keys = await decryptionKeysFrom(values, "ls");
    const read = await readCatalogOf(values.archive as string, keys, values, context, "ls");
    const filter = subtreeFilter(values.path as string | undefined);
    const members = [...homeMembers(read.catalog)].filter(({ path }) => filter(matchPath(path)));
    if (values.json) {
      context.stdout(
        `${JSON.stringify({
          archive: read.archive,
          source: read.source,
          members: members.map(({ path, entry }) => memberJson(path, entry)),
          warnings: read.warnings,
        })}\n`,
      );
    } else {
      const lines = members.map(({ path, entry }) =>
        values.long
          ? longLine(path, entry)
          : `${String(entry.size).padStart(12)}  ${isoSeconds(entry.mtime)}  ${printable(path)}`,
      );
      if (lines.length > 0) context.stdout(`${lines.join("\n")}\n`);
      if (members.length === 0 && values.path !== undefined)
        context.stderr(`no member of the archive is at or below ${values.path}\n`);
    }
    return read.warnings.length > 0 ? ExitCode.Warnings : ExitCode.Ok;
  },
};

/** PATH as a subtree pattern (glob.ts: the path and everything below it); no PATH, or `.`, is everything. */
function subtreeFilter(path: string | undefined): (member: string) => boolean {
  if (path === undefined || path === "." || path === "./") return () => true;
  return compilePattern(path).matches;
}

/** `drwxr-xr-x  0:0  directory  4096  2026-12-06T03:00:00Z  <sha256 or ->  path[ -> target]`, as `tar -tv` reads. */
function longLine(path: string, entry: CatalogEntry): string {
  const link = entry.linkTarget === undefined ? "" : ` -> ${printable(homePathOfTarget(entry))}`;
  return [
    modeString(entry),
    `${entry.uid}:${entry.gid}`.padEnd(11),
    entry.type.padEnd(9),
    String(entry.size).padStart(12),
    isoSeconds(entry.mtime),
    entry.sha256 ?? "-".padEnd(64),
    `${printable(path)}${link}`,
  ].join("  ");
}

/** A symlink's target as stored; a hard link's is another member, shown by its home path too. */
function homePathOfTarget(entry: CatalogEntry): string {
  const target = entry.linkTarget ?? "";
  return entry.type === "hardlink" ? (homePath(target) ?? target) : target;
}

const TYPE_LETTER: Record<CatalogEntry["type"], string> = {
  file: "-",
  directory: "d",
  symlink: "l",
  hardlink: "h",
  // Never in a catalog (the parser refuses them), but the type allows them.
  "character-device": "c",
  "block-device": "b",
  fifo: "p",
  other: "?",
};

/** `ls -l`'s mode letters, setuid/setgid/sticky included (`h` for a hard link, as GNU tar lists one). */
export function modeString(entry: Pick<CatalogEntry, "type" | "mode">): string {
  const { mode } = entry;
  const bit = (mask: number, letter: string) => (mode & mask ? letter : "-");
  const exec = (mask: number, special: number, on: string, off: string) =>
    mode & special ? (mode & mask ? on : off) : bit(mask, "x");
  return (
    TYPE_LETTER[entry.type] +
    bit(0o400, "r") +
    bit(0o200, "w") +
    exec(0o100, 0o4000, "s", "S") +
    bit(0o040, "r") +
    bit(0o020, "w") +
    exec(0o010, 0o2000, "s", "S") +
    bit(0o004, "r") +
    bit(0o002, "w") +
    exec(0o001, 0o1000, "t", "T")
  );
}
