/**
 * Contract tests for the Looker simulator (test/fixtures/looker-sim/looker.mjs) and the home generator:
 * drills prove "Looker boots" against the simulator, so it must boot when real Looker would and refuse
 * (non-zero exit, "boot refused" in looker/log/looker.log) when real Looker would not.
 */
import { execFile, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import {
  chmod,
  lstat,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  truncate,
  writeFile,
} from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type GeneratedLookerHome,
  type GenerateLookerHomeOptions,
  generateLookerHome,
} from "../fixtures/home-generator.js";
import { freePort } from "../helpers/free-port.js";
import { type MariaDb, startMariaDb } from "../helpers/mariadb.js";
import { requireCommands } from "../helpers/prerequisites.js";

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

const tempRoots: string[] = [];
const homesToStop: GeneratedLookerHome[] = [];

afterEach(async () => {
  for (const home of homesToStop.splice(0)) await forceStop(home);
  for (const root of tempRoots.splice(0)) await rm(root, { recursive: true, force: true });
});

/** Env for the simulator without any CMK inherited from the test runner, plus `extra`. */
function simEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LOOKER_SIM_STOP_TIMEOUT_MS: "10000" };
  delete env["LKR_MASTER_KEY_ENV"];
  delete env["LKR_MASTER_KEY_FILE"];
  return { ...env, ...extra };
}

