/**
 * Looker's commands must run as the looker user, but the drill reaches its target as root (it creates that user).
 * This wraps a root Host so commands run through `runuser -u <user> --` (which keeps the environment, so the CMK
 * passed as a secret variable still reaches Looker) and files it writes end up owned by that user.
 */
import { LookerBackupError } from "../errors.js";
import type { CommandResult, Host, RunOptions } from "../remote/host.js";

export class RunAsHost implements Host {
  readonly name: string;

  constructor(
    private readonly root: Host,
    private readonly user: string,
  ) {
    this.name = `${root.name} (as ${user})`;
  }

  run(argv: readonly string[], options?: RunOptions): Promise<CommandResult> {
    // What must run as root (RunOptions.asRoot) skips the switch to the user.
    if (options?.asRoot) return this.root.run(argv, options);
    return this.root.run(["runuser", "-u", this.user, "--", ...argv], options);
  }

  runShell(script: string, options?: RunOptions): Promise<CommandResult> {
    return this.run(["/bin/sh", "-c", script], options);
  }

  /** Written by root (atomically, with the mode), then handed to the user. */
  async writeFile(path: string, content: Buffer | string, mode: number): Promise<void> {
    await this.root.writeFile(path, content, mode);
    const result = await this.root.run(["chown", `${this.user}:`, path]);
    if (result.code !== 0) {
      await this.root.remove(path).catch(() => undefined);
      throw new LookerBackupError(
        `could not give ${path} on ${this.root.name} to ${this.user}: ${result.stderr.trim()}`,
      );
    }
  }

  readFile(path: string): Promise<Buffer> {
    return this.root.readFile(path);
  }

  remove(path: string): Promise<void> {
    return this.root.remove(path);
  }

  /** A 0700 directory owned by the user, so only the user (and root) can read what is put there. */
  async makeTempDir(prefix: string): Promise<string> {
    const result = await this.run(["mktemp", "-d", "-t", `${prefix}XXXXXX`]);
    const dir = result.stdout.trim();
    if (result.code !== 0 || !dir.startsWith("/")) {
      throw new LookerBackupError(
        `could not create a temp dir for ${this.user} on ${this.root.name}: ${result.stderr.trim()}`,
      );
    }
    return dir;
  }

  close(): Promise<void> {
    return this.root.close();
  }
}
