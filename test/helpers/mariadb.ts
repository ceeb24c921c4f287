/**
 * A private MariaDB server per test: its own datadir, socket and TCP port, no system config, small
 * buffers, a random root password. Driven with the real `mysql` / `mysqladmin` clients; credentials go
 * through a 0600 defaults file, never argv.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { freePort } from "./free-port.js";
import { onProcessExit } from "./on-exit.js";
import { requireCommands } from "./prerequisites.js";

export interface MariaDb {
  /** The address the server listens on (the bindAddress given, default 127.0.0.1). */
  host: string;
  port: number;
  socket: string;
  rootUser: "root";
  rootPassword: string;
  datadir: string;
  /** A 0600 option file ([client] root user, password and socket) for mysql/mysqldump `--defaults-file`. */
  defaultsFile: string;
  /** Runs SQL as root over the socket; returns `mysql --batch --skip-column-names` output (tab-separated). */
  exec(sql: string): Promise<string>;
  /** Creates a database and a user that may do anything in it, connecting from any host. */
  createDatabase(name: string, user: string, password: string): Promise<void>;
  /** Shuts the server down (mysqladmin, then SIGKILL if it lingers) and removes its files. Idempotent. */
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 30_000;
const SHUTDOWN_TIMEOUT_MS = 30_000;
const START_ATTEMPTS = 5;
const IDENTIFIER = /^[A-Za-z0-9_]{1,64}$/;

const DIR_PREFIX = "lbmdb-";
/** `{pid, startTime}` of the test process that made the dir; lets a later run sweep what a crash left. */
const OWNER_FILE = "owner.json";

const liveServers = new Map<ChildProcess, string>();
let exitHookInstalled = false;
let sweptThisProcess = false;

export async function startMariaDb(opts: { bindAddress?: string } = {}): Promise<MariaDb> {
  requireCommands(["mariadbd", "mariadb-install-db", "mysql", "mysqladmin", "setpriv"]);
  if (!sweptThisProcess) {
    sweptThisProcess = true;
    await sweepStaleMariaDbs();
  }
  installExitHook();
  const host = opts.bindAddress ?? "127.0.0.1";
  const baseDir = await fs.mkdtemp(path.join(os.tmpdir(), DIR_PREFIX));
  await fs.writeFile(path.join(baseDir, OWNER_FILE), JSON.stringify(ownerOf(process.pid)));
  const datadir = path.join(baseDir, "data");
  const socket = path.join(baseDir, "mysqld.sock");
  const defaultsFile = path.join(baseDir, "root.cnf");
  let server: { child: ChildProcess; port: number } | undefined;
  try {
    await fs.mkdir(tmpdirOf(baseDir));
    await installDatadir(datadir, baseDir);
    server = await startServer({ baseDir, datadir, socket, host });
    const rootPassword = randomBytes(18).toString("hex");
    await writeDefaults(defaultsFile, socket, undefined);
    await secureRoot(defaultsFile, rootPassword);
    await writeDefaults(defaultsFile, socket, rootPassword);
    return makeHandle(
      { host, port: server.port, socket, rootPassword, datadir, defaultsFile },
      server.child,
      baseDir,
    );
  } catch (error) {
    if (server !== undefined) await killServer(server.child);
    await fs.rm(baseDir, { recursive: true, force: true });
    throw error;
  }
}

