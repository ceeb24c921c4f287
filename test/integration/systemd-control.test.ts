/**
 * A Looker that runs under its systemd unit (Looker's published looker.service, with --no-daemonize in LOOKERARGS as
 * its README requires): the product finds the unit, stops and starts Looker through systemctl as root while Looker's
 * own commands run as the looker user, and still proves each step by its effect. systemd itself is the stand-in in
 * test/fixtures/systemd-sim (see its header for what it does not reproduce).
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateIdentity } from "../../src/crypto/age-keys.js";
import { RunAsHost } from "../../src/drill/run-as-host.js";
import { runLookerBackup } from "../../src/engine/looker-job.js";
import { ExitCode, LookerError } from "../../src/errors.js";
import { probeAlive } from "../../src/looker/alive.js";
import { type ConnectedNodes, connectNodes, type NodeSettings } from "../../src/looker/nodes.js";
import { LocalHost } from "../../src/remote/local-host.js";
import { DirStore } from "../../src/store/dir-store.js";
import { requireCommands } from "../helpers/prerequisites.js";
import { selectionFor } from "../helpers/selection.js";
import { type SimulatedLooker, simulatedLooker } from "../helpers/simulator.js";
import { lookerUnit, type SystemdStandIn, systemdStandIn } from "../helpers/systemd.js";
import { ensureLookerUser } from "../helpers/vm.js";

const UNIT = "looker.service";
let scratch: string;
let systemd: SystemdStandIn;
let looker: ReturnType<typeof ensureLookerUser>;
let homes = 0;
let connected: ConnectedNodes | undefined;
const sims: SimulatedLooker[] = [];
const { recipient } = generateIdentity();

beforeAll(async () => {
  if (process.getuid?.() !== 0)
    throw new Error("this test runs the product as root, Looker as the looker user");
  requireCommands(["age", "zstd", "tar", "curl", "setpriv"]);
  looker = ensureLookerUser();
  scratch = await mkdtemp(join(tmpdir(), "systemd-control-"));
  await chmod(scratch, 0o755); // the looker user must reach its home below it
  systemd = await systemdStandIn(join(scratch, "systemd"));
  // Where the product looks for systemctl: this test process's PATH, which it passes on to its commands.
  process.env.PATH = `${systemd.binDir}:${process.env.PATH}`;
});

afterEach(async () => {
  await connected?.close();
  connected = undefined;
  systemd.systemctl("stop", UNIT);
  for (const sim of sims.splice(0)) {
    execFileSync("runuser", ["-u", "looker", "--", "env", `HOME=${sim.home}`, "./looker", "stop"], {
      cwd: sim.lookerDir,
    });
  }
});

afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** A looker-owned home whose Looker runs in the foreground, and Looker's unit for it with `cmk` in its environment. */
async function homeUnderUnit(cmk?: string): Promise<SimulatedLooker> {
  homes += 1;
  const sim = await simulatedLooker(join(scratch, `home-${homes}`, "home"), {
    sizeBytes: 200_000,
    smallFiles: 10,
    extraLookerArgs: "--no-daemonize",
  });
  sims.push(sim);
  execFileSync("chown", ["-R", `${looker.uid}:${looker.gid}`, sim.home]);
  const environmentFile = join(systemd.root, `looker-${homes}.env`);
  await writeFile(environmentFile, `LKR_MASTER_KEY_ENV=${cmk ?? sim.cmk}\n`, { mode: 0o600 });
  await systemd.installUnit(UNIT, lookerUnit({ home: sim.home, user: "looker", environmentFile }));
  return sim;
}

async function connect(
  sim: SimulatedLooker,
  settings: Partial<NodeSettings> = {},
  log?: (l: string) => void,
) {
  connected = await connectNodes(
    {
      home: sim.home,
      webPort: sim.webPort,
      bootTimeoutMs: 30_000,
      masterKey: { kind: "env", value: sim.cmk },
      nodes: [],
      knownHosts: "",
      acceptNewHostKeys: false,
      ...settings,
    },
    log,
  );
  return connected.nodes[0]!;
}

