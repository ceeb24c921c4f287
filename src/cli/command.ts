/** What every CLI command is: its flags (for parsing and --help) and what it runs. */
import type { ExitCode } from "../errors.js";
import type { CommandSpec, ParsedOptions } from "./args.js";

export interface CommandContext {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /** stderr is a terminal: progress is one live line there (report/progress.ts), plain lines otherwise. */
  readonly stderrIsTTY?: boolean;
  readonly signal?: AbortSignal;
}

export interface Command {
  readonly spec: CommandSpec;
  run(values: ParsedOptions, context: CommandContext): Promise<ExitCode>;
}
