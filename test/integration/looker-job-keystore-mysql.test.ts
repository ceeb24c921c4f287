/**
 * The backup job's Looker-side extras (issue 4), against the simulator, namespace VMs and a private MariaDB:
 * a keystore-independent backup whose key file restores the instance under a different CMK (and without which
 * it refuses to boot), and the MySQL backend: a consistent dump in the archive that loads into another database
 * with identical tables, and a dump that fails part-way fails the whole run without an archive and with Looker up.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { copyFile, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { decryptBuffer } from "../../src/crypto/age.js";
import { generateIdentity } from "../../src/crypto/age-keys.js";
import { runDrill } from "../../src/drill/drill.js";
import { type LookerJobRequest, runLookerBackup } from "../../src/engine/looker-job.js";
import { probeAlive } from "../../src/looker/alive.js";
import { type ConnectedNodes, connectNodes } from "../../src/looker/nodes.js";
import { loadDumpIntoDatabase } from "../../src/mysql/restore.js";
import { DirStore } from "../../src/store/dir-store.js";
import { type MariaDb, startMariaDb } from "../helpers/mariadb.js";
import { requireCommands } from "../helpers/prerequisites.js";
import { selectionFor } from "../helpers/selection.js";
import { type SimulatedLooker, simulatedLooker } from "../helpers/simulator.js";
import { createVm, type Vm } from "../helpers/vm.js";
import { extractArchive, readMeta, simulatorPid } from "./looker-job.shared.js";

const BOOT_TIMEOUT_MS = 60_000;

let scratch: string;
const { identity, recipient } = generateIdentity();
const vms: Vm[] = [];
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  requireCommands(["age", "zstd", "tar", "mysql", "mysqldump"]);
  scratch = await mkdtemp(join(tmpdir(), "looker-job-ks-"));
});

afterEach(async () => {
  await Promise.all(vms.splice(0).map((vm) => vm.destroy()));
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

async function vm(name: string): Promise<Vm> {
  const created = await createVm({ name });
  vms.push(created);
  return created;
}

/** A started simulator on this runner and its node, as the action builds it (connectNodes, local node only). */
async function startedSimulator(
  label: string,
  options: Parameters<typeof simulatedLooker>[1],
): Promise<{ sim: SimulatedLooker; connected: ConnectedNodes }> {
  const sim = await simulatedLooker(join(scratch, label, "home"), {
    sizeBytes: 1_000_000,
    smallFiles: 30,
    ...options,
  });
  sim.start();
  cleanups.push(() => sim.stopQuietly());
  const connected = await connectNodes({
    home: sim.home,
    webPort: sim.webPort,
    bootTimeoutMs: BOOT_TIMEOUT_MS,
    masterKey: { kind: "env", value: sim.cmk },
    nodes: [],
    knownHosts: "",
    acceptNewHostKeys: false,
  });
  cleanups.push(() => connected.close());
  return { sim, connected };
}

async function jobRequest(
  label: string,
  sim: SimulatedLooker,
  connected: ConnectedNodes,
  overrides: Partial<LookerJobRequest> = {},
): Promise<LookerJobRequest & { storeDir: string; lines: string[] }> {
  const storeDir = join(scratch, label, "store");
  const lines: string[] = [];
  return {
    home: sim.home,
    instance: label,
    selection: await selectionFor(sim.home, { nodes: connected.nodes }),
    recipients: [recipient],
    store: new DirStore(storeDir),
    consistency: "brief-stop",
    keystoreIndependent: false,
    nodes: connected.nodes,
    lockDirectory: scratch,
    log: (line) => {
      lines.push(line);
    },
    storeDir,
    lines,
    ...overrides,
  };
}

async function storeContents(storeDir: string): Promise<string[]> {
  return (await readdir(storeDir).catch(() => [] as string[])).sort();
}

/** Every file under `dir` whose bytes contain `secret`. */
async function filesContaining(dir: string, secret: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])) {
    if (!entry.isFile()) continue;
    const file = join(entry.parentPath, entry.name);
    const content = await readFile(file).catch(() => Buffer.alloc(0));
    if (content.includes(secret)) found.push(file);
  }
  return found;
}

