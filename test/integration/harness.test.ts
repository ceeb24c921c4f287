/**
 * The test harness itself: VMs (netns + private mounts + real sshd) and the private MariaDB must isolate
 * and authenticate the way the other integration tests rely on.
 */
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MariaDb, startMariaDb } from "../helpers/mariadb.js";
import { requireCommands } from "../helpers/prerequisites.js";
import { createVm, sweepStaleVms, VM_OWNERS_DIR, type Vm } from "../helpers/vm.js";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function runCli(command: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...env },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.once("error", reject);
    child.once("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

function ssh(vm: Vm, user: string, command: string, knownHostsPath = vm.knownHostsPath): Promise<Run> {
  return runCli("ssh", [
    "-F",
    "/dev/null",
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    `UserKnownHostsFile=${knownHostsPath}`,
    "-o",
    "GlobalKnownHostsFile=/dev/null",
    "-o",
    "BatchMode=yes",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "ConnectTimeout=5",
    "-i",
    vm.clientKeyPath,
    "-p",
    String(vm.port),
    `${user}@${vm.address}`,
    command,
  ]);
}

/**
 * The first line a server sends, or undefined when none comes. A plain TCP connect proves nothing here:
 * sandbox networks may accept connections to any address themselves.
 */
function greeting(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let received = "";
    const finish = (line: string | undefined) => {
      socket.destroy();
      resolve(line);
    };
    socket.setTimeout(3000, () => finish(undefined));
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("latin1");
      if (received.includes("\n")) finish(received.split("\n")[0]);
    });
    socket.once("error", () => finish(undefined));
    socket.once("close", () => finish(undefined));
  });
}

/** For loopback only, where no sandbox proxy answers in place of a stopped server. */
function acceptsLoopbackTcp(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(3000, () => finish(false));
    socket.once("connect", () => finish(true));
    socket.once("error", () => finish(false));
  });
}

/** The network device the host would use to reach `address`. */
function routeDevice(address: string): string | undefined {
  const route = execFileSync("ip", ["route", "get", address], { encoding: "utf8" });
  return /\bdev (\S+)/.exec(route)?.[1];
}

function namespaces(): string[] {
  return execFileSync("ip", ["netns", "list"], { encoding: "utf8" })
    .split("\n")
    .map((line) => line.split(" ")[0] ?? "")
    .filter(Boolean);
}

/** Running, as opposed to gone or a zombie waiting for its (re)parent to reap it. */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

const tempDirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "lb-harness-"));
  tempDirs.push(dir);
  return dir;
}

afterAll(async () => {
  await Promise.all(tempDirs.map((dir) => fs.rm(dir, { recursive: true, force: true })));
});

