/**
 * A Looker node reached over SSH (ssh2, pure JS): strict host key checking against known_hosts text, key-only
 * auth, bounded waits everywhere (connect, per command, keepalives), and secrets sent over the channel's stdin
 * so they never appear in a command line on either machine.
 */

import { randomBytes } from "node:crypto";
import { constants as osConstants } from "node:os";
import { posix } from "node:path";
import type { Readable } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import type { Client, ClientChannel, ConnectConfig } from "ssh2";
import { DEFAULT_SSH_PORT } from "../defaults.js";
import { InputError, LookerBackupError } from "../errors.js";
import {
  assertEnvName,
  type CommandResult,
  type Host,
  type RunOptions,
  secretEnvPrelude,
  shellCommand,
  shellQuote,
} from "./host.js";
import { type HostKeyPolicy, hostKeyAlgorithms, hostKeyVerifier } from "./host-key-policy.js";
import { parseKnownHosts } from "./known-hosts.js";

export type { HostKeyPolicy } from "./host-key-policy.js";

export interface SshConnectOptions {
  readonly host: string;
  readonly port?: number;
  readonly username: string;
  /** The OpenSSH (or PEM) private key text, unencrypted: it comes from a secret. */
  readonly privateKey: string | Buffer;
  /** OpenSSH known_hosts text (e.g. `ssh-keyscan` output, verified out of band). */
  readonly knownHosts: string;
  /** `strict` (default) refuses unknown hosts; `accept-new` trusts an unknown host once. Changed keys: always refused. */
  readonly hostKeyPolicy?: HostKeyPolicy;
  /** TCP connect + handshake + authentication must finish within this (default 20 s). */
  readonly connectTimeoutMs?: number;
  /** Keepalive probe interval (default 15 s); three unanswered probes end the connection. */
  readonly keepaliveIntervalMs?: number;
  /** With `accept-new`: receives the known_hosts line of a newly trusted host, to be saved by the caller. */
  readonly onNewHostKey?: (line: string) => void;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 20_000;
const DEFAULT_KEEPALIVE_INTERVAL_MS = 15_000;
const KEEPALIVE_COUNT_MAX = 3;
/** After a timed-out command is sent SIGKILL, how long to wait for its exit report before giving up on it. */
const KILL_GRACE_MS = 3_000;
/** How long close() waits for a clean SSH disconnect before dropping the socket. */
const CLOSE_GRACE_MS = 5_000;
/** Extra time on top of the ssh2 ready timeout before our own guard gives up on connect. */
const CONNECT_GUARD_SLACK_MS = 5_000;
/** The exit code `timeout(1)` uses; reported when a timed-out command's own status never arrived. */
const TIMED_OUT_CODE = 124;

interface RawResult {
  code: number;
  stdout: Buffer;
  stderr: Buffer;
  timedOut: boolean;
}

interface ExecOptions {
  /** Sent on the channel's stdin, which is then closed (EOF): for commands that read all of stdin. */
  readonly input?: Buffer | string;
  /**
   * Sent on the channel's stdin, which then stays open: the command itself reads /dev/null (see
   * buildRemoteCommand), and ssh2 sends a signal request (the timeout's kill) only before our EOF.
   */
  readonly secretLines?: string;
  /** Piped to the channel's stdin and then EOF (e.g. a tar stream); the command reads it (see runWithInput). */
  readonly stream?: Readable;
  readonly timeoutMs?: number;
  /** Kills the command on abort, as the timeout does (RunOptions.signal). */
  readonly signal?: AbortSignal;
  readonly onLine?: RunOptions["onLine"];
  /** For error messages: what was being run. */
  readonly label: string;
}

export class SshHost implements Host {
  readonly name: string;
  /** Set once the connection is gone (closed by us, by the server, or by a keepalive/socket failure). */
  private lost: Error | undefined;
  /** close() was called: later commands fail with that, not with "lost". */
  private closing = false;
  /** Whether the login user is root (uid 0, whatever its name), asked once on the first asRoot command. */
  private loginIsRoot: Promise<boolean> | undefined;

  private constructor(
    private readonly client: Client,
    name: string,
  ) {
    this.name = name;
    client.on("error", (error: Error) => {
      this.lost ??= error;
    });
    client.on("close", () => {
      this.lost ??= new Error("connection closed");
    });
  }

