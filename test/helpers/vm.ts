/**
 * Ephemeral "VMs" for integration tests: a network namespace with its own address, its own view of
 * /home, /etc/init.d, /usr/local/bin (holding the `java` stand-in) and /tmp (a private mount namespace), and a real sshd with a per-VM host key and
 * key-only auth. Cheap enough to make one per test, isolated enough that a backup or restore run against
 * it can only touch the VM's own directories (which live under `rootOnHost` on the host).
 */

import { execFileSync, spawn } from "node:child_process";
import { readdirSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { JAVA_STAND_IN_DIR, LOOKER_JAR_SIM } from "../fixtures/home-generator.js";
import { onProcessExit } from "./on-exit.js";
import { requireCommands } from "./prerequisites.js";

export type VmUser = "root" | "looker";

export interface VmExecOptions {
  /** Who runs the command; "looker" (default) or "root". */
  user?: VmUser;
  /** Extra environment on top of a clean login-like one (PATH, HOME, USER, LOGNAME, SHELL, LANG). */
  env?: Record<string, string>;
  /** Written to the command's stdin, which is then closed. */
  input?: string | Buffer;
}

export interface VmExecResult {
  /** Exit code; 128 + signal number when killed by a signal. */
  code: number;
  stdout: string;
  stderr: string;
}

export interface Vm {
  /** The label given to createVm, or the namespace name. */
  name: string;
  /** The network namespace, also the allocator of the address (`lbvm-<n>`). */
  netns: string;
  /** The VM's address (sshd listens here on port 22). */
  address: string;
  port: 22;
  /** The host end of the VM's link: services the VM must reach (e.g. MariaDB) bind here. */
  hostAddress: string;
  /** Where `/home/looker` of the VM lives on the host. */
  homeOnHost: string;
  /** The VM's root dir on the host: home/, init.d/ (the VM's /etc/init.d), tmp/, sshd/, client/. */
  rootOnHost: string;
  user: "looker";
  /** The ed25519 client key authorized for `looker` and `root`. */
  clientKeyPath: string;
  clientPrivateKey: string;
  /** A known_hosts file that holds exactly the VM's host key. */
  knownHostsPath: string;
  /** `<address> ssh-ed25519 AAAA...` */
  knownHostsLine: string;
  /** `ssh-ed25519 AAAA...` */
  hostPublicKey: string;
  /** Runs `bash -c command` inside the VM's network and mount namespaces, in the user's home. */
  exec(command: string, opts?: VmExecOptions): Promise<VmExecResult>;
  /** Kills everything in the VM, removes its namespace, link and root dir. Safe to call twice. */
  destroy(): Promise<void>;
}

const NETNS_PREFIX = "lbvm-";
/** Owner records (pid + start time) of live namespaces, so a later run can sweep what a crash left. */
export const VM_OWNERS_DIR = "/run/looker-backup-vms";
/** 10.231.<n>.0/30 per VM: .1 on the host, .2 in the VM. */
const SUBNET_PREFIX = "10.231";
const SLOTS = 256;
const LOOKER_HOME = "/home/looker";
const SSHD_READY_TIMEOUT_MS = 15_000;
const OUTPUT_TAIL_BYTES = 64 * 1024;
const CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

interface OwnerRecord {
  pid: number;
  startTime: string;
  netns: string;
  hostVeth: string;
  rootDir: string;
}

interface LiveVm {
  owner: OwnerRecord;
  ownerFile: string;
}

const liveVms = new Set<LiveVm>();
let sweptThisProcess = false;
let exitHookInstalled = false;

export async function createVm(opts: { name?: string } = {}): Promise<Vm> {
  requireCommands(["ip", "unshare", "nsenter", "runuser", "setpriv", "sshd", "ssh-keygen", "useradd"]);
  if (!sweptThisProcess) {
    sweptThisProcess = true;
    sweepStaleVms();
  }
  installExitHook();
  await fs.mkdir(VM_OWNERS_DIR, { recursive: true, mode: 0o755 });
  // sshd refuses to start without its privilege separation directory.
  await fs.mkdir("/run/sshd", { recursive: true, mode: 0o755 });
  const looker = ensureLookerUser();

  const rootDir = await fs.mkdtemp(path.join(os.tmpdir(), "lbvm-"));
  let allocated: Awaited<ReturnType<typeof allocateNetns>>;
  try {
    assertOutsideOverlays(rootDir);
    allocated = await allocateNetns(rootDir);
  } catch (error) {
    await fs.rm(rootDir, { recursive: true, force: true });
    throw error;
  }
  const { slot, live } = allocated;
  try {
    const netns = live.owner.netns;
    const hostAddress = `${SUBNET_PREFIX}.${slot}.1`;
    const address = `${SUBNET_PREFIX}.${slot}.2`;
    setUpLink(netns, live.owner.hostVeth, `lbvm${slot}v`, hostAddress, address);

    const layout = await prepareRoot(rootDir, looker);
    const keys = await makeKeys(layout, address);
    const sshd = startSshd(netns, rootDir, layout.sshdConfig);
    await waitForSshd(address, sshd);

    let destroyed: Promise<void> | undefined;
    return {
      name: opts.name ?? netns,
      netns,
      address,
      port: 22,
      hostAddress,
      homeOnHost: layout.home,
      rootOnHost: rootDir,
      user: "looker",
      clientKeyPath: keys.clientKeyPath,
      clientPrivateKey: keys.clientPrivateKey,
      knownHostsPath: keys.knownHostsPath,
      knownHostsLine: keys.knownHostsLine,
      hostPublicKey: keys.hostPublicKey,
      exec: (command, execOpts) => execInVm(sshd.pid, command, execOpts),
      destroy: () => {
        destroyed ??= (async () => {
          teardown(live);
          await sshd.exited;
        })();
        return destroyed;
      },
    };
  } catch (error) {
    teardown(live);
    throw error;
  }
}

/**
 * Deletes namespaces (and their root dirs) left by test processes that died without cleaning up:
 * those whose owner record is missing or names a dead process. Returns the namespaces removed.
 */
export function sweepStaleVms(): string[] {
  const removed: string[] = [];
  const namespaces = listOurNamespaces();
  for (const netns of namespaces) {
    const ownerFile = ownerFileOf(netns);
    const owner = readOwner(ownerFile);
    if (owner !== undefined && isAlive(owner)) continue;
    const takeover = takeOverOwner(ownerFile, owner, netns);
    if (takeover === undefined) continue;
    teardown(takeover);
    removed.push(netns);
  }
  // Records whose namespace is already gone but whose root dir may remain.
  for (const entry of safeReaddir(VM_OWNERS_DIR)) {
    if (!entry.endsWith(".json")) continue;
    const ownerFile = path.join(VM_OWNERS_DIR, entry);
    const owner = readOwner(ownerFile);
    if (owner === undefined || isAlive(owner) || namespaces.includes(owner.netns)) continue;
    const takeover = takeOverOwner(ownerFile, owner, owner.netns);
    if (takeover !== undefined) teardown(takeover);
  }
  return removed;
}

// ---------------------------------------------------------------------------------------------------
// allocation: the owner file (created exclusively) claims slot n, `ip netns add` fails on a taken name.

async function allocateNetns(rootDir: string): Promise<{ slot: number; live: LiveVm }> {
  const start = Math.floor(Math.random() * SLOTS);
  for (let i = 0; i < SLOTS; i++) {
    const slot = (start + i) % SLOTS;
    const netns = `${NETNS_PREFIX}${slot}`;
    const owner: OwnerRecord = {
      pid: process.pid,
      startTime: processStartTime(process.pid) ?? "",
      netns,
      hostVeth: `lbvm${slot}h`,
      rootDir,
    };
    const ownerFile = ownerFileOf(netns);
    try {
      await fs.writeFile(ownerFile, JSON.stringify(owner), { flag: "wx", mode: 0o644 });
    } catch (error) {
      if (isErrno(error, "EEXIST")) continue;
      throw error;
    }
    const live: LiveVm = { owner, ownerFile };
    const added = run("ip", ["netns", "add", netns]);
    if (added.code !== 0) {
      // A namespace with no owner record is a leftover; the sweeper removes it, we move on.
      unlinkQuietly(ownerFile);
      continue;
    }
    liveVms.add(live);
    return { slot, live };
  }
  throw new Error(`no free vm slot: all ${SLOTS} namespaces ${NETNS_PREFIX}0..${SLOTS - 1} are taken`);
}

function setUpLink(netns: string, hostVeth: string, vmVeth: string, hostAddress: string, address: string) {
  // A host-side leftover with our name (from a crash) would make `link add` fail; it is ours to remove.
  run("ip", ["link", "del", hostVeth]);
  mustRun("ip", ["link", "add", hostVeth, "type", "veth", "peer", "name", vmVeth, "netns", netns]);
  mustRun("ip", ["addr", "add", `${hostAddress}/30`, "dev", hostVeth]);
  mustRun("ip", ["link", "set", hostVeth, "up"]);
  mustRun("ip", ["-n", netns, "addr", "add", `${address}/30`, "dev", vmVeth]);
  mustRun("ip", ["-n", netns, "link", "set", vmVeth, "up"]);
  mustRun("ip", ["-n", netns, "link", "set", "lo", "up"]);
}

// ---------------------------------------------------------------------------------------------------
// the VM's directories, keys and sshd

interface LookerAccount {
  uid: number;
  gid: number;
}

interface RootLayout {
  home: string;
  sshdDir: string;
  sshdConfig: string;
  authorizedKeysDir: string;
  clientDir: string;
}

async function prepareRoot(rootDir: string, looker: LookerAccount): Promise<RootLayout> {
  // sshd reads authorized_keys as the target user, so looker must be able to walk down to them.
  await fs.chmod(rootDir, 0o755);
  const layout: RootLayout = {
    home: path.join(rootDir, "home", "looker"),
    sshdDir: path.join(rootDir, "sshd"),
    sshdConfig: path.join(rootDir, "sshd", "sshd_config"),
    authorizedKeysDir: path.join(rootDir, "authorized_keys"),
    clientDir: path.join(rootDir, "client"),
  };
  await fs.mkdir(layout.home, { recursive: true });
  await fs.chown(layout.home, looker.uid, looker.gid);
  await fs.chmod(layout.home, 0o755);
  await fs.mkdir(path.join(rootDir, "init.d"), { mode: 0o755 });
  // The VM's JDK: the `java` stand-in in /usr/local/bin, on the default PATH sshd gives every user (root too) and on
  // the PATH of exec. Looker's script calls plain `java`, so this is how a real host would have it. Copies, with the
  // jar's code beside them, not links into the checkout: a checkout under /tmp is hidden by the VM's private /tmp.
  await fs.mkdir(path.join(rootDir, "usr-local-bin"), { mode: 0o755 });
  await fs.copyFile(path.join(JAVA_STAND_IN_DIR, "java"), path.join(rootDir, "usr-local-bin", "java"));
  await fs.chmod(path.join(rootDir, "usr-local-bin", "java"), 0o755);
  await fs.copyFile(LOOKER_JAR_SIM, path.join(rootDir, "usr-local-bin", "looker.mjs"));
  await fs.chmod(path.join(rootDir, "usr-local-bin", "looker.mjs"), 0o644);
  await fs.mkdir(path.join(rootDir, "tmp"));
  await fs.chmod(path.join(rootDir, "tmp"), 0o1777);
  const selfInTmp = selfMountPointInTmp(rootDir);
  if (selfInTmp !== undefined) await fs.mkdir(path.join(rootDir, "tmp", selfInTmp), { recursive: true });
  await fs.mkdir(layout.sshdDir, { mode: 0o755 });
  await fs.mkdir(layout.authorizedKeysDir, { mode: 0o755 });
  await fs.mkdir(layout.clientDir, { mode: 0o700 });
  await fs.writeFile(layout.sshdConfig, sshdConfig(layout), { mode: 0o644 });
  return layout;
}

function sshdConfig(layout: RootLayout): string {
  return [
    "Port 22",
    "ListenAddress 0.0.0.0",
    `HostKey ${path.join(layout.sshdDir, "ssh_host_ed25519_key")}`,
    `PidFile ${path.join(layout.sshdDir, "sshd.pid")}`,
    `AuthorizedKeysFile ${path.join(layout.authorizedKeysDir, "%u")}`,
    "PubkeyAuthentication yes",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "UsePAM no",
    "PermitRootLogin prohibit-password",
    "StrictModes no",
    "UseDNS no",
    "PrintMotd no",
    "X11Forwarding no",
    // The product opens many channels over one connection; the defaults (10) are tight for that.
    "MaxSessions 64",
    "MaxStartups 64",
    "AcceptEnv LANG LC_*",
    "Subsystem sftp internal-sftp",
    "LogLevel VERBOSE",
    "",
  ].join("\n");
}

interface VmKeys {
  clientKeyPath: string;
  clientPrivateKey: string;
  knownHostsPath: string;
  knownHostsLine: string;
  hostPublicKey: string;
}

async function makeKeys(layout: RootLayout, address: string): Promise<VmKeys> {
  const hostKeyPath = path.join(layout.sshdDir, "ssh_host_ed25519_key");
  const clientKeyPath = path.join(layout.clientDir, "id_ed25519");
  mustRun("ssh-keygen", [
    "-q",
    "-t",
    "ed25519",
    "-N",
    "",
    "-C",
    "looker-backup-test-host",
    "-f",
    hostKeyPath,
  ]);
  mustRun("ssh-keygen", [
    "-q",
    "-t",
    "ed25519",
    "-N",
    "",
    "-C",
    "looker-backup-test-client",
    "-f",
    clientKeyPath,
  ]);
  const hostPublicKey = keyTypeAndBlob(await fs.readFile(`${hostKeyPath}.pub`, "utf8"));
  const clientPublicKey = keyTypeAndBlob(await fs.readFile(`${clientKeyPath}.pub`, "utf8"));
  for (const user of ["looker", "root"]) {
    await fs.writeFile(path.join(layout.authorizedKeysDir, user), `${clientPublicKey}\n`, { mode: 0o644 });
  }
  const knownHostsLine = `${address} ${hostPublicKey}`;
  const knownHostsPath = path.join(layout.clientDir, "known_hosts");
  await fs.writeFile(knownHostsPath, `${knownHostsLine}\n`, { mode: 0o644 });
  return {
    clientKeyPath,
    clientPrivateKey: await fs.readFile(clientKeyPath, "utf8"),
    knownHostsPath,
    knownHostsLine,
    hostPublicKey,
  };
}

function keyTypeAndBlob(publicKeyLine: string): string {
  const [type, blob] = publicKeyLine.trim().split(/\s+/);
  if (type === undefined || blob === undefined) throw new Error(`unreadable public key: ${publicKeyLine}`);
  return `${type} ${blob}`;
}

interface SshdProcess {
  pid: number;
  exited: Promise<void>;
  hasExited(): boolean;
  output(): string;
}

/**
 * The mount script runs in a fresh private mount namespace inside the netns, then becomes sshd, so
 * every session (and `exec`, which enters sshd's namespaces) sees the VM's own /home, /etc/init.d, /tmp.
 * The VM's private /tmp would hide the root dir (itself under the host's /tmp), so the root dir is first
 * bind-mounted at its own path inside the VM's tmp: host paths of the VM (sshd config, keys) stay valid.
 */
const MOUNT_AND_EXEC_SSHD = `set -e
root="$1"; self_in_tmp="$2"; config="$3"
mount --bind "$root/home" /home
mount --bind "$root/init.d" /etc/init.d
mount --bind "$root/usr-local-bin" /usr/local/bin
if [ -n "$self_in_tmp" ]; then mount --bind "$root" "$root/tmp/$self_in_tmp"; fi
mount --rbind "$root/tmp" /tmp
exec /usr/sbin/sshd -D -e -f "$config"`;

function startSshd(netns: string, rootDir: string, config: string): SshdProcess {
  // pdeathsig: sshd dies with the test worker even when that is SIGKILLed.
  const child = spawn(
    "setpriv",
    [
      "--pdeathsig",
      "KILL",
      "ip",
      "netns",
      "exec",
      netns,
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      MOUNT_AND_EXEC_SSHD,
      "vm-mount",
      rootDir,
      selfMountPointInTmp(rootDir) ?? "",
      config,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  if (child.pid === undefined) throw new Error(`could not start sshd for ${netns}`);
  let output = "";
  const keepTail = (chunk: Buffer) => {
    output = (output + chunk.toString("utf8")).slice(-OUTPUT_TAIL_BYTES);
  };
  child.stdout.on("data", keepTail);
  child.stderr.on("data", keepTail);
  let exited = false;
  const exitedPromise = new Promise<void>((resolve) => {
    child.once("close", () => {
      exited = true;
      resolve();
    });
    child.once("error", (error) => {
      output += `\n${error.message}`;
      exited = true;
      resolve();
    });
  });
  return { pid: child.pid, exited: exitedPromise, hasExited: () => exited, output: () => output };
}

async function waitForSshd(address: string, sshd: SshdProcess): Promise<void> {
  const deadline = Date.now() + SSHD_READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (sshd.hasExited()) {
      throw new Error(`sshd for ${address} exited during startup:\n${sshd.output()}`);
    }
    if (await greetsWithSshBanner(address, 22)) return;
    await sleep(50);
  }
  throw new Error(
    `sshd for ${address} did not accept connections within ${SSHD_READY_TIMEOUT_MS} ms:\n${sshd.output()}`,
  );
}

/**
 * Readiness is the SSH banner, not a TCP accept: some sandboxes' networks accept any TCP connection
 * to any address themselves.
 */
function greetsWithSshBanner(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let received = "";
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => finish(false));
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("latin1");
      if (received.includes("\n")) finish(received.startsWith("SSH-"));
    });
    socket.once("error", () => finish(false));
    socket.once("close", () => finish(false));
  });
}