async function waitForAlive(port: number): Promise<void> {
  for (let i = 0; i < 240; i++) {
    if (await probeAlive({ host: "127.0.0.1", port }, 1000)) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error("Looker under the unit did not answer /alive");
}

/** INVOCATION_ID of a process: systemd (and its stand-in) gives every process of a service run the same one. */
function invocationOf(pid: number): string | undefined {
  const entry = readFileSync(`/proc/${pid}/environ`, "latin1")
    .split("\0")
    .find((e) => e.startsWith("INVOCATION_ID="));
  return entry?.slice("INVOCATION_ID=".length);
}

describe("the systemctl stand-in", () => {
  it("answers as systemctl documents: unknown units, exit codes, and no start or stop for a user without root", async () => {
    await homeUnderUnit();
    expect(systemd.systemctl("show", "-p", "LoadState", "--value", UNIT)).toMatchObject({
      code: 0,
      stdout: "loaded\n",
    });
    expect(systemd.systemctl("show", "-p", "LoadState", "--value", "nope.service")).toMatchObject({
      code: 0,
      stdout: "not-found\n",
    });
    expect(systemd.systemctl("is-active", "nope.service")).toMatchObject({ code: 3, stdout: "inactive\n" });
    expect(systemd.systemctl("start", "nope.service")).toMatchObject({ code: 5 });
    expect(systemd.systemctl("stop", "nope.service")).toMatchObject({ code: 5 });
    const asLooker = (verb: string) => {
      try {
        execFileSync("runuser", ["-u", "looker", "--", join(systemd.binDir, "systemctl"), verb, UNIT], {
          stdio: "pipe",
        });
        return { code: 0, stderr: "" };
      } catch (error) {
        const failed = error as { status: number; stderr: Buffer };
        return { code: failed.status, stderr: failed.stderr.toString() };
      }
    };
    expect(asLooker("start")).toEqual({ code: 4, stderr: `Failed to start ${UNIT}: Access denied\n` });
    expect(asLooker("stop")).toEqual({ code: 4, stderr: `Failed to stop ${UNIT}: Access denied\n` });
    expect(asLooker("is-active").code).toBe(3);
  });
});

describe("commands that need root", () => {
  it("run without the switch to the looker user, which Looker's own commands keep", async () => {
    const host = new LocalHost("looker");
    expect((await host.run(["id", "-u"])).stdout.trim()).toBe(String(looker.uid));
    expect((await host.run(["id", "-u"], { asRoot: true })).stdout.trim()).toBe("0");
    const drillHost = new RunAsHost(new LocalHost(), "looker");
    expect((await drillHost.run(["id", "-u"])).stdout.trim()).toBe(String(looker.uid));
    expect((await drillHost.run(["id", "-u"], { asRoot: true })).stdout.trim()).toBe("0");
  });
});

describe("a systemd-managed Looker", () => {
  it("auto finds the unit; a stopping backup stops and starts Looker with systemctl and the unit is active after", async () => {
    const sim = await homeUnderUnit();
    expect(systemd.systemctl("start", UNIT).code).toBe(0);
    await waitForAlive(sim.webPort);
    const pidBefore = sim.pid()!;
    const invocationBefore = invocationOf(pidBefore);
    expect(invocationBefore).toBeDefined();
    const lines: string[] = [];
    const node = await connect(sim, {}, (l) => lines.push(l));
    expect(node.name).toBe("local (looker)");
    expect(node.unit).toBe(UNIT);
    expect(lines.join("\n")).toContain(`runs under systemd (${UNIT})`);
    const callsBefore = (await systemd.calls()).length;

    await runLookerBackup({
      home: sim.home,
      instance: "under-systemd",
      selection: await selectionFor(sim.home, { nodes: [node] }),
      recipients: [recipient],
      store: new DirStore(join(scratch, "store")),
      consistency: "stopped",
      keystoreIndependent: false,
      nodes: [node],
      lockDirectory: scratch,
    });

    // Stop and start went to systemctl, as root (uid 0), in that order; the state queries ran as the looker user.
    const calls = (await systemd.calls()).slice(callsBefore);
    const changes = calls.filter((c) => / (start|stop) /.test(`${c} `));
    expect(changes).toEqual([`0 stop ${UNIT}`, `0 start ${UNIT}`]);
    expect(calls).toContain(`${looker.uid} is-active ${UNIT}`);
    // The Looker serving now is a new process of the unit's new run, not one the script started beside it.
    expect(() => process.kill(pidBefore, 0)).toThrow();
    const pidAfter = sim.pid()!;
    expect(pidAfter).not.toBe(pidBefore);
    const invocationAfter = invocationOf(pidAfter);
    expect(invocationAfter).toBeDefined();
    expect(invocationAfter).not.toBe(invocationBefore);
    expect(systemd.systemctl("is-active", UNIT)).toMatchObject({ code: 0, stdout: "active\n" });
    expect(await probeAlive({ host: "127.0.0.1", port: sim.webPort })).toBe(true);
  });

  it("script mode uses Looker's script although the unit is loaded, and an auto node refuses to stop that Looker", async () => {
    const sim = await homeUnderUnit();
    const callsBefore = (await systemd.calls()).length;
    const scripted = await connect(sim, { lookerControl: "script" });
    expect(scripted.unit).toBeUndefined();
    // With --no-daemonize the script's start serves in the foreground: under the script Looker needs its default.
    await writeFile(
      join(sim.lookerDir, "lookerstart.cfg"),
      readFileSync(join(sim.lookerDir, "lookerstart.cfg"), "utf8").replace(" --no-daemonize", ""),
    );
    await scripted.start();
    expect(await systemd.calls()).toHaveLength(callsBefore);
    expect(systemd.systemctl("is-active", UNIT)).toMatchObject({ code: 3, stdout: "inactive\n" });
    expect(invocationOf(sim.pid()!)).toBeUndefined();
    await connected?.close();

    const auto = await connect(sim);
    expect(auto.unit).toBe(UNIT);
    const error = await auto.stop().then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(LookerError);
    expect((error as LookerError).message).toMatch(
      /its unit looker\.service is not active: it was started outside systemd/,
    );
    expect(await probeAlive({ host: "127.0.0.1", port: sim.webPort })).toBe(true);
  });

  it("auto falls back to the script when the unit is not loaded; systemd mode then refuses with exit 5", async () => {
    const sim = await homeUnderUnit();
    const node = await connect(sim, { lookerUnit: "other-looker.service" });
    expect(node.unit).toBeUndefined();
    await connected?.close();
    connected = undefined;
    const error = await connect(sim, { lookerControl: "systemd", lookerUnit: "other-looker.service" }).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(LookerError);
    expect((error as LookerError).exitCode).toBe(ExitCode.LookerFailed);
    expect((error as LookerError).message).toMatch(
      /other-looker\.service is not loaded on local \(looker\): other-looker\.service is not-found/,
    );
  });

  it("a start under the unit that does not come up fails with exit 5 and Looker's log", async () => {
    // The unit's environment holds another CMK: Looker refuses to boot, whatever the product was given.
    const sim = await homeUnderUnit(Buffer.alloc(32, 7).toString("base64"));
    const node = await connect(sim);
    const error = await node.start().then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(LookerError);
    expect((error as LookerError).exitCode).toBe(ExitCode.LookerFailed);
    expect((error as LookerError).message).toMatch(/^Looker failed to start on local \(looker\)/);
    expect((error as LookerError).logTail).toMatch(
      /boot refused: cannot decrypt the KEK with the configured CMK/,
    );
    expect(systemd.systemctl("is-active", UNIT).code).toBe(3);
  });
});
