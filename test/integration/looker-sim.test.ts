/**
 * Contract tests for the test bed's Looker: the home's `looker` script (test/fixtures/looker-sim/looker.sh, after
 * Looker's published startup_scripts/looker), the `java` stand-in and the simulated jar (looker-sim/looker.mjs), and
 * the home generator. Drills prove "Looker boots" against this bed, so it must boot when real Looker would and
 * refuse ("boot refused" in looker/log/looker.log) when real Looker would not, and its script must speak only as
 * Looker's does: `status` 7 or 0, start's refusal 1, otherwise exit 0 whatever happened.
 */
import { execFile, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import {
  chmod,
  cp,
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
import http from "node:http";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type GeneratedLookerHome,
  type GenerateLookerHomeOptions,
  generateLookerHome,
} from "../fixtures/home-generator.js";
import { freePort } from "../helpers/free-port.js";
import { pathWithJava } from "../helpers/java-path.js";
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

/** Env for Looker's commands without any CMK inherited from the test runner, plus `extra`. */
function simEnv(home: GeneratedLookerHome, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: pathWithJava(), HOME: home.home };
  delete env["LKR_MASTER_KEY_ENV"];
  delete env["LKR_MASTER_KEY_FILE"];
  return { ...env, ...extra };
}

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** `./looker <args>` as an admin runs it; the working directory is / on purpose: HOME picks the instance. */
function looker(home: GeneratedLookerHome, args: string[], env = simEnv(home)): Promise<RunResult> {
  return run(path.join(home.lookerDir, "looker"), args, "/", env);
}

/** `java -jar looker.jar <args>` in ~/looker: what the script runs, with the jar's own exit status. */
function jar(home: GeneratedLookerHome, args: string[], env = simEnv(home)): Promise<RunResult> {
  return run("java", ["-jar", "looker.jar", ...args], home.lookerDir, env);
}

const withCmk = (home: GeneratedLookerHome, cmk = home.cmk) => simEnv(home, { LKR_MASTER_KEY_ENV: cmk });
const newCmk = () => randomBytes(32).toString("base64");

async function makeHome(opts: Partial<GenerateLookerHomeOptions> = {}): Promise<GeneratedLookerHome> {
  const root = await mkdtemp(path.join(os.tmpdir(), "looker-sim-test-"));
  tempRoots.push(root);
  const home = await generateLookerHome({
    sizeBytes: 1_000_000,
    smallFiles: 40,
    webPort: await freePort(),
    apiPort: await freePort(),
    ...opts,
    root: path.join(root, "home"),
  });
  homesToStop.push(home);
  return home;
}

/** `./looker start` returns while Looker boots (it daemonizes): up means `status` exits 0. */
async function startOk(home: GeneratedLookerHome, cmk = home.cmk): Promise<void> {
  const result = await looker(home, ["start"], withCmk(home, cmk));
  expect(result.code).toBe(0);
  await eventually(async () => (await looker(home, ["status"])).code === 0, "/alive answers");
}

async function forceStop(home: GeneratedLookerHome): Promise<void> {
  await looker(home, ["stop"]);
  const pid = await pidFile(home);
  if (pid !== undefined) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

async function pidFile(home: GeneratedLookerHome): Promise<number | undefined> {
  try {
    return Number.parseInt(await readFile(path.join(home.lookerDir, ".tmp", "looker.pid"), "utf8"), 10);
  } catch {
    return undefined;
  }
}

function processAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const readLog = (home: GeneratedLookerHome) =>
  readFile(path.join(home.lookerDir, "log", "looker.log"), "utf8");
const dbScript = (home: GeneratedLookerHome) => path.join(home.lookerDir, ".db", "looker.script");

/** One request; Looker's certificate is self-signed, so it is not verified. */
function request(
  scheme: "http" | "https",
  port: number,
  pathname: string,
  options: { method?: string; body?: string; contentType?: string } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const client = scheme === "https" ? https : http;
    const req = client.request(
      {
        host: "127.0.0.1",
        port,
        path: pathname,
        method: options.method ?? "GET",
        rejectUnauthorized: false,
        headers: options.contentType ? { "content-type": options.contentType } : {},
      },
      (response) => {
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => {
          body += chunk;
        });
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.end(options.body);
  });
}

function login(home: GeneratedLookerHome, body: string, contentType: string) {
  return request("https", home.apiPort, "/api/4.0/login", { method: "POST", body, contentType });
}