describe("vm", () => {
  let vmA: Vm | undefined;
  let vmB: Vm | undefined;

  beforeAll(async () => {
    requireCommands(["ssh", "ssh-keygen", "ip", "mysql"]);
    const [a, b] = await Promise.allSettled([createVm({ name: "a" }), createVm({ name: "b" })]);
    if (a.status === "fulfilled") vmA = a.value;
    if (b.status === "fulfilled") vmB = b.value;
    if (a.status === "rejected") throw a.reason;
    if (b.status === "rejected") throw b.reason;
  });

  afterAll(async () => {
    await vmA?.destroy();
    await vmB?.destroy();
  });

  it("two vms run at once with different addresses and separate homes", () => {
    expect(vmA!.address).not.toBe(vmB!.address);
    expect(vmA!.netns).not.toBe(vmB!.netns);
    expect(vmA!.homeOnHost).not.toBe(vmB!.homeOnHost);
    expect(vmA!.name).toBe("a");
    expect(vmA!.knownHostsLine).toBe(`${vmA!.address} ${vmA!.hostPublicKey}`);
    expect(vmA!.clientPrivateKey).toContain("BEGIN OPENSSH PRIVATE KEY");
  });

  it("ssh with strict host key checking logs in as looker with the vm's home and address", async () => {
    for (const vm of [vmA!, vmB!]) {
      const result = await ssh(vm, "looker", "id -un; echo $HOME; hostname -I");
      expect(result.stderr).not.toMatch(/warning/i);
      expect(result.code).toBe(0);
      const [user, home, addresses] = result.stdout.split("\n");
      expect(user).toBe("looker");
      expect(home).toBe("/home/looker");
      expect(addresses?.trim().split(/\s+/)).toEqual([vm.address]);
    }
  });

  it("a file written in the vm's /home/looker lands in homeOnHost, not in the host's /home", async () => {
    const marker = `marker-${randomBytes(6).toString("hex")}.txt`;
    const result = await ssh(vmA!, "looker", `echo from-a > ~/${marker}; stat -c %U ~/${marker}`);
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toBe("looker");
    expect(await fs.readFile(path.join(vmA!.homeOnHost, marker), "utf8")).toBe("from-a\n");
    expect(existsSync(path.join("/home/looker", marker))).toBe(false);
    expect(existsSync(path.join(vmB!.homeOnHost, marker))).toBe(false);
    const fromB = await ssh(vmB!, "looker", `test -e ~/${marker} && echo present || echo absent`);
    expect(fromB.stdout.trim()).toBe("absent");
  });

  it("root may log in with the key; /etc/init.d and /tmp are the vm's own", async () => {
    const tag = randomBytes(6).toString("hex");
    const result = await ssh(
      vmA!,
      "root",
      `id -un; echo ${tag} > /etc/init.d/looker; echo ${tag} > /tmp/probe-${tag}; ls /etc/init.d`,
    );
    expect(result.code).toBe(0);
    expect(result.stdout.split("\n")).toEqual(["root", "looker", ""]);
    expect(await fs.readFile(path.join(vmA!.rootOnHost, "init.d", "looker"), "utf8")).toBe(`${tag}\n`);
    expect(await fs.readFile(path.join(vmA!.rootOnHost, "tmp", `probe-${tag}`), "utf8")).toBe(`${tag}\n`);
    expect(existsSync(`/tmp/probe-${tag}`)).toBe(false);
    const hostInitScript = await fs.readFile("/etc/init.d/looker", "utf8").catch(() => "");
    expect(hostInitScript).not.toContain(tag);
  });

  it("exec runs as looker or root inside the vm with env, stdin and the home as cwd", async () => {
    const asLooker = await vmA!.exec('id -un; pwd; echo "$GREETING"; cat', {
      env: { GREETING: "hello" },
      input: "from stdin",
    });
    expect(asLooker).toEqual({ code: 0, stdout: "looker\n/home/looker\nhello\nfrom stdin", stderr: "" });
    const asRoot = await vmA!.exec("id -un; hostname -I", { user: "root" });
    expect(asRoot.stdout.split("\n")[0]).toBe("root");
    expect(asRoot.stdout).toContain(vmA!.address);
    const failing = await vmA!.exec("echo oops >&2; exit 7");
    expect(failing).toEqual({ code: 7, stdout: "", stderr: "oops\n" });
  });

  it("ssh refuses a vm whose host key differs from known_hosts", async () => {
    const dir = await tempDir();
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path.join(dir, "other")]);
    const otherKey = (await fs.readFile(path.join(dir, "other.pub"), "utf8"))
      .split(" ")
      .slice(0, 2)
      .join(" ");
    const wrongKnownHosts = path.join(dir, "known_hosts");
    await fs.writeFile(wrongKnownHosts, `${vmA!.address} ${otherKey}\n`);
    const result = await ssh(vmA!, "looker", "echo should-not-run", wrongKnownHosts);
    expect(result.code).not.toBe(0);
    expect(result.stdout).not.toContain("should-not-run");
    expect(result.stderr).toMatch(/host key verification failed/i);
  });

  it("ssh refuses a key that is not authorized", async () => {
    const dir = await tempDir();
    const stranger = path.join(dir, "stranger");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", stranger]);
    const result = await ssh({ ...vmA!, clientKeyPath: stranger }, "looker", "echo should-not-run");
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/permission denied/i);
  });

  it("a vm reaches a MariaDB bound to its host address", async () => {
    let db: MariaDb | undefined;
    try {
      db = await startMariaDb({ bindAddress: vmA!.hostAddress });
      await db.createDatabase("fromvm", "vmuser", "vm-secret");
      const result = await vmA!.exec(
        `mysql -h ${db.host} -P ${db.port} -u vmuser --protocol=TCP --batch --skip-column-names -e "SELECT CURRENT_USER(), DATABASE()" fromvm`,
        { env: { MYSQL_PWD: "vm-secret" } },
      );
      expect(result.stderr).toBe("");
      expect(result.stdout).toBe("vmuser@%\tfromvm\n");
    } finally {
      await db?.stop();
    }
  });
});