// ---------------------------------------------------------------------------------------------------
// running commands inside the VM

function execInVm(sshdPid: number, command: string, opts: VmExecOptions = {}): Promise<VmExecResult> {
  const user = opts.user ?? "looker";
  const home = user === "root" ? "/root" : LOOKER_HOME;
  // nsenter --wd resolves the directory before entering the mount namespace, so cd from inside it.
  const shell = ["env", "-C", home, "bash", "-c", command];
  const asUser = user === "root" ? shell : ["runuser", "-u", "looker", "--", ...shell];
  const env: Record<string, string> = {
    PATH: CLEAN_PATH,
    HOME: home,
    USER: user,
    LOGNAME: user,
    SHELL: "/bin/bash",
    LANG: "C.UTF-8",
    ...opts.env,
  };
  const child = spawn("nsenter", ["-t", String(sshdPid), "-n", "-m", "--", ...asUser], {
    env,
    stdio: ["pipe", "pipe", "pipe"],
  });
  return new Promise((resolve, reject) => {
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
    child.once("error", reject);
    child.once("close", (code, signal) => {
      resolve({
        code: code ?? 128 + (signal === null ? 0 : (os.constants.signals[signal] ?? 0)),
        stdout: Buffer.concat(stdout).toString("utf8"),
        stderr: Buffer.concat(stderr).toString("utf8"),
      });
    });
    // A command that does not read stdin closes it early; that is not an error of the caller's.
    child.stdin.on("error", () => {});
    child.stdin.end(opts.input ?? "");
  });
}

