/** `looker-backup show`: what an archive is (its backup.json) and holds (members, files, bytes), from its catalog. */

import type { CatalogEntry } from "../archive/catalog.js";
import { ExitCode } from "../errors.js";
import { formatBytes, formatDuration } from "../runtime/format.js";
import { catalogOptions, homeMembers, readCatalogOf } from "./catalog-source.js";
import type { Command } from "./command.js";
import { ARCHIVE_REF_HELP } from "./common-options.js";
import { decryptionKeysFrom } from "./key-options.js";

export const showCommand: Command = {
  spec: {
    name: "show",
    summary: "Show what a backup is (consistency, downtime, tool version, ...) and holds, restoring nothing.",
    usage: "looker-backup show ARCHIVE|latest[~N] --identity FILE [--out DIR] [--json]",
    positionals: [{ name: "archive", help: ARCHIVE_REF_HELP }],
    options: catalogOptions,
  },
  async run(values, context) {
    const keys = await decryptionKeysFrom(values, "show");
    const read = await readCatalogOf(values.archive as string, keys, values, context, "show");
    const counts = countsOf(read.catalog);
    if (values.json) {
      context.stdout(
        `${JSON.stringify({
          archive: read.archive,
          source: read.source,
          sidecar: read.sidecar ?? null,
          ...counts,
          backup: read.meta,
          warnings: read.warnings,
        })}\n`,
      );
    } else {
      const meta = read.meta;
      const tool = meta.tool as { name?: unknown; version?: unknown } | undefined;
      const manifest = meta.manifest as { rules?: unknown[]; outside?: unknown[] } | undefined;
      const rows: [string, string][] = [
        ["archive", read.archive],
        ["catalog", read.source === "sidecar" ? `from the sidecar ${read.sidecar}` : "read from the archive"],
        ["instance", text(meta.instance)],
        ["host", text(meta.host)],
        ["home", text(meta.home)],
        ["started", text(meta.startedAt)],
        ["tool", `${text(tool?.name)} ${text(tool?.version)}`],
        ["backend", text(meta.backend)],
        ["consistency", consistencyOf(meta)],
        [
          "keystore-independent",
          meta.keystoreIndependent === true
            ? `yes${typeof meta.backupUid === "string" ? `, backup_uid ${meta.backupUid}` : ""}`
            : "no",
        ],
        [
          "members",
          `${counts.members}: ${count(counts.files, "file")}, ${count(counts.directories, "directory", "directories")}, ${count(counts.symlinks, "symlink")}, ${count(counts.hardlinks, "hard link")}`,
        ],
        ["bytes", `${formatBytes(counts.bytes)} (${counts.bytes} bytes of file content)`],
        ...(counts.outsideHome > 0
          ? [["outside home", count(counts.outsideHome, "member")] as [string, string]]
          : []),
        ...(counts.mysqlDumps.length > 0
          ? [["mysql dumps", counts.mysqlDumps.join(", ")] as [string, string]]
          : []),
        ...(counts.changedWhileRead > 0
          ? [["changed while read", count(counts.changedWhileRead, "file")] as [string, string]]
          : []),
        [
          "manifest",
          `${count(manifest?.rules?.length ?? 0, "rule")}, ${count(manifest?.outside?.length ?? 0, "path")} outside the home`,
        ],
      ];
      context.stdout(`${rows.map(([k, v]) => `${k.padEnd(21)} ${v}`).join("\n")}\n`);
    }
    return read.warnings.length > 0 ? ExitCode.Warnings : ExitCode.Ok;
  },
};

function countsOf(catalog: ReadonlyMap<string, CatalogEntry>) {
  const counts = {
    members: 0,
    files: 0,
    directories: 0,
    symlinks: 0,
    hardlinks: 0,
    bytes: 0,
    outsideHome: 0,
    mysqlDumps: [] as string[],
    changedWhileRead: 0,
  };
  for (const { path, entry } of homeMembers(catalog)) {
    counts.members++;
    if (entry.type === "file") counts.files++;
    else if (entry.type === "directory") counts.directories++;
    else if (entry.type === "symlink") counts.symlinks++;
    else if (entry.type === "hardlink") counts.hardlinks++;
    if (entry.type === "file") counts.bytes += entry.size;
    if (path.startsWith("/")) counts.outsideHome++;
    if (path.startsWith("mysql:")) counts.mysqlDumps.push(path.slice("mysql:".length));
    if (entry.warning !== undefined) counts.changedWhileRead++;
  }
  return counts;
}

/** The consistency mode, with Looker's downtime where the archive records it (a brief stop's). */
function consistencyOf(meta: Record<string, unknown>): string {
  const mode = text(meta.consistency);
  if (typeof meta.downtimeMs === "number")
    return `${mode}; Looker was down ${formatDuration(meta.downtimeMs)}`;
  if (mode === "live") return `${mode}; Looker was not stopped`;
  if (mode === "stopped")
    return `${mode}; Looker was stopped for the whole backup (the run's downtime-ms says how long)`;
  return mode;
}

function count(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

function text(value: unknown): string {
  return value === undefined || value === null ? "-" : String(value);
}
