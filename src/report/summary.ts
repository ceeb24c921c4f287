/**
 * The job summary of a backup: what was selected and why (one row per manifest rule), what was written, how long
 * Looker was down, what changed since the last backup, and the exact commands to restore it with and without this
 * tool. Plain Markdown, so the same text serves the Actions summary and a file for the CLI.
 */
import type { PreflightCheck } from "../engine/preflight.js";
import type { RuleTally } from "../manifest/select.js";
import { formatBytes, formatDuration, formatRate } from "../runtime/format.js";
import type { ChangeReport } from "./change-report.js";

export interface BackupSummaryInput {
  readonly instance: string;
  readonly archiveName: string;
  readonly location?: string;
  readonly sha256: string;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly files: number;
  readonly durationMs: number;
  readonly downtimeMs: number;
  readonly consistency: string;
  readonly keystoreIndependent: boolean;
  readonly keyfileName?: string;
  /** One row per rule, as the archive's walk counted them (a backup does not walk what it excludes). */
  readonly tallies: readonly RuleTally[];
  /**
   * The preflight's measure of the selection (BackupSelection.measured): its exclude rules' counts replace the
   * walk's, so the summary says what `plan` says was left out.
   */
  readonly measured?: readonly RuleTally[];
  readonly warnings: readonly string[];
  readonly changes?: ChangeReport;
  readonly skipped?: boolean;
  readonly mysqlDatabase?: string;
  /** The checks made before Looker was touched: the summary's first table. */
  readonly preflight?: readonly PreflightCheck[];
}

// Every warning past the ten annotations GitHub shows is listed here; a bound keeps the summary under its 1 MiB limit.
const MAX_WARNINGS = 200;

export function backupSummaryMarkdown(s: BackupSummaryInput): string {
  if (s.skipped) return skippedSummary(s);
  const out: string[] = [];
  out.push(`## Looker backup: ${s.instance}`, "");
  if (s.preflight) out.push(...preflightTable(s.preflight));
  out.push("| | |", "|---|---|");
  out.push(`| Archive | \`${s.archiveName}\`${s.location ? ` (${escapeCell(s.location)})` : ""} |`);
  out.push(`| sha256 | \`${s.sha256}\` |`);
  out.push(`| Read | ${formatBytes(s.bytesIn)} in ${s.files} members |`);
  const ratio = s.bytesOut > 0 ? (s.bytesIn / s.bytesOut).toFixed(2) : "-";
  out.push(`| Written | ${formatBytes(s.bytesOut)} (compression ratio ${ratio}) |`);
  out.push(`| Duration | ${formatDuration(s.durationMs)} (${formatRate(s.bytesIn, s.durationMs)}) |`);
  out.push(`| Consistency | ${s.consistency}; Looker down ${formatDuration(s.downtimeMs)} |`);
  out.push(
    `| Keystore-independent | ${s.keystoreIndependent ? `yes; key file \`${s.keyfileName}\`` : "no"} |`,
  );
  if (s.mysqlDatabase)
    out.push(`| MySQL | dump of \`${s.mysqlDatabase}\` in \`mysql/${s.mysqlDatabase}.sql\` |`);
  out.push(`| Warnings | ${s.warnings.length} |`, "");

  out.push("### What was selected", "", "| Rule | Action | Files | Bytes | Why |", "|---|---|---:|---:|---|");
  const measured = new Map((s.measured ?? []).map((tally) => [tally.id, tally]));
  for (const archived of s.tallies) {
    const t = archived.action === "exclude" ? (measured.get(archived.id) ?? archived) : archived;
    const action = t.action === "exclude" ? "excluded" : t.action === "outside" ? "outside home" : "included";
    const required = t.required ? " (required)" : "";
    out.push(
      `| \`${escapeCell(t.pattern)}\` | ${action}${required} | ${t.files} | ${formatBytes(t.bytes)} | ${escapeCell(t.reason)} |`,
    );
  }
  out.push("");

  if (s.changes) out.push(...changeSection(s.changes));
  if (s.warnings.length > 0) {
    out.push("### Warnings", "");
    for (const w of s.warnings.slice(0, MAX_WARNINGS)) out.push(`- ${escapeCell(w)}`);
    if (s.warnings.length > MAX_WARNINGS) out.push(`- ... and ${s.warnings.length - MAX_WARNINGS} more`);
    out.push("");
  }
  out.push(...restoreSection(s));
  return `${out.join("\n")}\n`;
}

/** A skipped run stored nothing: no archive to name, nothing to restore; only why it skipped. */
function skippedSummary(s: BackupSummaryInput): string {
  const previous = s.changes?.previousArchive;
  return [
    `## Looker backup: ${s.instance} (skipped: nothing changed)`,
    "",
    ...(s.preflight ? preflightTable(s.preflight) : []),
    `Nothing changed since \`${previous ?? "the previous backup"}\` (${s.files} members, ${formatBytes(s.bytesIn)} compared); no new archive was stored.`,
    `Restore from \`${previous ?? "the previous backup"}\`.`,
    "",
  ].join("\n");
}

/** What was checked before Looker was touched; the rows after a failure say "not run". */
export function preflightTable(checks: readonly PreflightCheck[]): string[] {
  const mark = { ok: "ok", failed: "**failed**", "not run": "not run" } as const;
  return [
    "### Preflight",
    "",
    "| Check | Result | Detail |",
    "|---|---|---|",
    ...checks.map((c) => `| ${c.check} | ${mark[c.status]} | ${escapeCell(c.detail)} |`),
    "",
  ];
}

function changeSection(c: ChangeReport): string[] {
  if (!c.previousArchive)
    return ["### Changes since the last backup", "", "No earlier backup of this instance was found.", ""];
  const row = (what: string, v: { files: number; bytes: number }, examples: string[]) =>
    `| ${what} | ${v.files} | ${formatBytes(v.bytes)} | ${examples.map((e) => `\`${escapeCell(e)}\``).join(", ")} |`;
  return [
    `### Changes since \`${c.previousArchive}\``,
    "",
    "| | Files | Bytes | Examples |",
    "|---|---:|---:|---|",
    row("Added", c.added, c.examples.added),
    row("Changed", c.changed, c.examples.changed),
    row("Removed", c.removed, c.examples.removed),
    "",
  ];
}

function restoreSection(s: BackupSummaryInput): string[] {
  const file = s.archiveName;
  return [
    "### How to restore",
    "",
    "With looker-backup (verifies every file against the catalog, staged, target untouched on failure):",
    "```sh",
    `looker-backup verify --archive ${file} --identity identity.txt`,
    `looker-backup restore --archive ${file} --identity identity.txt --target /home/looker --rootfs /`,
    "```",
    "Without it, with the standard tools (age, zstd, GNU tar):",
    "```sh",
    `sha256sum ${file}   # expect ${s.sha256}`,
    `mkdir restore && age -d -i identity.txt ${file} | zstd -d | tar -x --numeric-owner -C restore`,
    "# restore/home/ is the looker home, restore/rootfs/ holds /etc/init.d/looker and SSL files, restore/mysql/ the dump",
    "```",
    ...(s.keystoreIndependent
      ? [
          "The key file for `./looker restore_dr_backup` is a separate artifact:",
          "```sh",
          `age -d -i identity.txt -o keyfile.json ${s.keyfileName}   # then ./looker restore_dr_backup keyfile.json; delete it after`,
          "```",
        ]
      : []),
    "",
  ];
}

function escapeCell(text: string): string {
  return text.replace(/\|/g, "\\|").replace(/\n/g, " ");
}
