/**
 * The staged home travels to the target as one GNU tar stream: one SSH channel, bounded memory, and tar keeps
 * modes, times, symlinks, hard links and empty directories exactly as staged.
 */
import { spawn } from "node:child_process";
import { PassThrough, type Readable } from "node:stream";
import { LookerBackupError } from "../errors.js";
import { childEnvironment } from "../runtime/child-env.js";

export interface TarProducer {
  readonly stream: Readable;
  /** Resolves when tar exited 0; rejects otherwise (a short stream must never count as a restore). */
  readonly done: Promise<void>;
  /** Ends tar when the receiving side gave up (it would otherwise block on a full pipe). */
  stop(): void;
}

/** `tar -C dir -cf - <members>` with numeric owners; `members` default `.`, or a NUL-separated list file. */
export function createTarStream(dir: string, options: { listFile?: string } = {}): TarProducer {
  const members = options.listFile ? ["--no-recursion", "--null", "-T", options.listFile] : ["."];
  // --sparse: a sparse file restored sparse in staging travels as its data, not as gigabytes of zeros (GNU tar and
  // bsdtar on the target read GNU sparse members).
  const child = spawn("tar", ["-C", dir, "--numeric-owner", "--sparse", "-cf", "-", ...members], {
    stdio: ["ignore", "pipe", "pipe"],
    env: childEnvironment(),
  });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString("utf8")).slice(-4096);
  });
  const done = new Promise<void>((resolve, reject) => {
    child.once("error", (error) =>
      reject(
        new LookerBackupError(`could not run tar to send ${dir}: ${error.message}`, {
          hint: "install GNU tar",
          cause: error,
        }),
      ),
    );
    child.once("close", (code) => {
      if (code === 0) resolve();
      else reject(new LookerBackupError(`tar of ${dir} failed (exit ${code}): ${stderr.trim()}`));
    });
  });
  done.catch(() => undefined); // awaited by the caller; never an unhandled rejection meanwhile
  // Attach a reader at once: when tar exits, Node resumes (drains) any stdio stream nobody reads yet, which would
  // drop a small archive before the SSH channel is open to take it.
  const stream = new PassThrough({ highWaterMark: 1 << 20 });
  child.stdout.pipe(stream);
  return { stream, done, stop: () => child.kill("SIGKILL") };
}
