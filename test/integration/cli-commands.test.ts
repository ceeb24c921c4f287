import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { backupArgv, cli, cliJson } from "../helpers/cli.js";
import { simulatedLooker } from "../helpers/simulator.js";

let work: string;
let home: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "lb-cli-"));
  home = join(work, "home");
  await generateLookerHome({ root: home, seed: 11, sizeBytes: 2 << 20, smallFiles: 50 });
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

interface PlanRule {
  id: string;
  action: string;
  pattern: string;
  files: number;
  bytes: number;
  paths: string[];
  reason: string;
}

describe("--json on failure", () => {
  /** A verify that fails with bad input: the archive does not exist. */
  const verifyMissing = () => [
    "verify",
    "--archive",
    join(work, "missing.tar.zst.age"),
    "--identity",
    join(work, "x"),
  ];

  it("prints one JSON object with the exit code, the message and the hint on stdout", async () => {
    const run = await cli(...verifyMissing(), "--json");
    expect(run.code).toBe(2);
    const parsed = JSON.parse(run.stdout) as { ok: boolean; exitCode: number; error: string; hint?: string };
    expect(parsed.ok).toBe(false);
    expect(parsed.exitCode).toBe(2);
    expect(parsed.error).toContain("missing.tar.zst.age");
    // The human-readable error still goes to stderr.
    expect(run.stderr).toMatch(/^looker-backup: error: /);
  });

  it("prints nothing on stdout for a failure without --json", async () => {
    const run = await cli(...verifyMissing());
    expect(run.code).toBe(2);
    expect(run.stdout).toBe("");
  });
});

describe("--version", () => {
  it("prints the tool's version, as package.json has it", async () => {
    const { version } = JSON.parse(
      await readFile(new URL("../../package.json", import.meta.url), "utf8"),
    ) as {
      version: string;
    };
    for (const flag of ["--version", "-V"]) {
      const run = await cli(flag);
      expect(run.code).toBe(0);
      expect(run.stdout).toBe(`looker-backup ${version}\n`);
    }
  });
});

describe("plan", () => {
  it("shows every rule with what it matched and why, and writes nothing", async () => {
    const before = await readdir(home, { recursive: true });
    const plan = await cliJson<{ backend: string; rules: PlanRule[] }>("plan", "--home", home);
    expect(plan.backend).toBe("internal");
    const rule = (pattern: string) => plan.rules.find((r) => r.pattern === pattern)!;
    expect(rule("looker/log")).toMatchObject({ action: "exclude", paths: ["looker/log"] });
    expect(rule("looker/log").files).toBeGreaterThan(0);
    expect(rule("looker/.db/looker.lck").action).toBe("exclude");
    expect(rule("looker/deploy_keys")).toMatchObject({ action: "include" });
    expect(rule("looker/deploy_keys").files).toBeGreaterThan(0);
    expect(rule("looker/models-user-*").bytes).toBeGreaterThan(0);
    expect(await readdir(home, { recursive: true })).toEqual(before);
  });

  it("prints a readable table with the reasons", async () => {
    const run = await cli("plan", "--home", home);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/exclude\s+looker\/log\s+\d+ files/);
    expect(run.stdout).toContain("logs are not needed to restore");
    expect(run.stdout).toMatch(/include\s+looker\/deploy_keys .*required/);
  });

  it("applies a manifest", async () => {
    const manifest = join(work, "m.yml");
    await writeFile(manifest, "include:\n  - path: looker/log\n    reason: kept for audit\n");
    const plan = await cliJson<{ rules: PlanRule[] }>("plan", "--home", home, "--manifest", manifest);
    expect(plan.rules.find((r) => r.reason === "kept for audit")!.files).toBeGreaterThan(0);
  });
});

