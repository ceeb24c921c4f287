import { describeError, ExitCode, exitCodeOf, LookerBackupError } from "../errors.js";
import { TOOL_VERSION } from "../version.js";
import { helpText, parseCommandArgs } from "./args.js";
import { backupCommand } from "./backup.js";
import type { Command, CommandContext } from "./command.js";
import { diffCommand } from "./diff.js";
import { drillCommand } from "./drill.js";
import { findCommand } from "./find.js";
import { keygenCommand } from "./keygen.js";
import { listCommand } from "./list.js";
import { lsCommand } from "./ls.js";
import { planCommand } from "./plan.js";
import { pruneCommand } from "./prune.js";
import { restoreCommand } from "./restore.js";
import { showCommand } from "./show.js";
import { verifyCommand } from "./verify.js";

/** Every command, in the order `looker-backup --help` lists them; the README's CLI reference follows it (npm run docs). */
export const commands: readonly Command[] = [
  backupCommand,
  restoreCommand,
  verifyCommand,
  planCommand,
  listCommand,
  lsCommand,
  findCommand,
  diffCommand,
  showCommand,
  pruneCommand,
  keygenCommand,
  drillCommand,
];

const USAGE = `looker-backup: encrypted, verified backups of a self-hosted Looker

Usage: looker-backup <command> [options]   (looker-backup <command> --help for its options)
       looker-backup --version

Commands:
${commands.map((c) => `  ${c.spec.name.padEnd(9)} ${c.spec.summary}`).join("\n")}

Exit codes: 0 ok, 1 failed, 2 bad input, 3 done with warnings, 4 integrity failure, 5 Looker failed, 130 cancelled
`;

function failureJson(error: unknown, exitCode: number, cancelled: boolean | undefined) {
  if (cancelled) return { ok: false, exitCode, error: "cancelled" };
  const hint = error instanceof LookerBackupError ? error.hint : undefined;
  const message = error instanceof Error ? error.message : String(error);
  return { ok: false, exitCode, error: message, ...(hint ? { hint } : {}) };
}

/** Runs one CLI invocation and returns its exit code; never throws. */
export async function runCli(argv: readonly string[], context: CommandContext): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    context.stdout(USAGE);
    return name === undefined ? ExitCode.BadInput : ExitCode.Ok;
  }
  if (name === "--version" || name === "-V" || name === "version") {
    context.stdout(`looker-backup ${TOOL_VERSION}\n`);
    return ExitCode.Ok;
  }
  const command = commands.find((c) => c.spec.name === name);
  if (!command) {
    context.stderr(`looker-backup: unknown command '${name}'\n${USAGE}`);
    return ExitCode.BadInput;
  }
  try {
    const values = parseCommandArgs(command.spec, rest);
    if (values.help) {
      context.stdout(helpText(command.spec));
      return ExitCode.Ok;
    }
    return await command.run(values, context);
  } catch (error) {
    const cancelled = context.signal?.aborted;
    const message = cancelled ? "cancelled" : describeError(error);
    context.stderr(
      `${message
        .split("\n")
        .map((line, i) => (i === 0 ? `looker-backup: error: ${line}` : `looker-backup: ${line}`))
        .join("\n")}\n`,
    );
    if (process.env.LOOKER_BACKUP_DEBUG && error instanceof Error) context.stderr(`${error.stack}\n`);
    const exitCode = cancelled ? ExitCode.Cancelled : exitCodeOf(error);
    // A script that asked for --json reads stdout: it gets the failure there too, as one JSON object.
    if (rest.includes("--json"))
      context.stdout(`${JSON.stringify(failureJson(error, exitCode, cancelled))}\n`);
    return exitCode;
  }
}
