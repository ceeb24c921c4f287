/**
 * The restore drill against real namespace VMs (sshd, strict host keys), the Looker simulator and MariaDB:
 * a keystore-independent backup of home A boots on VM B under a different CMK; wrong or missing key files,
 * corrupted archives and unreachable targets fail with the right exit codes, and the teardown always runs.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import {
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { encryptBuffer } from "../../src/crypto/age.js";
import { generateHybridIdentity, generateIdentity } from "../../src/crypto/age-keys.js";
import { generateSigningKey, parseTrustedSigners, publicKeyLine } from "../../src/crypto/ssh-keys.js";
import { type DrillRequest, runDrill } from "../../src/drill/drill.js";
import { drillSummaryMarkdown } from "../../src/drill/report.js";
import { NOT_CHECKED_WARNING } from "../../src/engine/authenticity.js";
import { runBackup } from "../../src/engine/backup.js";
import { runLookerBackup } from "../../src/engine/looker-job.js";
import { probeAlive } from "../../src/looker/alive.js";
import { LocalHost } from "../../src/remote/local-host.js";
import { keyfileNameFor } from "../../src/store/archive-name.js";
import { DirStore } from "../../src/store/dir-store.js";
import { type GeneratedLookerHome, generateLookerHome } from "../fixtures/home-generator.js";
import { cli } from "../helpers/cli.js";
import { freePort } from "../helpers/free-port.js";
import { type MariaDb, startMariaDb } from "../helpers/mariadb.js";
import { selectionFor } from "../helpers/selection.js";
import { createVm, type Vm } from "../helpers/vm.js";

const BOOT_TIMEOUT_MS = 60_000;

let scratch: string;
const vms: Vm[] = [];
const servers: MariaDb[] = [];

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "drill-test-"));
  // The local-directory drill runs Looker as the looker user, who must be able to walk down to its home.
  await chmod(scratch, 0o755);
});

afterEach(async () => {
  await Promise.all(vms.splice(0).map((vm) => vm.destroy()));
  await Promise.all(servers.splice(0).map((server) => server.stop()));
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function vm(): Promise<Vm> {
  const created = await createVm({ name: "drill-target" });
  vms.push(created);
  return created;
}

function newCmk(): string {
  return randomBytes(32).toString("base64");
}

/**
 * Runs a key command of Looker in a generated home as its script would (`java -jar looker.jar <args>` in ~/looker),
 * directly so the jar's exit status counts (the script's own is always 0), with the CMK as a secret variable.
 */
async function looker(home: GeneratedLookerHome, cmk: string, ...args: string[]): Promise<string> {
  const result = await new LocalHost().run(
    ["env", `HOME=${home.home}`, "java", "-jar", "looker.jar", ...args],
    {
      cwd: home.lookerDir,
      secretEnv: { LKR_MASTER_KEY_ENV: cmk },
    },
  );
  if (result.code !== 0)
    throw new Error(`java -jar looker.jar ${args.join(" ")} failed (${result.code}): ${result.stderr}`);
  return result.stdout;
}

interface KeystoreIndependentBackup {
  home: GeneratedLookerHome;
  cmk: string;
  identity: string;
  recipient: string;
  storeDir: string;
  archive: string;
  keyfile: string;
  sslFile: string;
}

/**
 * Home A (CMK A), a keystore-independent recrypt with a fresh key file, a backup into a DirStore and the key file
 * stored encrypted beside it, as the backup job does.
 */
const LATIN1_DIR = Buffer.from("models-user-\xe9t\xe9", "latin1");