// ---------------------------------------------------------------------------------------------------
// teardown (synchronous, so the process 'exit' hook can use it too)

function teardown(live: LiveVm): void {
  const { netns, hostVeth, rootDir } = live.owner;
  killEverythingIn(netns);
  // Deleting the host end removes the pair at once; deleting the netns alone does it asynchronously.
  run("ip", ["link", "del", hostVeth]);
  run("ip", ["netns", "del", netns]);
  if (rootDir !== "") rmSync(rootDir, { recursive: true, force: true });
  unlinkQuietly(live.ownerFile);
  liveVms.delete(live);
}

function killEverythingIn(netns: string): void {
  const killed = new Set<number>();
  for (let attempt = 0; attempt < 100; attempt++) {
    const listed = run("ip", ["netns", "pids", netns]);
    const pids = listed.code === 0 ? listed.stdout.split(/\s+/).filter(Boolean).map(Number) : [];
    if (pids.length === 0) break;
    for (const pid of pids) {
      killed.add(pid);
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    sleepSync(20);
  }
  // A killed process drops out of `ip netns pids` as soon as it starts exiting; wait until it has
  // finished (gone or a zombie), so nothing of the VM still runs once destroy returns.
  for (let attempt = 0; attempt < 250 && [...killed].some(isRunning); attempt++) sleepSync(20);
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

/**
 * Safety net for VMs a test forgot to destroy. vitest stops its fork workers with SIGTERM (then SIGKILL),
 * and a default signal death skips 'exit', hence the signal handlers; after SIGKILL, sshd dies with its
 * parent (pdeathsig) and sweepStaleVms removes the rest on the next run.
 */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  onProcessExit(tearDownAllSync);
}

function tearDownAllSync(): void {
  for (const live of [...liveVms]) {
    try {
      teardown(live);
    } catch {
      // best effort; sweepStaleVms catches the rest next time
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// owner records

function ownerFileOf(netns: string): string {
  return path.join(VM_OWNERS_DIR, `${netns}.json`);
}

function readOwner(ownerFile: string): OwnerRecord | undefined {
  try {
    return JSON.parse(readFileSync(ownerFile, "utf8")) as OwnerRecord;
  } catch {
    return undefined;
  }
}

/**
 * Makes this process the owner of a stale slot before tearing it down, so a creator cannot claim the
 * slot (its exclusive create fails) while the sweep is deleting the namespace.
 */
function takeOverOwner(ownerFile: string, stale: OwnerRecord | undefined, netns: string): LiveVm | undefined {
  const slot = netns.slice(NETNS_PREFIX.length);
  const owner: OwnerRecord = {
    pid: process.pid,
    startTime: processStartTime(process.pid) ?? "",
    netns,
    hostVeth: stale?.hostVeth ?? `lbvm${slot}h`,
    rootDir: stale?.rootDir ?? "",
  };
  try {
    if (stale === undefined) {
      writeFileSync(ownerFile, JSON.stringify(owner), { flag: "wx", mode: 0o644 });
    } else {
      // Atomic replace: the record never disappears, so no creator can claim the slot meanwhile.
      const temp = `${ownerFile}.${process.pid}.tmp`;
      writeFileSync(temp, JSON.stringify(owner), { mode: 0o644 });
      renameSync(temp, ownerFile);
    }
  } catch {
    return undefined;
  }
  return { owner, ownerFile };
}

function isAlive(owner: OwnerRecord): boolean {
  try {
    process.kill(owner.pid, 0);
  } catch (error) {
    if (!isErrno(error, "EPERM")) return false;
  }
  // A recycled pid is a different process: compare start times.
  return owner.startTime === "" || processStartTime(owner.pid) === owner.startTime;
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

function listOurNamespaces(): string[] {
  const listed = run("ip", ["netns", "list"]);
  if (listed.code !== 0) return [];
  return listed.stdout
    .split("\n")
    .map((line) => line.split(" ")[0] ?? "")
    .filter((name) => new RegExp(`^${NETNS_PREFIX}\\d+$`).test(name));
}

// ---------------------------------------------------------------------------------------------------
// the looker account and small utilities

/** The `looker` account (created once per machine), as the VMs and the tests of a looker-owned home need it. */
export function ensureLookerUser(): LookerAccount {
  for (let attempt = 0; attempt < 50; attempt++) {
    const entry = passwdEntry("looker");
    if (entry !== undefined) {
      if (entry.home !== LOOKER_HOME) {
        throw new Error(`user looker exists with home ${entry.home}; the test vms need ${LOOKER_HOME}`);
      }
      unlockForSsh("looker");
      return entry;
    }
    // "*" rather than useradd's default "!": sshd without PAM refuses "!"-locked accounts even for keys.
    const added = run("useradd", ["-M", "-d", LOOKER_HOME, "-s", "/bin/bash", "-p", "*", "looker"]);
    // Exit 9 = created meanwhile by a parallel worker; 10 = passwd file locked by one: look again.
    if (added.code !== 0 && added.code !== 9 && added.code !== 10) {
      throw new Error(`useradd looker failed (exit ${added.code}): ${added.stderr.trim()}`);
    }
    if (added.code === 10) sleepSync(50);
  }
  throw new Error("could not create the looker user: /etc/passwd stayed locked");
}

function passwdEntry(user: string): (LookerAccount & { home: string }) | undefined {
  const result = run("getent", ["passwd", user]);
  if (result.code !== 0) return undefined;
  const fields = result.stdout.trim().split(":");
  return { uid: Number(fields[2]), gid: Number(fields[3]), home: fields[5] ?? "" };
}

function unlockForSsh(user: string): void {
  const shadow = run("getent", ["shadow", user]);
  const password = shadow.stdout.split(":")[1] ?? "";
  if (shadow.code === 0 && password.startsWith("!")) run("usermod", ["-p", "*", user]);
}

function assertOutsideOverlays(rootDir: string): void {
  for (const overlaid of ["/home", "/etc/init.d"]) {
    if (!path.relative(overlaid, rootDir).startsWith("..")) {
      throw new Error(
        `vm root ${rootDir} lies under ${overlaid}, which the vm overmounts; set TMPDIR elsewhere`,
      );
    }
  }
}

/** The root dir's path relative to /tmp when the VM's private /tmp would hide it, else undefined. */
function selfMountPointInTmp(rootDir: string): string | undefined {
  const relative = path.relative("/tmp", rootDir);
  return relative.startsWith("..") || path.isAbsolute(relative) ? undefined : relative;
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[]): RunResult {
  try {
    const stdout = execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    return { code: 0, stdout, stderr: "" };
  } catch (error) {
    const failed = error as { status?: number | null; stdout?: string; stderr?: string; message: string };
    return { code: failed.status ?? 1, stdout: failed.stdout ?? "", stderr: failed.stderr ?? failed.message };
  }
}

function mustRun(command: string, args: string[]): string {
  const result = run(command, args);
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(" ")} failed (exit ${result.code}): ${result.stderr.trim()}`);
  }
  return result.stdout;
}

function unlinkQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function isErrno(error: unknown, code: string): boolean {
  return typeof error === "object" && error !== null && (error as { code?: unknown }).code === code;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
