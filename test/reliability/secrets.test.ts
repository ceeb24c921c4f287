/**
 * Promise: a passphrase given through --passphrase-env never appears in any process's command line (`ps`), in
 * stdout/stderr, in temp files or in the archive; archives, partial files and key files are created 0600 and a
 * store directory made by us 0700.
 * Fault: none injected; a known secret is watched for. backup, verify and restore run as the bundled CLI while
 * /proc/<pid>/cmdline of every process is polled; afterwards everything they wrote is scanned.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { bundledEntry } from "../helpers/bundle.js";
import { removeWorkspace, runProcess, workspace } from "./support.js";

let work: string;
let home: string;
let tmp: string;
let cliPath: string;
const SECRET = `pass-${Math.random().toString(36).slice(2)}-${Date.now()}`;

beforeAll(async () => {
  work = await workspace("secrets");
  home = join(work, "home");
  await generateLookerHome({ root: home, seed: 17, sizeBytes: 4 << 20, smallFiles: 50 });
  tmp = join(work, "tmp");
  await (await import("node:fs/promises")).mkdir(tmp);
  cliPath = await bundledEntry("cli");
});

afterAll(() => removeWorkspace(work));

interface Watch {
  cmdlineHits: string[];
  sawChild: boolean;
  partialModes: number[];
}

/** Reads every process's command line until stopped; records any that contains the secret. */
function watchProcesses(childPid: () => number | undefined, storeDir?: string) {
  const watch: Watch = { cmdlineHits: [], sawChild: false, partialModes: [] };
  let running = true;
  const loop = (async () => {
    while (running) {
      for (const pid of await readdir("/proc").catch(() => [] as string[])) {
        if (!/^\d+$/.test(pid)) continue;
        const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
        if (Number(pid) === childPid() && cmdline !== "") watch.sawChild = true;
        if (cmdline.includes(SECRET)) watch.cmdlineHits.push(`${pid}: ${cmdline.replace(/\0/g, " ")}`);
      }
      if (storeDir) {
        for (const name of await readdir(storeDir).catch(() => [] as string[])) {
          if (!name.startsWith(".partial-")) continue;
          const info = await stat(join(storeDir, name)).catch(() => undefined);
          if (info) watch.partialModes.push(info.mode & 0o777);
        }
      }
      await new Promise((r) => setTimeout(r, 3));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return watch;
    },
  };
}

async function watchedCli(args: string[], storeDir?: string) {
  let pid: number | undefined;
  const watcher = watchProcesses(() => pid, storeDir);
  const run = await runProcess(process.execPath, [cliPath, ...args], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", TMPDIR: tmp, LB_REL_PASSPHRASE: SECRET },
    onSpawn: (child) => {
      pid = child.pid;
    },
  });
  const watch = await watcher.stop();
  return { run, watch };
}