describe("keystore-independent backup of a running simulator", () => {
  let archive: string;
  let sim: SimulatedLooker;
  let backupUid: string;

  beforeAll(async () => {
    const started = await startedSimulator("keystore", {});
    sim = started.sim;
    const request = await jobRequest("keystore", sim, started.connected, { keystoreIndependent: true });
    const result = await runLookerBackup(request);
    archive = result.archive!.location;
    backupUid = result.backupUid!;
    expect(request.lines).toContain(`keystore-independent recrypt done (backup_uid ${backupUid})`);
    expect(result.keyfile).toBe(
      join(request.storeDir, basename(archive).replace(".tar.zst.age", ".keyfile.age")),
    );
  });

  it("records backup_uid in meta, stores the key file encrypted, and leaves no clear key behind", async () => {
    // Looker's documented key file format: backup_uid is base64 of 16 bytes.
    expect(Buffer.from(backupUid, "base64")).toHaveLength(16);
    const tree = await extractArchive(archive, identity, join(scratch, "keystore"));
    const meta = await readMeta(tree);
    expect(meta).toMatchObject({ keystoreIndependent: true, backupUid, consistency: "brief-stop" });

    const keyfileText = await decryptBuffer(await readFile(archive.replace(".tar.zst.age", ".keyfile.age")), {
      identities: [identity],
    });
    const parsed = JSON.parse(keyfileText.toString("utf8")) as { dbmk: string; backup_uid: string };
    // Looker writes dbmk with a newline inside the string; the secret searched for below is the key text itself.
    const keyfile = { ...parsed, dbmk: parsed.dbmk.trim() };
    expect(keyfile.backup_uid).toBe(backupUid);
    expect(Buffer.from(keyfile.dbmk, "base64")).toHaveLength(32);
    expect(JSON.stringify(meta)).not.toContain(keyfile.dbmk);

    // The clear key existed only in a temp dir on the host: gone, as is any copy in the home or the store.
    const tempDirs = (await readdir(tmpdir())).filter((name) => name.startsWith("looker-keyfile-"));
    const leftovers = await Promise.all(
      tempDirs.map((d) => filesContaining(join(tmpdir(), d), keyfile.dbmk)),
    );
    expect(leftovers.flat()).toEqual([]);
    expect(await filesContaining(sim.home, keyfile.dbmk)).toEqual([]);
    expect(await filesContaining(join(scratch, "keystore", "store"), keyfile.dbmk)).toEqual([]);
    expect(await filesContaining(tree, keyfile.dbmk)).toEqual([]);
    expect(sim.isRunning()).toBe(true);
  });

  it("restores onto a fresh VM with a different CMK plus restore_dr_backup, and boots", async () => {
    const target = await vm("ks-restore");
    const otherCmk = randomBytes(32).toString("base64");
    expect(otherCmk).not.toBe(sim.cmk);
    const report = await runDrill({
      archive,
      keys: { identities: [identity] },
      target: sshTarget(target),
      masterKey: { kind: "env", value: otherCmk },
      webPort: sim.webPort,
      apiPort: sim.apiPort,
      bootTimeoutMs: BOOT_TIMEOUT_MS,
      api: { clientId: sim.clientId, clientSecret: sim.clientSecret },
    });
    expect(report.error).toBeUndefined();
    expect(report.result).toBe("passed");
    expect(report.steps.find((s) => s.name === "restore_dr_backup")?.ok).toBe(true);
    expect(report.steps.find((s) => s.name === "start looker")?.ok).toBe(true);
  });

  it("without the key file the restored copy refuses to boot under a different CMK", async () => {
    const target = await vm("ks-no-key");
    const alone = join(await mkdtemp(join(scratch, "alone-")), basename(archive));
    await copyFile(archive, alone);
    const report = await runDrill({
      archive: alone,
      keys: { identities: [identity] },
      target: sshTarget(target),
      masterKey: { kind: "env", value: randomBytes(32).toString("base64") },
      webPort: sim.webPort,
      apiPort: sim.apiPort,
      bootTimeoutMs: BOOT_TIMEOUT_MS,
    });
    expect(report.result).toBe("failed");
    expect(report.exitCode).toBe(5);
    expect(report.logTail).toMatch(/boot refused: cannot decrypt the KEK/);
    expect(await probeAlive({ host: target.address, port: sim.webPort, scheme: "https" })).toBe(false);
  });
});

function sshTarget(target: Vm) {
  return {
    kind: "ssh" as const,
    host: target.address,
    privateKey: target.clientPrivateKey,
    knownHosts: `${target.knownHostsLine}\n`,
    sshTimeoutMs: 30_000,
  };
}