function looker(
  home: GeneratedLookerHome,
  args: string[],
  env: NodeJS.ProcessEnv = simEnv(),
): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile("./looker", args, { cwd: home.lookerDir, env }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

const withCmk = (cmk: string) => simEnv({ LKR_MASTER_KEY_ENV: cmk });
const newCmk = () => randomBytes(32).toString("base64");

async function makeHome(opts: Partial<GenerateLookerHomeOptions> = {}): Promise<GeneratedLookerHome> {
  const root = await mkdtemp(path.join(os.tmpdir(), "looker-sim-test-"));
  tempRoots.push(root);
  const home = await generateLookerHome({
    sizeBytes: 1_000_000,
    smallFiles: 40,
    webPort: await freePort(),
    apiPort: await freePort(),
    bind: "127.0.0.1",
    ...opts,
    root: path.join(root, "home"),
  });
  homesToStop.push(home);
  return home;
}

async function startOk(home: GeneratedLookerHome, cmk = home.cmk): Promise<void> {
  const result = await looker(home, ["start"], withCmk(cmk));
  expect(result.stderr).toBe("");
  expect(result.code).toBe(0);
}

async function forceStop(home: GeneratedLookerHome): Promise<void> {
  await looker(home, ["stop"]);
  const pid = await lockPid(home);
  if (pid !== undefined) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

async function lockPid(home: GeneratedLookerHome): Promise<number | undefined> {
  try {
    return Number.parseInt(await readFile(path.join(home.lookerDir, ".db", "looker.lck"), "utf8"), 10);
  } catch {
    return undefined;
  }
}

const readLog = (home: GeneratedLookerHome) =>
  readFile(path.join(home.lookerDir, "log", "looker.log"), "utf8");
const dbScript = (home: GeneratedLookerHome) => path.join(home.lookerDir, ".db", "looker.script");

function login(home: GeneratedLookerHome, body: string, contentType: string): Promise<Response> {
  return fetch(`http://127.0.0.1:${home.apiPort}/api/4.0/login`, {
    method: "POST",
    headers: { "content-type": contentType },
    body,
  });
}

function formLogin(home: GeneratedLookerHome, clientId: string, clientSecret: string): Promise<Response> {
  const body = new URLSearchParams({ client_id: clientId, client_secret: clientSecret }).toString();
  return login(home, body, "application/x-www-form-urlencoded");
}

async function writeKeyFile(home: GeneratedLookerHome, name: string): Promise<string> {
  const file = path.join(path.dirname(home.home), name);
  const result = await looker(home, ["generate_keyfile_for_backup", file]);
  expect(result.code).toBe(0);
  return file;
}

/** Polls `probe` until it returns true; the assertion is on the change, not on how long it took. */
async function eventually(probe: () => Promise<boolean>, what: string, limitMs = 20_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (Date.now() < deadline) {
    if (await probe()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`gave up waiting: ${what}`);
}

describe("looker simulator: key files and the keystore", () => {
  it("generate_keyfile_for_backup writes a 0600 JSON file with a 256-bit dbmk and a backup_uid", async () => {
    const home = await makeHome();
    const file = await writeKeyFile(home, "backup.key");
    const content = JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>;
    expect(Object.keys(content).sort()).toEqual(["backup_uid", "dbmk"]);
    expect(Buffer.from(String(content["dbmk"]), "base64")).toHaveLength(32);
    expect(content["backup_uid"]).toMatch(/^[A-Za-z0-9._-]+$/);
    expect((await stat(file)).mode & 0o777).toBe(0o600);

    // An existing, looser file is tightened, and every key file is new.
    await chmod(file, 0o644);
    await writeKeyFile(home, "backup.key");
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const again = JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>;
    expect(again["dbmk"]).not.toBe(content["dbmk"]);
    expect(again["backup_uid"]).not.toBe(content["backup_uid"]);
  });

  it("keystore_independent_recrypt needs the CMK and a stopped instance, then stores the entry", async () => {
    const home = await makeHome();
    const keyFile = await writeKeyFile(home, "backup.key");
    const { backup_uid: uid, dbmk } = JSON.parse(await readFile(keyFile, "utf8")) as Record<string, string>;

    const noCmk = await looker(home, ["keystore_independent_recrypt", keyFile]);
    expect(noCmk.code).not.toBe(0);
    expect(noCmk.stderr).toMatch(/no CMK configured/);

    const wrongCmk = await looker(home, ["keystore_independent_recrypt", keyFile], withCmk(newCmk()));
    expect(wrongCmk.code).not.toBe(0);
    expect(wrongCmk.stderr).toMatch(/cannot decrypt the KEK with the configured CMK/);

    await startOk(home);
    const whileRunning = await looker(home, ["keystore_independent_recrypt", keyFile], withCmk(home.cmk));
    expect(whileRunning.code).not.toBe(0);
    expect(whileRunning.stderr).toMatch(/needs Looker stopped/);
    expect((await looker(home, ["stop"])).code).toBe(0);

    const ok = await looker(home, ["keystore_independent_recrypt", keyFile], withCmk(home.cmk));
    expect(ok.stderr).toBe("");
    expect(ok.code).toBe(0);
    const script = await readFile(dbScript(home), "utf8");
    expect(script).toContain(`"${uid}"`);
    // Secrets never reach the output or the log.
    for (const secret of [home.cmk, dbmk!]) {
      expect(ok.stdout + ok.stderr + (await readLog(home))).not.toContain(secret);
      expect(script).not.toContain(secret);
    }
  });

  it("restore_dr_backup re-keys the KEK to a new CMK: start works with the new CMK, not the old", async () => {
    const home = await makeHome();
    const keyFile = await writeKeyFile(home, "backup.key");
    expect((await looker(home, ["keystore_independent_recrypt", keyFile], withCmk(home.cmk))).code).toBe(0);

    const replacement = newCmk();
    const restored = await looker(home, ["restore_dr_backup", keyFile], withCmk(replacement));
    expect(restored.stderr).toBe("");
    expect(restored.code).toBe(0);

    const old = await looker(home, ["start"], withCmk(home.cmk));
    expect(old.code).not.toBe(0);
    expect(await readLog(home)).toMatch(/ERROR boot refused: cannot decrypt the KEK with the configured CMK/);

    await startOk(home, replacement);
    expect((await formLogin(home, home.clientId, home.clientSecret)).status).toBe(200);
  });

  it("restore_dr_backup takes the CMK from LKR_MASTER_KEY_FILE too", async () => {
    const home = await makeHome();
    const keyFile = await writeKeyFile(home, "backup.key");
    expect((await looker(home, ["keystore_independent_recrypt", keyFile], withCmk(home.cmk))).code).toBe(0);
    const cmkFile = path.join(path.dirname(home.home), "cmk");
    const replacement = newCmk();
    await writeFile(cmkFile, `${replacement}\n`, { mode: 0o600 });
    const restored = await looker(
      home,
      ["restore_dr_backup", keyFile],
      simEnv({ LKR_MASTER_KEY_FILE: cmkFile }),
    );
    expect(restored.code).toBe(0);
    const started = await looker(home, ["start"], simEnv({ LKR_MASTER_KEY_FILE: cmkFile }));
    expect(started.code).toBe(0);
  });

  it("restore_dr_backup with a wrong, unknown or missing key file fails and leaves the DB unchanged", async () => {
    const home = await makeHome();
    const keyFile = await writeKeyFile(home, "backup.key");
    expect((await looker(home, ["keystore_independent_recrypt", keyFile], withCmk(home.cmk))).code).toBe(0);
    const before = await readFile(dbScript(home));
    const { backup_uid: uid } = JSON.parse(await readFile(keyFile, "utf8")) as Record<string, string>;

    const wrongKey = path.join(path.dirname(home.home), "wrong.key");
    await writeFile(wrongKey, JSON.stringify({ dbmk: newCmk(), backup_uid: uid }), { mode: 0o600 });
    const unknownKey = await writeKeyFile(home, "unknown.key");
    const cases: Array<[string, RegExp]> = [
      [wrongKey, /does not decrypt the KEK entry/],
      [unknownKey, /no KEK entry for backup_uid/],
      [path.join(path.dirname(home.home), "absent.key"), /bad key file .*ENOENT/],
    ];
    for (const [file, message] of cases) {
      const result = await looker(home, ["restore_dr_backup", file], withCmk(newCmk()));
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(message);
      expect(await readFile(dbScript(home))).toEqual(before);
    }

    await startOk(home);
    const whileRunning = await looker(home, ["restore_dr_backup", keyFile], withCmk(newCmk()));
    expect(whileRunning.code).not.toBe(0);
    expect(whileRunning.stderr).toMatch(/needs Looker stopped/);
  });
});

describe("looker simulator: boot refusals", () => {
  const refusals: Array<{
    name: string;
    break: (home: GeneratedLookerHome) => Promise<void>;
    env: (home: GeneratedLookerHome) => NodeJS.ProcessEnv;
    log: RegExp;
  }> = [
    {
      name: "a wrong CMK",
      break: async () => {},
      env: () => withCmk(newCmk()),
      log: /ERROR boot refused: cannot decrypt the KEK with the configured CMK/,
    },
    {
      name: "no CMK",
      break: async () => {},
      env: () => simEnv(),
      log: /ERROR boot refused: no CMK configured/,
    },
    {
      name: "a torn data file (one byte changed)",
      break: async (home) => {
        const file = path.join(home.lookerDir, ".db", "looker.data");
        const data = await readFile(file);
        const middle = Math.floor(data.length / 2);
        data[middle] = data[middle]! ^ 0xff;
        await writeFile(file, data);
      },
      env: (home) => withCmk(home.cmk),
      log: /ERROR boot refused: internal database torn: looker\/\.db\/looker\.data fails its checksum/,
    },
    {
      name: "a torn data file (truncated)",
      break: (home) => truncate(path.join(home.lookerDir, ".db", "looker.lobs"), 1000),
      env: (home) => withCmk(home.cmk),
      log: /ERROR boot refused: internal database torn: looker\/\.db\/looker\.lobs has 1000 bytes/,
    },
    {
      name: "a torn looker.script",
      break: async (home) => {
        const text = await readFile(dbScript(home), "utf8");
        await writeFile(dbScript(home), text.replace('"generation": 1', '"generation": 2'));
      },
      env: (home) => withCmk(home.cmk),
      log: /ERROR boot refused: internal database torn: looker\/\.db\/looker\.script fails its checksum/,
    },
    {
      name: "a missing .db",
      break: (home) => rm(path.join(home.lookerDir, ".db"), { recursive: true }),
      env: (home) => withCmk(home.cmk),
      log: /ERROR boot refused: internal database missing/,
    },
    {
      name: "a missing required file",
      break: (home) => rm(path.join(home.lookerDir, "looker.jar")),
      env: (home) => withCmk(home.cmk),
      log: /ERROR boot refused: required file looker\/looker\.jar is missing/,
    },
  ];

  for (const refusal of refusals) {
    it(`refuses to boot with ${refusal.name}`, async () => {
      const home = await makeHome();
      await refusal.break(home);
      const result = await looker(home, ["start"], refusal.env(home));
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(/^looker: boot refused: /);
      expect(result.stderr.trim().split("\n")).toHaveLength(1);
      expect(await readLog(home)).toMatch(refusal.log);
      expect((await looker(home, ["status"])).code).toBe(3);
      expect(existsSync(path.join(home.lookerDir, ".db", "looker.lck"))).toBe(false);
    });
  }

  it("refuses to boot when the web port is taken, and names the port", async () => {
    const first = await makeHome();
    const second = await makeHome({ webPort: first.webPort });
    await startOk(first);
    const result = await looker(second, ["start"], withCmk(second.cmk));
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(
      new RegExp(`cannot listen on 127\\.0\\.0\\.1:${first.webPort}: EADDRINUSE`),
    );
    expect(existsSync(path.join(second.lookerDir, ".db", "looker.lck"))).toBe(false);
  });
});

describe("looker simulator: running instance", () => {
  it("serves /alive and login, holds the lock, refuses a second start, and stop removes the lock", async () => {
    const home = await makeHome();
    await startOk(home);
    const pid = await lockPid(home);
    expect(pid).toBeGreaterThan(0);
    const status = await looker(home, ["status"]);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain(`running (pid ${pid})`);

    expect((await fetch(`http://127.0.0.1:${home.webPort}/alive`)).status).toBe(200);
    const form = await formLogin(home, home.clientId, home.clientSecret);
    expect(form.status).toBe(200);
    const token = (await form.json()) as Record<string, unknown>;
    expect(token).toMatchObject({ token_type: "Bearer", expires_in: 3600 });
    expect(token["access_token"]).toMatch(/^[0-9a-f]{20,}$/);
    const json = await login(
      home,
      JSON.stringify({ client_id: home.clientId, client_secret: home.clientSecret }),
      "application/json",
    );
    expect(json.status).toBe(200);
    expect((await formLogin(home, home.clientId, `${home.clientSecret}x`)).status).toBe(404);
    expect((await formLogin(home, "nobody", home.clientSecret)).status).toBe(404);
    expect(await readLog(home)).not.toContain(home.clientSecret);

    const second = await looker(home, ["start"], withCmk(home.cmk));
    expect(second.code).not.toBe(0);
    expect(second.stderr).toMatch(/already running/);

    const stopped = await looker(home, ["stop"]);
    expect(stopped.code).toBe(0);
    expect(existsSync(path.join(home.lookerDir, ".db", "looker.lck"))).toBe(false);
    expect((await looker(home, ["status"])).code).toBe(3);
    await expect(fetch(`http://127.0.0.1:${home.webPort}/alive`)).rejects.toThrow();
    const again = await looker(home, ["stop"]);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/not running/);
  });

  it("keeps appending to the log and rewriting a .db file while running", async () => {
    const home = await makeHome();
    await startOk(home);
    const journal = path.join(home.lookerDir, ".db", "looker.journal");
    await eventually(async () => existsSync(journal), "the journal appears");
    const logBefore = (await stat(path.join(home.lookerDir, "log", "looker.log"))).size;
    const journalBefore = await stat(journal);
    const seqBefore = (JSON.parse(await readFile(journal, "utf8")) as { seq: number }).seq;

    await eventually(async () => {
      const now = await stat(journal);
      return now.mtimeMs !== journalBefore.mtimeMs && now.ino !== journalBefore.ino;
    }, "the journal is rewritten (new inode: temp + rename)");
    const seqAfter = (JSON.parse(await readFile(journal, "utf8")) as { seq: number }).seq;
    expect(seqAfter).toBeGreaterThan(seqBefore);
    expect((await stat(path.join(home.lookerDir, "log", "looker.log"))).size).toBeGreaterThan(logBefore);
  });

  it("treats a stale lock as stopped, and restart replaces the server", async () => {
    const home = await makeHome();
    const deadPid = spawnSync("true").pid!;
    await writeFile(path.join(home.lookerDir, ".db", "looker.lck"), `${deadPid}\n`);
    expect((await looker(home, ["status"])).code).toBe(3);
    await startOk(home);
    const first = await lockPid(home);
    expect(first).not.toBe(deadPid);

    const restarted = await looker(home, ["restart"], withCmk(home.cmk));
    expect(restarted.code).toBe(0);
    const second = await lockPid(home);
    expect(second).not.toBe(first);
    expect((await fetch(`http://127.0.0.1:${home.webPort}/alive`)).status).toBe(200);
  });
});

/** sha256 over the sorted listing (path, type, mode, size, link target) and contents of a tree. */
async function treeDigest(root: string, skip: (relative: string) => boolean = () => false): Promise<string> {
  const hash = createHash("sha256");
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      const full = path.join(dir, name);
      const relative = path.relative(root, full);
      if (skip(relative)) continue;
      const info = await lstat(full);
      hash.update(`${relative}\0${info.mode.toString(8)}\0${info.size}\0`);
      if (info.isSymbolicLink()) hash.update(`->${await readlink(full)}\0`);
      else if (info.isFile()) hash.update(await readFile(full));
      else if (info.isDirectory()) await walk(full);
    }
  };
  await walk(root);
  return hash.digest("hex");
}

