/**
 * The backup job around Looker (issue 4) on a three-node cluster: node 0 is a simulator home on this runner,
 * nodes 1-2 are namespace VMs with real sshd, each running its own simulator home, all sharing one CMK as a real
 * cluster does. Each consistency mode is judged by the nodes' own records (pid locks, simulator logs), not by the
 * job's report alone: live stops nothing, brief-stop and stopped restart every node one at a time, stopped archives
 * the database as it was while Looker was down. Plus pre/post commands, the quiet window, the instance lock and a
 * node whose host key does not match.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { appendFile, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateIdentity } from "../../src/crypto/age-keys.js";
import type { BackupSelection } from "../../src/engine/backup.js";
import { type LookerJobRequest, type LookerJobResult, runLookerBackup } from "../../src/engine/looker-job.js";
import { probeAlive } from "../../src/looker/alive.js";
import type { LookerNode } from "../../src/looker/control.js";
import { acquireInstanceLock } from "../../src/looker/instance-lock.js";
import { type ConnectedNodes, connectNodes, type NodeSettings } from "../../src/looker/nodes.js";
import { minuteOfDay, parseQuietWindow } from "../../src/looker/quiet-window.js";
import { backupSummaryMarkdown } from "../../src/report/summary.js";
import { formatDuration } from "../../src/runtime/format.js";
import { DirStore } from "../../src/store/dir-store.js";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { requireCommands } from "../helpers/prerequisites.js";
import { selectionFor } from "../helpers/selection.js";
import { type SimulatedLooker, simulatedLooker } from "../helpers/simulator.js";
import { createVm, type Vm } from "../helpers/vm.js";
import {
  extractArchive,
  hashDirectorySync,
  lastBoot,
  lastShutdown,
  readMeta,
  simulatorLog,
  simulatorPid,
} from "./looker-job.shared.js";

const BOOT_TIMEOUT_MS = 60_000;
/** A real cluster shares one CMK; so do the three simulator homes. */
const CMK = randomBytes(32).toString("base64");

let scratch: string;
let local: SimulatedLooker;
const vms: Vm[] = [];
let cluster: ConnectedNodes | undefined;
/** What the preflight would resolve for the local home, from node 0's start options. */
let selection: BackupSelection;
const { identity, recipient } = generateIdentity();

/** Where each node's Looker directory is, as seen from this runner (index = node index). */
let lookerDirs: string[] = [];

beforeAll(async () => {
  requireCommands(["age", "zstd", "tar", "chown"]);
  scratch = await mkdtemp(join(tmpdir(), "looker-job-"));
  local = await simulatedLooker(join(scratch, "home"), { cmk: CMK, sizeBytes: 1_200_000, smallFiles: 40 });
  vms.push(...(await Promise.all([createVm({ name: "node-1" }), createVm({ name: "node-2" })])));
  // connectNodes takes one SSH key for all nodes, as an operator's deploy key would be: authorize node 1's on both.
  const sharedPublicKey = execFileSync("ssh-keygen", ["-y", "-f", vms[0]!.clientKeyPath], {
    encoding: "utf8",
  });
  await appendFile(join(vms[1]!.rootOnHost, "authorized_keys", "looker"), sharedPublicKey);
  await Promise.all(vms.map((vm) => startNodeInVm(vm)));
  local.start();
  lookerDirs = [local.lookerDir, ...vms.map((vm) => join(vm.homeOnHost, "looker"))];
  cluster = await connectNodes(nodeSettings(vms));
  selection = await selectionFor(local.home, { nodes: cluster.nodes });
});

