/**
 * SshHost against a real OpenSSH sshd in a namespace VM: commands as the looker user, secrets over stdin (and
 * never in `ps`), atomic writes with modes, strict host key checking (unknown, changed, hashed, accept-new), key
 * auth failures, and every wait bounded: command timeouts, refused connections and connections that drop.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InputError, LookerBackupError } from "../../src/errors.js";
import { fingerprintSha256 } from "../../src/remote/known-hosts.js";
import { type SshConnectOptions, SshHost } from "../../src/remote/ssh-host.js";
import { requireCommands } from "../helpers/prerequisites.js";
import { createVm, type Vm } from "../helpers/vm.js";

let vm: Vm;
let host: SshHost;
let scratch: string;
const opened: SshHost[] = [];

function options(overrides: Partial<SshConnectOptions> = {}): SshConnectOptions {
  return {
    host: vm.address,
    username: "looker",
    privateKey: vm.clientPrivateKey,
    knownHosts: `${vm.knownHostsLine}\n`,
    connectTimeoutMs: 10_000,
    ...overrides,
  };
}

async function connect(overrides: Partial<SshConnectOptions> = {}): Promise<SshHost> {
  const connected = await SshHost.connect(options(overrides));
  opened.push(connected);
  return connected;
}

/** The error a promise rejects with (fails the test if it resolves). */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected a rejection, but the promise resolved");
}

async function newKeyPair(name: string): Promise<string> {
  const keyPath = path.join(scratch, name);
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", keyPath]);
  return keyPath;
}

/** The sshd processes serving the connection that runs the process matching `pattern`: session and monitor. */
async function sessionProcessesOf(pattern: RegExp): Promise<number[]> {
  const command = await waitFor("the long command to start", async () => vmProcesses(pattern)[0]);
  const session = parentOf(command);
  const monitor = parentOf(session);
  expect(commandLineOf(session)).toMatch(/^sshd: looker/);
  expect(commandLineOf(monitor)).toMatch(/^sshd: looker/);
  return [session, monitor];
}

/** The session's other process may already have exited because of the first kill. */
function killIfAlive(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
  }
}

function commandLineOf(pid: number): string {
  return readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").trim();
}

function parentOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
}

/** Processes of this VM only (its network namespace), whose command line matches. */
function vmProcesses(pattern: RegExp): number[] {
  const pids = execFileSync("ip", ["netns", "pids", vm.netns], { encoding: "utf8" })
    .split(/\s+/)
    .filter(Boolean)
    .map(Number);
  return pids.filter((pid) => {
    try {
      return pattern.test(commandLineOf(pid));
    } catch {
      return false;
    }
  });
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, limitMs = 10_000): Promise<T> {
  const deadline = Date.now() + limitMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`gave up waiting for ${what} after ${limitMs} ms`);
}

beforeAll(async () => {
  requireCommands(["ssh-keygen", "ip"]);
  scratch = await fs.mkdtemp(path.join(os.tmpdir(), "ssh-host-test-"));
  vm = await createVm({ name: "ssh-host" });
  host = await connect();
});

afterAll(async () => {
  for (const connection of opened) await connection.close().catch(() => {});
  await vm?.destroy();
  if (scratch) await fs.rm(scratch, { recursive: true, force: true });
});

