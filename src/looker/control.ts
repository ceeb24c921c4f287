/**
 * One Looker node: its `looker` script run as the looker user in `~/looker`, plus the health check. Looker's script
 * (customer-scripts, startup_scripts/looker) ends with `exit 0`, so nothing but `status` (7 stopped, 0 answering) and
 * start's refusal (1) speaks through the exit code: every step is proven by its effect instead. Errors carry the
 * tail of Looker's log so a failed start at 3 a.m. explains itself. A Looker that runs under its systemd unit is stopped
 * and started through systemctl instead of the script (systemd.ts), with the same proofs by effect.
 */
import { posix } from "node:path";
import { DEFAULT_BOOT_TIMEOUT_SECONDS, DEFAULT_LOOKER_UNIT } from "../defaults.js";
import { LookerError } from "../errors.js";
import type { CommandResult, Host, RunOptions } from "../remote/host.js";
import { type AliveTarget, probeAlive } from "./alive.js";
import { type MasterKey, masterKeyEnvironment } from "./master-key.js";
import { type LookerControl, systemctlAsRoot, unitActive } from "./systemd.js";

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
  /** How Looker is stopped and started: its script (default) or its systemd unit. */
  readonly control?: LookerControl;
  /** The systemd unit (with control systemd). */
  readonly unit?: string;
}