async function keystoreIndependentBackup(
  label: string,
  ports: { webPort?: number; apiPort?: number } = {},
  keys: { postQuantum?: boolean } = {},
): Promise<KeystoreIndependentBackup> {
  const base = await mkdtemp(join(scratch, `${label}-`));
  const cmk = newCmk();
  const home = await generateLookerHome({
    root: join(base, "home"),
    cmk,
    sizeBytes: 1_500_000,
    smallFiles: 40,
    ...ports,
  });
  // A LookML directory named in Latin-1: names are bytes, and the drill's check on the target must find it.
  mkdirSync(Buffer.concat([Buffer.from(`${home.home}/looker/`), LATIN1_DIR]));
  writeFileSync(
    Buffer.concat([Buffer.from(`${home.home}/looker/`), LATIN1_DIR, Buffer.from("/v.lkml")]),
    "view: v {}\n",
  );
  // A sparse file (256 MiB, one island of data): it must reach the drill target sparse, not as zeros.
  const sparse = await open(join(home.home, "looker", "sparse.bin"), "w");
  await sparse.write("island", 128 << 20);
  await sparse.truncate(256 << 20);
  await sparse.close();
  const keyfilePath = join(base, "keyfile.json");
  await looker(home, cmk, "generate_keyfile_for_backup", keyfilePath);
  await looker(home, cmk, "keystore_independent_recrypt", keyfilePath);
  const clear = await readFile(keyfilePath);
  const backupUid = (JSON.parse(clear.toString("utf8")) as { backup_uid: string }).backup_uid;
  const { identity, recipient } = keys.postQuantum ? generateHybridIdentity() : generateIdentity();
  // A certificate outside the home: it travels as rootfs/ and lands at its absolute path.
  const sslFile = join(base, "ssl", "looker.example.com.pem");
  await mkdir(join(base, "ssl"));
  await writeFile(
    sslFile,
    `-----BEGIN CERTIFICATE-----\n${randomBytes(48).toString("base64")}\n-----END CERTIFICATE-----\n`,
  );
  const storeDir = join(base, "store");
  const encryptedKeyfile = await encryptBuffer(clear, { recipients: [recipient] });
  const result = await runBackup({
    home: home.home,
    instance: label,
    recipients: [recipient],
    store: new DirStore(storeDir),
    selection: await selectionFor(home.home, { sslFiles: [sslFile] }),
    lookerMeta: { consistency: "stopped", keystoreIndependent: true, backupUid },
    companions: (name) => [{ name: keyfileNameFor(name), content: encryptedKeyfile }],
  });
  const archive = result.archive!.location;
  return {
    home,
    cmk,
    identity,
    recipient,
    storeDir,
    archive,
    keyfile: join(storeDir, keyfileNameFor(basename(archive))),
    sslFile,
  };
}

function sshTarget(target: Vm, sshTimeoutMs = 30_000): DrillRequest["target"] {
  return {
    kind: "ssh",
    host: target.address,
    privateKey: target.clientPrivateKey,
    knownHosts: `${target.knownHostsLine}\n`,
    sshTimeoutMs,
  };
}

function teardownMarker(label: string): { marker: string; command: string } {
  const marker = join(scratch, `teardown-${label}-${randomBytes(4).toString("hex")}`);
  // The command records what the drill told it, so the test sees both that it ran and with which verdict.
  return { marker, command: `printf '%s %s' "$LOOKER_DRILL_RESULT" "$LOOKER_DRILL_TARGET" > '${marker}'` };
}