describe("SshHost commands", () => {
  it("names itself user@host:port", () => {
    expect(host.name).toBe(`looker@${vm.address}:22`);
  });

  it("runs argv as looker in the given cwd with the given env", async () => {
    await vm.exec("mkdir -p 'work dir'");
    const result = await host.run(["sh", "-c", 'echo "$(id -un) $(pwd) $GREETING"'], {
      cwd: "/home/looker/work dir",
      env: { GREETING: "hello 'quoted' $HOME world" },
    });
    expect(result).toEqual({
      code: 0,
      stdout: "looker /home/looker/work dir hello 'quoted' $HOME world\n",
      stderr: "",
    });
  });

  it("reports exit codes (and stderr) without rejecting", async () => {
    expect((await host.run(["sh", "-c", "echo oops >&2; exit 3"])).code).toBe(3);
    expect((await host.run(["false"])).code).toBe(1);
    const missing = await host.run(["no-such-command-xyz"]);
    expect(missing.code).toBe(127);
    expect(missing.stderr).toContain("no-such-command-xyz");
    expect((await host.runShell("exit 5")).code).toBe(5);
    expect((await host.run(["sh", "-c", "echo oops >&2; exit 3"])).stderr).toBe("oops\n");
  });

  it("runs commands concurrently over one connection", async () => {
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => host.run(["sh", "-c", `sleep 0.2; echo ${i}`])),
    );
    expect(results.map((r) => r.stdout)).toEqual(Array.from({ length: 8 }, (_, i) => `${i}\n`));
  });

  it("streams output lines through onLine", async () => {
    const lines: string[] = [];
    const result = await host.runShell("echo one; echo two >&2; printf three", {
      onLine: (line, stream) => lines.push(`${stream}:${line}`),
    });
    expect(result.code).toBe(0);
    expect(lines.sort()).toEqual(["stderr:two", "stdout:one", "stdout:three"]);
  });

  it("gives secretEnv to the command without it ever appearing in ps", async () => {
    const secret = `lkr-${randomBytes(24).toString("hex")}`;
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion (string length), not a template
    const measured = await host.run(["sh", "-c", 'echo "${#LKR_MASTER_KEY_ENV}:${#OTHER}"'], {
      secretEnv: { LKR_MASTER_KEY_ENV: secret, OTHER: "xy" },
    });
    expect(measured).toEqual({ code: 0, stdout: `${secret.length}:2\n`, stderr: "" });

    // A unique duration marks our process in the process list while it runs with the secret.
    const marker = `sleep 2.${randomBytes(3).readUIntBE(0, 3)}`;
    const running = host.run(marker.split(" "), { secretEnv: { LKR_MASTER_KEY_ENV: secret } });
    let snapshots = 0;
    await waitFor("the secret-bearing command in ps", async () => {
      const ps = await vm.exec("ps -eo args", { user: "root" });
      expect(ps.code).toBe(0);
      snapshots++;
      expect(ps.stdout).not.toContain(secret);
      return ps.stdout.includes(marker) ? true : undefined;
    });
    expect(snapshots).toBeGreaterThan(0);
    expect((await running).code).toBe(0);
  });

  it("refuses a multi-line secret rather than shifting values between names", async () => {
    const error = await rejection(host.run(["true"], { secretEnv: { A: "line1\nline2" } }));
    expect(error).toBeInstanceOf(InputError);
    expect(error.message).not.toContain("line1");
  });
});

