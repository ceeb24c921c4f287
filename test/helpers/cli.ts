/** Runs the CLI in-process (fast, for most tests) and collects what it prints. */
import { runCli } from "../../src/cli/main.js";

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

export async function cli(...argv: string[]): Promise<CliRun> {
  let stdout = "";
  let stderr = "";
  const code = await runCli(argv, {
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
  });
  return { code, stdout, stderr };
}

/** A CLI run that must succeed with --json; returns the parsed object. */
export async function cliJson<T = Record<string, unknown>>(...argv: string[]): Promise<T> {
  const run = await cli(...argv, "--json");
  if (run.code !== 0) throw new Error(`looker-backup ${argv.join(" ")} exited ${run.code}: ${run.stderr}`);
  return JSON.parse(run.stdout) as T;
}

/** The argv of a CLI backup of `home` into the dir store `out` (callers add --json, --quiet and the like). */
export function backupArgv(home: string, out: string, recipient: string, instance: string): string[] {
  return ["backup", "--home", home, "--out", out, "--recipient", recipient, "--instance", instance];
}

/** The plain "restore this archive into this target" command line; callers add flags such as --force. */
export function restoreArgv(archive: string, identityFile: string, target: string): string[] {
  return ["restore", "--archive", archive, "--identity", identityFile, "--target", target];
}
