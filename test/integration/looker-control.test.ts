/**
 * The product against Looker as it really is (issue 16): Looker's script ends with `exit 0`, so LookerNode must prove
 * each step by its effect. Each test here fails on a product that trusts the script's exit codes or an invented
 * contract (status 3, a start that exits non-zero on a boot refusal, a key command whose failure exits non-zero).
 */
import { randomBytes } from "node:crypto";
import { cp, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateIdentity } from "../../src/crypto/age-keys.js";
import { runLookerBackup } from "../../src/engine/looker-job.js";
import { ExitCode, LookerError } from "../../src/errors.js";
import { LookerNode } from "../../src/looker/control.js";
import type { MasterKey } from "../../src/looker/master-key.js";
import { LocalHost } from "../../src/remote/local-host.js";
import { DirStore } from "../../src/store/dir-store.js";
import { requireCommands } from "../helpers/prerequisites.js";
import { selectionFor } from "../helpers/selection.js";
import { type SimulatedLooker, simulatedLooker } from "../helpers/simulator.js";
import { extractArchive, readMeta } from "./looker-job.shared.js";

const BOOT_TIMEOUT_MS = 30_000;
let scratch: string;
let homes = 0;
const sims: SimulatedLooker[] = [];
const { identity, recipient } = generateIdentity();

beforeAll(async () => {
  requireCommands(["age", "zstd", "tar", "curl", "openssl"]);
  scratch = await mkdtemp(join(tmpdir(), "looker-control-"));
});

afterEach(() => {
  for (const sim of sims.splice(0)) sim.stopQuietly();
});

afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

async function sim(options: Parameters<typeof simulatedLooker>[1] = {}): Promise<SimulatedLooker> {
  homes += 1;
  const made = await simulatedLooker(join(scratch, `home-${homes}`, "home"), {
    sizeBytes: 400_000,
    smallFiles: 10,
    ...options,
  });
  sims.push(made);
  return made;
}

function nodeFor(
  target: SimulatedLooker,
  masterKey: MasterKey = { kind: "env", value: target.cmk },
): LookerNode {
  return new LookerNode({
    host: new LocalHost(),
    lookerDir: target.lookerDir,
    alive: { host: "127.0.0.1", port: target.webPort },
    masterKey,
    bootTimeoutMs: BOOT_TIMEOUT_MS,
  });
}

async function rejection(promise: Promise<unknown>): Promise<LookerError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(LookerError);
  expect((error as LookerError).exitCode).toBe(ExitCode.LookerFailed);
  return error as LookerError;
}

describe("LookerNode against Looker's real script", () => {
  it("reads `status` exit 7 as stopped and 0 as running, and proves stop and start by their effect", async () => {
    const target = await sim();
    const node = nodeFor(target);
    expect(await node.isRunning()).toBe(false); // exit 7
    await node.start();
    expect(await node.isRunning()).toBe(true);
    const pid = target.pid();
    expect(pid).toBeGreaterThan(0);
    await node.stop();
    expect(await node.isRunning()).toBe(false);
    expect(() => process.kill(pid!, 0)).toThrow();
  });

  it("works without lookerstart.cfg (Looker's defaults: port 9999, https)", async () => {
    // The only test on port 9999: Looker's default, which parallel test files must not share.
    const target = await sim({ lookerstartCfg: false });
    await expect(readFile(join(target.lookerDir, "lookerstart.cfg"))).rejects.toThrow(/ENOENT/);
    const node = new LookerNode({
      host: new LocalHost(),
      lookerDir: target.lookerDir,
      alive: { host: "127.0.0.1", port: 9999 },
      masterKey: { kind: "env", value: target.cmk },
      bootTimeoutMs: BOOT_TIMEOUT_MS,
    });
    await node.start();
    expect(await node.isRunning()).toBe(true);
    await node.stop();
    expect(await node.isRunning()).toBe(false);
  });

  it("catches a start that did not come up although something else answers /alive on the port", async () => {
    const target = await sim();
    // Another server holds the web port: /alive answers 200, but not from this home's Looker.
    const impostor = await httpsImpostor(target.webPort);
    try {
      const error = await rejection(nodeFor(target).start());
      expect(error.message).toMatch(
        /Looker failed to start on local: (its process \d+ ended during boot|\/alive answers but process)/,
      );
      expect(error.logTail).toMatch(/boot refused: cannot listen on port/);
    } finally {
      impostor.close();
    }
  });

  it("catches a start refused for a wrong CMK, with the log tail", async () => {
    const target = await sim();
    const error = await rejection(
      nodeFor(target, { kind: "env", value: randomBytes(32).toString("base64") }).start(),
    );
    expect(error.logTail).toMatch(/boot refused: cannot decrypt the KEK with the configured CMK/);
  });
});

