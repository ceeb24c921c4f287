/**
 * Where Looker runs: this machine (LocalHost) or a cluster node over SSH (SshHost). Everything the Looker
 * operations need goes through this one narrow interface, so the same orchestration serves a single host, a
 * cluster and the drill's ephemeral VM, and tests swap in real sshd VMs without mocks.
 */
export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** Working directory on the host. */
  readonly cwd?: string;
  /** Plain environment variables (not secret). */
  readonly env?: Readonly<Record<string, string>>;
  /**
   * Secret environment variables (e.g. LKR_MASTER_KEY_ENV). They never appear in argv or logs: LocalHost passes
   * them in the child's environment, SshHost sends them over the channel's stdin to a wrapper that exports them.
   */
  readonly secretEnv?: Readonly<Record<string, string>>;
  /**
   * LocalHost only: start from the job's environment less the step's inputs and state (runtime/child-env.ts
   * jobEnvironment) instead of the allow-list. For the drill's provision/teardown commands, which need cloud
   * credentials earlier steps exported and end with the step.
   */
  readonly jobEnvironment?: boolean;
  /**
   * Run with root's rights, for what only root may do (systemctl start/stop of Looker's unit): never through the
   * looker-user switch; where the caller is not root, through `sudo -n` (no password prompt: a missing sudoers rule
   * fails at once instead of hanging).
   */
  readonly asRoot?: boolean;
  /** Kill the command and fail after this long (default: no limit). */
  readonly timeoutMs?: number;
  /**
   * Cancel (SIGINT/SIGTERM of a CLI run): the command is killed at once and the result comes back as it ended. The
   * caller tells a cancel by the signal, not by the exit code. Never given to clean-up commands, which must finish.
   */
  readonly signal?: AbortSignal;
  /**
   * How stdout is decoded: "utf8" (the default), or "latin1", which maps every byte to one character and so loses
   * none, for output that holds file names (names are bytes: runtime/byte-names.ts).
   */
  readonly stdoutEncoding?: "utf8" | "latin1";
  /** Called with each line of output as it arrives (pre/post commands are logged live). */
  readonly onLine?: (line: string, stream: "stdout" | "stderr") => void;
}

export interface Host {
  /** For messages: "local" or "looker@node-2:22". */
  readonly name: string;
  /** Runs argv (quoted safely for the remote shell); resolves with the exit code, never rejects on non-zero. */
  run(argv: readonly string[], options?: RunOptions): Promise<CommandResult>;
  /** Runs a shell script (pre/post commands written by the user). */
  runShell(script: string, options?: RunOptions): Promise<CommandResult>;
  /** Writes a file atomically with the given mode (temp name + rename on the host). */
  writeFile(path: string, content: Buffer | string, mode: number): Promise<void>;
  readFile(path: string): Promise<Buffer>;
  /** Removes a file or directory tree; missing is fine. */
  remove(path: string): Promise<void>;
  /** Creates a private (0700) temp directory and returns its path. */
  makeTempDir(prefix: string): Promise<string>;
  close(): Promise<void>;
}

/** POSIX shell quoting: every argument becomes one word, whatever it contains. */
export function shellQuote(arg: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

export function shellCommand(argv: readonly string[]): string {
  return argv.map(shellQuote).join(" ");
}

/** Environment variable names we accept for secrets: they go into a shell `read`, so they must be plain names. */
export function assertEnvName(name: string): void {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`invalid environment variable name '${name}'`);
}

/**
 * A shell prefix that reads secret values from stdin (one line each, in order) and exports them, then runs the
 * command. Used where secrets cannot travel in the environment (SSH) and must not travel in argv.
 */
export function secretEnvPrelude(names: readonly string[]): string {
  names.forEach(assertEnvName);
  return names.map((n) => `IFS= read -r ${n} && export ${n} &&`).join(" ");
}