describe("drill over SSH into a fresh VM", () => {
  let backup: KeystoreIndependentBackup;

  beforeAll(async () => {
    backup = await keystoreIndependentBackup("prod-a");
  });

  it("restores a keystore-independent backup under a different CMK, boots it and reports RTO/RPO", async () => {
    const target = await vm();
    const cmkB = newCmk();
    expect(cmkB).not.toBe(backup.cmk);
    const teardown = teardownMarker("ok");
    const report = await runDrill({
      archive: backup.archive,
      keys: { identities: [backup.identity] },
      target: sshTarget(target),
      masterKey: { kind: "env", value: cmkB },
      bootTimeoutMs: BOOT_TIMEOUT_MS,
      api: { clientId: backup.home.clientId, clientSecret: backup.home.clientSecret },
      checks: [{ path: "/alive", status: 200 }],
      teardownCommand: teardown.command,
      keepRunning: true,
    });
    expect(report.error).toBeUndefined();
    expect(report.result).toBe("passed");
    expect(report.exitCode).toBe(0);
    expect(report.backup.instance).toBe("prod-a");
    expect(report.backup.keystoreIndependent).toBe(true);
    expect(report.rtoMs).toBeGreaterThan(0);
    expect(report.rpoMs).toBeGreaterThanOrEqual(0);
    expect(report.filesVerified).toBeGreaterThan(40);
    expect(report.bytesRestored).toBeGreaterThan(1_000_000);
    expect(report.steps.map((s) => s.name)).toEqual([
      "check signature",
      "verify and extract archive",
      "decrypt key file",
      "connect",
      "looker user",
      "place home",
      "verify on target",
      "drill ports",
      "ports free",
      "restore_dr_backup",
      "start looker",
      "api login",
      "url checks",
      "teardown",
    ]);
    expect(report.steps.every((s) => s.ok)).toBe(true);
    // Looker kept running: /alive answers this runner, from the VM's address.
    expect(await probeAlive({ host: target.address, port: backup.home.webPort })).toBe(true);
    // The restored home belongs to the looker user and the key file did not stay behind on the target.
    const owner = await target.exec(
      "stat -c %U /home/looker/looker/looker.jar; ls /tmp | grep -c looker-drill-keyfile || true",
    );
    expect(owner.stdout.split("\n")[0]).toBe("looker");
    expect(owner.stdout.split("\n")[1]).toBe("0");
    const latin1 = Buffer.concat([
      Buffer.from(`${target.rootOnHost}/home/looker/looker/`),
      LATIN1_DIR,
      Buffer.from("/v.lkml"),
    ]);
    expect(readFileSync(latin1, "utf8")).toBe("view: v {}\n");
    const sparseOnTarget = await stat(join(target.rootOnHost, "home/looker/looker/sparse.bin"));
    expect(sparseOnTarget.size).toBe(256 << 20);
    expect(sparseOnTarget.blocks * 512).toBeLessThan(1 << 20);
    expect(await readFile(teardown.marker, "utf8")).toBe(`passed ${target.address}`);
    // The file from outside the home is in the VM's own /tmp, byte for byte.
    const placed = join(target.rootOnHost, "tmp", backup.sslFile.slice("/tmp/".length));
    expect(backup.sslFile.startsWith("/tmp/")).toBe(true);
    expect(await readFile(placed)).toEqual(await readFile(backup.sslFile));
    const markdown = drillSummaryMarkdown(report, [report]);
    expect(markdown).toContain("Restore drill passed");
    expect(markdown).toContain("Previous drills");
  });

  it("drills the host a provision command prints (its last line), and tears it down after", async () => {
    const target = await vm();
    const teardown = teardownMarker("provisioned");
    const { host: _none, ...withoutHost } = sshTarget(target) as Extract<
      DrillRequest["target"],
      { kind: "ssh" }
    >;
    const report = await runDrill({
      archive: backup.archive,
      keys: { identities: [backup.identity] },
      target: withoutHost,
      masterKey: { kind: "env", value: newCmk() },
      bootTimeoutMs: BOOT_TIMEOUT_MS,
      // A cloud CLI prints progress first; the drill takes the last line as the host.
      provisionCommand: `echo "creating vm..."; echo ${target.address}`,
      teardownCommand: teardown.command,
    });
    expect(report.error).toBeUndefined();
    expect(report.result).toBe("passed");
    expect(report.target).toContain(target.address);
    expect(report.steps.map((s) => s.name)).toContain("provision");
    expect(await readFile(teardown.marker, "utf8")).toBe(`passed ${target.address}`);
  });

  it("fails with exit 5 and Looker's boot refusal when the key file belongs to another backup", async () => {
    const target = await vm();
    // A key file of the same instance that this archive's database has no entry for.
    const otherClear = join(scratch, `other-keyfile-${randomBytes(4).toString("hex")}.json`);
    await looker(backup.home, backup.cmk, "generate_keyfile_for_backup", otherClear);
    const otherKeyfile = `${otherClear}.age`;
    const encrypted = await encryptBuffer(await readFile(otherClear), { recipients: [backup.recipient] });
    const handle = await open(otherKeyfile, "wx", 0o600);
    await handle.writeFile(encrypted);
    await handle.close();
    const teardown = teardownMarker("wrong-key");
    const report = await runDrill({
      archive: backup.archive,
      keyfile: otherKeyfile,
      keys: { identities: [backup.identity] },
      target: sshTarget(target),
      masterKey: { kind: "env", value: newCmk() },
      bootTimeoutMs: BOOT_TIMEOUT_MS,
      teardownCommand: teardown.command,
    });
    expect(report.result).toBe("failed");
    expect(report.exitCode).toBe(5);
    expect(report.error).toMatch(/restore_dr_backup failed/);
    expect(report.logTail).toMatch(/boot refused: cannot decrypt the KEK/);
    expect(report.steps.find((s) => s.name === "restore_dr_backup")?.ok).toBe(false);
    expect(report.steps.find((s) => s.name === "start looker")?.ok).toBe(false);
    expect(report.rtoMs).toBeUndefined();
    expect(await readFile(teardown.marker, "utf8")).toBe(`failed ${target.address}`);
  });

  it("fails with exit 5 when the key file is missing", async () => {
    const target = await vm();
    const lonely = join(await mkdtemp(join(scratch, "lonely-")), basename(backup.archive));
    await copyFile(backup.archive, lonely);
    const teardown = teardownMarker("no-key");
    const report = await runDrill({
      archive: lonely,
      keys: { identities: [backup.identity] },
      target: sshTarget(target),
      masterKey: { kind: "env", value: newCmk() },
      bootTimeoutMs: BOOT_TIMEOUT_MS,
      teardownCommand: teardown.command,
    });
    expect(report.exitCode).toBe(5);
    expect(report.steps.find((s) => s.name === "decrypt key file")?.detail).toMatch(/no key file/);
    expect(report.logTail).toMatch(/boot refused/);
    expect(existsSync(teardown.marker)).toBe(true);
  });

  it("fails with exit 4 on a corrupted archive and leaves the VM's home untouched", async () => {
    const target = await vm();
    const corrupted = join(await mkdtemp(join(scratch, "corrupt-")), basename(backup.archive));
    await copyFile(backup.archive, corrupted);
    const size = (await stat(corrupted)).size;
    const handle = await open(corrupted, "r+");
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, Math.floor(size / 2));
    byte[0] = byte[0]! ^ 0xff;
    await handle.write(byte, 0, 1, Math.floor(size / 2));
    await handle.close();
    const teardown = teardownMarker("corrupt");
    const report = await runDrill({
      archive: corrupted,
      keys: { identities: [backup.identity] },
      target: sshTarget(target),
      masterKey: { kind: "env", value: newCmk() },
      teardownCommand: teardown.command,
    });
    expect(report.result).toBe("failed");
    expect(report.exitCode).toBe(4);
    expect(report.steps.map((s) => s.name)).toEqual([
      "check signature",
      "verify and extract archive",
      "teardown",
    ]);
    expect(await readdir(target.homeOnHost)).toEqual([]);
    expect(await readFile(teardown.marker, "utf8")).toBe(`failed ${target.address}`);
  });

  it("refuses (exit 2) before sending anything when a directory of an outside path is a symlink on the target", async () => {
    const target = await vm();
    // The certificate's directory, on the VM, is a symlink to /etc: tar -x would write the file into /etc.
    const sslDir = dirname(backup.sslFile);
    await mkdir(dirname(join(target.rootOnHost, sslDir)), { recursive: true });
    await symlink("/etc", join(target.rootOnHost, sslDir));
    const report = await runDrill({
      archive: backup.archive,
      keys: { identities: [backup.identity] },
      target: sshTarget(target),
      masterKey: { kind: "env", value: newCmk() },
    });
    expect(report.result).toBe("failed");
    expect(report.exitCode).toBe(2);
    expect(report.error).toMatch(new RegExp(`cannot place files below ${sslDir}: it is a symlink`));
    expect(existsSync(join(target.rootOnHost, "etc", basename(backup.sslFile)))).toBe(false);
    expect(await readdir(target.homeOnHost)).toEqual([]);
  });

  it("gives a clear error within the SSH timeout when the target does not answer", async () => {
    const target = await vm();
    await target.destroy();
    const teardown = teardownMarker("gone");
    const report = await runDrill({
      archive: backup.archive,
      keys: { identities: [backup.identity] },
      target: sshTarget(target, 4_000),
      masterKey: { kind: "env", value: newCmk() },
      teardownCommand: teardown.command,
    });
    expect(report.result).toBe("failed");
    expect(report.exitCode).toBe(1);
    expect(report.error).toMatch(
      new RegExp(`target root@${target.address.replace(/\./g, "\\.")}:22 did not answer SSH within 4 s`),
    );
    const connect = report.steps.find((s) => s.name === "connect");
    expect(connect?.ok).toBe(false);
    expect(existsSync(teardown.marker)).toBe(true);
  });

  it("the CLI drills the newest archive of a directory store and writes the report and summary", async () => {
    const target = await vm();
    const dir = await mkdtemp(join(scratch, "cli-"));
    const identityFile = join(dir, "identity.txt");
    const keyFile = join(dir, "id_ed25519");
    const knownHosts = join(dir, "known_hosts");
    await writeFile(identityFile, `${backup.identity}\n`, { mode: 0o600 });
    await writeFile(keyFile, target.clientPrivateKey, { mode: 0o600 });
    await writeFile(knownHosts, `${target.knownHostsLine}\n`);
    const variable = `DRILL_TEST_CMK_${randomBytes(4).toString("hex")}`;
    process.env[variable] = newCmk();
    const reportFile = join(dir, "report.json");
    const summaryFile = join(dir, "summary.md");
    try {
      const run = await cli(
        "drill",
        "--store-dir",
        backup.storeDir,
        "--instance",
        "prod-a",
        "--identity",
        identityFile,
        "--target-host",
        target.address,
        "--ssh-key",
        keyFile,
        "--known-hosts",
        knownHosts,
        "--master-key-env",
        variable,
        "--boot-timeout",
        "60",
        "--check",
        "/alive=200",
        "--report",
        reportFile,
        "--summary",
        summaryFile,
        "--json",
      );
      // With --json, stderr holds the progress (each step as a phase) and nothing else: no log lines, no warnings.
      const notProgress = run.stderr
        .split("\n")
        .filter((line) => line !== "" && !/^drill: [a-z_]/.test(line));
      expect(notProgress).toEqual([]);
      expect(run.stderr).not.toMatch(/^drill: (ok|FAILED) /m);
      expect(run.code).toBe(0);
      const report = JSON.parse(await readFile(reportFile, "utf8")) as { result: string; archive: string };
      expect(report.result).toBe("passed");
      expect(report.archive).toBe(backup.archive);
      expect(JSON.parse(run.stdout)).toMatchObject({ result: "passed" });
      expect(await readFile(summaryFile, "utf8")).toContain("Restore drill passed");
      // The CMK never appears in what the drill writes.
      expect(await readFile(reportFile, "utf8")).not.toContain(process.env[variable]!);
    } finally {
      delete process.env[variable];
    }
  });
});

