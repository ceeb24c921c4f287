/**
 * The Actions post step's restart (Cluster.startRecordedWithin) and what the restarted Looker inherits, judged by
 * the simulator's own records: its pid lock, its log and the kernel's /proc/<pid>/environ of the server.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitCode, LookerError } from "../../src/errors.js";
import { probeAlive } from "../../src/looker/alive.js";
import { Cluster, type StopRecord } from "../../src/looker/cluster.js";
import type { ConnectedNodes } from "../../src/looker/nodes.js";
import { connectLocalNode } from "../helpers/local-nodes.js";
import { type SimulatedLooker, simulatedLooker } from "../helpers/simulator.js";
import { simulatorLog, simulatorPid } from "./looker-job.shared.js";

let scratch: string;
let sim: SimulatedLooker;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "post-restart-"));
  sim = await simulatedLooker(join(scratch, "home"), { sizeBytes: 200_000, smallFiles: 10 });
});

afterAll(async () => {
  sim?.stopQuietly();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

async function nodes(options: { cmk?: string; lookerEnv?: Record<string, string> } = {}) {
  return connectLocalNode(sim.home, {
    webPort: sim.webPort,
    ...(options.cmk ? { masterKey: { kind: "env", value: options.cmk } as const } : {}),
    ...(options.lookerEnv ? { lookerEnv: options.lookerEnv } : {}),
  });
}

/** A cluster that adopted the main step's record saying it stopped node 0; records what it persists. */
function adopted(connected: ConnectedNodes, records: StopRecord[]): Cluster {
  const cluster = new Cluster(connected.nodes, (record) => records.push(record));
  cluster.adopt({ stoppedByUs: [0], stoppedAt: new Date().toISOString() });
  return cluster;
}

function environOf(pid: number): Map<string, string> {
  const entries = readFileSync(`/proc/${pid}/environ`, "latin1").split("\0").filter(Boolean);
  return new Map(
    entries.map((entry) => [entry.slice(0, entry.indexOf("=")), entry.slice(entry.indexOf("=") + 1)]),
  );
}

async function startsLogged(): Promise<number> {
  return (await simulatorLog(sim.lookerDir)).filter((e) => e.message.startsWith("starting looker")).length;
}

describe("the post step's restart", () => {
  it("starts a node the main step left stopped, with no job variable or secret in its environment", async () => {
    sim.stopQuietly();
    const jobVariables = {
      RUNNER_TRACKING_ID: `github_${randomBytes(8).toString("hex")}`,
      "INPUT_MASTER-KEY": sim.cmk,
      "STATE_stop-record": '{"stoppedByUs":[0]}',
      ACTIONS_RUNTIME_TOKEN: "runtime-token-value",
      GITHUB_TOKEN: "ghs_token_value",
    };
    Object.assign(process.env, jobVariables);
    const connected = await nodes({ cmk: sim.cmk, lookerEnv: { LOOKER_SITE: "emea" } });
    const records: StopRecord[] = [];
    try {
      await adopted(connected, records).startRecordedWithin(60_000);
    } finally {
      await connected.close();
      for (const name of Object.keys(jobVariables)) delete process.env[name];
    }
    expect(records.at(-1)).toEqual({ stoppedByUs: [] });
    expect(await probeAlive({ host: "127.0.0.1", port: sim.webPort })).toBe(true);
    const pid = simulatorPid(sim.lookerDir);
    expect(pid).toBeDefined();
    const environ = environOf(pid!);
    expect(environ.get("LOOKER_SITE")).toBe("emea");
    expect(environ.get("HOME")).toBe(sim.home);
    const leaked = [...environ.keys()].filter((name) =>
      /^(RUNNER_|INPUT_|STATE_|ACTIONS_|GITHUB_)/.test(name),
    );
    expect(leaked).toEqual([]);
    const values = [...environ.values()].join("\n");
    for (const secret of ["runtime-token-value", "ghs_token_value"]) expect(values).not.toContain(secret);
  });

  it("only waits for a node that is running again, and does not start it a second time", async () => {
    if (!sim.isRunning()) sim.start();
    const before = await startsLogged();
    const connected = await nodes({ cmk: sim.cmk });
    const records: StopRecord[] = [];
    try {
      await adopted(connected, records).startRecordedWithin(60_000);
    } finally {
      await connected.close();
    }
    expect(await startsLogged()).toBe(before);
    expect(records.at(-1)).toEqual({ stoppedByUs: [] });
  });

  it("fails with exit 5 naming the node left down when Looker cannot come back within the budget", async () => {
    sim.stopQuietly();
    // Without the CMK the simulator refuses to boot, as Looker does.
    const connected = await nodes();
    const records: StopRecord[] = [];
    let error: unknown;
    try {
      await adopted(connected, records).startRecordedWithin(10_000);
    } catch (caught) {
      error = caught;
    } finally {
      await connected.close();
    }
    expect(error).toBeInstanceOf(LookerError);
    expect((error as LookerError).exitCode).toBe(ExitCode.LookerFailed);
    expect((error as LookerError).message).toMatch(/^Looker is still down on local(?: \(.+\))? after 10 s: /);
    expect((error as LookerError).logTail).toContain("boot refused");
    expect(records).toEqual([]);
    expect(sim.isRunning()).toBe(false);
  });
});