  static async connect(options: SshConnectOptions): Promise<SshHost> {
    const ssh2 = await loadSsh2();
    const settings = validateConnectOptions(ssh2, options);
    const known = parseKnownHosts(options.knownHosts);
    const client = new ssh2.Client();
    const verifier = hostKeyVerifier(settings, known, options.onNewHostKey);
    const config: ConnectConfig = {
      host: settings.host,
      port: settings.port,
      username: settings.username,
      privateKey: settings.privateKey,
      hostVerifier: verifier.verify,
      readyTimeout: settings.connectTimeoutMs,
      keepaliveInterval: options.keepaliveIntervalMs ?? DEFAULT_KEEPALIVE_INTERVAL_MS,
      keepaliveCountMax: KEEPALIVE_COUNT_MAX,
      authHandler: ["publickey"],
      algorithms: hostKeyAlgorithms(known, settings.host, settings.port),
    };
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (error?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(guard);
        client.removeListener("ready", onReady);
        client.removeListener("error", onError);
        client.removeListener("close", onClose);
        if (error === undefined) return resolve();
        // The socket may still report errors (EPIPE on a write racing the teardown); nobody waits for them.
        client.on("error", () => {});
        client.destroy();
        reject(error);
      };
      const onReady = () => settle();
      const onError = (error: Error) => settle(verifier.refusal() ?? connectError(settings, error));
      const onClose = () =>
        settle(verifier.refusal() ?? connectError(settings, new Error("connection closed during setup")));
      // ssh2's readyTimeout covers connect, handshake and auth; this guard only backs it up.
      const guard = setTimeout(
        () => onError(Object.assign(new Error("setup timed out"), { level: "client-timeout" })),
        settings.connectTimeoutMs + CONNECT_GUARD_SLACK_MS,
      );
      client.on("ready", onReady).on("error", onError).on("close", onClose);
      try {
        client.connect(config);
      } catch (error) {
        settle(connectError(settings, error as Error));
      }
    });
    return new SshHost(client, settings.name);
  }

  async run(argv: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
    // The node's user is usually the looker user: what needs root goes through `sudo -n`, which needs a sudoers
    // rule for exactly that command (README, systemd-managed Looker) and fails at once without one.
    const words = options.asRoot && !(await this.isRoot()) ? ["sudo", "-n", ...argv] : argv;
    const secrets = Object.entries(options.secretEnv ?? {});
    for (const [name, value] of secrets) assertSendableSecret(name, value, this.name);
    const command = buildRemoteCommand(words, {
      cwd: options.cwd,
      env: options.env,
      secretEnvNames: secrets.map(([name]) => name),
    });
    const result = await this.exec(command, {
      secretLines: secrets.map(([, value]) => `${value}\n`).join(""),
      timeoutMs: options.timeoutMs,
      signal: options.signal,
      onLine: options.onLine,
      label: argv[0] ?? "",
    });
    const stderr = result.stderr.toString("utf8");
    return {
      code: result.code,
      stdout: result.stdout.toString(options.stdoutEncoding ?? "utf8"),
      stderr: result.timedOut ? `${stderr}\n(timed out after ${options.timeoutMs} ms)` : stderr,
    };
  }

  runShell(script: string, options: RunOptions = {}): Promise<CommandResult> {
    return this.run(["/bin/sh", "-c", script], options);
  }

  private isRoot(): Promise<boolean> {
    this.loginIsRoot ??= this.exec("id -u", { label: "id" }).then(
      (result) => result.code === 0 && result.stdout.toString("utf8").trim() === "0",
    );
    return this.loginIsRoot;
  }

  /**
   * Runs argv with `input` streamed to its stdin (the drill's `tar -x` of a staged home): bounded memory whatever
   * the size. No secrets here (stdin is the data). Rejects if `input` fails, after the command has seen EOF.
   */
  async runWithInput(
    argv: readonly string[],
    input: Readable,
    options: Pick<RunOptions, "cwd" | "env" | "timeoutMs" | "signal"> = {},
  ): Promise<CommandResult> {
    let inputError: Error | undefined;
    input.once("error", (error: Error) => {
      inputError = error;
    });
    const command = buildRemoteCommand(argv, { cwd: options.cwd, env: options.env, stdinFromChannel: true });
    const result = await this.exec(command, {
      stream: input,
      timeoutMs: options.timeoutMs,
      signal: options.signal,
      label: argv[0] ?? "",
    });
    if (inputError !== undefined) throw inputError;
    const stderr = result.stderr.toString("utf8");
    return {
      code: result.code,
      stdout: result.stdout.toString("utf8"),
      stderr: result.timedOut ? `${stderr}\n(timed out after ${options.timeoutMs} ms)` : stderr,
    };
  }

  async writeFile(path: string, content: Buffer | string, mode: number): Promise<void> {
    assertMode(mode);
    const temporary = posix.join(
      posix.dirname(path),
      `.${posix.basename(path)}.${randomBytes(6).toString("hex")}.tmp`,
    );
    const tmp = shellQuote(temporary);
    // umask 077: the content lands in a file only its owner can read; the final mode is set before the rename
    // makes it visible under its real name. Content travels over stdin, never argv.
    const script =
      `umask 077 && cat > ${tmp} && chmod ${mode.toString(8)} ${tmp} && mv -f ${tmp} ${shellQuote(path)}` +
      ` || { status=$?; rm -f ${tmp}; exit $status; }`;
    const result = await this.exec(script, { input: content, label: "write" });
    if (result.code !== 0) throw this.fileError("write", path, result);
  }

  async readFile(path: string): Promise<Buffer> {
    const result = await this.exec(`cat -- ${shellQuote(path)}`, { label: "cat" });
    if (result.code !== 0) throw this.fileError("read", path, result);
    return result.stdout;
  }

  async remove(path: string): Promise<void> {
    if (path === "" || posix.normalize(path) === "/") {
      throw new LookerBackupError(`refusing to remove '${path}' on ${this.name}`);
    }
    const result = await this.exec(`rm -rf -- ${shellQuote(path)}`, { label: "rm" });
    if (result.code !== 0) throw this.fileError("remove", path, result);
  }

  async makeTempDir(prefix: string): Promise<string> {
    if (prefix.includes("/")) throw new LookerBackupError(`temp dir prefix '${prefix}' must not contain '/'`);
    // mktemp -d creates the directory 0700 under $TMPDIR or /tmp.
    const result = await this.exec(`mktemp -d -t ${shellQuote(`${prefix}XXXXXX`)}`, { label: "mktemp" });
    const dir = result.stdout.toString("utf8").trim();
    if (result.code !== 0 || !dir.startsWith("/")) throw this.fileError("create a temp dir", prefix, result);
    return dir;
  }

  async close(): Promise<void> {
    if (this.closing || this.lost !== undefined) {
      this.closing = true;
      return;
    }
    this.closing = true;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.client.destroy();
        resolve();
      }, CLOSE_GRACE_MS);
      this.client.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
      this.client.end();
    });
  }

  /** Runs a shell command line on the host; resolves with its exit status, rejects if the connection fails. */
  private exec(command: string, options: ExecOptions): Promise<RawResult> {
    return new Promise((resolve, reject) => {
      if (this.closing || this.lost !== undefined) return reject(this.lostError(options.label));
      this.client.exec(command, (error, channel) => {
        if (error) {
          reject(this.lost ? this.lostError(options.label) : this.channelError(options.label, error));
          return;
        }
        collectChannel(channel, options, {
          resolve,
          reject: () => reject(this.lostError(options.label)),
        });
      });
    });
  }

  private lostError(label: string): LookerBackupError {
    if (this.closing) {
      return new LookerBackupError(`ssh connection to ${this.name} is closed; cannot complete '${label}'`);
    }
    const reason = this.lost?.message ?? "the channel closed without an exit status";
    return new LookerBackupError(
      `ssh connection to ${this.name} was lost while running '${label}': ${reason}`,
      {
        hint: "the host may have rebooted or the network dropped; check the host and run again",
        cause: this.lost,
      },
    );
  }

  private channelError(label: string, error: Error): LookerBackupError {
    return new LookerBackupError(`could not start '${label}' on ${this.name}: ${error.message}`, {
      hint: "sshd may limit sessions per connection (MaxSessions); check the host's sshd log",
      cause: error,
    });
  }

  private fileError(action: string, path: string, result: RawResult): LookerBackupError {
    const detail = result.stderr.toString("utf8").trim() || `exit code ${result.code}`;
    const error = new LookerBackupError(`could not ${action} ${path} on ${this.name}: ${detail}`);
    // Callers that tolerate a missing file check the errno code, as with LocalHost's fs errors.
    if (/no such file or directory/i.test(detail)) Object.assign(error, { code: "ENOENT" });
    return error;
  }
}

