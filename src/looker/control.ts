/**
 * One Looker node: its `looker` script run as the looker user in `~/looker`, per Looker's CLI contract
 * (DESIGN.md section 6), plus the health check. Errors carry the tail of Looker's log so a failed start at 3 a.m.
 * explains itself.
 */
import { posix } from "node:path";
import { LookerError } from "../errors.js";
import type { CommandResult, Host, RunOptions } from "../remote/host.js";
import { type AliveTarget, waitForAlive } from "./alive.js";
import { type MasterKey, masterKeyEnvironment } from "./master-key.js";

export interface LookerNodeConfig {
  readonly host: Host;
  /** The Looker directory on that host: `<home>/looker`. */
  readonly lookerDir: string;
  /** Where /alive answers, as seen from this runner. */
  readonly alive: AliveTarget;
  readonly masterKey?: MasterKey;
  /** Extra environment for every Looker command (the `looker-env` input); the CMK never travels here. */
  readonly env?: Readonly<Record<string, string>>;
  /** How long `start` may take until /alive answers (Looker needs minutes on big instances). */
  readonly bootTimeoutMs?: number;
  readonly commandTimeoutMs?: number;
}

const LOG_TAIL_LINES = 40;

export class LookerNode {
  constructor(readonly config: LookerNodeConfig) {}

  get name(): string {
    return this.config.host.name;
  }

  async isRunning(): Promise<boolean> {
    const result = await this.looker(["status"]);
    // LSB: 0 running, 3 not running; anything else is an answer we cannot trust either way.
    if (result.code === 0) return true;
    if (result.code === 3) return false;
    throw await this.failure("could not ask Looker for its status", result);
  }

  async stop(): Promise<void> {
    const result = await this.looker(["stop"]);
    if (result.code !== 0 || (await this.isRunning()))
      throw await this.failure("Looker did not stop", result);
  }

  /**
   * Starts Looker and waits until /alive answers 200. `timeoutMs` (default the boot timeout) bounds the start
   * command and the wait together: the Actions post step has only what is left of a cancelled job's minutes.
   */
  async start(signal?: AbortSignal, timeoutMs = this.config.bootTimeoutMs ?? 300_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const result = await this.looker(["start"], {
      ...masterKeyEnvironment(this.config.masterKey),
      timeoutMs: Math.min(this.config.commandTimeoutMs ?? 600_000, timeoutMs),
    });
    if (result.code !== 0) throw await this.failure("Looker failed to start", result);
    await this.waitUntilAlive(Math.max(0, deadline - Date.now()), signal, result);
  }

  /** Waits for /alive to answer 200 (a start already under way); fails with the log when it does not in time. */
  async waitUntilAlive(
    timeoutMs: number,
    signal?: AbortSignal,
    startResult: CommandResult = { code: 0, stdout: "", stderr: "" },
  ): Promise<void> {
    const up = await waitForAlive(this.config.alive, { timeoutMs, signal });
    if (!up) {
      throw await this.failure(
        `Looker started but /alive on ${this.config.alive.host}:${this.config.alive.port} did not answer 200 in time`,
        startResult,
      );
    }
  }

  async generateKeyfile(path: string): Promise<void> {
    const result = await this.looker(["generate_keyfile_for_backup", path]);
    if (result.code !== 0) throw await this.failure("generate_keyfile_for_backup failed", result);
  }

  async keystoreIndependentRecrypt(keyfilePath: string): Promise<void> {
    const result = await this.looker(
      ["keystore_independent_recrypt", keyfilePath],
      masterKeyEnvironment(this.config.masterKey),
    );
    if (result.code !== 0) throw await this.failure("keystore_independent_recrypt failed", result);
  }

  async restoreDrBackup(keyfilePath: string): Promise<void> {
    const result = await this.looker(
      ["restore_dr_backup", keyfilePath],
      masterKeyEnvironment(this.config.masterKey),
    );
    if (result.code !== 0) throw await this.failure("restore_dr_backup failed", result);
  }

  async logTail(lines = LOG_TAIL_LINES): Promise<string> {
    const log = posix.join(this.config.lookerDir, "log", "looker.log");
    const result = await this.config.host.run(["tail", "-n", String(lines), log]);
    return result.code === 0 ? result.stdout : "";
  }

  private looker(args: string[], options: RunOptions = {}): Promise<CommandResult> {
    // Looker's script starts with `cd $HOME/looker`: HOME, not the working directory, picks the instance. runuser
    // resets HOME to the user's passwd entry, so it is set by `env` right before the script, as the last word.
    const home = posix.dirname(this.config.lookerDir);
    return this.config.host.run(["env", `HOME=${home}`, "./looker", ...args], {
      ...options,
      env: { ...this.config.env, ...options.env },
      cwd: this.config.lookerDir,
      timeoutMs: options.timeoutMs ?? this.config.commandTimeoutMs ?? 600_000,
    });
  }

  private async failure(what: string, result: CommandResult): Promise<LookerError> {
    const output = `${result.stderr}${result.stdout}`.trim().split("\n").slice(-5).join("\n");
    const logTail = await this.logTail().catch(() => "");
    return new LookerError(`${what} on ${this.name} (exit ${result.code})${output ? `: ${output}` : ""}`, {
      hint: "see the log excerpt in the report; check the CMK, disk space and the looker user's permissions",
      logTail,
    });
  }
}