describe("the instance a command acts on", () => {
  it("is the home the node is for, even when this process's HOME is another (running) instance", async () => {
    const production = await sim();
    const drill = await sim();
    production.start();
    const productionPid = production.pid();
    // The runner's HOME points at production's home (a runner running as the looker user), and the script picks
    // its directory by HOME: without the tool's own HOME, `./looker start` in the drill home would act on production.
    const savedHome = process.env.HOME;
    process.env.HOME = production.home;
    try {
      const node = nodeFor(drill);
      await node.start();
      expect(drill.pid()).toBeDefined();
      expect(drill.pid()).not.toBe(productionPid);
      await node.stop();
      expect(drill.isRunning()).toBe(false);
    } finally {
      process.env.HOME = savedHome;
    }
    expect(production.pid()).toBe(productionPid);
    expect(production.isRunning()).toBe(true);
  });
});

describe("backups against Looker's real key commands", () => {
  it("a keystore-independent backup with a wrong CMK fails with exit 5 instead of passing the script's exit 0", async () => {
    const target = await sim();
    target.start();
    const node = nodeFor(target, { kind: "env", value: randomBytes(32).toString("base64") });
    const storeDir = join(scratch, "store-wrong-cmk");
    const lines: string[] = [];
    const error = await rejection(
      runLookerBackup({
        log: (line) => lines.push(line),
        home: target.home,
        instance: "wrong-cmk",
        selection: await selectionFor(target.home, { nodes: [node] }),
        recipients: [recipient],
        store: new DirStore(storeDir),
        consistency: "stopped",
        keystoreIndependent: true,
        nodes: [node],
        lockDirectory: scratch,
      }),
    );
    // The restart with the same wrong CMK fails too and its error outranks; what shows the key step was caught is
    // that the backup stopped there: no "recrypt done", nothing in the store.
    expect(error.logTail).toMatch(/cannot decrypt the KEK with the configured CMK/);
    expect(lines.join("\n")).not.toMatch(/keystore-independent recrypt done/);
    expect(await readdir(storeDir).catch(() => [])).toEqual([]);
    expect(await readFile(join(target.lookerDir, "log", "looker.log"), "utf8")).toMatch(
      /ERROR (generate_keyfile_for_backup|keystore_independent_recrypt) failed: cannot decrypt the KEK/,
    );
  });

  it("records the documented base64 backup_uid of a keystore-independent backup", async () => {
    const target = await sim();
    target.start();
    const storeDir = join(scratch, "store-uid");
    const node = nodeFor(target);
    const result = await runLookerBackup({
      home: target.home,
      instance: "uid",
      selection: await selectionFor(target.home, { nodes: [node] }),
      recipients: [recipient],
      store: new DirStore(storeDir),
      consistency: "stopped",
      keystoreIndependent: true,
      nodes: [node],
      lockDirectory: scratch,
    });
    expect(result.backupUid).toMatch(/^[A-Za-z0-9+/]{22}==$/);
    expect(Buffer.from(result.backupUid!, "base64")).toHaveLength(16);
    const tree = await extractArchive(result.archive!.location, identity, scratch);
    expect(await readMeta(tree)).toMatchObject({ keystoreIndependent: true, backupUid: result.backupUid });
    expect(target.isRunning()).toBe(true);
  });

  it("a live backup while Looker runs catches the internal database changing: the archived copy is torn", async () => {
    const target = await sim();
    target.start();
    const storeDir = join(scratch, "store-live");
    const node = nodeFor(target);
    const result = await runLookerBackup({
      home: target.home,
      instance: "live",
      selection: await selectionFor(target.home, { nodes: [node] }),
      recipients: [recipient],
      store: new DirStore(storeDir),
      consistency: "live",
      keystoreIndependent: false,
      nodes: [node],
      lockDirectory: scratch,
    });
    const tree = await extractArchive(result.archive!.location, identity, scratch);
    const properties = await readFile(join(tree, "home", "looker", ".db", "looker.properties"), "utf8");
    expect(properties).toMatch(/^modified=yes$/m);
    // The archived home, booted on its own, refuses: what a restore of a live backup of the internal DB would meet.
    target.stopQuietly();
    const restoredRoot = join(scratch, "restored-live");
    await cp(join(tree, "home"), join(restoredRoot, "home"), { recursive: true, verbatimSymlinks: true });
    const restored = {
      ...target,
      home: join(restoredRoot, "home"),
      lookerDir: join(restoredRoot, "home", "looker"),
    };
    const error = await rejection(nodeFor(restored as SimulatedLooker).start());
    expect(error.logTail).toMatch(/boot refused: internal database torn/);
  });
});

/** An https server answering 200 to everything on `port`, with a throwaway self-signed certificate. */
async function httpsImpostor(port: number): Promise<Server> {
  const { spawnSync } = await import("node:child_process");
  const dir = await mkdtemp(join(scratch, "impostor-"));
  const made = spawnSync("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-days",
    "1",
    "-subj",
    "/CN=impostor",
    "-keyout",
    join(dir, "key.pem"),
    "-out",
    join(dir, "cert.pem"),
  ]);
  expect(made.status).toBe(0);
  const server = createServer(
    { key: await readFile(join(dir, "key.pem")), cert: await readFile(join(dir, "cert.pem")) },
    (_request, response) => {
      response.writeHead(200);
      response.end();
    },
  );
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port, host: "0.0.0.0" }, resolve);
  });
  return server;
}
