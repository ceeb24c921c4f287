/** `looker-backup plan`: what a backup would include and exclude, and why. */
import { resolve } from "node:path";
import { resolveManifest } from "../engine/backup.js";
import { ExitCode } from "../errors.js";
import { measureSelection } from "../manifest/select.js";
import { formatBytes } from "../runtime/format.js";
import { optionalString, requireString, stringList } from "./args.js";
import type { Command } from "./command.js";
import { backend, backendOf, json, sslFile } from "./common-options.js";

export const planCommand: Command = {
  spec: {
    name: "plan",
    summary: "Show what a backup would include and exclude, and why, without writing anything.",
    usage: "looker-backup plan --home DIR [--manifest FILE]",
    options: {
      home: { type: "string", placeholder: "DIR", help: "home of the looker user" },
      manifest: {
        type: "string",
        placeholder: "FILE",
        help: "YAML manifest adjusting the default selection",
      },
      "ssl-file": sslFile,
      backend,
      json,
    },
  },
  async run(values, context) {
    const home = resolve(requireString(values, "home", "plan"));
    const { manifest, mysqlBackend } = await resolveManifest({
      home,
      manifestFile: optionalString(values, "manifest"),
      sslFiles: stringList(values, "ssl-file"),
      backend: backendOf(values),
    });
    // The same measure as a backup's preflight takes: its job summary's exclusions are these numbers.
    const selection = await measureSelection({ home, manifest });
    if (values.json) {
      context.stdout(
        `${JSON.stringify({ home, backend: mysqlBackend ? "mysql" : "internal", rules: selection.tallies, skipped: selection.skipped })}\n`,
      );
      return ExitCode.Ok;
    }
    const lines = [`plan for ${home} (backend: ${mysqlBackend ? "mysql" : "internal"})`, ""];
    for (const t of selection.tallies) {
      const what = t.action === "exclude" ? "exclude" : t.action === "outside" ? "outside" : "include";
      const size = `${t.files} files, ${formatBytes(t.bytes)}`;
      lines.push(
        `${what.padEnd(8)} ${t.pattern.padEnd(28)} ${size.padEnd(24)} ${t.required ? "required; " : ""}${t.reason}`,
      );
      if (t.action === "exclude") for (const p of t.paths) lines.push(`           - ${p}`);
    }
    for (const s of selection.skipped) lines.push(`skipped  ${s.path}: ${s.reason}`);
    context.stdout(`${lines.join("\n")}\n`);
    return ExitCode.Ok;
  },
};
