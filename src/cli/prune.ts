/** `looker-backup prune`: apply a retention policy to one instance's archives in a directory store, or show it. */

import { MAX_KEEP } from "../defaults.js";
import { ExitCode, InputError } from "../errors.js";
import { validateInstanceName } from "../store/archive-name.js";
import { DirStore } from "../store/dir-store.js";
import { namesToPrune, pruneRefusal, prunes } from "../store/retention.js";
import type { RetentionPolicy } from "../store/store.js";
import { integerOption, requireString } from "./args.js";
import type { Command } from "./command.js";
import { existingStoreDir, json } from "./common-options.js";

const count = (help: string) => ({ type: "string", placeholder: "N", help }) as const;

export const pruneCommand: Command = {
  spec: {
    name: "prune",
    summary: "Remove an instance's archives that a retention policy does not keep (--dry-run shows them).",
    usage: "looker-backup prune --out DIR --instance NAME [--keep-last N] [--keep-daily N] ... [--dry-run]",
    options: {
      out: { type: "string", placeholder: "DIR", help: "the directory store" },
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
    const out = await existingStoreDir(values, command);
    const instance = validateInstanceName(requireString(values, "instance", command), "--instance");
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
    const store = new DirStore(out);
    const archives = await store.list(instance);
    const refusal = pruneRefusal(archives, policy);
    const dryRun = values["dry-run"] === true;
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
