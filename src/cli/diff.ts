/** `looker-backup diff`: the members added, removed and changed between two archives, from their catalogs. */
import type { CatalogEntry } from "../archive/catalog.js";
import { ExitCode } from "../errors.js";
import { type ChangeList, listChanges, type MemberChange, snapshotOf } from "../report/change-report.js";
import { formatBytes } from "../runtime/format.js";
import { catalogOptions, homePath, printable, readCatalogOf } from "./catalog-source.js";
import type { Command } from "./command.js";
import { decryptionKeysFrom } from "./key-options.js";

export const diffCommand: Command = {
  spec: {
    name: "diff",
    summary: "Show the files added, removed and changed from one archive to another (from their catalogs).",
    usage:
      "looker-backup diff A B --identity FILE [--out DIR] [--json]   (e.g. diff latest~1 latest --out DIR)",
    positionals: [
      { name: "a", help: "the earlier archive: a file, or latest~N in the store of --out" },
      { name: "b", help: "the later archive: a file, or latest / latest~N" },
    ],
    options: catalogOptions,
  },
  async run(values, context) {
    const keys = await decryptionKeysFrom(values, "diff");
    const a = await readCatalogOf(values.a as string, keys, values, context, "diff");
    const b = await readCatalogOf(values.b as string, keys, values, context, "diff");
    // Changed: type, size, mode, owner, content or link target (report/change-report.ts); a new mtime alone is not.
    const changes = listChanges(membersOf(a.catalog), membersOf(b.catalog));
    const shown = inHome(changes);
    const warnings = [...a.warnings, ...b.warnings];
    const totals = {
      added: total(shown.added),
      removed: total(shown.removed),
      changed: { ...total(shown.changed), previousBytes: sum(shown.changed.map((c) => c.previousSize ?? 0)) },
    };
    if (values.json) {
      context.stdout(
        `${JSON.stringify({
          a: { archive: a.archive, source: a.source },
          b: { archive: b.archive, source: b.source },
          ...shown,
          totals,
          warnings,
        })}\n`,
      );
    } else {
      const lines = [
        ...shown.added.map((c) => `+ ${String(c.size).padStart(12)}  ${printable(c.path)}`),
        ...shown.removed.map((c) => `- ${String(c.size).padStart(12)}  ${printable(c.path)}`),
        ...shown.changed.map(
          (c) => `~ ${String(c.size).padStart(12)}  ${printable(c.path)}  (was ${c.previousSize ?? 0})`,
        ),
      ];
      if (lines.length > 0) context.stdout(`${lines.join("\n")}\n`);
      context.stderr(
        `added ${totals.added.files} (${formatBytes(totals.added.bytes)}), removed ${totals.removed.files} ` +
          `(${formatBytes(totals.removed.bytes)}), changed ${totals.changed.files} ` +
          `(${formatBytes(totals.changed.previousBytes)} -> ${formatBytes(totals.changed.bytes)})\n`,
      );
    }
    return warnings.length > 0 ? ExitCode.Warnings : ExitCode.Ok;
  },
};

function membersOf(catalog: ReadonlyMap<string, CatalogEntry>) {
  return snapshotOf("", new Date(0), [...catalog.values()]).members;
}

/** The changes with home paths (homePath); the archive's own meta/ members left out. */
function inHome(changes: ChangeList): ChangeList {
  const map = (list: readonly MemberChange[]) =>
    list.flatMap((change) => {
      const path = homePath(change.path);
      return path === undefined ? [] : [{ ...change, path }];
    });
  return { added: map(changes.added), removed: map(changes.removed), changed: map(changes.changed) };
}

function total(changes: readonly MemberChange[]) {
  return { files: changes.length, bytes: sum(changes.map((c) => c.size)) };
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}