/**
 * The command line sent to sshd (run by the user's login shell): cd, plain env, then the prelude that reads the
 * secrets from stdin, then exec of the quoted argv with stdin from /dev/null (as LocalHost's commands get), so
 * the channel's stdin can stay open for signals. Secret values never appear in it.
 */
export function buildRemoteCommand(
  argv: readonly string[],
  options: {
    cwd?: string | undefined;
    env?: Readonly<Record<string, string>> | undefined;
    secretEnvNames?: readonly string[] | undefined;
    /** Leave stdin connected to the channel (runWithInput) instead of /dev/null. */
    stdinFromChannel?: boolean | undefined;
  } = {},
): string {
  if (argv.length === 0) throw new LookerBackupError("cannot run an empty command");
  const parts: string[] = [];
  if (options.cwd !== undefined) parts.push(`cd ${shellQuote(options.cwd)} &&`);
  for (const [name, value] of Object.entries(options.env ?? {})) {
    assertEnvName(name);
    parts.push(`export ${name}=${shellQuote(value)} &&`);
  }
  const secretNames = options.secretEnvNames ?? [];
  if (secretNames.length > 0) parts.push(secretEnvPrelude(secretNames));
  parts.push(`exec ${shellCommand(argv)}${options.stdinFromChannel ? "" : " </dev/null"}`);
  return parts.join(" ");
}

