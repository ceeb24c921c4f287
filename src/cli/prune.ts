/**
 * `looker-backup prune`: apply a retention policy to one instance's archives in a directory store, or to its backup
 * artifacts across a repository's runs (store/artifact-prune.ts, as the backup action does), or show it.
 */

import { MAX_KEEP } from "../defaults.js";
import { ExitCode, InputError } from "../errors.js";
import { validateInstanceName } from "../store/archive-name.js";
import type { PruneBackupArtifactsRequest } from "../store/artifact-prune.js";
import { DirStore } from "../store/dir-store.js";
import { namesToPrune, pruneRefusal, prunes } from "../store/retention.js";
import type { RetentionPolicy } from "../store/store.js";
import { integerOption, type ParsedOptions, requireString } from "./args.js";
import { artifactRepositoryOf, artifactStoreOptions } from "./artifact-options.js";
import type { Command, CommandContext } from "./command.js";
import { existingStoreDir, json } from "./common-options.js";

const count = (help: string) => ({ type: "string", placeholder: "N", help }) as const;

export const pruneCommand: Command = {
  spec: {
    name: "prune",
    summary: "Remove an instance's archives that a retention policy does not keep (--dry-run shows them).",
    usage:
      "looker-backup prune (--out DIR | --repo OWNER/REPO [--token-env VAR] ...) --instance NAME [--keep-last N] [--keep-daily N] ... [--dry-run]",
    options: {
      out: { type: "string", placeholder: "DIR", help: "the directory store" },
      ...artifactStoreOptions,
      instance: { type: "string", placeholder: "NAME", help: "the instance whose archives are pruned" },
      "keep-last": count("keep the N newest archives"),
      "keep-days": count("keep archives younger than N days"),
      "keep-daily": count("keep the newest archive of each of the last N days (restic's rules; UTC)"),
      "keep-weekly": count("keep the newest archive of each of the last N ISO weeks"),
      "keep-monthly": count("keep the newest archive of each of the last N months"),
      "dry-run": { type: "boolean", help: "print what would be removed and remove nothing" },
      "force-prune": {
        type: "boolean",
        help: "prune even when the newest archive is less than half the size of the one before it",
      },
      json,
    },
  },
  async run(values, context) {
    const command = "prune";
    const dryRun = values["dry-run"] === true;
    // A dry run only reads: the token then needs `actions: read`, deleting `actions: write`.
    const repository = artifactRepositoryOf(values, command, dryRun ? "read" : "write");
    const out = repository ? undefined : await existingStoreDir(values, command);
    const instance = validateInstanceName(requireString(values, "instance", command), "--instance");
    const policy = policyOf(values, command);
    if (repository) return pruneArtifacts({ ...repository, instance, policy, dryRun }, values, context);
    const store = new DirStore(out!);
    const archives = await store.list(instance);
    const refusal = pruneRefusal(archives, policy);
    // What is reported is what the store removed (or would remove): one decision, at one moment.
    const now = new Date();
    const doomed =
      refusal !== undefined
        ? []
        : dryRun
          ? namesToPrune(archives, policy, now)
          : await store.prune(instance, policy, now, context.signal);
    const kept = archives.map((a) => a.name).filter((name) => !doomed.includes(name));
    if (values.json) {
      const result = { dryRun, removed: dryRun ? [] : doomed, wouldRemove: dryRun ? doomed : [], kept };
      context.stdout(`${JSON.stringify({ ...result, warnings: refusal ? [refusal] : [] })}\n`);
    } else {
      for (const name of doomed) context.stdout(`${dryRun ? "would remove" : "removed"}  ${name}\n`);
      for (const name of kept) context.stdout(`kept  ${name}\n`);
      if (refusal) context.stderr(`warning: ${refusal}\n`);
    }
    return refusal ? ExitCode.Warnings : ExitCode.Ok;
  },
};

function policyOf(values: ParsedOptions, command: string): RetentionPolicy {
  const range = { min: 1, max: MAX_KEEP };
  const policy: RetentionPolicy = Object.fromEntries(
    Object.entries({
      keepLast: integerOption(values, "keep-last", command, range),
      keepDays: integerOption(values, "keep-days", command, range),
      keepDaily: integerOption(values, "keep-daily", command, range),
      keepWeekly: integerOption(values, "keep-weekly", command, range),
      keepMonthly: integerOption(values, "keep-monthly", command, range),
      forcePrune: values["force-prune"] === true ? true : undefined,
    }).filter(([, value]) => value !== undefined),
  );
  if (!prunes(policy)) {
    throw new InputError(
      `${command}: no retention rule given`,
      "give at least one of --keep-last, --keep-days, --keep-daily, --keep-weekly, --keep-monthly",
    );
  }
  return policy;
}

/**
 * The artifact store: the same decision the backup action makes after a backup, over the instance's backup
 * artifacts of every run (filtered by --workflow/--branch when given); each archive is deleted with its companions.
 */
async function pruneArtifacts(
  request: PruneBackupArtifactsRequest,
  values: ParsedOptions,
  context: CommandContext,
): Promise<ExitCode> {
  // Loaded only here, as in `list`: @actions/github reads the runner's event file when it loads.
  const { pruneBackupArtifacts } = await import("../store/artifact-prune.js");
  const pruned = await pruneBackupArtifacts({ ...request, log: (line) => context.stderr(`${line}\n`) });
  // Nothing deleted because the token may not: bad input (exit 2) with the permission it needs, not a warning.
  if (pruned.stoppedBy instanceof InputError && pruned.removed.length === 0) throw pruned.stoppedBy;
  const names = (archives: readonly { name: string }[]) => archives.map((archive) => archive.name);
  const kept = names(pruned.archives.filter((archive) => !pruned.doomed.includes(archive)));
  const warnings = [
    ...(pruned.refusal ? [pruned.refusal] : []),
    ...(pruned.warning ? [pruned.warning] : []),
    ...(pruned.truncated
      ? [
          `${request.owner}/${request.repo} holds more artifacts than were listed; its oldest backups were not considered`,
        ]
      : []),
  ];
  if (values.json) {
    context.stdout(
      `${JSON.stringify({
        dryRun: request.dryRun === true,
        removed: names(pruned.removed),
        wouldRemove: request.dryRun ? names(pruned.doomed) : [],
        left: names(pruned.left),
        kept,
        warnings,
      })}\n`,
    );
  } else {
    const doomed = request.dryRun ? pruned.doomed : pruned.removed;
    for (const archive of doomed) {
      const companions = archive.companions.length > 0 ? ` (+ ${names(archive.companions).join(", ")})` : "";
      context.stdout(
        `${request.dryRun ? "would remove" : "removed"}  ${archive.name}  ${archive.location}${companions}\n`,
      );
    }
    for (const archive of pruned.left) context.stdout(`not removed  ${archive.name}  ${archive.location}\n`);
    for (const name of kept) context.stdout(`kept  ${name}\n`);
    for (const warning of warnings) context.stderr(`warning: ${warning}\n`);
  }
  return warnings.length > 0 ? ExitCode.Warnings : ExitCode.Ok;
}