/** Every regular file under `dir`, recursively. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

describe("a passphrase through --passphrase-env", () => {
  const store = () => join(work, "store");
  let archive: string;

  it("backup: not in any command line, output or temp file; archive 0600 in a 0700 store", async () => {
    const { run, watch } = await watchedCli(
      [
        "backup",
        "--home",
        home,
        "--out",
        store(),
        "--passphrase-env",
        "LB_REL_PASSPHRASE",
        "--instance",
        "secret",
        "--json",
      ],
      store(),
    );
    expect(run.code, run.stderr).toBe(0);
    expect(watch.sawChild, "the watcher saw the CLI process").toBe(true);
    expect(watch.cmdlineHits).toEqual([]);
    expect(run.stdout + run.stderr).not.toContain(SECRET);
    archive = (JSON.parse(run.stdout) as { archive: string }).archive;
    expect((await stat(archive)).mode & 0o777).toBe(0o600);
    expect((await stat(store())).mode & 0o777).toBe(0o700);
    expect(watch.partialModes.every((m) => m === 0o600)).toBe(true);
    expect((await readFile(archive)).includes(SECRET)).toBe(false);
    expect((await readFile(archive, "latin1")).startsWith("age-encryption.org/v1\n-> scrypt ")).toBe(true);
  });

  it("verify and restore: the passphrase works and still appears nowhere", async () => {
    const verify = await watchedCli([
      "verify",
      "--archive",
      archive,
      "--passphrase-env",
      "LB_REL_PASSPHRASE",
    ]);
    expect(verify.run.code, verify.run.stderr).toBe(0);
    const target = join(work, "restored");
    const restore = await watchedCli([
      "restore",
      "--archive",
      archive,
      "--passphrase-env",
      "LB_REL_PASSPHRASE",
      "--target",
      target,
    ]);
    expect(restore.run.code, restore.run.stderr).toBe(0);
    for (const { run, watch } of [verify, restore]) {
      expect(watch.sawChild).toBe(true);
      expect(watch.cmdlineHits).toEqual([]);
      expect(run.stdout + run.stderr).not.toContain(SECRET);
    }
    expect(await readdir(target)).toContain("looker");
  });

  it("no file any run left in its TMPDIR, the store or the restored home holds the secret", async () => {
    const written = [
      ...(await filesUnder(tmp)),
      ...(await filesUnder(store())),
      ...(await filesUnder(join(work, "restored"))),
    ];
    expect(written.length).toBeGreaterThan(0);
    const holding: string[] = [];
    for (const file of written) if ((await readFile(file)).includes(SECRET)) holding.push(file);
    expect(holding).toEqual([]);
  });

  it("a wrong passphrase is refused (exit 4) without echoing either passphrase", async () => {
    const wrong = `${SECRET}-wrong`;
    const run = await runProcess(
      process.execPath,
      [cliPath, "verify", "--archive", archive, "--passphrase-env", "LB_REL_PASSPHRASE"],
      { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", TMPDIR: tmp, LB_REL_PASSPHRASE: wrong } },
    );
    expect(run.code, run.stderr).toBe(4);
    expect(run.stdout + run.stderr).not.toContain(SECRET);
  });
});

describe("key files", () => {
  it("keygen writes the identity 0600 and prints only the recipient on stdout", async () => {
    const output = join(work, "id.txt");
    const run = await runProcess(process.execPath, [cliPath, "keygen", "--output", output], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", TMPDIR: tmp },
    });
    expect(run.code, run.stderr).toBe(0);
    expect((await stat(output)).mode & 0o777).toBe(0o600);
    const secretKey = (await readFile(output, "utf8")).match(/AGE-SECRET-KEY-1[0-9A-Z]+/)?.[0];
    expect(secretKey).toBeDefined();
    expect(run.stdout.trim()).toMatch(/^age1[0-9a-z]+$/);
    expect(run.stdout + run.stderr).not.toContain(secretKey!);
  });

  it("keygen --pq writes the post-quantum identity 0600 and prints only the recipient on stdout", async () => {
    const output = join(work, "pq-id.txt");
    const run = await runProcess(process.execPath, [cliPath, "keygen", "--pq", "--output", output], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", TMPDIR: tmp },
    });
    expect(run.code, run.stderr).toBe(0);
    expect((await stat(output)).mode & 0o777).toBe(0o600);
    const secretKey = (await readFile(output, "utf8")).match(/AGE-SECRET-KEY-PQ-1[0-9A-Z]+/)?.[0];
    expect(secretKey).toBeDefined();
    expect(run.stdout.trim()).toMatch(/^age1pq1[0-9a-z]+$/);
    expect(run.stdout + run.stderr).not.toContain(secretKey!);
  });

  it("keygen never overwrites an existing key (exit 2), and the file keeps its content", async () => {
    const output = join(work, "existing-id.txt");
    await (await import("node:fs/promises")).writeFile(output, "keep me", { mode: 0o600 });
    const run = await runProcess(process.execPath, [cliPath, "keygen", "--output", output]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(output);
    expect(await readFile(output, "utf8")).toBe("keep me");
  });
});