function makeHandle(
  fields: Omit<MariaDb, "rootUser" | "exec" | "createDatabase" | "stop">,
  child: ChildProcess,
  baseDir: string,
): MariaDb {
  let stopped: Promise<void> | undefined;
  const exec = (sql: string) => runSql(fields.defaultsFile, sql);
  return {
    ...fields,
    rootUser: "root",
    exec,
    createDatabase: async (name, user, password) => {
      for (const [what, value] of [
        ["database", name],
        ["user", user],
      ] as const) {
        if (!IDENTIFIER.test(value)) throw new Error(`invalid ${what} name for the test server: ${value}`);
      }
      await exec(
        `CREATE DATABASE \`${name}\`;\n` +
          `CREATE USER '${user}'@'%' IDENTIFIED BY ${sqlString(password)};\n` +
          `GRANT ALL PRIVILEGES ON \`${name}\`.* TO '${user}'@'%';\n`,
      );
    },
    stop: () => {
      stopped ??= (async () => {
        const shutdown = await run("mysqladmin", [`--defaults-file=${fields.defaultsFile}`, "shutdown"]);
        if (shutdown.code !== 0 || !(await exited(child, SHUTDOWN_TIMEOUT_MS))) await killServer(child);
        liveServers.delete(child);
        await fs.rm(baseDir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}

/** Initializes the system tables; older/newer packages lack some options, so fall back to the core ones. */
async function installDatadir(datadir: string, baseDir: string): Promise<void> {
  // A private tmpdir: temporary tables of parallel servers must never meet in the shared /tmp.
  const core = ["--no-defaults", `--datadir=${datadir}`, "--user=root", `--tmpdir=${tmpdirOf(baseDir)}`];
  const preferred = [
    ...core,
    "--auth-root-authentication-method=normal",
    "--skip-test-db",
    "--skip-name-resolve",
  ];
  let result = await run("mariadb-install-db", preferred, { cwd: baseDir });
  if (result.code !== 0 && /unknown (variable|option)/i.test(result.stdout + result.stderr)) {
    await fs.rm(datadir, { recursive: true, force: true });
    result = await run("mariadb-install-db", core, { cwd: baseDir });
  }
  if (result.code !== 0) {
    throw new Error(`mariadb-install-db failed (exit ${result.code}):\n${result.stdout}\n${result.stderr}`);
  }
}

async function startServer(where: {
  baseDir: string;
  datadir: string;
  socket: string;
  host: string;
}): Promise<{ child: ChildProcess; port: number }> {
  const errorLog = path.join(where.baseDir, "error.log");
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    const port = await freePort(where.host);
    // pdeathsig: the server dies with the test worker even when that is SIGKILLed.
    const child = spawn(
      "setpriv",
      [
        "--pdeathsig",
        "KILL",
        "mariadbd",
        "--no-defaults",
        "--user=root",
        `--datadir=${where.datadir}`,
        `--socket=${where.socket}`,
        `--port=${port}`,
        `--bind-address=${where.host}`,
        `--pid-file=${path.join(where.baseDir, "mariadbd.pid")}`,
        `--log-error=${errorLog}`,
        `--tmpdir=${tmpdirOf(where.baseDir)}`,
        "--innodb-buffer-pool-size=32M",
        "--innodb-log-file-size=16M",
        "--skip-name-resolve",
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_general_ci",
      ],
      { stdio: "ignore" },
    );
    liveServers.set(child, where.baseDir);
    if (await waitUntilReady(child, where.socket, where.host, port)) return { child, port };
    await killServer(child);
    const log = await fs.readFile(errorLog, "utf8").catch(() => "");
    // Someone took the port between freePort and bind: pick another. Anything else is fatal.
    if (!/Address already in use|Bind on TCP\/IP port/i.test(log) || attempt === START_ATTEMPTS) {
      throw new Error(`mariadbd did not become ready (attempt ${attempt}); error log:\n${log.slice(-4000)}`);
    }
    await fs.rm(errorLog, { force: true });
  }
  throw new Error("unreachable");
}

async function waitUntilReady(child: ChildProcess, socket: string, host: string, port: number) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) return false;
    if ((await accepts({ path: socket })) && (await accepts({ host, port }))) return true;
    await sleep(50);
  }
  return false;
}

function accepts(target: net.NetConnectOpts): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(target);
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => finish(false));
    socket.once("connect", () => finish(true));
    socket.once("error", () => finish(false));
  });
}

/**
 * Gives every root account the random password, adds root@'%' (TCP clients match by IP under
 * skip-name-resolve, never 'localhost') and drops anonymous accounts, which would shadow test users.
 */
async function secureRoot(defaultsFile: string, password: string): Promise<void> {
  const accounts = await runSql(defaultsFile, "SELECT User, Host FROM mysql.user WHERE User IN ('root', '')");
  const statements: string[] = [];
  for (const line of accounts.split("\n").filter(Boolean)) {
    const [user = "", accountHost = ""] = line.split("\t");
    // Accounts keyed by a host name (install-db adds root@<hostname>) are ignored, and cannot even be
    // altered, under skip-name-resolve: leave them.
    if (!isUsableUnderSkipNameResolve(accountHost)) continue;
    const account = `${sqlString(user)}@${sqlString(accountHost)}`;
    statements.push(
      user === "root"
        ? `ALTER USER ${account} IDENTIFIED BY ${sqlString(password)};`
        : `DROP USER ${account};`,
    );
  }
  statements.push(
    `CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY ${sqlString(password)};`,
    "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;",
    "FLUSH PRIVILEGES;",
  );
  await runSql(defaultsFile, statements.join("\n"));
}