describe("keygen, list and help", () => {
  it("keygen writes a 0600 identity, never overwrites one, and prints the recipient", async () => {
    const file = join(work, "id.txt");
    const made = await cliJson<{ recipient: string; identityFile: string }>("keygen", "--output", file);
    expect(made.recipient).toMatch(/^age1[0-9a-z]{58}$/);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const again = await cli("keygen", "--output", file);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/never overwrites/);
  });

  it("list shows the archives of a store newest first", async () => {
    const { recipient } = await cliJson<{ recipient: string }>("keygen", "--output", join(work, "id2.txt"));
    const out = join(work, "store");
    await cliJson(...backupArgv(home, out, recipient, "a"));
    await new Promise((r) => setTimeout(r, 1100));
    await cliJson(...backupArgv(home, out, recipient, "a"));
    const listed = await cliJson<{ name: string; createdAt: string }[]>("list", "--out", out);
    expect(listed).toHaveLength(2);
    expect(listed[0]!.createdAt > listed[1]!.createdAt).toBe(true);
    const none = await cliJson<unknown[]>("list", "--out", out, "--instance", "other");
    expect(none).toEqual([]);
  });

  it.each(["backup", "restore", "verify", "plan", "list", "keygen", "drill"])(
    "%s --help lists its options",
    async (name) => {
      const run = await cli(name, "--help");
      expect(run.code).toBe(0);
      expect(run.stdout).toMatch(/Usage: looker-backup/);
      expect(run.stdout).toContain("--help");
    },
  );

  it("without a command prints usage and exits 2; an unknown command is named", async () => {
    expect((await cli()).code).toBe(2);
    const unknown = await cli("frobnicate");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");
  });
});

describe("backup's Looker options (the same meaning as the action's inputs)", () => {
  it("stops and restarts a running Looker for --consistency stopped, with the CMK from an environment variable", async () => {
    const sim = await simulatedLooker(join(work, "sim-home"), {
      seed: 5,
      sizeBytes: 2 << 20,
      smallFiles: 20,
    });
    sim.start();
    try {
      const { recipient } = await cliJson<{ recipient: string }>(
        "keygen",
        "--output",
        join(work, "id-sim.txt"),
      );
      process.env.LB_TEST_CMK = sim.cmk;
      // Looker's status prints no pid; the pid file names the process, a restart a new one.
      const pidBefore = sim.pid();
      expect(pidBefore).toBeGreaterThan(0);
      const made = await cli(
        ...backupArgv(sim.home, join(work, "store-sim"), recipient, "sim"),
        "--consistency",
        "stopped",
        "--master-key-env",
        "LB_TEST_CMK",
        "--web-port",
        String(sim.webPort),
        "--boot-timeout",
        "60",
        "--keystore-independent",
      );
      expect(made.code, made.stderr).toBe(0);
      expect(made.stderr).toContain("stopping Looker on local");
      expect(made.stderr).toContain("keystore-independent recrypt done");
      expect(sim.isRunning()).toBe(true);
      expect(sim.pid()).not.toBe(pidBefore);
      const stored = await readdir(join(work, "store-sim"));
      expect(stored.some((n) => n.endsWith(".keyfile.age"))).toBe(true);
      expect(made.stdout + made.stderr).not.toContain(sim.cmk);
    } finally {
      delete process.env.LB_TEST_CMK;
      sim.stopQuietly();
    }
  });

  it.each([
    [["--consistency", "sometimes"], /--consistency must be one of auto, live, brief-stop, stopped/],
    [["--keystore-independent"], /--keystore-independent needs the CMK/],
    [
      ["--master-key-env", "LB_TEST_UNSET_VARIABLE"],
      /--master-key-env: environment variable LB_TEST_UNSET_VARIABLE/,
    ],
    [["--node", "not a node"], /--node: 'not a node' is not user@host/],
    [["--quiet-window", "lunchtime"], /--quiet-window: 'lunchtime' is not a time range/],
  ])("%j is refused with exit 2, naming the flag", async (flags, message) => {
    const { recipient } = await cliJson<{ recipient: string }>(
      "keygen",
      "--output",
      join(work, `id-${Math.random()}.txt`),
    );
    const run = await cli(
      "backup",
      "--home",
      home,
      "--out",
      join(work, "never"),
      "--recipient",
      recipient,
      ...flags,
    );
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toMatch(message);
  });
});