describe("MySQL backend (simulator home in a private MariaDB)", () => {
  let server: MariaDb;
  let sim: SimulatedLooker;
  let connected: ConnectedNodes;
  const password = randomBytes(9).toString("hex");

  beforeAll(async () => {
    server = await startMariaDb();
    cleanups.push(() => server.stop());
    await server.createDatabase("looker_prod", "lkprod", password);
    ({ sim, connected } = await startedSimulator("mysql", {
      mysql: { host: "127.0.0.1", port: server.port, user: "lkprod", password, database: "looker_prod" },
    }));
  });

  /** `CHECKSUM TABLE` of each table of `database`, by table name. */
  async function checksums(database: string): Promise<Map<string, string>> {
    const tables = (
      await server.exec(
        `SELECT table_name FROM information_schema.tables WHERE table_schema='${database}' ORDER BY 1;`,
      )
    )
      .trim()
      .split("\n")
      .filter(Boolean);
    const sums = new Map<string, string>();
    for (const table of tables) {
      const row = await server.exec(`CHECKSUM TABLE \`${database}\`.\`${table}\` EXTENDED;`);
      sums.set(table, row.trim().split("\t")[1] ?? "");
    }
    return sums;
  }

  it("archives mysql/<db>.sql, which loads into another database with identical tables", async () => {
    const request = await jobRequest("mysql", sim, connected);
    const result = await runLookerBackup(request);
    expect(result.mysqlDatabase).toBe("looker_prod");
    expect(result.downtimeMs).toBeGreaterThan(0);
    expect(request.lines).toContain("mysql: consistent snapshot of looker_prod taken");
    expect(sim.isRunning()).toBe(true);

    const tree = await extractArchive(result.archive!.location, identity, join(scratch, "mysql"));
    expect(await readdir(join(tree, "mysql"))).toEqual(["looker_prod.sql"]);
    const dump = join(tree, "mysql", "looker_prod.sql");
    expect(await readFile(dump, "utf8")).toMatch(/\n-- Dump completed[^\n]*\n\s*$/);
    expect(await readMeta(tree)).toMatchObject({ backend: "mysql", consistency: "brief-stop" });

    await server.createDatabase("looker_copy", "lkcopy", password);
    await loadDumpIntoDatabase(
      { host: "127.0.0.1", port: server.port, user: "lkcopy", password, database: "looker_copy" },
      "looker_copy",
      createReadStream(dump),
    );
    const source = await checksums("looker_prod");
    const copy = await checksums("looker_copy");
    expect([...copy.keys()]).toEqual([...source.keys()]);
    expect(source.size).toBeGreaterThan(2);
    // The running Looker rewrites its heartbeat row every second after the snapshot; every other table is
    // what the snapshot saw, and nothing writes to them, so they must match to the bit.
    for (const [table, sum] of source) {
      if (table === "looker_sim_heartbeat") continue;
      expect(copy.get(table), table).toBe(sum);
    }
    expect((await server.exec("SELECT COUNT(*) FROM looker_copy.looker_sim_heartbeat;")).trim()).toBe("1");
  });

  it("a dump that cannot log in fails the run: no archive in the store, Looker running again", async () => {
    const request = await jobRequest("mysql-badpw", sim, connected, {
      mysql: { password: "not-the-password" },
    });
    await expect(runLookerBackup(request)).rejects.toThrow(
      /mysqldump of database "looker_prod" .*failed[\s\S]*Access denied/,
    );
    expect(request.lines).toContain(`stopping Looker on ${connected.nodes[0]!.name}`);
    expect(await storeContents(request.storeDir)).toEqual([]);
    expect(sim.isRunning()).toBe(true);
    expect(await probeAlive({ host: "127.0.0.1", port: sim.webPort, scheme: "https" })).toBe(true);
  });

  it("a dump whose connection is killed part-way fails the run: no archive in the store, Looker running", async () => {
    const before = simulatorPid(sim.lookerDir);
    // A WRITE lock on one table makes mysqldump wait, mid-dump, for its turn; then its connection is killed.
    const locker = await lockTable(server, "looker_prod", "looker_sim_history");
    try {
      const request = await jobRequest("mysql-killed", sim, connected, { consistency: "live" });
      const running = runLookerBackup(request);
      running.catch(() => undefined);
      const dumpThread = await waitForBlockedDump(server, "lkprod");
      await server.exec(`KILL CONNECTION ${dumpThread};`);
      await expect(running).rejects.toThrow(/mysqldump of database "looker_prod" .*failed/);
      expect(await storeContents(request.storeDir)).toEqual([]);
    } finally {
      locker.stdin.end();
    }
    expect(simulatorPid(sim.lookerDir)).toBe(before);
    expect(await probeAlive({ host: "127.0.0.1", port: sim.webPort, scheme: "https" })).toBe(true);
  });
});

/** A mysql session holding `LOCK TABLES <table> WRITE` until its stdin is closed. */
async function lockTable(
  server: MariaDb,
  database: string,
  table: string,
): Promise<ChildProcessWithoutNullStreams> {
  const child = spawn("mysql", [
    `--defaults-file=${server.defaultsFile}`,
    "--unbuffered",
    "--batch",
    database,
  ]);
  let output = "";
  const locked = new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("locked-now")) resolve();
    });
    child.once("close", (code) => reject(new Error(`the locking mysql session ended (${code}): ${output}`)));
  });
  child.stdin.write(`LOCK TABLES \`${table}\` WRITE;\nSELECT 'locked-now';\n`);
  await locked;
  return child;
}

/** The id of `user`'s connection that waits for a table lock (the dump), polled until it appears. */
async function waitForBlockedDump(server: MariaDb, user: string): Promise<string> {
  for (let attempt = 0; attempt < 600; attempt++) {
    const id = (
      await server.exec(
        `SELECT id FROM information_schema.processlist WHERE user='${user}' AND state LIKE '%lock%' LIMIT 1;`,
      )
    ).trim();
    if (id !== "") return id;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no connection of ${user} ever waited for the table lock: did the dump start?`);
}
