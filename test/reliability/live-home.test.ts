/**
 * Promise: a backup of a live home reports what it could not capture consistently instead of failing or hiding it:
 * a file that changes while read, or vanishes between selection and read, is a warning (exit 3, archive complete);
 * a required path the user cannot read is an input error (exit 2) naming the path, and nothing is stored.
 * Faults: appends to a large sparse file while the bundled CLI reads it; a file deleted after selection (through
 * the engine's progress callback, so the moment is exact); the bundled CLI run as `nobody` on a partly readable home.
 */
import { execFileSync } from "node:child_process";
import { appendFileSync, truncateSync } from "node:fs";
import { chmod, chown, copyFile, mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runBackup } from "../../src/engine/backup.js";
import { DirStore } from "../../src/store/dir-store.js";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { bundledEntry } from "../helpers/bundle.js";
import { backupArgv, cli, cliJson } from "../helpers/cli.js";
import { requireCommands } from "../helpers/prerequisites.js";
import { selectionFor } from "../helpers/selection.js";
import { makeKeyPair, removeWorkspace, runProcess, workspace } from "./support.js";

let work: string;
let identityFile: string;
let recipient: string;

beforeAll(async () => {
  requireCommands(["runuser"]);
  work = await workspace("live");
  ({ identityFile, recipient } = await makeKeyPair(work));
});

afterAll(() => removeWorkspace(work));

async function smallHome(name: string): Promise<string> {
  const home = join(work, name);
  await generateLookerHome({ root: home, seed: 5, sizeBytes: 256 << 10, smallFiles: 10 });
  return home;
}

describe("a file that changes while it is read", () => {
  it("-> exit 3 with the path in the warnings; the archive is complete and verifies", async () => {
    const home = await smallHome("changing");
    const growing = join(home, "looker/growing.bin");
    // 768 MiB of holes: reading it takes long enough that appends every few ms land while it is read.
    await writeFile(growing, "");
    truncateSync(growing, 768 << 20);
    const out = join(work, "changing-store");
    let child: import("node:child_process").ChildProcess | undefined;
    const appender = setInterval(() => appendFileSync(growing, "more\n"), 5);
    let run: Awaited<ReturnType<typeof runProcess>>;
    try {
      run = await runProcess(
        process.execPath,
        [await bundledEntry("cli"), ...backupArgv(home, out, recipient, "live"), "--json"],
        {
          onSpawn: (c) => {
            child = c;
          },
        },
      );
    } finally {
      clearInterval(appender);
    }
    expect(child).toBeDefined();
    expect(run.code, run.stderr).toBe(3);
    const result = JSON.parse(run.stdout) as { archive: string; warnings: string[] };
    expect(result.warnings).toContain("home/looker/growing.bin changed while it was read");
    const verified = await cliJson<{ ok: boolean }>(
      "verify",
      "--archive",
      result.archive,
      "--identity",
      identityFile,
    );
    expect(verified.ok).toBe(true);
  });
});

describe("a file that vanishes between selection and read", () => {
  it("-> a warning, exit 3, and the archive holds everything else", async () => {
    const home = await smallHome("vanishing");
    // Sorted last in the home, so it is read after the first progress callback fires.
    const doomed = join(home, "zzz-vanishing.txt");
    await writeFile(doomed, "here at selection time");
    const store = new DirStore(join(work, "vanishing-store"));
    let deleted = false;
    const result = await runBackup({
      home,
      selection: await selectionFor(home),
      instance: "live",
      recipients: [recipient],
      store,
      onProgress: () => {
        if (deleted) return;
        deleted = true;
        execFileSync("rm", [doomed]);
      },
    });
    expect(deleted).toBe(true);
    expect(result.exitCode).toBe(3);
    expect(result.warnings).toEqual(["home/zzz-vanishing.txt vanished before it could be read"]);
    expect(result.catalog.some((e) => e.path === "home/zzz-vanishing.txt")).toBe(false);
    const target = join(work, "vanishing-restored");
    await cliJson(
      "restore",
      "--archive",
      result.archive!.location,
      "--identity",
      identityFile,
      "--target",
      target,
    );
    expect(await readdir(join(target, "looker"))).toContain("lookerstart.cfg");
  });
});

