/**
 * Promise: a passphrase given through --passphrase-env never appears in any process's command line (`ps`), in
 * stdout/stderr, in temp files or in the archive; archives, partial files and key files are created 0600 and a
 * store directory made by us 0700.
 * Fault: none injected; a known secret is watched for. backup, verify and restore run as the bundled CLI while
 * /proc/<pid>/cmdline of every process is polled; afterwards everything they wrote is scanned.
 * Promise: an identity or a private key pasted where a recipient belongs is refused (exit 2) without being echoed:
 * not on the CLI's stderr, not in the action's log as the runner shows it (the action masks it first).
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateHybridIdentity, generateIdentity } from "../../src/crypto/age-keys.js";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { bundledEntry } from "../helpers/bundle.js";
import { bundledAction, cleanUpRunnerJobs, startRunnerJob } from "../helpers/runner-job.js";
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

/** Secret keys a user might paste where a recipient belongs, and the part of each that must never be printed. */
function pastedSecrets(): { name: string; value: string; secret: string }[] {
  const x25519 = generateIdentity().identity;
  const pq = generateHybridIdentity().identity;
  const body = [
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW",
    `QyNTUxOQAAACB${Math.random().toString(36).slice(2).padEnd(12, "q")}AAAAJh2ZzM5dmczOQAAAAtzc2gtZWQyNTUxOQ`,
  ];
  const pem = `-----BEGIN OPENSSH PRIVATE KEY-----\n${body.join("\n")}\n-----END OPENSSH PRIVATE KEY-----`;
  return [
    { name: "an X25519 identity", value: x25519, secret: x25519.slice(16) },
    { name: "a post-quantum identity", value: pq, secret: pq.slice(19, 60) },
    { name: "an OpenSSH private key", value: pem, secret: body[1]! },
    { name: "a line of a private key", value: body[1]!, secret: body[1]! },
  ];
}

describe("a secret key given where a recipient belongs", () => {
  afterEach(async () => {
    await cleanUpRunnerJobs();
  });

  it.each(pastedSecrets())(
    "CLI: $name as --recipient or in --recipients-file is refused, never echoed",
    async ({ value, secret }) => {
      const file = join(work, `pasted-${Math.random().toString(36).slice(2)}.txt`);
      await (await import("node:fs/promises")).writeFile(file, `${value}\n`);
      // `=`: a value starting with a dash (a PEM block) is otherwise taken for a flag, and refused as such.
      for (const keyArgs of [[`--recipient=${value}`], ["--recipients-file", file]]) {
        const run = await runProcess(process.execPath, [
          cliPath,
          "backup",
          "--home",
          home,
          "--out",
          join(work, "never-written"),
          ...keyArgs,
          "--json",
        ]);
        expect(run.code, run.stderr).toBe(2);
        expect(run.stderr).toMatch(/invalid age recipient .*(…\(redacted\)|not shown)/);
        expect(run.stdout + run.stderr).not.toContain(secret);
      }
    },
  );

  it.each(pastedSecrets())(
    "action: $name as the recipients input is masked and refused, never in the log",
    async ({ value, secret }) => {
      const job = await startRunnerJob();
      const run = await job.run(await bundledAction("backup"), {
        with: { recipients: value, home, store: "dir", "store-dir": join(work, "never-written") },
      });
      expect(run.code, run.log).toBe(2);
      expect(run.log).toMatch(/invalid age recipient/);
      expect(run.log + run.visibleSummary).not.toContain(secret);
      // Masked before the settings were read: the mask command precedes the refusal in the raw output.
      expect(run.stdout.indexOf("::add-mask::")).toBeGreaterThanOrEqual(0);
      expect(run.stdout.indexOf("::add-mask::")).toBeLessThan(run.stdout.indexOf("invalid age recipient"));
    },
  );
});
