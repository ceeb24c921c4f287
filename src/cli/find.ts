/** `looker-backup find`: which archives hold a path matching a pattern, from their catalogs. */
import { basename } from "node:path";
import { ExitCode } from "../errors.js";
import { compilePattern } from "../manifest/glob.js";
import {
  catalogOptions,
  homeMembers,
  isoSeconds,
  matchPath,
  memberJson,
  printable,
  type ReadCatalog,
  readCatalogOf,
} from "./catalog-source.js";
import type { Command } from "./command.js";
import { storeArchives } from "./common-options.js";
import { decryptionKeysFrom } from "./key-options.js";

export const findCommand: Command = {
  spec: {
    name: "find",
    summary: "Find which archives hold a path matching a pattern (from their catalogs), restoring nothing.",
    usage: "looker-backup find ARCHIVE...|all GLOB --identity FILE [--out DIR] [--json]",
    positionals: [
      {
        name: "archive",
        multiple: true,
        help: "archives: files, latest / latest~N, or all (every archive in the store of --out, newest first)",
      },
      {
        name: "glob",
        help: "a home path or pattern (looker/models/**/*.lkml, /etc/ssl/*), matching that path and everything below",
      },
    ],
    options: catalogOptions,
  },
  async run(values, context) {
    const glob = values.glob as string;
    const pattern = compilePattern(glob);
    const refs = await expandAll(values.archive as string[], values);
    const keys = await decryptionKeysFrom(values, "find");
    const results: { read: ReadCatalog; matches: ReturnType<typeof matchesOf> }[] = [];
    for (const ref of refs) {
      context.signal?.throwIfAborted();
      const read = await readCatalogOf(ref, keys, values, context, "find");
      const matches = matchesOf(read, pattern.matches);
      results.push({ read, matches });
      if (!values.json) {
        const name = basename(read.archive);
        const lines = matches.map(
          ({ path, entry }) =>
            `${name}  ${String(entry.size).padStart(12)}  ${isoSeconds(entry.mtime)}  ${printable(path)}`,
        );
        if (lines.length > 0) context.stdout(`${lines.join("\n")}\n`);
      }
    }
    const holding = results.filter((r) => r.matches.length > 0).length;
    const warnings = results.flatMap((r) => r.read.warnings);
    if (values.json) {
      context.stdout(
        `${JSON.stringify({
          glob,
          archives: results.map(({ read, matches }) => ({
            archive: read.archive,
            source: read.source,
            matches: matches.map(({ path, entry }) => memberJson(path, entry)),
          })),
          warnings,
        })}\n`,
      );
    } else {
      context.stderr(`${glob}: matched in ${holding} of ${results.length} archive(s)\n`);
    }
    return warnings.length > 0 ? ExitCode.Warnings : ExitCode.Ok;
  },
};

function matchesOf(read: ReadCatalog, matches: (path: string) => boolean) {
  return [...homeMembers(read.catalog)].filter(({ path }) => matches(matchPath(path)));
}

/** `all` stands for every archive of the store, newest first (one instance: see storeArchives). */
async function expandAll(refs: readonly string[], values: Parameters<typeof storeArchives>[0]) {
  const expanded: string[] = [];
  for (const ref of refs) {
    if (ref === "all") expanded.push(...(await storeArchives(values, "find", ref)).map((a) => a.location));
    else expanded.push(ref);
  }
  return expanded;
}