describe("a file replaced between selection and read", () => {
  /**
   * Backs up a home with `zzz-swapped.txt` in it, running `replace` once the selection has seen that file: after the
   * first member is read (the small home is listed in one batch before that), long before the file is read.
   */
  async function backupReplacing(name: string, replace: (home: string) => void) {
    const home = await smallHome(name);
    await writeFile(join(home, "zzz-swapped.txt"), "here at selection time");
    let replaced = false;
    const result = await runBackup({
      home,
      selection: await selectionFor(home),
      instance: "live",
      recipients: [recipient],
      store: new DirStore(join(work, `${name}-store`)),
      onProgress: () => {
        if (replaced) return;
        replaced = true;
        replace(home);
      },
    });
    expect(replaced).toBe(true);
    return result;
  }

  it("by a symlink -> not followed: a warning, exit 3, nothing of the link's target archived", async () => {
    const secret = join(work, "outside-the-home.txt");
    await writeFile(secret, "not for the archive");
    const result = await backupReplacing("swapped-link", (home) =>
      execFileSync("ln", ["-sfn", secret, join(home, "zzz-swapped.txt")]),
    );
    expect(result.exitCode).toBe(3);
    expect(result.warnings).toEqual([
      "home/zzz-swapped.txt became a symlink before it could be read; not followed, not archived",
    ]);
    expect(result.catalog.some((e) => e.path === "home/zzz-swapped.txt")).toBe(false);
  });

  it("by another file (renamed over it) -> archived as read, with a warning, exit 3", async () => {
    // As long as the original, and on the same filesystem (a rename): the size cannot tell them apart.
    const replacement = join(work, "replacement.tmp");
    await writeFile(replacement, "HERE AT SELECTION TIME");
    const result = await backupReplacing("swapped-file", (home) =>
      execFileSync("mv", [replacement, join(home, "zzz-swapped.txt")]),
    );
    expect(result.exitCode).toBe(3);
    expect(result.warnings).toContain("home/zzz-swapped.txt changed while it was read");
    const entry = result.catalog.find((e) => e.path === "home/zzz-swapped.txt");
    expect(entry?.warning).toBe("home/zzz-swapped.txt changed while it was read");
  });
});

describe("run as an unprivileged user", () => {
  let cliCopy: string;
  let nobodyOut: string;

  beforeAll(async () => {
    // nobody must be able to reach the bundle and the workspace (mkdtemp makes them 0700).
    await chmod(work, 0o755);
    const bin = join(work, "bin");
    await mkdir(bin, { mode: 0o755 });
    cliCopy = join(bin, "cli.js");
    // cli.js checks the Node version, then imports cli.bundle.js from beside it: both are copied.
    const bundled = dirname(await bundledEntry("cli"));
    for (const file of ["cli.js", "cli.bundle.js"]) {
      await copyFile(join(bundled, file), join(bin, file));
      await chmod(join(bin, file), 0o644);
    }
    await writeFile(join(bin, "package.json"), '{"type":"module"}\n');
    nobodyOut = join(work, "nobody-out");
    await mkdir(nobodyOut);
    await chown(nobodyOut, 65534, 65534);
  });

  async function homeForNobody(name: string): Promise<string> {
    const home = await smallHome(name);
    execFileSync("chmod", ["-R", "a+rX", home]);
    return home;
  }

  async function backupAsNobody(home: string) {
    return runProcess("runuser", [
      "-u",
      "nobody",
      "--",
      process.execPath,
      cliCopy,
      ...backupArgv(home, nobodyOut, recipient, "nobody"),
      "--json",
    ]);
  }

  it("an unreadable required path (.ssh) -> exit 2 naming it, nothing stored", async () => {
    const home = await homeForNobody("unreadable-required");
    await chmod(join(home, ".ssh"), 0o700);
    const run = await backupAsNobody(home);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toContain(`cannot read ${join(home, ".ssh")}`);
    expect(run.stderr).toMatch(/hint: /);
    // Asked for --json: the failure is one JSON object on stdout, and nothing else is.
    expect(JSON.parse(run.stdout)).toMatchObject({ ok: false, exitCode: 2 });
    expect(await readdir(nobodyOut)).toEqual([]);
  });

  it("an unreadable optional file -> exit 3 with a warning naming it, archive made", async () => {
    const home = await homeForNobody("unreadable-optional");
    const privateFile = join(home, "looker/private-notes.txt");
    await writeFile(privateFile, "root only");
    await chmod(privateFile, 0o600);
    const run = await backupAsNobody(home);
    expect(run.code, run.stderr).toBe(3);
    const result = JSON.parse(run.stdout) as { archive: string; warnings: string[] };
    expect(result.warnings.join("\n")).toContain(privateFile);
    const verify = await cli("verify", "--archive", result.archive, "--identity", identityFile);
    expect(verify.code, verify.stderr).toBe(0);
    await rm(result.archive);
  });
});