describe("drill of a MySQL-backend backup", () => {
  it("loads the dump into the drill's own database, boots against it and leaves production untouched", async () => {
    const target = await vm();
    const server = await startMariaDb({ bindAddress: target.hostAddress });
    servers.push(server);
    const prodPassword = randomBytes(9).toString("hex");
    const drillPassword = randomBytes(9).toString("hex");
    await server.createDatabase("looker_prod", "lkprod", prodPassword);
    await server.createDatabase("looker_drill", "lkdrill", drillPassword);
    const base = await mkdtemp(join(scratch, "mysql-"));
    const cmk = newCmk();
    const home = await generateLookerHome({
      root: join(base, "home"),
      cmk,
      sizeBytes: 1_000_000,
      smallFiles: 30,
      mysql: {
        host: target.hostAddress,
        port: server.port,
        user: "lkprod",
        password: prodPassword,
        database: "looker_prod",
      },
    });
    const { identity, recipient } = generateIdentity();
    const backup = await runLookerBackup({
      home: home.home,
      instance: "prod-mysql",
      selection: await selectionFor(home.home),
      recipients: [recipient],
      store: new DirStore(join(base, "store")),
      consistency: "live",
      keystoreIndependent: false,
      nodes: [],
      lockDirectory: base,
    });
    const tables = await server.exec(
      "SELECT table_name FROM information_schema.tables WHERE table_schema='looker_prod' ORDER BY 1;",
    );
    const checksumAll = async () =>
      server.exec(
        tables
          .trim()
          .split("\n")
          .map((t) => `CHECKSUM TABLE \`looker_prod\`.\`${t}\` EXTENDED;`)
          .join("\n"),
      );
    expect(tables.trim()).not.toBe("");
    const before = await checksumAll();

    // Refused: the "drill" database is production's.
    const refused = await runDrill({
      archive: backup.archive!.location,
      keys: { identities: [identity] },
      target: sshTarget(target),
      masterKey: { kind: "env", value: cmk },
      drillMysql: {
        host: target.hostAddress,
        port: server.port,
        user: "lkprod",
        password: prodPassword,
        database: "looker_prod",
      },
    });
    expect(refused.exitCode).toBe(2);
    expect(refused.error).toMatch(/is the production database/);
    expect(await readdir(target.homeOnHost)).toEqual([]);

    const report = await runDrill({
      archive: backup.archive!.location,
      keys: { identities: [identity] },
      target: sshTarget(target),
      // Not keystore-independent: the drill host gets production's CMK, but its own database.
      masterKey: { kind: "env", value: cmk },
      bootTimeoutMs: BOOT_TIMEOUT_MS,
      api: { clientId: home.clientId, clientSecret: home.clientSecret },
      drillMysql: {
        host: target.hostAddress,
        port: server.port,
        user: "lkdrill",
        password: drillPassword,
        database: "looker_drill",
      },
    });
    expect(report.error).toBeUndefined();
    expect(report.result).toBe("passed");
    expect(report.steps.find((s) => s.name === "load mysql dump")?.ok).toBe(true);
    const yml = await readFile(join(target.homeOnHost, "looker", "looker-db.yml"), "utf8");
    expect(yml).toMatch(/^database: "?looker_drill"?$/m);
    expect(yml).toMatch(/^username: "?lkdrill"?$/m);
    const drillTables = await server.exec(
      "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='looker_drill';",
    );
    expect(Number(drillTables.trim())).toBeGreaterThan(0);
    expect(await checksumAll()).toBe(before);
  });
});

