/**
 * Looker's start options read as its script reads them (lookerstart.cfg sourced in ~/looker), and what the backup
 * does with them: a cluster's shared storage is a required path of the archive; the script's runtime files stay out;
 * a deploy in progress is a warning.
 */

import { existsSync } from "node:fs";
import { appendFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateIdentity } from "../../src/crypto/age-keys.js";
import { runLookerBackup } from "../../src/engine/looker-job.js";
import { ExitCode, LookerBackupError } from "../../src/errors.js";
import type { ConnectedNodes } from "../../src/looker/nodes.js";
import { readStartOptions } from "../../src/looker/start-config.js";
import { DirStore } from "../../src/store/dir-store.js";
import { connectLocalNode } from "../helpers/local-nodes.js";
import { selectionFor } from "../helpers/selection.js";
import { type SimulatedLooker, simulatedLooker } from "../helpers/simulator.js";
import { extractArchive } from "./looker-job.shared.js";

let scratch: string;
let sim: SimulatedLooker;
let connected: ConnectedNodes;
const { identity, recipient } = generateIdentity();

async function nodesOf(home: string): Promise<ConnectedNodes> {
  return connectLocalNode(home);
}

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "start-options-"));
  sim = await simulatedLooker(join(scratch, "home"), { sizeBytes: 100_000, smallFiles: 5 });
  connected = await nodesOf(sim.home);
});

afterAll(async () => {
  await connected?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe("Looker's start options", () => {
  it("are the script's defaults without a lookerstart.cfg", async () => {
    const bare = join(scratch, "bare");
    await mkdir(join(bare, "looker"), { recursive: true });
    const nodes = await nodesOf(bare);
    try {
      const options = await readStartOptions(nodes.nodes[0]!);
      expect(options.args).toEqual(["--force-gcm-encryption"]);
      expect(options.port).toBe(9999);
      expect(options.noSsl).toBe(false);
    } finally {
      await nodes.close();
    }
  });

  it("are what lookerstart.cfg makes of LOOKERARGS and LOOKERPORT, shell syntax and all", async () => {
    const shared = join(scratch, "shared");
    await appendFile(
      join(sim.lookerDir, "lookerstart.cfg"),
      `\nLOOKERARGS="\${LOOKERARGS} --clustered -H 127.0.0.1 --shared-storage-dir ${shared}"\nLOOKERPORT=9443\n`,
    );
    const options = await readStartOptions(connected.nodes[0]!);
    expect(options.clustered).toBe(true);
    expect(options.sharedStorageDir).toBe(shared);
    expect(options.port).toBe(9443);
    expect(options.args.slice(-5)).toEqual([
      "--clustered",
      "-H",
      "127.0.0.1",
      "--shared-storage-dir",
      shared,
    ]);
  });

  it("make a cluster's shared storage a required part of the backup", async () => {
    const shared = join(scratch, "shared");
    // The selection as the preflight resolves it, from the node's start options.
    const backup = async () =>
      runLookerBackup({
        home: sim.home,
        instance: "start-options",
        selection: await selectionFor(sim.home, { nodes: connected.nodes }),
        recipients: [recipient],
        store: new DirStore(join(scratch, "store")),
        consistency: "live",
        keystoreIndependent: false,
        nodes: connected.nodes,
      });
    // Missing: the backup fails naming it, before anything is stored.
    let error: unknown;
    try {
      await backup();
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(LookerBackupError);
    expect((error as LookerBackupError).exitCode).toBe(ExitCode.BadInput);
    expect((error as LookerBackupError).message).toContain(shared);

    await mkdir(join(shared, "models"), { recursive: true });
    await writeFile(join(shared, "models", "shared.model.lkml"), 'connection: "warehouse"\n');
    // Runtime files of Looker's script, and a deploy in progress.
    await writeFile(join(sim.lookerDir, ".starting"), "4242\n");
    await writeFile(join(sim.lookerDir, ".status_server_token"), "token\n");
    await writeFile(join(sim.lookerDir, ".deploying"), "");
    try {
      const result = await backup();
      const tree = await extractArchive(result.archive!.location, identity, scratch);
      expect(existsSync(join(tree, "rootfs", shared, "models", "shared.model.lkml"))).toBe(true);
      expect(existsSync(join(tree, "home", "looker", ".starting"))).toBe(false);
      expect(existsSync(join(tree, "home", "looker", ".status_server_token"))).toBe(false);
      expect(result.warnings[0]).toMatch(/^looker\/\.deploying exists: a deploy is in progress/);
      expect(result.exitCode).toBe(ExitCode.Warnings);
    } finally {
      await rm(join(sim.lookerDir, ".deploying"), { force: true });
    }
  });
});