const LOG_TAIL_LINES = 40;
/** Where Looker keeps its pid, relative to ~/looker (the systemd unit's PIDFile). */
const PID_FILE = ".tmp/looker.pid";
/** The script's stop waits up to 30 tries of /alive; the process may take a little longer to end. */
const STOP_PROOF_TIMEOUT_MS = 90_000;
const PROOF_INTERVAL_MS = 250;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class LookerNode {
  constructor(readonly config: LookerNodeConfig) {}

  get name(): string {
    return this.config.host.name;
  }

  /** The unit when Looker runs under systemd, else undefined. */
  get unit(): string | undefined {
    return this.config.control === "systemd" ? (this.config.unit ?? DEFAULT_LOOKER_UNIT) : undefined;
  }

  /** What an operator runs to start this node by hand. */
  get startCommand(): string {
    return this.unit ? `sudo systemctl start ${this.unit}` : "cd ~/looker && ./looker start";
  }

  /**
   * `./looker status` asks /alive with curl: exit 7 (connection refused) means stopped, exit 0 means something answered
   * (not that Looker is healthy). Looker's script uses no other code, so any other is an error we cannot read.
   */
  async isRunning(): Promise<boolean> {
    const result = await this.looker(["status"]);
    if (result.code === 0) return true;
    if (result.code === 7) return false;
    throw await this.failure("could not ask Looker for its status", result);
  }

  /**
   * `./looker stop`, proven by its effect: the script exits 0 whatever happened, so stopped means /alive refuses
   * connections AND the process named in .tmp/looker.pid is gone.
   */
  async stop(timeoutMs = STOP_PROOF_TIMEOUT_MS): Promise<void> {
    const pid = await this.pidFromFile();
    const result = this.unit ? await this.systemctlStop(this.unit, timeoutMs) : await this.looker(["stop"]);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const refused = !(await this.isRunning());
      const gone = pid === undefined || !(await this.processAlive(pid));
      if (refused && gone) return;
      if (Date.now() >= deadline) {
        const why = refused ? `its process ${pid} is still there` : "/alive still answers";
        throw await this.failure("Looker did not stop", result, why);
      }
      await sleep(PROOF_INTERVAL_MS);
    }
  }

  /**
   * Starts Looker and proves it serves: /alive answers 200 AND the process in this home's .tmp/looker.pid is alive,
   * runs in this home and holds the web port's listening socket (another server on the port does not count). `./looker start` says
   * nothing by exit 0 (Looker daemonizes and the script ends with `exit 0`); exit 1 is the script's refusal.
   * `timeoutMs` (default the boot timeout) bounds the start command and the wait together: the Actions post step has
   * only what is left of a cancelled job's minutes.
   */
  async start(
    signal?: AbortSignal,
    timeoutMs = this.config.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_SECONDS * 1000,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const before = await this.pidFromFile();
    const commandTimeoutMs = Math.min(this.config.commandTimeoutMs ?? 600_000, timeoutMs);
    const unit = this.unit;
    // systemd starts the unit's ExecStart with the unit's environment, not ours: under systemd the CMK comes from the
    // unit (Environment= or EnvironmentFile=), so it is not handed to systemctl.
    const result = unit
      ? await systemctlAsRoot(this.config.host, "start", unit, commandTimeoutMs)
      : await this.looker(["start"], {
          ...masterKeyEnvironment(this.config.masterKey),
          timeoutMs: commandTimeoutMs,
        });
    if (result.code !== 0) {
      throw await this.failure(
        "Looker failed to start",
        result,
        unit ? `systemctl start ${unit} failed` : "its startup script refused (e.g. .deploying)",
      );
    }
    await this.waitUntilServing(Math.max(0, deadline - Date.now()), signal, result, before);
    if (unit) await this.expectUnitActive(unit, result);
  }

  /** Waits for a start already under way to serve (proven as in start); fails with the log when it does not in time. */
  async waitUntilAlive(
    timeoutMs: number,
    signal?: AbortSignal,
    startResult: CommandResult = { code: 0, stdout: "", stderr: "" },
  ): Promise<void> {
    await this.waitUntilServing(timeoutMs, signal, startResult, undefined);
  }

  /**
   * generate_keyfile_for_backup, run as the script runs it (`java -jar looker.jar ...` in ~/looker) but directly, so
   * the jar's exit status counts. Whether Looker reads the CMK here is not documented: it gets it, to be safe.
   */
  async generateKeyfile(path: string): Promise<void> {
    await this.jar(["generate_keyfile_for_backup", path], "generate_keyfile_for_backup failed");
  }

  async keystoreIndependentRecrypt(keyfilePath: string): Promise<void> {
    await this.jar(["keystore_independent_recrypt", keyfilePath], "keystore_independent_recrypt failed");
  }

  async restoreDrBackup(keyfilePath: string): Promise<void> {
    await this.jar(["restore_dr_backup", keyfilePath], "restore_dr_backup failed");
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

  /**
   * What Looker's script runs for every command but start/stop/status: `java -jar looker.jar <args>` in ~/looker,
   * without JAVAARGS or LOOKERARGS. Run directly because the script's `exit 0` would hide the jar's failure. `java` is
   * the looker user's own (its PATH, or the PATH in looker-env).
   */
  private async jar(args: string[], what: string): Promise<void> {
    const home = posix.dirname(this.config.lookerDir);
    const result = await this.config.host.run(
      ["env", `HOME=${home}`, "java", "-jar", "looker.jar", ...args],
      {
        ...masterKeyEnvironment(this.config.masterKey),
        env: { ...this.config.env, ...masterKeyEnvironment(this.config.masterKey).env },
        cwd: this.config.lookerDir,
        timeoutMs: this.config.commandTimeoutMs ?? 600_000,
      },
    );
    if (result.code !== 0) throw await this.failure(what, result);
  }

  private async waitUntilServing(
    timeoutMs: number,
    signal: AbortSignal | undefined,
    startResult: CommandResult,
    pidBefore: number | undefined,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const where = `${this.config.alive.host}:${this.config.alive.port}`;
    let why = "/alive did not answer 200";
    for (;;) {
      signal?.throwIfAborted();
      const pid = await this.pidFromFile();
      const pidAlive = pid !== undefined && (await this.processAlive(pid));
      // A new pid whose process already ended: that boot failed; its reason is in the log.
      if (pid !== undefined && pid !== pidBefore && !pidAlive) {
        throw await this.failure(
          "Looker failed to start",
          startResult,
          `its process ${pid} ended during boot`,
        );
      }
      if (await probeAlive(this.config.alive, 3000)) {
        if (pid === undefined) why = `/alive answers but ${PID_FILE} holds no pid`;
        else if (!pidAlive) why = `/alive answers but process ${pid} from ${PID_FILE} is not running`;
        else {
          const served = await this.servedBy(pid);
          if (served === "yes") return;
          why =
            served === "elsewhere"
              ? `/alive answers but process ${pid} from ${PID_FILE} does not run in ${this.config.lookerDir}`
              : `/alive answers but process ${pid} from ${PID_FILE} does not listen on port ${this.config.alive.port}`;
        }
      }
      if (Date.now() >= deadline) {
        throw await this.failure("Looker failed to start", startResult, `${why} in time (${where})`);
      }
      await sleep(PROOF_INTERVAL_MS);
    }
  }

  /**
   * `systemctl stop <unit>` (ExecStop, then SIGTERM to what is left), after checking that this Looker is the unit's:
   * one started by hand with ./looker start runs outside it, and stopping the inactive unit would leave it running.
   */
  private async systemctlStop(unit: string, timeoutMs: number): Promise<CommandResult> {
    const active = await unitActive(this.config.host, unit);
    if (typeof active !== "boolean") {
      throw await this.failure(`could not ask systemd whether ${unit} is active`, active);
    }
    if (!active) {
      throw new LookerError(
        `Looker on ${this.name} answers but its unit ${unit} is not active: it was started outside systemd`,
        {
          hint: `stop it with ./looker stop and start it with systemctl start ${unit}, or set looker-control to script`,
          logTail: await this.logTail().catch(() => ""),
        },
      );
    }
    const result = await systemctlAsRoot(this.config.host, "stop", unit, timeoutMs);
    if (result.code !== 0) throw await this.failure(`systemctl stop ${unit} failed`, result);
    return result;
  }

  /**
   * After a start under systemd that serves: the unit must be active too. Under Type=simple, a Looker that daemonizes
   * (no --no-daemonize in LOOKERARGS) leaves the unit once ExecStart returns, and systemd then ends what is left of it.
   */
  private async expectUnitActive(unit: string, startResult: CommandResult): Promise<void> {
    const active = await unitActive(this.config.host, unit);
    if (active === true) return;
    throw await this.failure(
      "Looker failed to start",
      active === false ? startResult : active,
      `${unit} is not active although /alive answers`,
    );
  }

  /** The pid Looker keeps in ~/looker/.tmp/looker.pid, or undefined when there is none. */
  private async pidFromFile(): Promise<number | undefined> {
    const result = await this.config.host.run(["cat", posix.join(this.config.lookerDir, PID_FILE)]);
    if (result.code !== 0) return undefined;
    const pid = Number.parseInt(result.stdout.trim(), 10);
    return Number.isInteger(pid) && pid > 1 && String(pid) === result.stdout.trim() ? pid : undefined;
  }

  /** `kill -0` as the looker user, on the host Looker runs on. */
  private async processAlive(pid: number): Promise<boolean> {
    const result = await this.config.host.run([
      "/bin/sh",
      "-c",
      'kill -0 "$1" 2>/dev/null',
      "sh",
      String(pid),
    ]);
    return result.code === 0;
  }

  /**
   * Whether `pid` is this node's Looker serving the web port: its working directory (/proc/<pid>/cwd) is this node's
   * Looker directory or below it, and it holds the listening socket of the port (/proc/<pid>/net/tcp{,6}, in its own
   * network namespace, matched to its fds). Otherwise another process answering /alive on the port would pass for
   * it while our Looker is still booting or about to fail. Read through the Host, as the looker user, so over SSH too.
   */
  private async servedBy(pid: number): Promise<"yes" | "elsewhere" | "not-listening"> {
    const script = [
      'pid="$1"; dir="$2"; port="$3"',
      'cwd=$(readlink -f "/proc/$pid/cwd") || exit 3',
      'dir=$(readlink -f "$dir") || exit 3',
      'case "$cwd/" in "$dir"/*) ;; *) exit 4 ;; esac',
      'hex=$(printf "%04X" "$port")',
      // Column 2 is local address:port in hex, column 4 the state (0A = LISTEN), column 10 the socket inode.
      `inodes=$(awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { print $10 }' "/proc/$pid/net/tcp" "/proc/$pid/net/tcp6" 2>/dev/null)`,
      "for inode in $inodes; do",
      '  for fd in /proc/"$pid"/fd/*; do [ "$(readlink "$fd")" = "socket:[$inode]" ] && exit 0; done',
      "done",
      "exit 5",
    ].join("\n");
    const result = await this.config.host.run([
      "/bin/sh",
      "-c",
      script,
      "sh",
      String(pid),
      this.config.lookerDir,
      String(this.config.alive.port),
    ]);
    if (result.code === 0) return "yes";
    return result.code === 5 ? "not-listening" : "elsewhere";
  }

  /** "<what> on <node>[: <detail>] (exit N): <last lines of output>", with Looker's log tail. */
  private async failure(what: string, result: CommandResult, detail?: string): Promise<LookerError> {
    const output = `${result.stderr}${result.stdout}`.trim().split("\n").slice(-5).join("\n");
    const logTail = await this.logTail().catch(() => "");
    const why = detail ? `: ${detail}` : "";
    const unit = this.unit;
    return new LookerError(
      `${what} on ${this.name}${why} (exit ${result.code})${output ? `: ${output}` : ""}`,
      {
        hint: unit
          ? `see the log excerpt in the report and systemctl status ${unit}; under systemd the CMK comes from the unit's environment, LOOKERARGS needs --no-daemonize, and over SSH the node's user needs a sudoers rule for systemctl start/stop ${unit}`
          : "see the log excerpt in the report; check the CMK, disk space and the looker user's permissions",
        logTail,
      },
    );
  }
}