describe("home generator", () => {
  it("is deterministic by seed (and by CMK for the encrypted DB script)", async () => {
    const cmk = newCmk();
    const options = { seed: 42, sizeBytes: 3_000_000, smallFiles: 60, webPort: 9999, apiPort: 19999 };
    const a = await makeHome({ ...options, cmk });
    const b = await makeHome({ ...options, cmk });
    const c = await makeHome({ ...options, cmk: newCmk() });
    const d = await makeHome({ ...options, seed: 43, cmk });
    const isScript = (relative: string) => relative === path.join("looker", ".db", "looker.script");

    expect(await treeDigest(b.home)).toBe(await treeDigest(a.home));
    expect(await treeDigest(c.home, isScript)).toBe(await treeDigest(a.home, isScript));
    expect(await readFile(dbScript(c))).not.toEqual(await readFile(dbScript(a)));
    expect(await treeDigest(d.home)).not.toBe(await treeDigest(a.home));
    expect([b.clientId, b.clientSecret]).toEqual([a.clientId, a.clientSecret]);
  });

  it("honours sizeBytes and smallFiles and lays out a realistic home", async () => {
    requireCommands(["zstd"]);
    const home = await makeHome({ sizeBytes: 20_000_000, smallFiles: 200 });
    expect(home.bytes).toBeGreaterThan(19_000_000);
    expect(home.bytes).toBeLessThan(21_000_000);
    expect(home.files).toBeGreaterThan(200);

    const mode = async (relative: string) => (await lstat(path.join(home.home, relative))).mode & 0o777;
    expect(await mode(".ssh/id_rsa")).toBe(0o600);
    expect(await mode("looker/.ssl/key.pem")).toBe(0o600);
    expect(await mode("looker/deploy_keys/ecommerce/id_rsa")).toBe(0o600);
    expect(await mode("looker/looker")).toBe(0o755);
    expect(await readlink(path.join(home.lookerDir, ".ssl", "current.pem"))).toBe("cert.pem");
    expect(await readdir(path.join(home.lookerDir, "plugins"))).toEqual([]);
    for (const relative of [".bashrc", ".ssh/known_hosts", "looker/looker.jar", "looker/lookerstart.cfg"]) {
      expect(existsSync(path.join(home.home, relative)), relative).toBe(true);
    }
    const userDirs = (await readdir(home.lookerDir)).filter((name) => name.startsWith("models-user-"));
    expect(userDirs.length).toBeGreaterThanOrEqual(2);
    const userFiles = await readdir(path.join(home.lookerDir, "models-user-2", "marketing_analytics"));
    expect(userFiles).toContain("Übersicht Verkäufe – 2024.md");
    expect(userFiles.some((name) => name.endsWith(".lookml") || name.endsWith(".md"))).toBe(true);
    expect(await readFile(path.join(home.lookerDir, "lookerstart.cfg"), "utf8")).toContain(
      `--port=${home.webPort} --api-port=${home.apiPort}`,
    );

    // DB data compresses like real data; jars do not compress at all.
    const ratio = (file: string) => {
      const out = spawnSync("zstd", ["-3", "-c", file], { maxBuffer: 64 * 1024 * 1024 });
      expect(out.status).toBe(0);
      return out.stdout.length;
    };
    const data = path.join(home.lookerDir, ".db", "looker.data");
    const dataRatio = (await stat(data)).size / ratio(data);
    expect(dataRatio).toBeGreaterThan(2);
    expect(dataRatio).toBeLessThan(5);
    const jar = path.join(home.lookerDir, "looker-dependencies.jar");
    expect((await stat(jar)).size / ratio(jar)).toBeLessThan(1.01);
  });

  it("refuses a non-empty root", async () => {
    const home = await makeHome();
    await expect(generateLookerHome({ root: home.home })).rejects.toThrow(/is not empty/);
  });
});