function formLogin(home: GeneratedLookerHome, clientId: string, clientSecret: string) {
  const body = new URLSearchParams({ client_id: clientId, client_secret: clientSecret }).toString();
  return login(home, body, "application/x-www-form-urlencoded");
}

async function writeKeyFile(home: GeneratedLookerHome, name: string): Promise<string> {
  const file = path.join(path.dirname(home.home), name);
  const result = await jar(home, ["generate_keyfile_for_backup", file], withCmk(home));
  expect(result.stderr).toBe("");
  expect(result.code).toBe(0);
  return file;
}

/** A key file written while Looker runs (generate_keyfile_for_backup does not need it stopped). */
async function writeKeyFileWhileRunning(home: GeneratedLookerHome): Promise<string> {
  return writeKeyFile(home, "running.key");
}

/** Polls `probe` until it returns true; the assertion is on the change, not on how long it took. */
async function eventually(probe: () => Promise<boolean>, what: string, limitMs = 30_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (Date.now() < deadline) {
    if (await probe()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`gave up waiting: ${what}`);
}

/** Waits until a start's daemon has refused to boot: its refusal in the log, its process gone, status 7. */
async function refusedToBoot(home: GeneratedLookerHome, log: RegExp): Promise<void> {
  await eventually(async () => log.test(await readLog(home)), `the log shows ${log}`);
  await eventually(async () => !processAlive(await pidFile(home)), "the refusing process ended");
  expect((await looker(home, ["status"])).code).toBe(7);
}

describe("looker script: as Looker ships it", () => {
  it("status exits 7 when /alive refuses, 0 when it answers; HOME, not the working directory, picks the instance", async () => {
    const home = await makeHome();
    const stopped = await looker(home, ["status"]);
    expect(stopped).toMatchObject({ code: 7, stdout: "Status:Looker Web Application stopped\n" });
    await startOk(home);
    const running = await looker(home, ["status"]);
    expect(running).toMatchObject({ code: 0, stdout: "Status:Looker Web Application running\n" });
    // Another HOME is another instance, wherever the command runs from.
    const other = await makeHome();
    expect((await run("./looker", ["status"], home.lookerDir, simEnv(other))).code).toBe(7);
  });

  it("exits 0 although the jar failed: only the jar's own exit status tells", async () => {
    const home = await makeHome();
    const viaScript = await looker(
      home,
      ["keystore_independent_recrypt", "/nonexistent/key.json"],
      withCmk(home),
    );
    expect(viaScript.code).toBe(0);
    expect(viaScript.stderr).toMatch(/bad key file/);
    const direct = await jar(home, ["keystore_independent_recrypt", "/nonexistent/key.json"], withCmk(home));
    expect(direct.code).not.toBe(0);
    expect(await readLog(home)).toMatch(/ERROR keystore_independent_recrypt failed: bad key file/);
  });

  it("start suppresses itself when .deploying exists (exit 1) and otherwise returns while Looker boots", async () => {
    const home = await makeHome();
    await writeFile(path.join(home.lookerDir, ".deploying"), "");
    const suppressed = await looker(home, ["start"], withCmk(home));
    expect(suppressed.code).toBe(1);
    expect(suppressed.stdout).toMatch(/Startup suppressed/);
    await rm(path.join(home.lookerDir, ".deploying"));

    const started = await looker(home, ["start"], withCmk(home));
    expect(started.code).toBe(0);
    expect(existsSync(path.join(home.lookerDir, ".starting"))).toBe(false);
    await eventually(async () => (await looker(home, ["status"])).code === 0, "/alive answers");
    const pid = await pidFile(home);
    expect(processAlive(pid)).toBe(true);
    expect(await readlink(`/proc/${pid}/cwd`)).toBe(home.lookerDir);
    expect((await stat(path.join(home.lookerDir, ".status_server_token"))).mode & 0o777).toBe(0o600);
  });

  it("serves plain http with --no-ssl, and the script's health requests follow", async () => {
    const home = await makeHome({ extraLookerArgs: "--no-ssl" });
    await startOk(home);
    expect((await request("http", home.webPort, "/alive")).status).toBe(200);
    await expect(request("https", home.webPort, "/alive")).rejects.toThrow();
  });

  it("stop uses /control/stop with the status token; a wrong token is refused", async () => {
    const home = await makeHome();
    await startOk(home);
    expect((await request("https", home.webPort, "/control/stop?token=wrong")).status).toBe(403);
    expect((await looker(home, ["status"])).code).toBe(0);
    const pid = await pidFile(home);
    const stopped = await looker(home, ["stop"]);
    expect(stopped.code).toBe(0);
    expect((await looker(home, ["status"])).code).toBe(7);
    await eventually(async () => !processAlive(pid), "the process ends");
    expect(await readLog(home)).toMatch(/INFO stop request: shutting down/);
    expect(existsSync(path.join(home.lookerDir, ".status_server_token"))).toBe(false);
  });

  it("java -jar looker.jar start --no-daemonize serves in the foreground (the systemd unit's Type=simple)", async () => {
    const home = await makeHome();
    const foreground = run(
      "java",
      [
        "-jar",
        "looker.jar",
        "start",
        `--port=${home.webPort}`,
        `--core-port=${home.apiPort}`,
        "--no-daemonize",
      ],
      home.lookerDir,
      withCmk(home),
    );
    await eventually(async () => (await looker(home, ["status"])).code === 0, "/alive answers");
    const pid = await pidFile(home);
    expect(processAlive(pid)).toBe(true);
    // The foreground server is Looker as much as a daemon is: key commands refuse to run beside it.
    const recrypt = await jar(home, ["keystore_independent_recrypt", "/nonexistent/key.json"], withCmk(home));
    expect(recrypt.stderr).toMatch(/bad key file/);
    const keyFile = await writeKeyFileWhileRunning(home);
    const beside = await jar(home, ["keystore_independent_recrypt", keyFile], withCmk(home));
    expect(beside.stderr).toMatch(/needs Looker stopped/);
    await looker(home, ["stop"]);
    expect((await foreground).code).toBe(0);
  });

  it("refuses options real Looker does not have", async () => {
    const home = await makeHome();
    const result = await jar(home, ["start", "--api-port=1234"], withCmk(home));
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/unknown option --api-port=1234/);
  });
});

