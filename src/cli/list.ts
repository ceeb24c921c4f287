/** `looker-backup list`: the archives of a directory store, newest first. */
import { resolve } from "node:path";
import { ExitCode } from "../errors.js";
import { formatBytes } from "../runtime/format.js";
import { validateInstanceName } from "../store/archive-name.js";
import { DirStore } from "../store/dir-store.js";
import { optionalString, requireString } from "./args.js";
import type { Command } from "./command.js";
import { json } from "./common-options.js";

export const listCommand: Command = {
  spec: {
    name: "list",
    summary: "List the archives in a directory store, newest first.",
    usage: "looker-backup list --out DIR [--instance NAME]",
    options: {
      out: { type: "string", placeholder: "DIR", help: "the directory store" },
      instance: { type: "string", placeholder: "NAME", help: "only this instance" },
      json,
    },
  },
  async run(values, context) {
    const out = resolve(requireString(values, "out", "list"));
    const instance = optionalString(values, "instance");
    const archives = await new DirStore(out).list(
      instance === undefined ? undefined : validateInstanceName(instance),
    );
    if (values.json) {
      context.stdout(
        `${JSON.stringify(archives.map((a) => ({ ...a, createdAt: a.createdAt.toISOString() })))}\n`,
      );
    } else {
      for (const a of archives) {
        context.stdout(`${a.createdAt.toISOString()}  ${formatBytes(a.size).padStart(10)}  ${a.location}\n`);
      }
      if (archives.length === 0) context.stderr(`no archives in ${out}\n`);
    }
    return ExitCode.Ok;
  },
};
