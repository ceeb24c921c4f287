/**
 * The drill's evidence: one JSON report per drill (what auditors keep) and a Markdown summary (what people read in
 * the job summary). RTO and RPO are measured, not estimated: RTO from the drill's start to Looker answering /alive,
 * RPO as the age of the restored backup at drill time.
 */
import type { ExitCode } from "../errors.js";
import { formatBytes, formatDuration } from "../runtime/format.js";

export interface DrillStep {
  readonly name: string;
  readonly ms: number;
  readonly ok: boolean;
  /** One line: what the step did or why it failed. */
  readonly detail?: string;
}

export interface DrillBackupInfo {
  readonly instance?: string;
  readonly startedAt?: string;
  readonly backend?: string;
  readonly keystoreIndependent?: boolean;
  readonly backupUid?: string;
}

export interface DrillReport {
  readonly result: "passed" | "failed";
  readonly exitCode: ExitCode;
  readonly error?: string;
  readonly hint?: string;
  readonly archive: string;
  /** "root@10.0.0.5:22" or "dir:/path". */
  readonly target: string;
  readonly backup: DrillBackupInfo;
  /** ISO time the drill started. */
  readonly startedAt: string;
  /** Drill start -> Looker healthy; absent when it never became healthy. */
  readonly rtoMs?: number;
  /** Age of the backup at drill start; absent when the archive's meta has no start time. */
  readonly rpoMs?: number;
  readonly steps: readonly DrillStep[];
  readonly bytesRestored: number;
  readonly filesVerified: number;
  /** Looker's log tail when Looker failed to start or verify. */
  readonly logTail?: string;
}

/** The Markdown job summary: result, measures, steps, and (when given) earlier drills as a trend. */
export function drillSummaryMarkdown(report: DrillReport, history: readonly DrillReport[] = []): string {
  const icon = report.result === "passed" ? "✅" : "❌";
  const lines = [
    `## ${icon} Restore drill ${report.result}`,
    "",
    "| | |",
    "|---|---|",
    `| archive | \`${cell(report.archive)}\` |`,
    `| instance | ${cell(report.backup.instance ?? "unknown")} |`,
    `| backup taken | ${cell(report.backup.startedAt ?? "unknown")} |`,
    `| target | ${cell(report.target)} |`,
    `| RTO (drill start -> healthy) | ${report.rtoMs === undefined ? "not reached" : formatDuration(report.rtoMs)} |`,
    `| RPO (backup age) | ${report.rpoMs === undefined ? "unknown" : formatDuration(report.rpoMs)} |`,
    `| restored | ${formatBytes(report.bytesRestored)} |`,
    `| files verified on target | ${report.filesVerified} |`,
    `| exit code | ${report.exitCode} |`,
  ];
  if (report.error) lines.push(`| error | ${cell(report.error)} |`);
  if (report.hint) lines.push(`| hint | ${cell(report.hint)} |`);
  lines.push("", "| step | result | time | detail |", "|---|---|---|---|");
  for (const step of report.steps) {
    lines.push(
      `| ${cell(step.name)} | ${step.ok ? "ok" : "failed"} | ${formatDuration(step.ms)} | ${cell(step.detail ?? "")} |`,
    );
  }
  if (report.logTail)
    lines.push(
      "",
      "<details><summary>Looker log tail</summary>",
      "",
      "```",
      report.logTail.trimEnd(),
      "```",
      "</details>",
    );
  if (history.length > 0) {
    lines.push("", "### Previous drills", "", "| started | result | RTO | RPO |", "|---|---|---|---|");
    for (const past of history) {
      lines.push(
        `| ${cell(past.startedAt)} | ${past.result} | ${past.rtoMs === undefined ? "-" : formatDuration(past.rtoMs)} | ${past.rpoMs === undefined ? "-" : formatDuration(past.rpoMs)} |`,
      );
    }
  }
  return `${lines.join("\n")}\n`;
}

/** Table cells must stay on one line and must not end the cell early. */
function cell(text: string): string {
  return text.replace(/\r?\n/g, " ").replace(/\|/g, "\\|");
}

export function isDrillReport(value: unknown): value is DrillReport {
  const r = value as Partial<DrillReport> | null;
  return (
    typeof r === "object" &&
    r !== null &&
    (r.result === "passed" || r.result === "failed") &&
    Array.isArray(r.steps)
  );
}