describe("looker simulator: key files and the keystore", () => {
  it("generate_keyfile_for_backup writes Looker's format: dbmk base64 of 256 bits with a newline, backup_uid base64", async () => {
    const home = await makeHome();
    const file = await writeKeyFile(home, "backup.key");
    const content = JSON.parse(await readFile(file, "utf8")) as Record<string, string>;
    expect(Object.keys(content).sort()).toEqual(["backup_uid", "dbmk"]);
    expect(content["dbmk"]).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
    expect(Buffer.from(content["dbmk"]!, "base64")).toHaveLength(32);
    expect(Buffer.from(content["backup_uid"]!, "base64")).toHaveLength(16);
    expect((await stat(file)).mode & 0o777).toBe(0o600);

    // An existing, looser file is tightened, and every key file is new.
    await chmod(file, 0o644);
    await writeKeyFile(home, "backup.key");
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const again = JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>;
    expect(again["dbmk"]).not.toBe(content["dbmk"]);
    expect(again["backup_uid"]).not.toBe(content["backup_uid"]);

    // Strict where Looker's documentation is silent: it needs the instance's CMK.
    const noCmk = await jar(home, ["generate_keyfile_for_backup", file]);
    expect(noCmk.code).not.toBe(0);
    expect(noCmk.stderr).toMatch(/no CMK configured/);
  });

  it("keystore_independent_recrypt needs the CMK and a stopped instance, then stores the entry", async () => {
    const home = await makeHome();
    const keyFile = await writeKeyFile(home, "backup.key");
    const { backup_uid: uid, dbmk } = JSON.parse(await readFile(keyFile, "utf8")) as Record<string, string>;

    const noCmk = await jar(home, ["keystore_independent_recrypt", keyFile]);
    expect(noCmk.code).not.toBe(0);
    expect(noCmk.stderr).toMatch(/no CMK configured/);

    const wrongCmk = await jar(home, ["keystore_independent_recrypt", keyFile], withCmk(home, newCmk()));
    expect(wrongCmk.code).not.toBe(0);
    expect(wrongCmk.stderr).toMatch(/cannot decrypt the KEK with the configured CMK/);
    expect(await readLog(home)).toMatch(/ERROR keystore_independent_recrypt failed: cannot decrypt the KEK/);

    await startOk(home);
    const whileRunning = await jar(home, ["keystore_independent_recrypt", keyFile], withCmk(home));
    expect(whileRunning.code).not.toBe(0);
    expect(whileRunning.stderr).toMatch(/needs Looker stopped/);
    await looker(home, ["stop"]);

    const ok = await jar(home, ["keystore_independent_recrypt", keyFile], withCmk(home));
    expect(ok.stderr).toBe("");
    expect(ok.code).toBe(0);
    const script = await readFile(dbScript(home), "utf8");
    expect(script).toContain(`"${uid}"`);
    // Older entries (here one under a UUID-style id) are kept when a new one is stored.
    const legacy = path.join(path.dirname(home.home), "legacy.key");
    await writeFile(
      legacy,
      JSON.stringify({ dbmk: newCmk(), backup_uid: "6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b" }),
    );
    expect((await jar(home, ["keystore_independent_recrypt", legacy], withCmk(home))).code).toBe(0);
    const both = await readFile(dbScript(home), "utf8");
    expect(both).toContain(`"${uid}"`);
    expect(both).toContain('"6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b"');
    // Secrets never reach the output or the log.
    for (const secret of [home.cmk, dbmk!.trim()]) {
      expect(ok.stdout + ok.stderr + (await readLog(home))).not.toContain(secret);
      expect(both).not.toContain(secret);
    }
  });

  it("restore_dr_backup re-keys the KEK to a new CMK: start works with the new CMK, not the old", async () => {
    const home = await makeHome();
    const keyFile = await writeKeyFile(home, "backup.key");
    expect((await jar(home, ["keystore_independent_recrypt", keyFile], withCmk(home))).code).toBe(0);

    const replacement = newCmk();
    const restored = await jar(home, ["restore_dr_backup", keyFile], withCmk(home, replacement));
    expect(restored.stderr).toBe("");
    expect(restored.code).toBe(0);

    expect((await looker(home, ["start"], withCmk(home))).code).toBe(0);
    await refusedToBoot(home, /ERROR boot refused: cannot decrypt the KEK with the configured CMK/);

    await startOk(home, replacement);
    expect((await formLogin(home, home.clientId, home.clientSecret)).status).toBe(200);
  });

  it("restore_dr_backup takes the CMK from LKR_MASTER_KEY_FILE too", async () => {
    const home = await makeHome();
    const keyFile = await writeKeyFile(home, "backup.key");
    expect((await jar(home, ["keystore_independent_recrypt", keyFile], withCmk(home))).code).toBe(0);
    const cmkFile = path.join(path.dirname(home.home), "cmk");
    const replacement = newCmk();
    await writeFile(cmkFile, `${replacement}\n`, { mode: 0o600 });
    const env = simEnv(home, { LKR_MASTER_KEY_FILE: cmkFile });
    expect((await jar(home, ["restore_dr_backup", keyFile], env)).code).toBe(0);
    expect((await looker(home, ["start"], env)).code).toBe(0);
    await eventually(async () => (await looker(home, ["status"])).code === 0, "/alive answers");
  });

  it("restore_dr_backup with a wrong, unknown or missing key file fails and leaves the DB unchanged", async () => {
    const home = await makeHome();
    const keyFile = await writeKeyFile(home, "backup.key");
    expect((await jar(home, ["keystore_independent_recrypt", keyFile], withCmk(home))).code).toBe(0);
    const before = await readFile(dbScript(home));
    const { backup_uid: uid } = JSON.parse(await readFile(keyFile, "utf8")) as Record<string, string>;

    const wrongKey = path.join(path.dirname(home.home), "wrong.key");
    await writeFile(wrongKey, JSON.stringify({ dbmk: `${newCmk()}\n`, backup_uid: uid }), { mode: 0o600 });
    const unknownKey = await writeKeyFile(home, "unknown.key");
    const cases: Array<[string, RegExp]> = [
      [wrongKey, /does not decrypt the KEK entry/],
      [unknownKey, /no KEK entry for backup_uid/],
      [path.join(path.dirname(home.home), "absent.key"), /bad key file .*ENOENT/],
    ];
    for (const [file, message] of cases) {
      const result = await jar(home, ["restore_dr_backup", file], withCmk(home, newCmk()));
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(message);
      expect(await readFile(dbScript(home))).toEqual(before);
    }

    await startOk(home);
    const whileRunning = await jar(home, ["restore_dr_backup", keyFile], withCmk(home, newCmk()));
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
      env: (home) => withCmk(home, newCmk()),
      log: /ERROR boot refused: cannot decrypt the KEK with the configured CMK/,
    },
    {
      name: "no CMK",
      break: async () => {},
      env: (home) => simEnv(home),
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
      env: (home) => withCmk(home),
      log: /ERROR boot refused: internal database torn: looker\/\.db\/looker\.data fails its checksum/,
    },
    {
      name: "a torn data file (truncated)",
      break: (home) => truncate(path.join(home.lookerDir, ".db", "looker.lobs"), 1000),
      env: (home) => withCmk(home),
      log: /ERROR boot refused: internal database torn: looker\/\.db\/looker\.lobs has 1000 bytes/,
    },
    {
      name: "a torn looker.script",
      break: async (home) => {
        const text = await readFile(dbScript(home), "utf8");
        await writeFile(dbScript(home), text.replace('"generation": 1', '"generation": 2'));
      },
      env: (home) => withCmk(home),
      log: /ERROR boot refused: internal database torn: looker\/\.db\/looker\.script fails its checksum/,
    },
    {
      name: "a missing .db",
      break: (home) => rm(path.join(home.lookerDir, ".db"), { recursive: true }),
      env: (home) => withCmk(home),
      log: /ERROR boot refused: internal database missing/,
    },
    {
      name: "a missing looker-dependencies.jar",
      break: (home) => rm(path.join(home.lookerDir, "looker-dependencies.jar")),
      env: (home) => withCmk(home),
      log: /ERROR boot refused: required file looker\/looker-dependencies\.jar is missing/,
    },
  ];

  for (const refusal of refusals) {
    it(`refuses to boot with ${refusal.name}`, async () => {
      const home = await makeHome();
      await refusal.break(home);
      const result = await looker(home, ["start"], refusal.env(home));
      expect(result.code).toBe(0); // Looker daemonizes: the refusal comes later, in the log
      await refusedToBoot(home, refusal.log);
      expect(existsSync(path.join(home.lookerDir, ".db", "looker.lck"))).toBe(false);
    });
  }

  it("cannot start without looker.jar: java cannot access the jar", async () => {
    const home = await makeHome();
    await rm(path.join(home.lookerDir, "looker.jar"));
    const result = await looker(home, ["start"], withCmk(home));
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/Error: Unable to access jarfile looker\.jar/);
    expect((await looker(home, ["status"])).code).toBe(7);
  });

  it("refuses to boot when the web port is taken, and names the port", async () => {
    const first = await makeHome();
    const second = await makeHome({ webPort: first.webPort });
    await startOk(first);
    expect((await looker(second, ["start"], withCmk(second))).code).toBe(0);
    await eventually(
      async () =>
        new RegExp(`cannot listen on port ${first.webPort}: EADDRINUSE`).test(await readLog(second)),
      "the refusal is logged",
    );
    await eventually(async () => !processAlive(await pidFile(second)), "the refusing process ended");
    expect(existsSync(path.join(second.lookerDir, ".db", "looker.lck"))).toBe(false);
  });
});