// ---------------------------------------------------------------------------------------------------
// one command on one channel

interface Settlers {
  resolve: (result: RawResult) => void;
  /** The channel closed without an exit status: the connection (or the session) is gone. */
  reject: () => void;
}

function collectChannel(channel: ClientChannel, options: ExecOptions, settlers: Settlers): void {
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  const lines = {
    stdout: lineSplitter("stdout", options.onLine),
    stderr: lineSplitter("stderr", options.onLine),
  };
  let timedOut = false;
  let cancelled = false;
  let settled = false;
  let killTimer: NodeJS.Timeout | undefined;

  const finish = (code: number | undefined) => {
    if (settled) return;
    settled = true;
    clearTimeout(deadline);
    clearTimeout(killTimer);
    options.signal?.removeEventListener("abort", cancel);
    lines.stdout.flush();
    lines.stderr.flush();
    if (code === undefined && !timedOut && !cancelled) return settlers.reject();
    settlers.resolve({
      code:
        (timedOut || cancelled) && (code === undefined || code === 0)
          ? TIMED_OUT_CODE
          : (code ?? TIMED_OUT_CODE),
      stdout: Buffer.concat(stdout),
      stderr: Buffer.concat(stderr),
      timedOut,
    });
  };

  channel.on("data", (chunk: Buffer) => {
    stdout.push(chunk);
    lines.stdout.push(chunk);
  });
  channel.stderr.on("data", (chunk: Buffer) => {
    stderr.push(chunk);
    lines.stderr.push(chunk);
  });
  channel.on("close", (code: number | null | undefined, signal?: string) => finish(exitCodeOf(code, signal)));
  // A channel error ends in 'close' without an exit status, which rejects; the listener keeps it from
  // becoming an uncaught exception.
  channel.on("error", () => {});

  // sshd (OpenSSH >= 7.9) delivers the signal to the session's process group, so the command's children die too;
  // closing the channel afterwards ends the wait even when the server ignores the request or the connection stalled.
  const kill = () => {
    if (killTimer !== undefined) return;
    channel.signal("KILL");
    killTimer = setTimeout(() => {
      channel.close();
      finish(undefined);
    }, KILL_GRACE_MS);
  };
  const deadline = options.timeoutMs
    ? setTimeout(() => {
        timedOut = true;
        kill();
      }, options.timeoutMs)
    : undefined;
  const cancel = () => {
    cancelled = true;
    kill();
  };
  if (options.signal?.aborted) cancel();
  else options.signal?.addEventListener("abort", cancel, { once: true });

  if (options.stream !== undefined) {
    // A failed producer must still end the command: EOF makes e.g. `tar -x` stop (and report a short archive).
    options.stream.once("error", () => channel.end());
    options.stream.pipe(channel);
  } else if (options.secretLines !== undefined) {
    if (options.secretLines.length > 0) channel.write(options.secretLines);
  } else {
    channel.end(options.input ?? "");
  }
}

function exitCodeOf(code: number | null | undefined, signal: string | undefined): number | undefined {
  if (typeof code === "number") return code;
  if (code === null && signal !== undefined) {
    const name = (signal.startsWith("SIG") ? signal : `SIG${signal}`) as keyof typeof osConstants.signals;
    return 128 + (osConstants.signals[name] ?? 0);
  }
  return undefined;
}

