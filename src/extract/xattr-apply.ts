/**
 * Gives the staged files the extended attributes their members carry (pax SCHILY.xattr.*), with one
 * `setfattr --restore` over a dump of them all once every file is written (Node has no setxattr; see attr-dump.ts).
 * Root may set every namespace. Anyone else only what the kernel lets a file's owner set (user.* and the ACLs in
 * system.*); the rest is named in a warning rather than failing a restore the user can still use.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InputError, LookerBackupError } from "../errors.js";
import { formatAttrDump, type Xattr } from "../runtime/attr-dump.js";
import { printableName } from "../runtime/byte-names.js";
import { childEnvironment } from "../runtime/child-env.js";

/** What a file's owner may set without privileges (xattr(7)). */
const UNPRIVILEGED = /^(user\.|system\.posix_acl_(access|default)$)/;

export class XattrWriter {
  private readonly pending: [path: string, attrs: readonly Xattr[]][] = [];
  private readonly needRoot = new Set<string>();

  constructor(private readonly isRoot = process.getuid?.() === 0) {}

  /** Queues the attributes of the file staged at `path`. */
  add(path: string, attrs: readonly Xattr[]): void {
    const allowed = this.isRoot ? attrs : attrs.filter(([name]) => UNPRIVILEGED.test(name));
    if (allowed.length < attrs.length) {
      for (const [name] of attrs) if (!UNPRIVILEGED.test(name)) this.needRoot.add(name);
    }
    if (allowed.length > 0) this.pending.push([path, allowed]);
  }

  /** Sets everything queued; returns warnings for what could not be set without root. */
  async apply(): Promise<string[]> {
    const warnings: string[] = [];
    if (this.needRoot.size > 0) {
      const names = [...this.needRoot].slice(0, 5).map(printableName).join(", ");
      warnings.push(
        `extended attributes not restored (only root may set them): ${names}; restore as root to keep them`,
      );
    }
    if (this.pending.length === 0) return warnings;
    const dir = await mkdtemp(join(tmpdir(), "looker-backup-xattrs-"));
    try {
      const dump = join(dir, "dump");
      await writeFile(dump, Buffer.concat(this.pending.map(([path, attrs]) => formatAttrDump(path, attrs))), {
        mode: 0o600,
      });
      await runSetfattr(dump);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    return warnings;
  }
}

function runSetfattr(dump: string): Promise<void> {
  return new Promise((resolve, reject) => {
    // -h: a symlink's own attributes, never its target's.
    const child = spawn("setfattr", ["--no-dereference", `--restore=${dump}`], {
      stdio: ["ignore", "ignore", "pipe"],
      env: childEnvironment(),
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString("utf8")).slice(-4096);
    });
    child.once("error", (error: NodeJS.ErrnoException) => {
      reject(
        error.code === "ENOENT"
          ? new InputError(
              "the archive holds extended attributes, and setfattr is not installed to restore them",
              "install the attr package (Debian/Ubuntu: apt-get install attr), or restore with --xattrs false to leave them out",
            )
          : error,
      );
    });
    child.once("close", (code) => {
      if (code === 0) resolve();
      else
        reject(
          new LookerBackupError(`setting the restored files' extended attributes failed: ${stderr.trim()}`, {
            hint: "check that the target's filesystem supports extended attributes, or restore with --xattrs false",
          }),
        );
    });
  });
}
