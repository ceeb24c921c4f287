/** The stock OpenSSH verifier, as an operator runs it on a backup: `ssh-keygen -Y verify ... < archive`. */
import { spawnSync } from "node:child_process";
import { readFile } from "node:fs/promises";

/** Runs `ssh-keygen -Y verify -f allowed -I identity -n namespace -s <file>.sig < file`; returns what it said. */
export async function sshKeygenVerify(
  file: string,
  allowedSigners: string,
  options: { identity?: string; namespace?: string; signature?: string } = {},
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const run = spawnSync(
    "ssh-keygen",
    [
      "-Y",
      "verify",
      "-f",
      allowedSigners,
      "-I",
      options.identity ?? "looker-backup",
      "-n",
      options.namespace ?? "looker-backup",
      "-s",
      options.signature ?? `${file}.sig`,
    ],
    { input: await readFile(file), encoding: "utf8" },
  );
  if (run.error) throw run.error;
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}
