/**
 * The command line SshHost sends to sshd, run here by a real /bin/sh (what the remote login shell does with it):
 * cwd, env and secrets arrive, quoting survives hostile values, and secret values never enter the command text.
 */
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LookerBackupError } from "../../src/errors.js";
import { buildRemoteCommand } from "../../src/remote/ssh-host.js";

let dir: string;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "ssh-command-test-"));
});

afterAll(async () => {
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

function sh(command: string, stdin: string): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("/bin/sh", ["-c", command], { stdio: ["pipe", "pipe", "inherit"], env: {} });
    let stdout = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.once("error", reject);
    child.once("close", (code) => resolve({ code: code ?? 1, stdout }));
    // The shell may exit before taking all of stdin (that is what one test checks): EPIPE is expected then.
    child.stdin.on("error", () => {});
    child.stdin.end(stdin);
  });
}

describe("buildRemoteCommand", () => {
  it("runs argv in cwd with env and secrets read from stdin, never putting secret values in the text", async () => {
    const secret = "s3cr3t 'value' with $(touch pwned) and spaces";
    const command = buildRemoteCommand(
      ["/bin/sh", "-c", 'printf "%s|%s|%s|%s" "$(pwd)" "$PLAIN" "$SECRET_A" "$SECRET_B"'],
      { cwd: dir, env: { PLAIN: "it's plain; rm -rf /" }, secretEnvNames: ["SECRET_A", "SECRET_B"] },
    );
    expect(command).not.toContain("s3cr3t");
    const result = await sh(command, `${secret}\nsecond\n`);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`${dir}|it's plain; rm -rf /|${secret}|second`);
    await expect(fs.access(path.join(dir, "pwned"))).rejects.toThrow();
  });

  it("keeps each argv element one word and passes the exit code through", async () => {
    const command = buildRemoteCommand(["/bin/sh", "-c", 'echo "$#:$1"; exit 7', "arg0", "a b;c"]);
    const result = await sh(command, "");
    expect(result).toEqual({ code: 7, stdout: "1:a b;c\n" });
  });

  it("gives the command /dev/null as stdin, after the secrets are read", async () => {
    const command = buildRemoteCommand(["/bin/sh", "-c", 'printf "%s/" "$KEY"; cat; echo end'], {
      secretEnvNames: ["KEY"],
    });
    const result = await sh(command, "k1\nmore input that is not for the command\n");
    expect(result).toEqual({ code: 0, stdout: "k1/end\n" });
  });

  it("does not run the command when the secrets are missing from stdin", async () => {
    const marker = path.join(dir, "ran");
    const command = buildRemoteCommand(["touch", marker], { secretEnvNames: ["NEEDED"] });
    const result = await sh(command, "");
    expect(result.code).not.toBe(0);
    await expect(fs.access(marker)).rejects.toThrow();
  });

  it("rejects an empty argv and unsafe variable names", () => {
    expect(() => buildRemoteCommand([])).toThrow(LookerBackupError);
    expect(() => buildRemoteCommand(["true"], { env: { "A;B": "x" } })).toThrow(
      /invalid environment variable/,
    );
    expect(() => buildRemoteCommand(["true"], { secretEnvNames: ["X=$(id)"] })).toThrow(
      /invalid environment variable/,
    );
  });
});
