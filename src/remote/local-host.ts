import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { StringDecoder } from "node:string_decoder";
import { LookerBackupError } from "../errors.js";
import { childEnvironment, jobEnvironment } from "../runtime/child-env.js";
import type { CommandResult, Host, RunOptions } from "./host.js";

/**
 * This machine. With `user` set and running as root, commands run as that user through runuser, as Looker's own
 * commands must run as the looker user.
 */
export class LocalHost implements Host {
  readonly name: string;

  constructor(private readonly user?: string) {
    this.name = user ? `local (${user})` : "local";
  }

  run(argv: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
    const [command, ...args] = options.asRoot ? asRootLocally(argv) : this.asUser(argv);
    return runProcess(command!, args, options);
  }

  runShell(script: string, options: RunOptions = {}): Promise<CommandResult> {
    return this.run(["/bin/sh", "-c", script], options);
  }

  async writeFile(path: string, content: Buffer | string, mode: number): Promise<void> {
    const temporary = join(dirname(path), `.${randomBytes(6).toString("hex")}.tmp`);
    await writeFile(temporary, content, { mode, flag: "wx" });
    await rename(temporary, path);
  }

  readFile(path: string): Promise<Buffer> {
    return readFile(path);
  }

  async remove(path: string): Promise<void> {
    await rm(path, { recursive: true, force: true });
  }

  /**
   * A private (0700) directory owned by the user commands run as: Looker's `generate_keyfile_for_backup`, run as
   * the looker user, must be able to write its key file there, and nobody else may read it.
   */
  async makeTempDir(prefix: string): Promise<string> {
    if (!this.switchesUser) return mkdtemp(join(tmpdir(), prefix));
    const result = await this.run(["mktemp", "-d", "-t", `${prefix}XXXXXX`]);
    const dir = result.stdout.trim();
    if (result.code !== 0 || !dir.startsWith("/")) {
      throw new LookerBackupError(`could not create a temp dir as ${this.user}: ${result.stderr.trim()}`, {
        hint: "check that the looker user can write to its TMPDIR (or /tmp)",
      });
    }
    return dir;
  }

  async close(): Promise<void> {}

  private get switchesUser(): boolean {
    return this.user !== undefined && process.getuid?.() === 0 && this.user !== "root";
  }

  private asUser(argv: readonly string[]): string[] {
    return this.switchesUser ? ["runuser", "-u", this.user!, "--", ...argv] : [...argv];
  }
}

/** Root runs the command itself; anyone else asks sudo, without a prompt (see RunOptions.asRoot). */
function asRootLocally(argv: readonly string[]): string[] {
  return process.getuid?.() === 0 ? [...argv] : ["sudo", "-n", ...argv];
}

export function runProcess(
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      // Never our whole environment: it carries the job's secrets and RUNNER_TRACKING_ID (runtime/child-env.ts).
      env: (options.jobEnvironment ? jobEnvironment : childEnvironment)({
        ...options.env,
        ...options.secretEnv,
      }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    // Kept as bytes and decoded once at the end: a character split between two chunks stays whole.
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    const lines = { stdout: "", stderr: "" };
    const decoders = { stdout: new StringDecoder("utf8"), stderr: new StringDecoder("utf8") };
    const collect = (stream: "stdout" | "stderr") => (chunk: Buffer) => {
      (stream === "stdout" ? stdout : stderr).push(chunk);
      if (!options.onLine) return;
      const text = decoders[stream].write(chunk);
      const parts = (lines[stream] + text).split("\n");
      lines[stream] = parts.pop() ?? "";
      for (const line of parts) options.onLine(line, stream);
    };
    child.stdout.on("data", collect("stdout"));
    child.stderr.on("data", collect("stderr"));
    const timer = options.timeoutMs
      ? setTimeout(() => {
          child.kill("SIGKILL");
        }, options.timeoutMs)
      : undefined;
    const cancel = () => {
      child.kill("SIGKILL");
      // A shell's pipeline (`find | xargs sha256sum`) outlives the shell and holds its output open, which would keep
      // 'close' waiting for all of it: let go of the output, and what is left dies of SIGPIPE at its next write.
      child.stdout.destroy();
      child.stderr.destroy();
    };
    if (options.signal?.aborted) cancel();
    else options.signal?.addEventListener("abort", cancel, { once: true });
    const settle = () => {
      if (timer) clearTimeout(timer);
      options.signal?.removeEventListener("abort", cancel);
    };
    child.on("error", (error) => {
      settle();
      reject(error);
    });
    child.on("close", (code, signal) => {
      settle();
      if (options.onLine)
        for (const s of ["stdout", "stderr"] as const) if (lines[s]) options.onLine(lines[s], s);
      const timedOut = signal === "SIGKILL" && options.timeoutMs !== undefined;
      const errors = Buffer.concat(stderr).toString("utf8");
      resolve({
        code: code ?? 128,
        stdout: Buffer.concat(stdout).toString(options.stdoutEncoding ?? "utf8"),
        stderr: timedOut ? `${errors}\n(timed out after ${options.timeoutMs} ms)` : errors,
      });
    });
  });
}