function lineSplitter(stream: "stdout" | "stderr", onLine: RunOptions["onLine"]) {
  const decoder = new StringDecoder("utf8");
  let pending = "";
  return {
    push(chunk: Buffer) {
      if (!onLine) return;
      const parts = (pending + decoder.write(chunk)).split("\n");
      pending = parts.pop() ?? "";
      for (const line of parts) onLine(line, stream);
    },
    flush() {
      if (!onLine) return;
      const rest = pending + decoder.end();
      pending = "";
      if (rest !== "") onLine(rest, stream);
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// connecting

interface ConnectSettings {
  host: string;
  port: number;
  username: string;
  privateKey: string | Buffer;
  connectTimeoutMs: number;
  policy: HostKeyPolicy;
  /** "looker@node-2:22" */
  name: string;
}

/**
 * ssh2 is loaded on first use: only the drill and cluster runs connect anywhere, and evaluating it (with the node
 * modules it pulls in) cost every command ~25 ms of start-up, a few per cent of a small backup or restore.
 */
async function loadSsh2(): Promise<Ssh2> {
  return (await import("ssh2")).default;
}

type Ssh2 = typeof import("ssh2");

function validateConnectOptions(ssh2: Ssh2, options: SshConnectOptions): ConnectSettings {
  const port = options.port ?? DEFAULT_SSH_PORT;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InputError(`invalid ssh port ${port}`, "give a port between 1 and 65535");
  }
  if (options.host.trim() === "") throw new InputError("ssh host is empty", "give the host name or address");
  if (options.username.trim() === "") throw new InputError("ssh user name is empty", "give the remote user");
  const name = `${options.username}@${options.host}:${port}`;
  const policy = options.hostKeyPolicy ?? "strict";
  if (policy !== "strict" && policy !== "accept-new") {
    throw new InputError(`invalid host key policy '${policy as string}'`, "use 'strict' or 'accept-new'");
  }
  assertUsablePrivateKey(ssh2, options.privateKey, name);
  return {
    host: options.host,
    port,
    username: options.username,
    privateKey: options.privateKey,
    connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    policy,
    name,
  };
}

/** Parses the key up front so a bad secret gets a clear message (never one that quotes the key). */
function assertUsablePrivateKey(ssh2: Ssh2, privateKey: string | Buffer, name: string): void {
  const parsed = ssh2.utils.parseKey(privateKey);
  const hint =
    "give the full text of an unencrypted OpenSSH private key (from -----BEGIN to -----END), " +
    "whose public key is in the user's authorized_keys";
  if (parsed instanceof Error) {
    throw new InputError(`the ssh private key for ${name} is not usable: ${parsed.message}`, hint);
  }
  if (!parsed.isPrivateKey()) {
    throw new InputError(`the ssh private key for ${name} is a public key, not a private key`, hint);
  }
}

function connectError(settings: ConnectSettings, error: Error): LookerBackupError {
  const level = (error as { level?: string }).level;
  const code = (error as { code?: string }).code;
  if (level === "client-authentication") {
    return new InputError(
      `ssh key authentication failed for ${settings.name}`,
      `check that the key's public half is in ~${settings.username}/.ssh/authorized_keys on the host and that the user name is right`,
      error,
    );
  }
  if (level === "client-timeout") {
    return new LookerBackupError(
      `could not connect to ${settings.name}: no ssh handshake within ${settings.connectTimeoutMs} ms`,
      { hint: "check the address, the port and any firewall between here and the host", cause: error },
    );
  }
  if (code === "ECONNREFUSED") {
    return new LookerBackupError(`could not connect to ${settings.name}: connection refused`, {
      hint: `check that sshd is running on the host and listening on port ${settings.port}`,
      cause: error,
    });
  }
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") {
    return new InputError(
      `could not resolve ssh host ${settings.host}`,
      "check the host name (or give an IP address)",
      error,
    );
  }
  return new LookerBackupError(`ssh connection to ${settings.name} failed: ${error.message}`, {
    cause: error,
  });
}

function assertSendableSecret(name: string, value: string, hostName: string): void {
  assertEnvName(name);
  // The prelude reads one line per secret; a line break would shift every later value into the wrong name.
  if (/[\n\r\0]/.test(value)) {
    throw new InputError(
      `secret ${name} contains a line break or NUL byte and cannot be sent to ${hostName}`,
      "secrets passed to remote commands must be single-line values",
    );
  }
}

function assertMode(mode: number): void {
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
    throw new LookerBackupError(`invalid file mode ${mode}`);
  }
}