afterAll(async () => {
  await cluster?.close();
  local?.stopQuietly();
  await Promise.all(vms.map((vm) => vm.destroy()));
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** A simulator home in the VM's /home/looker, owned by looker, started as looker and listening on the VM's address. */
async function startNodeInVm(vm: Vm): Promise<void> {
  await generateLookerHome({
    root: vm.homeOnHost,
    cmk: CMK,
    // The instance has one web port setting: every node serves /alive on the same port, in its own namespace.
    webPort: local.webPort,
    apiPort: local.apiPort,
    sizeBytes: 300_000,
    smallFiles: 10,
  });
  execFileSync("chown", ["-R", "looker:looker", vm.homeOnHost]);
  // Looker daemonizes: `start` returns while it boots, so wait for `status` (exit 0 once /alive answers).
  const started = await vm.exec(
    "cd ~/looker && ./looker start && for i in $(seq 300); do ./looker status >/dev/null && exit 0; sleep 0.1; done; exit 1",
    { env: { LKR_MASTER_KEY_ENV: CMK } },
  );
  if (started.code !== 0) throw new Error(`simulator in ${vm.name} did not start: ${started.stderr}`);
}

function nodeSettings(nodeVms: readonly Vm[], knownHosts?: string): NodeSettings {
  return {
    home: local.home,
    webPort: local.webPort,
    bootTimeoutMs: BOOT_TIMEOUT_MS,
    masterKey: { kind: "env", value: CMK },
    nodes: nodeVms.map((vm) => ({ user: "looker", host: vm.address, port: 22 })),
    sshKey: vms[0]!.clientPrivateKey,
    knownHosts: knownHosts ?? nodeVms.map((vm) => vm.knownHostsLine).join("\n"),
    acceptNewHostKeys: false,
  };
}

function nodes(): LookerNode[] {
  if (!cluster) throw new Error("the cluster did not connect in beforeAll");
  return cluster.nodes;
}

interface Run {
  result: LookerJobResult;
  log: string[];
  storeDir: string;
}

async function backup(
  label: string,
  overrides: Partial<LookerJobRequest> = {},
  onLog: (line: string) => void = () => {},
): Promise<Run> {
  const storeDir = join(scratch, `store-${label}`);
  const log: string[] = [];
  const result = await runLookerBackup(request(label, storeDir, log, overrides, onLog));
  return { result, log, storeDir };
}

function request(
  label: string,
  storeDir: string,
  log: string[],
  overrides: Partial<LookerJobRequest>,
  onLog: (line: string) => void = () => {},
): LookerJobRequest {
  return {
    home: local.home,
    instance: label,
    selection,
    recipients: [recipient],
    store: new DirStore(storeDir),
    consistency: "live",
    keystoreIndependent: false,
    nodes: nodes(),
    lockDirectory: scratch,
    log: (line) => {
      log.push(line);
      onLog(line);
    },
    ...overrides,
  };
}

function pids(): (number | undefined)[] {
  return lookerDirs.map((dir) => simulatorPid(dir));
}

async function everyNodeAlive(): Promise<boolean[]> {
  const addresses = ["127.0.0.1", ...vms.map((vm) => vm.address)];
  return Promise.all(addresses.map((host) => probeAlive({ host, port: local.webPort, scheme: "https" })));
}

async function storedArchives(storeDir: string): Promise<string[]> {
  const names = await readdir(storeDir).catch(() => [] as string[]);
  return names.filter((name) => name.endsWith(".tar.zst.age"));
}

/** The job's log shows each node started and healthy before the next one is started. */
function expectStartedOneAtATime(log: readonly string[]): void {
  const events = log.filter((line) => /^starting Looker on |^Looker on .* is up /.test(line));
  const expected = nodes().flatMap((node) => [
    `starting Looker on ${node.name}`,
    `Looker on ${node.name} is up (/alive answers)`,
  ]);
  expect(events).toEqual(expected);
}

/** The nodes' own logs agree: node i began starting only after node i-1's server was up. */
async function expectBootsInSequence(): Promise<void> {
  const boots = await Promise.all(lookerDirs.map(async (dir) => lastBoot(await simulatorLog(dir))));
  for (let i = 1; i < boots.length; i++) {
    expect(boots[i]!.startingAt, `node ${i} started before node ${i - 1} was up`).toBeGreaterThanOrEqual(
      boots[i - 1]!.upAt,
    );
  }
}

describe("consistency modes on a three-node cluster (local + two SSH nodes)", () => {
  it("live: archives while every node keeps running; nothing is stopped, downtime 0", async () => {
    const before = pids();
    expect(before.every((pid) => pid !== undefined)).toBe(true);
    const { result, log, storeDir } = await backup("live");
    expect(result.consistency).toBe("live");
    expect(result.downtimeMs).toBe(0);
    expect(pids()).toEqual(before);
    expect(log.filter((line) => /stopping|starting/i.test(line))).toEqual([]);
    expect(await storedArchives(storeDir)).toEqual([result.archiveName]);
    const tree = await extractArchive(result.archive!.location, identity, scratch);
    expect(await readMeta(tree)).toMatchObject({ consistency: "live", keystoreIndependent: false });
  });

  it("brief-stop: stops all nodes, copies the database, restarts them one at a time; downtime > 0", async () => {
    const before = pids();
    const { result, log } = await backup("brief", { consistency: "brief-stop" });
    expect(result.consistency).toBe("brief-stop");
    expect(result.downtimeMs).toBeGreaterThan(0);
    expect(log).toContain(`brief stop: Looker was down ${result.downtimeMs} ms`);
    expect(await everyNodeAlive()).toEqual([true, true, true]);
    const after = pids();
    // Every node was really restarted: a new server process on each.
    after.forEach((pid, i) => {
      expect(pid).toBeDefined();
      expect(pid, `node ${i} kept its pid`).not.toBe(before[i]);
    });
    expect(log.filter((line) => line.startsWith("stopping Looker on ")).sort()).toEqual(
      nodes()
        .map((node) => `stopping Looker on ${node.name}`)
        .sort(),
    );
    expectStartedOneAtATime(log);
    await expectBootsInSequence();
    const tree = await extractArchive(result.archive!.location, identity, scratch);
    expect(await readMeta(tree)).toMatchObject({ consistency: "brief-stop" });
    const db = await readdir(join(tree, "home", "looker", ".db"));
    expect(db).toContain("looker.script");
    expect(db).not.toContain("looker.lck");
  });

  it("stopped: every node is down while the archive is written, then restarted one at a time", async () => {
    let stoppedDb: Record<string, string> | undefined;
    let firstStartAt: number | undefined;
    const { result, log } = await backup("stopped", { consistency: "stopped" }, (line) => {
      // The moment the job begins restarting (synchronously, before node 0 is started): the stopped state.
      if (line.startsWith("starting Looker on ") && firstStartAt === undefined) {
        firstStartAt = Date.now();
        stoppedDb = hashDirectorySync(join(local.lookerDir, ".db"), ["looker.lck"]);
      }
    });
    expect(result.consistency).toBe("stopped");
    expect(result.downtimeMs).toBeGreaterThan(0);
    expect(await everyNodeAlive()).toEqual([true, true, true]);
    expectStartedOneAtATime(log);
    await expectBootsInSequence();

    // The archive was complete before any node came back, and after every node had shut down.
    const archivedAt = Math.floor((await stat(result.archive!.location)).mtimeMs);
    expect(firstStartAt).toBeDefined();
    expect(archivedAt).toBeLessThanOrEqual(firstStartAt!);
    for (const [i, dir] of lookerDirs.entries()) {
      const events = await simulatorLog(dir);
      expect(lastShutdown(events), `node ${i} was still up when the archive was written`).toBeLessThanOrEqual(
        archivedAt,
      );
      expect(lastBoot(events).startingAt).toBeGreaterThanOrEqual(archivedAt);
    }

    // The job summary reports the downtime the job measured, as the action writes it.
    const summary = backupSummaryMarkdown({
      instance: "stopped",
      archiveName: result.archiveName,
      sha256: result.sha256,
      bytesIn: result.bytesIn,
      bytesOut: result.bytesOut,
      files: result.files,
      durationMs: result.durationMs,
      downtimeMs: result.downtimeMs,
      consistency: result.consistency,
      keystoreIndependent: false,
      tallies: result.selection.tallies,
      warnings: result.warnings,
    });
    expect(summary).toContain(`| Consistency | stopped; Looker down ${formatDuration(result.downtimeMs)} |`);

    // The archived database is byte for byte the stopped one.
    const tree = await extractArchive(result.archive!.location, identity, scratch);
    expect(await readMeta(tree)).toMatchObject({ consistency: "stopped" });
    expect(hashDirectorySync(join(tree, "home", "looker", ".db"))).toEqual(stoppedDb);
  });
});

describe("pre/post commands, quiet window, lock, host keys", () => {
  it("runs the pre- and post-command with their output logged", async () => {
    const { result, log } = await backup("hooks", {
      nodes: [nodes()[0]!],
      preCommand: "echo pre says hello; echo pre on stderr >&2",
      postCommand: "echo post says bye; exit 7",
    });
    const pre = log.indexOf("pre-command> pre says hello");
    const post = log.indexOf("post-command> post says bye");
    expect(pre).toBeGreaterThanOrEqual(0);
    expect(log).toContain("pre-command> pre on stderr");
    expect(post).toBeGreaterThan(pre);
    // A failing post-command does not undo a good backup; it is a warning.
    expect(log).toContain("post-command failed with exit 7");
    expect(result.warnings).toContain("post-command failed; see the log");
    expect(result.archive).toBeDefined();
  });

  it("a failing pre-command aborts before anything is stopped or written", async () => {
    const before = pids();
    const storeDir = join(scratch, "store-pre-fails");
    const log: string[] = [];
    await expect(
      runLookerBackup(
        request("pre-fails", storeDir, log, { consistency: "stopped", preCommand: "echo nope; exit 3" }),
      ),
    ).rejects.toThrow("pre-command failed with exit 3");
    expect(log).toContain("pre-command> nope");
    expect(log.filter((line) => /stopping|starting/.test(line))).toEqual([]);
    expect(pids()).toEqual(before);
    expect(await storedArchives(storeDir)).toEqual([]);
  });

  it("runs the post-command after a failed backup too (it resumes what the pre-command paused)", async () => {
    const storeDir = join(scratch, "store-post-after-failure");
    const log: string[] = [];
    // A required SSL file that is gone by the time the archive is written fails the backup after the pre-command.
    const missing = join(scratch, "no-such-certificate.pem");
    await expect(
      runLookerBackup(
        request("post-after-failure", storeDir, log, {
          consistency: "live",
          selection: await selectionFor(local.home, { nodes: nodes(), sslFiles: [missing] }),
          postCommand: "echo schedules resumed",
        }),
      ),
    ).rejects.toThrow(`cannot read ${missing}`);
    expect(log).toContain("post-command> schedules resumed");
    expect(await storedArchives(storeDir)).toEqual([]);
  });

  it("a quiet window refuses a stopping mode outside it unless forced; live mode ignores it", async () => {
    // A one-hour window that starts two hours from now (UTC): now is outside it whatever the time of day.
    const now = minuteOfDay(new Date(), "UTC");
    const hhmm = (minute: number) =>
      `${String(Math.floor((minute % 1440) / 60)).padStart(2, "0")}:${String(minute % 60).padStart(2, "0")}`;
    const quietWindow = parseQuietWindow(`${hhmm(now + 120)}-${hhmm(now + 180)}`, "UTC");
    const localOnly = [nodes()[0]!];
    const before = pids();

    const storeDir = join(scratch, "store-window");
    const log: string[] = [];
    await expect(
      runLookerBackup(
        request("window", storeDir, log, { consistency: "brief-stop", quietWindow, nodes: localOnly }),
      ),
    ).rejects.toThrow(/refusing to stop Looker outside the quiet window .* \(UTC\)/);
    expect(pids()).toEqual(before);
    expect(log.filter((line) => /stopping/.test(line))).toEqual([]);
    expect(await storedArchives(storeDir)).toEqual([]);

    const live = await backup("window-live", { consistency: "live", quietWindow, nodes: localOnly });
    expect(live.result.downtimeMs).toBe(0);
    expect(pids()).toEqual(before);

    const forced = await backup("window-forced", {
      consistency: "brief-stop",
      quietWindow,
      forceOutsideWindow: true,
      nodes: localOnly,
    });
    expect(forced.result.downtimeMs).toBeGreaterThan(0);
    expect(forced.log).toContain(`stopping Looker on ${localOnly[0]!.name}`);
    expect(local.isRunning()).toBe(true);
  });

  it("two concurrent runs for one instance: the second fails naming the lock's owner, one archive is written", async () => {
    const storeDir = join(scratch, "store-lock");
    const localOnly = [nodes()[0]!];
    const runs = await Promise.allSettled([
      runLookerBackup(request("locked", storeDir, [], { nodes: localOnly })),
      runLookerBackup(request("locked", storeDir, [], { nodes: localOnly })),
    ]);
    const failed = runs.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    expect(failed).toHaveLength(1);
    const message = (failed[0]!.reason as Error).message;
    expect(message).toContain(
      `another backup of instance locked is running: pid ${process.pid} on ${hostname()}`,
    );
    expect(message).toContain(`backup of ${local.home}`);
    expect(await storedArchives(storeDir)).toHaveLength(1);
    // The winner released the lock: the next run goes ahead.
    const next = await backup("locked", { nodes: localOnly });
    expect(next.result.archive).toBeDefined();
  });

  it("the instance lock never has two owners, however close together two runs start", async () => {
    // The lock is taken before anything else in a run: a race here means two writers. Many tries make a
    // narrow window (a lock seen empty before its owner wrote it, taken for stale) show up reliably.
    const dir = await mkdtemp(join(scratch, "lock-race-"));
    let doubleOwners = 0;
    for (let i = 0; i < 300; i++) {
      const taken = await Promise.allSettled([
        acquireInstanceLock(dir, "race", "first"),
        acquireInstanceLock(dir, "race", "second"),
      ]);
      const owners = taken.filter((t) => t.status === "fulfilled").map((t) => t.value);
      if (owners.length !== 1) doubleOwners++;
      await Promise.all(owners.map((owner) => owner.release()));
    }
    expect(doubleOwners).toBe(0);
  });

  it("takes over the lock of a run that died, and says so", async () => {
    const dead = spawnSync("true").pid!;
    const lockFile = join(scratch, "looker-backup-orphaned.lock");
    const stale = {
      pid: dead,
      host: hostname(),
      startedAt: "2024-01-01T00:00:00.000Z",
      description: "crashed",
    };
    await writeFile(lockFile, `${JSON.stringify(stale)}\n`);
    const { result, log } = await backup("orphaned", { nodes: [nodes()[0]!] });
    expect(result.archive).toBeDefined();
    expect(log).toContain(`took over a stale lock of pid ${dead} (2024-01-01T00:00:00.000Z)`);
    expect(existsSync(lockFile)).toBe(false);
  });

  it("connectNodes refuses a node whose host key differs from known_hosts", async () => {
    const [first, second] = vms as [Vm, Vm];
    // node 1's address with node 2's key: what a man in the middle (or a rebuilt host) looks like.
    const wrong = `${first.address} ${second.hostPublicKey}`;
    const connecting = connectNodes(nodeSettings([first], wrong));
    await expect(connecting).rejects.toThrow(
      new RegExp(`HOST KEY MISMATCH for ${first.address.replace(/\./g, "\\.")}.*refusing to connect`),
    );
  });
});