describe("looker simulator: MySQL backend (real MariaDB)", () => {
  let mariadb: MariaDb | undefined;
  let databases = 0;

  beforeAll(async () => {
    mariadb = await startMariaDb();
  });
  afterAll(async () => {
    // Servers first: a simulator still running would keep its heartbeat client connected.
    for (const home of homesToStop.splice(0)) await forceStop(home);
    await mariadb?.stop();
  });

  /** A fresh database and user; the password has characters that break naive option files and YAML. */
  async function makeMySqlHome(): Promise<{ home: GeneratedLookerHome; database: string }> {
    const db = mariadb!;
    databases += 1;
    const database = `looker_sim_${process.pid}_${databases}`;
    const user = `looker_${databases}`;
    const password = `pw ${randomBytes(6).toString("hex")} #;'x`;
    await db.createDatabase(database, user, password);
    const home = await makeHome({ mysql: { host: db.host, port: db.port, user, password, database } });
    return { home, database };
  }

  it("boots without a .db, keeps writing heartbeats and re-keys with restore_dr_backup", async () => {
    const db = mariadb!;
    const { home, database } = await makeMySqlHome();
    expect(existsSync(path.join(home.lookerDir, ".db"))).toBe(false);
    expect((await stat(path.join(home.lookerDir, "looker-db.yml"))).mode & 0o777).toBe(0o600);
    expect((await db.exec(`SELECT COUNT(*) FROM \`${database}\`.looker_sim_history`)).trim()).toBe("200");

    await startOk(home);
    expect((await formLogin(home, home.clientId, home.clientSecret)).status).toBe(200);
    expect((await formLogin(home, home.clientId, "wrong")).status).toBe(404);
    const heartbeat = async () =>
      Number((await db.exec(`SELECT seq FROM \`${database}\`.looker_sim_heartbeat WHERE id = 1`)).trim());
    await eventually(async () => (await heartbeat()) > 0, "the heartbeat row is updated");
    const seen = await heartbeat();
    await eventually(async () => (await heartbeat()) > seen, "the heartbeat row keeps changing");
    expect((await looker(home, ["stop"])).code).toBe(0);

    const keyFile = await writeKeyFile(home, "backup.key");
    const { backup_uid: uid } = JSON.parse(await readFile(keyFile, "utf8")) as Record<string, string>;
    expect((await looker(home, ["keystore_independent_recrypt", keyFile], withCmk(home.cmk))).code).toBe(0);
    expect(await db.exec(`SELECT backup_uid FROM \`${database}\`.looker_sim_dr_keys`)).toContain(uid);
    const replacement = newCmk();
    const restored = await looker(home, ["restore_dr_backup", keyFile], withCmk(replacement));
    expect(restored.stderr).toBe("");
    expect(restored.code).toBe(0);

    expect((await looker(home, ["start"], withCmk(home.cmk))).code).not.toBe(0);
    expect(await readLog(home)).toMatch(/ERROR boot refused: cannot decrypt the KEK with the configured CMK/);
    await startOk(home, replacement);
    expect((await formLogin(home, home.clientId, home.clientSecret)).status).toBe(200);
  });

  it("refuses to boot when the MySQL tables are missing or the credentials are wrong", async () => {
    const db = mariadb!;
    const { home, database } = await makeMySqlHome();
    const yml = path.join(home.lookerDir, "looker-db.yml");
    const original = await readFile(yml, "utf8");
    await writeFile(yml, original.replace(/^password: .*$/m, "password: not-the-password"));
    const denied = await looker(home, ["start"], withCmk(home.cmk));
    expect(denied.code).not.toBe(0);
    expect(await readLog(home)).toMatch(/ERROR boot refused: MySQL database .*Access denied/);

    await writeFile(yml, original);
    await db.exec(`DROP TABLE \`${database}\`.looker_sim_keystore`);
    const missing = await looker(home, ["start"], withCmk(home.cmk));
    expect(missing.code).not.toBe(0);
    expect(await readLog(home)).toMatch(/ERROR boot refused: internal database missing: MySQL database/);
  });
});
