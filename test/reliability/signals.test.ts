/**
 * Promise: a CLI backup interrupted by SIGTERM or SIGINT exits 130, leaves no partial archive, and older archives
 * stay byte-identical. (Restarting Looker under signals is proven for the action in test/e2e/backup-action.test.ts.)
 * Fault: the signal is sent to the bundled CLI at three points, judged by the partial file in the store: as soon as
 * it exists (early), at half the expected archive size (mid-archive) and at 90% (at the end). The CLI runs in
 * slices between SIGSTOP and SIGCONT so that the signal points are hit however fast the backup is.
 * Promise: restore, verify, drill and prune stop on SIGINT/SIGTERM with exit 130, leaving no staging and nothing
 * half removed; the drill's teardown runs.
 */
import type { ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFile, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { bundledEntry } from "../helpers/bundle.js";
import { backupArgv, cliJson, restoreArgv } from "../helpers/cli.js";
import { makeKeyPair, removeWorkspace, runProcess, workspace } from "./support.js";

let work: string;
let home: string;
let recipient: string;
let cliPath: string;

beforeAll(async () => {
  work = await workspace("signals");
  ({ recipient } = await makeKeyPair(work));
  home = join(work, "home");
  await generateLookerHome({ root: home, seed: 9, sizeBytes: 160 << 20, smallFiles: 200 });
  cliPath = await bundledEntry("cli");
});

afterAll(() => removeWorkspace(work));

const sha256 = async (path: string) =>
  createHash("sha256")
    .update(await readFile(path))
    .digest("hex");

/** The size of the partial archive being written in `out`, or undefined while there is none. */
async function partialSize(out: string): Promise<number | undefined> {
  const partial = (await readdir(out)).find((n) => n.startsWith(".partial-"));
  if (partial === undefined) return undefined;
  return stat(join(out, partial)).then(
    (s) => s.size,
    () => undefined,
  );
}

describe("signals during a CLI backup", () => {
  it.each([
    ["SIGTERM", "early (the partial file just created)", 0],
    ["SIGINT", "mid-archive (half written)", 0.5],
    ["SIGTERM", "at the end (90% written)", 0.9],
  ] as const)(
    "%s %s -> exit 130, no partial archive, older archive intact",
    async (signal, _when, fraction) => {
      const out = join(work, `store-${signal}-${fraction}`);
      const older = await cliJson<{ archive: string; catalog: string; bytesOut: number }>(
        ...backupArgv(home, out, recipient, "sig"),
      );
      const olderSha = await sha256(older.archive);
      await new Promise((r) => setTimeout(r, 1100)); // archive names have one-second resolution
      const threshold = older.bytesOut * fraction;
      let child: ChildProcess | undefined;
      let signalled = false;
      const running = runProcess(process.execPath, [cliPath, ...backupArgv(home, out, recipient, "sig")], {
        onSpawn: (c) => {
          child = c;
        },
      });
      let exited = false;
      void running.then(() => {
        exited = true;
      });
      // The child runs in short slices between SIGSTOPs, so a fast backup cannot run past the signal point
      // between two looks at the partial file (it did at 90% once backups got faster).
      while (!exited && !signalled) {
        if (child === undefined) {
          await new Promise((r) => setTimeout(r, 2));
          continue;
        }
        child.kill("SIGSTOP");
        const size = await partialSize(out);
        if (size !== undefined && size >= threshold) {
          child.kill(signal);
          signalled = true;
        }
        child.kill("SIGCONT");
        if (!signalled) await new Promise((r) => setTimeout(r, 3));
      }
      const run = await running;
      expect(signalled, "the backup finished before the signal point was reached").toBe(true);
      expect(run.code, run.stderr).toBe(130);
      expect(run.stderr).toMatch(/cancelled/);
      expect((await readdir(out)).sort(), "only the older archive (and its sidecar) is left").toEqual(
        [basename(older.archive), basename(older.catalog)].sort(),
      );
      expect(await sha256(older.archive)).toBe(olderSha);
    },
  );
});

describe("signals during a CLI restore, verify, ls and diff", () => {
  let archive: string;
  let identityFile: string;

  beforeAll(async () => {
    const keys = await makeKeyPair(work, "restore-id.txt");
    identityFile = keys.identityFile;
    ({ archive } = await cliJson<{ archive: string }>(
      ...backupArgv(home, join(work, "store-restore"), keys.recipient, "rsig"),
    ));
  });

  /** Under way: it has read 32 MB (the archive; the bundle and node's own files are a few MB). */
  const readingArchive = async (child: ChildProcess) => {
    const io = await readFile(`/proc/${child.pid}/io`, "utf8").catch(() => "");
    return Number(/^rchar: (\d+)$/m.exec(io)?.[1] ?? 0) > 32 << 20;
  };

  /** Runs the CLI in slices and signals it once `ready` says it is under way; resolves with its exit and timing. */
  async function interrupt(
    argv: string[],
    signal: "SIGINT" | "SIGTERM",
    ready: (child: ChildProcess) => Promise<boolean>,
  ) {
    let child: ChildProcess | undefined;
    let signalledAt: number | undefined;
    const running = runProcess(process.execPath, [cliPath, ...argv], {
      onSpawn: (c) => {
        child = c;
      },
    });
    let exited = false;
    void running.then(() => {
      exited = true;
    });
    while (!exited && signalledAt === undefined) {
      if (child === undefined) {
        await new Promise((r) => setTimeout(r, 2));
        continue;
      }
      child.kill("SIGSTOP");
      if (await ready(child)) {
        child.kill(signal);
        signalledAt = Date.now();
      }
      child.kill("SIGCONT");
      if (signalledAt === undefined) await new Promise((r) => setTimeout(r, 3));
    }
    const run = await running;
    return { run, signalled: signalledAt !== undefined };
  }

  it.each(["SIGINT", "SIGTERM"] as const)(
    "restore under %s: exit 130, no staging left, the target untouched",
    async (signal) => {
      const parent = join(work, `restore-${signal}`);
      await mkdir(parent);
      const target = join(parent, "home");
      // Under way: its staging directory holds the first restored files.
      const ready = async () => {
        const staging = (await readdir(parent)).find((n) => n.startsWith(".home.restore-"));
        if (staging === undefined) return false;
        return (await readdir(join(parent, staging)).catch(() => [])).length > 0;
      };
      const { run, signalled } = await interrupt(restoreArgv(archive, identityFile, target), signal, ready);
      expect(signalled, "the restore finished before it could be interrupted").toBe(true);
      expect(run.code, run.stderr).toBe(130);
      expect(run.stderr).toMatch(/cancelled/);
      expect(await readdir(parent), "no staging, no target, the lock released").toEqual([]);
    },
  );

  it.each(["SIGINT", "SIGTERM"] as const)(
    "drill into a directory under %s while extracting: exit 130, teardown ran, no staging or target left",
    async (signal) => {
      const parent = join(work, `drill-${signal}`);
      await mkdir(parent);
      const target = join(parent, "home");
      // Under way: its staging directory beside the target holds the first extracted files.
      const ready = async () => {
        const staging = (await readdir(parent)).find((n) => n.startsWith(".looker-drill-"));
        if (staging === undefined) return false;
        return (await readdir(join(parent, staging)).catch(() => [])).length > 0;
      };
      const argv = ["drill", "--archive", archive, "--identity", identityFile, "--target-dir", target];
      const { run, signalled } = await interrupt(argv, signal, ready);
      expect(signalled, "the drill finished before it could be interrupted").toBe(true);
      expect(run.code, run.stderr).toBe(130);
      expect(run.stdout).toMatch(/^drill failed: /);
      expect(run.stdout).toMatch(/error: cancelled/);
      expect(run.stderr).toMatch(/FAILED verify and extract archive \(\d+ ms\): cancelled/);
      expect(run.stderr).toMatch(/ok {5}teardown/);
      expect(await readdir(parent), "no staging, no target").toEqual([]);
    },
  );

  it("prune under SIGTERM: exit 130, stopped between archives (none left without its signature or key file)", async () => {
    const out = join(work, "prune-store");
    await mkdir(out);
    // Many small archives (each with its signature and key file): pruning them takes long enough to interrupt.
    const count = 1000;
    const names = Array.from(
      { length: count },
      (_, i) =>
        `pr-${new Date(Date.UTC(2024, 0, 1) + i * 60_000).toISOString().replace(/[-:]|\.\d{3}/g, "")}.tar.zst.age`,
    );
    for (let i = 0; i < count; i += 100) {
      await Promise.all(
        names
          .slice(i, i + 100)
          .flatMap((name) => [
            writeFile(join(out, name), "archive"),
            writeFile(join(out, `${name}.sig`), "signature"),
            writeFile(join(out, name.replace(".tar.zst.age", ".keyfile.age")), "key file"),
          ]),
      );
    }
    const ready = async () => (await readdir(out)).length < count * 3 - 30;
    const argv = ["prune", "--out", out, "--instance", "pr", "--keep-last", "1"];
    const { run, signalled } = await interrupt(argv, "SIGTERM", ready);
    expect(signalled, "prune finished before it could be interrupted").toBe(true);
    expect(run.code, run.stderr).toBe(130);
    expect(run.stderr).toMatch(/cancelled/);
    const left = new Set(await readdir(out));
    const archives = names.filter((name) => left.has(name));
    expect(archives.length, "it stopped before the end").toBeGreaterThan(1);
    expect(archives.length, "it had removed some").toBeLessThan(count);
    expect(archives.at(-1), "the newest is kept").toBe(names.at(-1));
    // Every archive left has both companions, and no companion is left without its archive.
    expect(left.size).toBe(archives.length * 3);
    for (const name of archives) {
      expect(left.has(`${name}.sig`)).toBe(true);
      expect(left.has(name.replace(".tar.zst.age", ".keyfile.age"))).toBe(true);
    }
  });

  it("verify under SIGINT: exit 130", async () => {
    const { run, signalled } = await interrupt(
      ["verify", "--archive", archive, "--identity", identityFile],
      "SIGINT",
      readingArchive,
    );
    expect(signalled, "verify finished before it could be interrupted").toBe(true);
    expect(run.code, run.stderr).toBe(130);
    expect(run.stderr).toMatch(/cancelled/);
  });

  it.each([
    ["ls", "SIGTERM"],
    ["diff", "SIGINT"],
  ] as const)(
    "%s reading the archive itself (no sidecar) under %s: exit 130, nothing written",
    async (command, signal) => {
      // Without its sidecar, the command reads the whole archive: long enough to be interrupted.
      const dir = join(work, `bare-${command}`);
      await mkdir(dir);
      const copy = join(dir, basename(archive));
      await copyFile(archive, copy);
      const argv = command === "ls" ? ["ls", copy] : ["diff", copy, copy];
      const { run, signalled } = await interrupt(
        [...argv, "--identity", identityFile],
        signal,
        readingArchive,
      );
      expect(signalled, `${command} finished before it could be interrupted`).toBe(true);
      expect(run.code, run.stderr).toBe(130);
      expect(run.stderr).toMatch(/reading the archive itself/);
      expect(run.stderr).toMatch(/cancelled/);
      expect(run.stdout).toBe("");
      expect(await readdir(dir), "nothing written beside the archive").toEqual([basename(copy)]);
    },
  );
});