describe("post-quantum recipients (age1pq1)", () => {
  it("keygen --pq writes a 0600 AGE-SECRET-KEY-PQ-1 identity, never overwrites it, and prints only the recipient", async () => {
    const file = join(work, "pq-id.txt");
    const run = await cli("keygen", "--pq", "--output", file);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.trim()).toMatch(/^age1pq1[0-9a-z]{1952}$/);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const text = await readFile(file, "utf8");
    const secret = /^AGE-SECRET-KEY-PQ-1[0-9A-Z]{58}$/m.exec(text)?.[0];
    expect(secret).toBeDefined();
    expect(text).toContain(`# public key: ${run.stdout.trim()}\n`);
    expect(run.stdout + run.stderr).not.toContain(secret!);
    const again = await cli("keygen", "--pq", "--output", file);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/never overwrites/);
    expect(await readFile(file, "utf8")).toBe(text);
    expect((await cli("keygen", "--pq", "--signing", "--output", join(work, "pq-sign"))).code).toBe(2);
  });

  it("backup to an age1pq1 recipient; verify (armored too) and restore with the PQ identity file", async () => {
    const identityFile = join(work, "pq-backup-id.txt");
    const { recipient } = await cliJson<{ recipient: string }>("keygen", "--pq", "--output", identityFile);
    const out = join(work, "pq-store");
    const made = await cliJson<{ archive: string }>(...backupArgv(home, out, recipient, "pq"));
    const header = (await readFile(made.archive)).subarray(0, 4096).toString("latin1");
    expect(header).toMatch(/^age-encryption\.org\/v1\n-> mlkem768x25519 /);
    expect((await cli("verify", "--archive", made.archive, "--identity", identityFile)).code).toBe(0);
    const target = join(work, "pq-restored");
    const restored = await cli(
      "restore",
      "--archive",
      made.archive,
      "--identity",
      identityFile,
      "--target",
      target,
    );
    expect(restored.code, restored.stderr).toBe(0);
    expect((await readdir(target)).length).toBeGreaterThan(0);
    // The same archive ASCII-armored (as `age -a` writes it: 64 columns, padded base64) verifies too.
    const lines = (await readFile(made.archive)).toString("base64").match(/.{1,64}/g) ?? [];
    const armored = join(work, "pq-armored.tar.zst.age");
    await writeFile(
      armored,
      `-----BEGIN AGE ENCRYPTED FILE-----\n${lines.join("\n")}\n-----END AGE ENCRYPTED FILE-----\n`,
    );
    const verifiedArmor = await cli("verify", "--archive", armored, "--identity", identityFile);
    expect(verifiedArmor.code, verifiedArmor.stderr).toBe(0);
    // An X25519 identity of nobody's is told apart from a damaged archive: no identity matched (exit 4).
    const stranger = join(work, "pq-stranger.txt");
    await cliJson("keygen", "--output", stranger);
    const refused = await cli("verify", "--archive", made.archive, "--identity", stranger);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain("no identity matched");
  });

  it("backup refuses post-quantum and X25519 recipients together, before any work, saying how to fix it", async () => {
    const { recipient: pq } = await cliJson<{ recipient: string }>(
      "keygen",
      "--pq",
      "--output",
      join(work, "mix-pq.txt"),
    );
    const { recipient: classic } = await cliJson<{ recipient: string }>(
      "keygen",
      "--output",
      join(work, "mix-x.txt"),
    );
    const out = join(work, "mix-store");
    const inline = await cli(
      "backup",
      "--home",
      home,
      "--out",
      out,
      "--recipient",
      pq,
      "--recipient",
      classic,
    );
    expect(inline.code).toBe(2);
    expect(inline.stderr).toContain(
      "--recipient: post-quantum (age1pq1...) and X25519 (age1...) recipients cannot be mixed",
    );
    expect(inline.stderr).toContain("keygen --pq");
    const list = join(work, "mixed-recipients.txt");
    await writeFile(list, `# team\n${classic}\n`);
    const viaFile = await cli(
      "backup",
      "--home",
      home,
      "--out",
      out,
      "--recipient",
      pq,
      "--recipients-file",
      list,
    );
    expect(viaFile.code).toBe(2);
    expect(viaFile.stderr).toContain("cannot be mixed");
    expect(await readdir(out).catch(() => [])).toEqual([]);
  });
});