describe("vm teardown", () => {
  it("destroy kills everything in the vm, removes the namespace and root dir, and is idempotent", async () => {
    const vm = await createVm();
    let destroyed = false;
    try {
      const started = await vm.exec("nohup sleep 600 >/dev/null 2>&1 & echo $!");
      const sleeper = Number(started.stdout.trim());
      expect(sleeper).toBeGreaterThan(1);
      expect(isAlive(sleeper)).toBe(true);
      expect(await greeting(vm.address, 22)).toMatch(/^SSH-2\.0-/);
      const vmLink = routeDevice(vm.address);
      expect(vmLink).toMatch(/^lbvm\d+h$/);
      expect(namespaces()).toContain(vm.netns);

      await vm.destroy();
      destroyed = true;

      expect(namespaces()).not.toContain(vm.netns);
      expect(existsSync(vm.rootOnHost)).toBe(false);
      expect(isAlive(sleeper)).toBe(false);
      expect(routeDevice(vm.address)).not.toBe(vmLink);
      expect(await greeting(vm.address, 22)).toBeUndefined();
      await expect(vm.destroy()).resolves.toBeUndefined();
    } finally {
      if (!destroyed) await vm.destroy();
    }
  });

  it("sweepStaleVms removes a namespace whose owner process is dead", async () => {
    // A process that has exited: its pid is the owner of a namespace nobody tore down.
    const dead = spawn("true");
    const deadPid = dead.pid!;
    await new Promise((resolve) => dead.once("close", resolve));
    const rootDir = await tempDir();
    await fs.mkdir(VM_OWNERS_DIR, { recursive: true });
    let netns: string | undefined;
    for (let slot = 255; slot >= 0 && netns === undefined; slot--) {
      const candidate = `lbvm-${slot}`;
      const owner = { pid: deadPid, startTime: "", netns: candidate, hostVeth: `lbvm${slot}h`, rootDir };
      try {
        await fs.writeFile(path.join(VM_OWNERS_DIR, `${candidate}.json`), JSON.stringify(owner), {
          flag: "wx",
        });
      } catch {
        continue;
      }
      execFileSync("ip", ["netns", "add", candidate]);
      netns = candidate;
    }
    expect(netns).toBeDefined();
    expect(namespaces()).toContain(netns);

    const removed = sweepStaleVms();

    expect(removed).toContain(netns);
    expect(namespaces()).not.toContain(netns);
    expect(existsSync(rootDir)).toBe(false);
    expect(existsSync(path.join(VM_OWNERS_DIR, `${netns}.json`))).toBe(false);
  });
});

describe("prerequisites", () => {
  it("requireCommands fails naming each missing command and the apt-get line that installs it", () => {
    expect(() => requireCommands(["sshd", "age"])).not.toThrow();
    expect(() => requireCommands(["sshd", "lb-no-such-command", "mariadbd"])).toThrow(
      /lb-no-such-command[\s\S]*apt-get install -y lb-no-such-command/,
    );
  });
});

describe("mariadb", () => {
  it("creates a database and user reachable over TCP with the user's password; stop removes it", async () => {
    requireCommands(["mysql"]);
    const db = await startMariaDb();
    let stopped = false;
    try {
      expect(db.rootPassword.length).toBeGreaterThanOrEqual(16);
      expect((await fs.stat(db.defaultsFile)).mode & 0o777).toBe(0o600);
      expect(await db.exec("SELECT 1 + 1")).toBe("2\n");

      const password = "pa'ss word";
      expect(await acceptsLoopbackTcp(db.host, db.port)).toBe(true);
      await db.createDatabase("appdb", "appuser", password);
      const dir = await tempDir();
      const userCnf = path.join(dir, "user.cnf");
      await fs.writeFile(
        userCnf,
        `[client]\nuser=appuser\npassword="${password}"\nhost=${db.host}\nport=${db.port}\nprotocol=TCP\n`,
        { mode: 0o600 },
      );
      const sql =
        "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20)); INSERT INTO t VALUES (1, 'one'), (2, 'two'); " +
        "SELECT name FROM t ORDER BY id; SELECT CURRENT_USER();";
      const asUser = await runCli("mysql", [
        `--defaults-file=${userCnf}`,
        "--batch",
        "--skip-column-names",
        "-e",
        sql,
        "appdb",
      ]);
      expect(asUser.stderr).toBe("");
      expect(asUser.stdout).toBe("one\ntwo\nappuser@%\n");

      const noPassword = await runCli("mysql", [
        "--no-defaults",
        "-h",
        db.host,
        "-P",
        String(db.port),
        "--protocol=TCP",
        "-u",
        "root",
        "-e",
        "SELECT 1",
      ]);
      expect(noPassword.code).not.toBe(0);
      expect(noPassword.stderr).toMatch(/access denied/i);

      await db.stop();
      stopped = true;
      expect(existsSync(db.datadir)).toBe(false);
      expect(db.host).toBe("127.0.0.1");
      expect(await acceptsLoopbackTcp(db.host, db.port)).toBe(false);
      await expect(db.stop()).resolves.toBeUndefined();
    } finally {
      if (!stopped) await db.stop();
    }
  });
});