describe("looker simulator: running instance", () => {
  it("serves /alive and login over https, refuses a second start, and stop ends the process", async () => {
    const home = await makeHome();
    await startOk(home);
    const pid = await pidFile(home);
    expect(processAlive(pid)).toBe(true);
    expect((await request("https", home.webPort, "/alive")).status).toBe(200);
    const form = await formLogin(home, home.clientId, home.clientSecret);
    expect(form.status).toBe(200);
    const token = JSON.parse(form.body) as Record<string, unknown>;
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

    expect((await looker(home, ["start"], withCmk(home))).code).toBe(0);
    await eventually(
      async () => /already running here/.test(await readLog(home)),
      "the second start refuses",
    );
    expect(await pidFile(home)).toBe(pid);

    expect((await looker(home, ["stop"])).code).toBe(0);
    expect((await looker(home, ["status"])).code).toBe(7);
    await eventually(async () => !processAlive(pid), "the process ends");
    expect(existsSync(path.join(home.lookerDir, ".db", "looker.lck"))).toBe(false);
    await expect(request("https", home.webPort, "/alive")).rejects.toThrow();
    expect((await looker(home, ["stop"])).code).toBe(0);
  });

  it("rewrites the internal database in place while running: a live copy is torn and refuses to boot", async () => {
    const home = await makeHome();
    const db = path.join(home.lookerDir, ".db");
    const digest = async (name: string) =>
      createHash("sha256")
        .update(await readFile(path.join(db, name)))
        .digest("hex");
    const dataBefore = await digest("looker.data");
    await startOk(home);
    await eventually(async () => (await stat(path.join(db, "looker.log"))).size > 0, "HSQLDB's log grows");
    await eventually(async () => (await digest("looker.data")) !== dataBefore, "looker.data changes");
    expect(await readFile(path.join(db, "looker.properties"), "utf8")).toMatch(/^modified=yes$/m);

    // A copy taken now, booted once the original is stopped (same ports), is refused; the original then boots.
    const copyRoot = await mkdtemp(path.join(os.tmpdir(), "looker-sim-copy-"));
    tempRoots.push(copyRoot);
    await cp(home.home, path.join(copyRoot, "home"), { recursive: true, verbatimSymlinks: true });
    const copy: GeneratedLookerHome = {
      ...home,
      home: path.join(copyRoot, "home"),
      lookerDir: path.join(copyRoot, "home", "looker"),
    };
    await rm(path.join(copy.lookerDir, ".db", "looker.lck"), { force: true });
    await looker(home, ["stop"]);
    expect((await looker(home, ["status"])).code).toBe(7);
    expect(await readFile(path.join(db, "looker.properties"), "utf8")).toMatch(/^modified=no$/m);
    expect((await stat(path.join(db, "looker.log"))).size).toBe(0);

    expect((await looker(copy, ["start"], withCmk(copy))).code).toBe(0);
    await refusedToBoot(copy, /ERROR boot refused: internal database torn/);
    await startOk(home);
  });

  it("treats a stale pid file as stopped, and restart replaces the server", async () => {
    const home = await makeHome();
    const deadPid = spawnSync("true").pid!;
    await writeFile(path.join(home.lookerDir, ".tmp", "looker.pid"), `${deadPid}\n`);
    expect((await looker(home, ["status"])).code).toBe(7);
    await startOk(home);
    const first = await pidFile(home);
    expect(first).not.toBe(deadPid);

    expect((await looker(home, ["restart"], withCmk(home))).code).toBe(0);
    await eventually(
      async () => (await pidFile(home)) !== first && (await looker(home, ["status"])).code === 0,
      "a new server answers",
    );
    expect(processAlive(first)).toBe(false);
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
    const cfg = await readFile(path.join(home.lookerDir, "lookerstart.cfg"), "utf8");
    expect(cfg).toContain(`--port=${home.webPort} --core-port=${home.apiPort}`);
    expect(cfg).toContain(`LOOKERPORT=${home.webPort}`);

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
    expect((await looker(home, ["status"])).code).toBe(7);

    const keyFile = await writeKeyFile(home, "backup.key");
    const { backup_uid: uid } = JSON.parse(await readFile(keyFile, "utf8")) as Record<string, string>;
    expect((await jar(home, ["keystore_independent_recrypt", keyFile], withCmk(home))).code).toBe(0);
    expect(await db.exec(`SELECT backup_uid FROM \`${database}\`.looker_sim_dr_keys`)).toContain(uid);
    const replacement = newCmk();
    const restored = await jar(home, ["restore_dr_backup", keyFile], withCmk(home, replacement));
    expect(restored.stderr).toBe("");
    expect(restored.code).toBe(0);

    expect((await looker(home, ["start"], withCmk(home))).code).toBe(0);
    await refusedToBoot(home, /ERROR boot refused: cannot decrypt the KEK with the configured CMK/);
    await startOk(home, replacement);
    expect((await formLogin(home, home.clientId, home.clientSecret)).status).toBe(200);
  });

  it("refuses to boot when the MySQL tables are missing or the credentials are wrong", async () => {
    const db = mariadb!;
    const { home, database } = await makeMySqlHome();
    const yml = path.join(home.lookerDir, "looker-db.yml");
    const original = await readFile(yml, "utf8");
    await writeFile(yml, original.replace(/^password: .*$/m, "password: not-the-password"));
    expect((await looker(home, ["start"], withCmk(home))).code).toBe(0);
    await refusedToBoot(home, /ERROR boot refused: MySQL database .*Access denied/);

    await writeFile(yml, original);
    await db.exec(`DROP TABLE \`${database}\`.looker_sim_keystore`);
    expect((await looker(home, ["start"], withCmk(home))).code).toBe(0);
    await refusedToBoot(home, /ERROR boot refused: internal database missing: MySQL database/);
  });
});
