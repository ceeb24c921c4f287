/**
 * Pruning after a CLI backup into a directory store: the sanity check keeps every archive after a backup less than
 * half the size of the one before it (the `--keep-last 1` after a backup of the wrong home that lost the good one),
 * --force-prune overrides it, and an ordinary backup prunes as asked. The rules themselves: test/unit/retention.test.ts.
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { backupArgv, cli, cliJson } from "../helpers/cli.js";

let work: string;
let big: string;
let small: string;
let recipient: string;

const archivesIn = async (dir: string) =>
  (await readdir(dir)).filter((name) => name.endsWith(".tar.zst.age")).sort();
/** Archive names have one-second resolution. */
const nextSecond = () => new Promise((resolve) => setTimeout(resolve, 1100));

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "lb-retention-"));
  big = join(work, "big");
  small = join(work, "small");
  await generateLookerHome({ root: big, seed: 50, sizeBytes: 4 << 20, smallFiles: 20 });
  await generateLookerHome({ root: small, seed: 51, sizeBytes: 16 << 10, smallFiles: 2 });
  ({ recipient } = await cliJson<{ recipient: string }>("keygen", "--output", join(work, "id.txt")));
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe("pruning after a backup", () => {
  it("keeps everything after a backup less than half the size of the previous one, and says so (exit 3)", async () => {
    const store = join(work, "store-a");
    await cliJson(...backupArgv(big, store, recipient, "prod"));
    await nextSecond();
    const run = await cli(...backupArgv(small, store, recipient, "prod"), "--keep-last", "1");
    expect(run.code, run.stderr).toBe(3);
    expect(run.stdout).toMatch(
      /nothing pruned: the new archive prod-\S+ \(\d+ bytes\) is less than half the size of/,
    );
    expect(await archivesIn(store)).toHaveLength(2);
  });

  it("--force-prune prunes anyway; a backup of a like size prunes as asked", async () => {
    const store = join(work, "store-b");
    await cliJson(...backupArgv(big, store, recipient, "prod"));
    await nextSecond();
    const forced = await cliJson<{ warnings: string[] }>(
      ...backupArgv(small, store, recipient, "prod"),
      ...["--keep-last", "1", "--force-prune"],
    );
    expect(forced.warnings.join()).not.toMatch(/nothing pruned/);
    expect(await archivesIn(store)).toHaveLength(1);
    await nextSecond();
    const last = await cliJson<{ archive: string }>(
      ...backupArgv(small, store, recipient, "prod"),
      "--keep-last",
      "1",
    );
    expect(await archivesIn(store)).toEqual([basename(last.archive)]);
  });
});