function tmpdirOf(baseDir: string): string {
  return path.join(baseDir, "tmp");
}

function isUsableUnderSkipNameResolve(accountHost: string): boolean {
  return accountHost === "localhost" || net.isIP(accountHost) !== 0 || accountHost.includes("%");
}

async function writeDefaults(file: string, socket: string, password: string | undefined): Promise<void> {
  const lines = ["[client]", "user=root", `socket=${socket}`];
  if (password !== undefined) lines.push(`password=${password}`);
  await fs.writeFile(file, `${lines.join("\n")}\n`, { mode: 0o600 });
  await fs.chmod(file, 0o600);
}

async function runSql(defaultsFile: string, sql: string): Promise<string> {
  const result = await run("mysql", [`--defaults-file=${defaultsFile}`, "--batch", "--skip-column-names"], {
    input: sql,
  });
  if (result.code !== 0) throw new Error(`mysql failed (exit ${result.code}): ${result.stderr.trim()}`);
  return result.stdout;
}

function sqlString(value: string): string {
  return `'${value.replace(/\\/g, "\\\\").replace(/'/g, "''")}'`;
}

async function killServer(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await exited(child, SHUTDOWN_TIMEOUT_MS);
  liveServers.delete(child);
}

function exited(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/**
 * Safety net for servers a test forgot to stop. vitest stops its fork workers with SIGTERM (then
 * SIGKILL), and a default signal death skips 'exit', hence the signal handlers; after SIGKILL the server
 * dies with its parent (pdeathsig) and sweepStaleMariaDbs removes its files on the next run.
 */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  onProcessExit(killAllSync);
}

function killAllSync(): void {
  for (const [child, baseDir] of liveServers) {
    try {
      child.kill("SIGKILL");
      // A dying server may still be writing; let it finish so the dir (and its owner record) goes in one go.
      for (let i = 0; i < 50 && child.pid !== undefined && isRunning(child.pid); i++) sleepSync(10);
      rmSync(baseDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 });
    } catch {
      // best effort; sweepStaleMariaDbs removes what is left on the next run
    }
  }
  liveServers.clear();
}

/** True unless the process is gone or a zombie waiting to be reaped. */
function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.charAt(stat.lastIndexOf(")") + 2);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Removes server dirs (under the temp dir) whose owning test process is dead, killing a server that
 * still runs there. Returns the dirs removed.
 */
export async function sweepStaleMariaDbs(): Promise<string[]> {
  const removed: string[] = [];
  const entries = await fs.readdir(os.tmpdir()).catch(() => [] as string[]);
  for (const entry of entries.filter((name) => name.startsWith(DIR_PREFIX))) {
    const baseDir = path.join(os.tmpdir(), entry);
    const owner = await readJson<{ pid: number; startTime: string }>(path.join(baseDir, OWNER_FILE));
    // No owner record yet: a server being set up right now; leave it.
    if (owner === undefined || isAlive(owner)) continue;
    const serverPid = Number(
      (await fs.readFile(path.join(baseDir, "mariadbd.pid"), "utf8").catch(() => "")).trim(),
    );
    if (serverPid > 0 && (await commandLineOf(serverPid)).includes(baseDir)) {
      try {
        process.kill(serverPid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    await fs.rm(baseDir, { recursive: true, force: true });
    removed.push(baseDir);
  }
  return removed;
}

function ownerOf(pid: number): { pid: number; startTime: string } {
  return { pid, startTime: processStartTime(pid) ?? "" };
}

function isAlive(owner: { pid: number; startTime: string }): boolean {
  const startTime = processStartTime(owner.pid);
  // A recycled pid is a different process: compare start times.
  return startTime !== undefined && (owner.startTime === "" || startTime === owner.startTime);
}

function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the parenthesised command name; starttime is field 22 overall, index 19 here.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

async function commandLineOf(pid: number): Promise<string> {
  return (await fs.readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).replaceAll("\0", " ");
}

async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, "utf8")) as T;
  } catch {
    return undefined;
  }
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function run(
  command: string,
  args: string[],
  opts: { input?: string; cwd?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: opts.cwd, stdio: ["pipe", "pipe", "pipe"] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
    child.once("error", reject);
    child.once("close", (code) =>
      resolve({
        code: code ?? 1,
        stdout: Buffer.concat(stdout).toString("utf8"),
        stderr: Buffer.concat(stderr).toString("utf8"),
      }),
    );
    child.stdin.on("error", () => {});
    child.stdin.end(opts.input ?? "");
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