describe("SshHost files", () => {
  it("writes files atomically with their mode, as looker, and reads them back", async () => {
    const target = "/home/looker/deploy_key";
    await host.writeFile(target, "first\n", 0o600);
    await host.writeFile(target, "second\n", 0o600);
    const onHost = path.join(vm.homeOnHost, "deploy_key");
    const stat = await fs.stat(onHost);
    expect(stat.mode & 0o7777).toBe(0o600);
    const lookerUid = Number(execFileSync("id", ["-u", "looker"], { encoding: "utf8" }).trim());
    expect(stat.uid).toBe(lookerUid);
    expect(await fs.readFile(onHost, "utf8")).toBe("second\n");
    // No temp file is left next to it.
    expect((await fs.readdir(vm.homeOnHost)).filter((name) => name.endsWith(".tmp"))).toEqual([]);

    await host.writeFile("/home/looker/script.sh", "#!/bin/sh\necho ran\n", 0o755);
    expect((await fs.stat(path.join(vm.homeOnHost, "script.sh"))).mode & 0o7777).toBe(0o755);
    expect((await host.run(["/home/looker/script.sh"])).stdout).toBe("ran\n");
  });

  it("round-trips binary content of every byte value", async () => {
    const content = Buffer.concat([
      Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
      randomBytes(300_000),
    ]);
    await host.writeFile("/home/looker/blob.bin", content, 0o640);
    expect((await host.readFile("/home/looker/blob.bin")).equals(content)).toBe(true);
    expect((await fs.readFile(path.join(vm.homeOnHost, "blob.bin"))).equals(content)).toBe(true);
  });

  it("fails a write into a missing directory without leaving anything behind", async () => {
    const error = await rejection(host.writeFile("/home/looker/no-such-dir/file", "x", 0o600));
    expect(error).toBeInstanceOf(LookerBackupError);
    expect(error.message).toContain("/home/looker/no-such-dir/file");
  });

  it("reports a missing file with ENOENT", async () => {
    const error = await rejection(host.readFile("/home/looker/does-not-exist"));
    expect(error.message).toContain("/home/looker/does-not-exist");
    expect((error as NodeJS.ErrnoException).code).toBe("ENOENT");
  });

  it("makes private temp dirs and removes trees (missing is fine)", async () => {
    const dir = await host.makeTempDir("lb-test-");
    expect(dir).toMatch(/^\/tmp\/lb-test-.{6}$/);
    const stat = await vm.exec(`stat -c '%a %U' ${dir}`);
    expect(stat.stdout.trim()).toBe("700 looker");
    await host.writeFile(`${dir}/inner`, "x", 0o600);
    await host.remove(dir);
    expect((await vm.exec(`test -e ${dir}`)).code).toBe(1);
    await host.remove(dir);
  });
});

describe("SshHost host key checking", () => {
  it("refuses a host that is not in known_hosts, naming ssh-keyscan", async () => {
    const error = await rejection(connect({ knownHosts: "" }));
    expect(error).toBeInstanceOf(InputError);
    expect(error.message).toBe(
      `host key for ${vm.address} is not in known_hosts (the server offered ssh-ed25519 key ${hostFingerprint()})`,
    );
    expect((error as InputError).hint).toContain(`ssh-keyscan -p 22 ${vm.address}`);
    expect((error as InputError).hint).toContain("out of band");
  });

  it("refuses a changed host key, also under accept-new, showing the offered fingerprint", async () => {
    const otherKey = (await fs.readFile(`${await newKeyPair("impostor")}.pub`, "utf8")).trim();
    const knownHosts = `${vm.address} ${otherKey}\n`;
    let reported = false;
    for (const hostKeyPolicy of ["strict", "accept-new"] as const) {
      const error = await rejection(
        connect({ knownHosts, hostKeyPolicy, onNewHostKey: () => (reported = true) }),
      );
      expect(error).toBeInstanceOf(LookerBackupError);
      expect(error.message).toContain(`HOST KEY MISMATCH for ${vm.address}`);
      expect(error.message).toContain(hostFingerprint());
      expect(error.message).toContain("man-in-the-middle");
    }
    expect(reported).toBe(false);
  });

  it("accepts an unknown host under accept-new and reports the line to save", async () => {
    const lines: string[] = [];
    const accepted = await connect({
      knownHosts: "",
      hostKeyPolicy: "accept-new",
      onNewHostKey: (l) => lines.push(l),
    });
    expect(lines).toEqual([vm.knownHostsLine]);
    expect((await accepted.run(["id", "-un"])).stdout).toBe("looker\n");
  });

  it("accepts a hashed known_hosts entry written by ssh-keygen -H", async () => {
    const file = path.join(scratch, "hashed_known_hosts");
    await fs.writeFile(file, `${vm.knownHostsLine}\n`);
    execFileSync("ssh-keygen", ["-q", "-H", "-f", file], { stdio: "ignore" });
    const hashed = await fs.readFile(file, "utf8");
    expect(hashed).not.toContain(vm.address);
    const connected = await connect({ knownHosts: hashed });
    expect((await connected.run(["true"])).code).toBe(0);
  });
});

