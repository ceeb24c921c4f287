import { ExitCode } from "../errors.js";
import { formatBytes } from "../runtime/format.js";
import { validateInstanceName } from "../store/archive-name.js";
import type { ListBackupArtifactsRequest } from "../store/artifact-find.js";
import { DirStore } from "../store/dir-store.js";
import { optionalString } from "./args.js";
import { artifactRepositoryOf, artifactStoreOptions } from "./artifact-options.js";
import type { Command, CommandContext } from "./command.js";
import { existingStoreDir, json } from "./common-options.js";

export const listCommand: Command = {
  spec: {
    name: "list",
    summary: "List the archives in a directory store or a repository's backup artifacts, newest first.",
    usage:
      "looker-backup list (--out DIR | --repo OWNER/REPO [--token-env VAR] [--workflow FILE] [--branch NAME] [--api-url URL]) [--instance NAME]",
    options: {
      out: { type: "string", placeholder: "DIR", help: "the directory store" },
      ...artifactStoreOptions,
      instance: { type: "string", placeholder: "NAME", help: "only this instance" },
      json,
    },
  },
  async run(values, context) {
    const given = optionalString(values, "instance");
    const instance = given === undefined ? undefined : validateInstanceName(given);
    const repository = artifactRepositoryOf(values, "list", "read");
    if (repository) return listArtifacts(repository, instance, values.json === true, context);
    const out = await existingStoreDir(values, "list");
    const archives = await new DirStore(out).list(instance);
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

/** The artifact store: every unexpired backup artifact of the repository's runs, with the run it belongs to. */
async function listArtifacts(
  repository: ListBackupArtifactsRequest,
  instance: string | undefined,
  asJson: boolean,
  context: CommandContext,
): Promise<ExitCode> {
  // Loaded only here: @actions/github reads the runner's event file when it loads, which other commands never need.
  const { listBackupArtifacts } = await import("../store/artifact-find.js");
  const where = `${repository.owner}/${repository.repo}`;
  const { archives, truncated } = await listBackupArtifacts({
    ...repository,
    ...(instance === undefined ? {} : { instance }),
    log: (line) => context.stderr(`${line}\n`),
  });
  if (asJson) {
    const rows = archives.map((a) => ({
      name: a.name,
      size: a.size,
      location: a.location,
      createdAt: a.createdAt.toISOString(),
      artifactId: a.id,
      runId: a.runId,
      branch: a.branch ?? null,
      digest: a.digest ?? null,
      companions: a.companions.map((companion) => companion.name),
    }));
    context.stdout(`${JSON.stringify(rows)}\n`);
  } else {
    for (const a of archives) {
      context.stdout(
        `${a.createdAt.toISOString()}  ${formatBytes(a.size).padStart(10)}  ${a.location}  ${a.name}\n`,
      );
    }
    if (archives.length === 0) context.stderr(`no backup artifacts in ${where}\n`);
  }
  if (truncated) {
    context.stderr(
      `warning: ${where} holds more artifacts than were listed; its oldest backups may be missing here\n`,
    );
  }
  return ExitCode.Ok;
}
