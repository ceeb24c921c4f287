/**
 * A keystore-independent backup run as root (the runner) of a home owned by the looker user: Looker's commands run
 * as looker, so the key file's temp dir must be looker's own (0700), and it is gone afterwards.
 */
import { execFileSync } from "node:child_process";
import { chmod, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateIdentity } from "../../src/crypto/age-keys.js";
import { runLookerBackup } from "../../src/engine/looker-job.js";
import type { ConnectedNodes } from "../../src/looker/nodes.js";
import { DirStore } from "../../src/store/dir-store.js";
import { connectLocalNode } from "../helpers/local-nodes.js";
import { selectionFor } from "../helpers/selection.js";
import { type SimulatedLooker, simulatedLooker } from "../helpers/simulator.js";
import { ensureLookerUser } from "../helpers/vm.js";
import { extractArchive, readMeta } from "./looker-job.shared.js";

let scratch: string;
let sim: SimulatedLooker;
let connected: ConnectedNodes | undefined;
const { identity, recipient } = generateIdentity();

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error("this test runs the backup as root of a looker-owned home");
  const looker = ensureLookerUser();
  scratch = await mkdtemp(join(tmpdir(), "keystore-as-looker-"));
  await chmod(scratch, 0o755); // the looker user must reach its home below it
  sim = await simulatedLooker(join(scratch, "home"), { sizeBytes: 200_000, smallFiles: 10 });
  execFileSync("chown", ["-R", `${looker.uid}:${looker.gid}`, sim.home]);
});

afterAll(async () => {
  await connected?.close();
  sim?.stopQuietly();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe("keystore-independent backup of a looker-owned home, run as root", () => {
  it("lets generate_keyfile_for_backup write into a temp dir of looker's, and removes it", async () => {
    const tempsBefore = (await readdir(tmpdir())).filter((name) => name.startsWith("looker-keyfile-"));
    connected = await connectLocalNode(sim.home, {
      webPort: sim.webPort,
      masterKey: { kind: "env", value: sim.cmk },
    });
    expect(connected.nodes[0]!.name).toBe("local (looker)");
    const result = await runLookerBackup({
      home: sim.home,
      instance: "ks-looker",
      selection: await selectionFor(sim.home, { nodes: connected.nodes }),
      recipients: [recipient],
      store: new DirStore(join(scratch, "store")),
      consistency: "stopped",
      keystoreIndependent: true,
      nodes: connected.nodes,
    });
    expect(result.backupUid).toBeTruthy();
    const tree = await extractArchive(result.archive!.location, identity, scratch);
    expect((await readMeta(tree)).backupUid).toBe(result.backupUid);
    const tempsAfter = (await readdir(tmpdir())).filter((name) => name.startsWith("looker-keyfile-"));
    expect(tempsAfter).toEqual(tempsBefore);
  });
});