describe("SshHost authentication", () => {
  it("refuses a key that is not authorized, naming user@host", async () => {
    const wrongKey = await fs.readFile(await newKeyPair("unauthorized"), "utf8");
    const error = await rejection(connect({ privateKey: wrongKey }));
    expect(error).toBeInstanceOf(InputError);
    expect(error.message).toBe(`ssh key authentication failed for looker@${vm.address}:22`);
  });

  it("refuses an unparseable private key without quoting it", async () => {
    const garbage = "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n-----END OPENSSH PRIVATE KEY-----\n";
    const error = await rejection(connect({ privateKey: garbage }));
    expect(error).toBeInstanceOf(InputError);
    expect(error.message).toContain(`looker@${vm.address}:22`);
    expect(error.message).not.toContain("bm90IGEga2V5");
  });
});

describe("SshHost bounded waits", () => {
  it("kills a command that exceeds its timeout and returns a non-zero code with a note", async () => {
    const marker = `sleep 30.${randomBytes(3).readUIntBE(0, 3)}`;
    const started = Date.now();
    const result = await host.run(marker.split(" "), { timeoutMs: 1000 });
    const elapsed = Date.now() - started;
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("timed out after 1000 ms");
    expect(elapsed).toBeLessThan(10_000);
    // The remote process is gone too, not merely abandoned.
    await waitFor("the timed-out command to end on the host", async () =>
      vmProcesses(new RegExp(marker.replace(".", "\\."))).length === 0 ? true : undefined,
    );
  });

  it("fails fast on a port where nothing listens", async () => {
    const started = Date.now();
    const error = await rejection(connect({ port: 2, connectTimeoutMs: 5000 }));
    expect(Date.now() - started).toBeLessThan(5000 + 5000);
    expect(error).toBeInstanceOf(LookerBackupError);
    expect(error.message).toContain(`looker@${vm.address}:2`);
  });

  it("rejects a running command when the connection drops instead of hanging, and later calls too", async () => {
    const dropped = await connect({ keepaliveIntervalMs: 1000 });
    const marker = `sleep 60.${randomBytes(3).readUIntBE(0, 3)}`;
    const running = rejection(dropped.run(marker.split(" ")));
    // Kill exactly this connection's sshd processes (other connections to the VM keep theirs).
    for (const pid of await sessionProcessesOf(new RegExp(marker.replace(".", "\\.")))) {
      killIfAlive(pid, "SIGKILL");
    }

    const started = Date.now();
    const error = await running;
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(error).toBeInstanceOf(LookerBackupError);
    expect(error.message).toContain(`ssh connection to looker@${vm.address}:22 was lost`);
    const later = await rejection(dropped.run(["true"]));
    expect(later.message).toContain("was lost");
    // Other connections to the same VM live on.
    expect((await host.run(["true"])).code).toBe(0);
  });
});

describe("SshHost keepalives and close", () => {
  it("errors when the server stops answering (no FIN, no RST) instead of hanging", async () => {
    const frozen = await connect({ keepaliveIntervalMs: 500 });
    const marker = `sleep 60.${randomBytes(3).readUIntBE(0, 3)}`;
    const running = rejection(frozen.run(marker.split(" ")));
    const sshd = await sessionProcessesOf(new RegExp(marker.replace(".", "\\.")));
    // SIGSTOP keeps the TCP connection open (the kernel still ACKs) while sshd answers nothing.
    for (const pid of sshd) process.kill(pid, "SIGSTOP");
    try {
      const error = await running;
      expect(error).toBeInstanceOf(LookerBackupError);
      expect(error.message).toContain("was lost");
      expect(error.message).toMatch(/keepalive/i);
    } finally {
      for (const pid of sshd) killIfAlive(pid, "SIGKILL");
    }
  });

  it("refuses commands after close()", async () => {
    const closing = await connect();
    expect((await closing.run(["true"])).code).toBe(0);
    await closing.close();
    const error = await rejection(closing.run(["true"]));
    expect(error.message).toBe(`ssh connection to looker@${vm.address}:22 is closed; cannot complete 'true'`);
    await closing.close();
  });
});

function hostFingerprint(): string {
  const blob = Buffer.from(vm.hostPublicKey.split(" ")[1]!, "base64");
  return fingerprintSha256(blob);
}