describe("drill into a local directory", () => {
  it("restores into an empty directory, runs Looker there and stops it afterwards", async () => {
    // On the runner itself: ports of its own, so parallel tests never meet.
    const backup = await keystoreIndependentBackup("local-a", {
      webPort: await freePort(),
      apiPort: await freePort(),
    });
    const parent = await mkdtemp(join(scratch, "local-target-"));
    await chmod(parent, 0o755);
    const target = join(parent, "home");
    await mkdir(target);
    const report = await runDrill({
      archive: backup.archive,
      keys: { identities: [backup.identity] },
      target: { kind: "dir", dir: target },
      masterKey: { kind: "env", value: newCmk() },
      bootTimeoutMs: BOOT_TIMEOUT_MS,
    });
    expect(report.error).toBeUndefined();
    expect(report.result).toBe("passed");
    expect(report.filesVerified).toBeGreaterThan(40);
    // No ports given: the drill uses the ones the restored lookerstart.cfg names.
    expect(report.steps.find((s) => s.name === "drill ports")?.detail).toBe(
      `web ${backup.home.webPort}, API ${backup.home.apiPort}, as the restored lookerstart.cfg says`,
    );
    expect(existsSync(join(target, "looker", "looker.jar"))).toBe(true);
    expect(await probeAlive({ host: "127.0.0.1", port: backup.home.webPort, scheme: "https" })).toBe(false);
    expect(report.steps.find((s) => s.name === "ports free")?.ok).toBe(true);
    // No trusted signers: the drill ran, and says who made the archive was not checked.
    expect(report.steps[0]).toMatchObject({ name: "check signature", ok: true, detail: NOT_CHECKED_WARNING });
  });

  it("drills a backup made to a post-quantum (age1pq1) recipient like any other", async () => {
    const backup = await keystoreIndependentBackup(
      "local-pq",
      { webPort: await freePort(), apiPort: await freePort() },
      { postQuantum: true },
    );
    expect((await readFile(backup.archive)).includes("-> mlkem768x25519 ")).toBe(true);
    const report = await runDrill({
      archive: backup.archive,
      keys: { identities: [backup.identity] },
      target: { kind: "dir", dir: await emptyTarget() },
      masterKey: { kind: "env", value: newCmk() },
      bootTimeoutMs: BOOT_TIMEOUT_MS,
    });
    expect(report.error).toBeUndefined();
    expect(report.result).toBe("passed");
    expect(report.backup.keystoreIndependent).toBe(true);
    expect(report.filesVerified).toBeGreaterThan(40);
  });

  it("with trusted signers, refuses an unsigned archive with exit 4 before extracting anything", async () => {
    const backup = await keystoreIndependentBackup("local-unsigned", {
      webPort: await freePort(),
      apiPort: await freePort(),
    });
    const signer = generateSigningKey("drill");
    const parent = await mkdtemp(join(scratch, "local-target-"));
    const target = join(parent, "home");
    await mkdir(target);
    const report = await runDrill({
      archive: backup.archive,
      keys: { identities: [backup.identity] },
      trustedSigners: parseTrustedSigners(publicKeyLine(signer.key.publicKey), "test"),
      target: { kind: "dir", dir: target },
      masterKey: { kind: "env", value: newCmk() },
      bootTimeoutMs: BOOT_TIMEOUT_MS,
    });
    expect(report.exitCode).toBe(4);
    expect(report.error).toMatch(/is not signed: there is no \S+\.sig beside it/);
    expect(report.steps[0]).toMatchObject({ name: "check signature", ok: false });
    expect(report.steps.map((s) => s.name)).not.toContain("verify and extract archive");
    expect(await readdir(parent)).toEqual(["home"]);
    expect(await readdir(target)).toEqual([]);
  });

  /** A local directory target for a drill, reachable by the looker user. */
  async function emptyTarget(): Promise<string> {
    const parent = await mkdtemp(join(scratch, "local-target-"));
    await chmod(parent, 0o755);
    const target = join(parent, "home");
    await mkdir(target);
    return target;
  }

  it("refuses with exit 2 when something already answers on the drill's web port, and starts nothing", async () => {
    const backup = await keystoreIndependentBackup("local-busy", {
      webPort: await freePort(),
      apiPort: await freePort(),
    });
    // Another instance (production, say) answering /alive where the drill would look for its own Looker.
    const other = createServer((_request, response) => response.writeHead(200).end());
    await new Promise<void>((resolve) => other.listen(backup.home.webPort, "127.0.0.1", resolve));
    try {
      const target = await emptyTarget();
      const report = await runDrill({
        archive: backup.archive,
        keys: { identities: [backup.identity] },
        target: { kind: "dir", dir: target },
        masterKey: { kind: "env", value: newCmk() },
        bootTimeoutMs: BOOT_TIMEOUT_MS,
        webPort: backup.home.webPort,
        apiPort: backup.home.apiPort,
      });
      expect(report.exitCode).toBe(2);
      expect(report.error).toMatch(
        new RegExp(
          `web port 127\\.0\\.0\\.1:${backup.home.webPort} already answers \\(something that answers /alive with 200`,
        ),
      );
      expect(report.steps.map((s) => s.name)).not.toContain("start looker");
    } finally {
      await new Promise((resolve) => other.close(resolve));
    }
  });

  it("runs beside another instance on the restored ports when given ports of its own, and leaves it alone", async () => {
    const backup = await keystoreIndependentBackup("local-beside", {
      webPort: await freePort(),
      apiPort: await freePort(),
    });
    // "Production" answers on the ports the restored lookerstart.cfg names.
    let productionRequests = 0;
    const production = createServer((_request, response) => {
      productionRequests++;
      response.writeHead(200).end();
    });
    await new Promise<void>((resolve) => production.listen(backup.home.webPort, "127.0.0.1", resolve));
    try {
      const target = await emptyTarget();
      const webPort = await freePort();
      const apiPort = await freePort();
      const report = await runDrill({
        archive: backup.archive,
        keys: { identities: [backup.identity] },
        target: { kind: "dir", dir: target },
        masterKey: { kind: "env", value: newCmk() },
        bootTimeoutMs: BOOT_TIMEOUT_MS,
        webPort,
        apiPort,
        api: { clientId: backup.home.clientId, clientSecret: backup.home.clientSecret },
      });
      expect(report.error).toBeUndefined();
      expect(report.result).toBe("passed");
      expect(report.steps.find((s) => s.name === "drill ports")?.detail).toBe(
        `web ${webPort}, API ${apiPort}: lookerstart.cfg rewritten for this drill`,
      );
      expect(await readFile(join(target, "looker", "lookerstart.cfg"), "utf8")).toContain(
        `LOOKERARGS="\${LOOKERARGS} --port=${webPort} --core-port=${apiPort}"`,
      );
      expect(productionRequests).toBe(0);
    } finally {
      await new Promise((resolve) => production.close(resolve));
    }
  });

  it("refuses a keystore-independent backup without a drill CMK (exit 2), and never takes the runner's", async () => {
    const backup = await keystoreIndependentBackup("local-no-cmk", {
      webPort: await freePort(),
      apiPort: await freePort(),
    });
    // Production's CMK in the runner's environment must not reach the drill.
    process.env.LKR_MASTER_KEY_ENV = backup.cmk;
    try {
      const report = await runDrill({
        archive: backup.archive,
        keys: { identities: [backup.identity] },
        target: { kind: "dir", dir: await emptyTarget() },
        bootTimeoutMs: BOOT_TIMEOUT_MS,
        webPort: backup.home.webPort,
        apiPort: backup.home.apiPort,
      });
      expect(report.exitCode).toBe(2);
      expect(report.error).toMatch(/keystore-independent, and the drill has no CMK of its own/);
    } finally {
      delete process.env.LKR_MASTER_KEY_ENV;
    }
  });
});
