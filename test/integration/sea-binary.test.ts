/**
 * The standalone binary (npm run build:sea: the CLI as a Node single executable application) on a machine without
 * Node: every command runs from the binary alone with no `node` on PATH (worker threads from source text, ssh2's
 * pure-JS crypto, the bundled dependencies), and fails with the same exit codes and messages as `node dist/cli.js`.
 * The binary is built once per run (or kept, when build/sea holds one built from the same inputs), and the release's
 * dry run (scripts/release.mjs) packs that same binary.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BINARY_NAME, buildSea } from "../../scripts/build-sea.mjs";
import { NOTES, RUNBOOK, release, releaseNotes, SUMS } from "../../scripts/release.mjs";
import { type GeneratedLookerHome, generateLookerHome } from "../fixtures/home-generator.js";
import { bundledEntry } from "../helpers/bundle.js";
import { restoreArgv } from "../helpers/cli.js";
import { freePort } from "../helpers/free-port.js";
import { findCommand } from "../helpers/prerequisites.js";
import { comparable, snapshotTree } from "../helpers/tree.js";
import { createVm, type Vm } from "../helpers/vm.js";

const ROOT = resolve(import.meta.dirname, "../..");
/**
 * What runs on this machine during these commands: the CLI's `test` (the backup's preflight: the looker script is
 * there, no deploy is under way), `env` (Looker's script runs as `env HOME=<home> ./looker status`) and `cp` (a
 * brief-stop backup copies looker/.db with `cp -a`), and what Looker's script uses to find Looker not running (grep,
 * curl). No node, zstd, tar or age: the archive pipeline is the binary's own.
 */
const TOOLS = ["test", "env", "cp", "grep", "curl"];
/** The drill over SSH also sends the restored home to the target as a GNU tar stream (src/drill/tar-stream.ts). */
const DRILL_TOOLS = ["tar"];

/** Why the binary cannot be built here, if it cannot: outside CI, the tests are then skipped saying so. */
function missingPrerequisite(): string | undefined {
  if (process.platform !== "linux" || process.arch !== "x64")
    return `a linux-x64 machine (this is ${process.arch})`;
  if (!existsSync(join(ROOT, "node_modules", "node", "bin", "node")))
    return "the node devDependency (npm ci)";
  if (!existsSync(join(ROOT, "node_modules", "postject"))) return "postject (npm ci)";
  return undefined;
}

const missing = missingPrerequisite();
if (missing && !process.env["CI"]) {
  console.warn(`sea-binary: skipped, building the standalone binary needs ${missing}`);
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

let work: string;
let binary: string;
let env: NodeJS.ProcessEnv;
let drillTools: string;
let home: GeneratedLookerHome;

/** A directory of links to these commands only: the PATH the binary runs with. */
async function toolsDir(dir: string, commands: string[]): Promise<string> {
  await mkdir(dir);
  for (const command of commands) {
    const path = findCommand(command);
    if (!path) throw new Error(`${command} is not installed`);
    await symlink(path, join(dir, command));
  }
  return dir;
}
const vms: Vm[] = [];

function run(command: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { env: { ...env, ...extraEnv }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code) => resolvePromise({ code, stdout, stderr }));
  });
}

const sea = (...args: string[]) => run(binary, args);
const js = async (...args: string[]) => run(process.execPath, [await bundledEntry("cli"), ...args]);

async function seaJson<T = Record<string, unknown>>(...args: string[]): Promise<T> {
  const result = await sea(...args, "--json");
  if (result.code !== 0)
    throw new Error(`${BINARY_NAME} ${args.join(" ")} exited ${result.code}: ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

describe.skipIf(missing !== undefined && !process.env["CI"])("the standalone binary", () => {
  let identityFile: string;
  let signingKey: string;
  let allowedSigners: string;
  let store: string;
  let archive: string;

  /** keygen, both kinds, through the binary: made once, by whichever test needs it first. */
  let keysMade: Promise<{ recipient: string; signing: Run }> | undefined;
  const keys = () =>
    (keysMade ??= (async () => {
      const { recipient } = await seaJson<{ recipient: string }>("keygen", "--output", identityFile);
      const signing = await sea("keygen", "--signing", "--output", signingKey);
      const [, allowed] = signing.stdout.trim().split("\n");
      await writeFile(allowedSigners, `${allowed}\n`);
      return { recipient, signing };
    })());

  /** A signed backup of the home into the directory store, through the binary. */
  let backupMade: Promise<{ archive: string; signature: string; files: number }> | undefined;
  const backup = () =>
    (backupMade ??= (async () => {
      const made = await seaJson<{ archive: string; signature: string; files: number }>(
        "backup",
        "--home",
        home.home,
        "--out",
        store,
        "--recipient",
        (await keys()).recipient,
        "--signing-key",
        signingKey,
        "--instance",
        "sea",
      );
      archive = made.archive;
      return made;
    })());

  beforeAll(async () => {
    if (missing) throw new Error(`the standalone binary cannot be built here: it needs ${missing}`);
    binary = (await buildSea(join(ROOT, "build", "sea"), { log: () => {} })).binary;
    work = await mkdtemp(join(tmpdir(), "lb-sea-"));
    // The drill's local restore and Looker on the VM run as the looker user, who must reach the scratch space.
    await chmod(work, 0o755);
    const tools = await toolsDir(join(work, "tools"), TOOLS);
    drillTools = await toolsDir(join(work, "drill-tools"), DRILL_TOOLS);
    env = { PATH: tools, HOME: work, LANG: "C.UTF-8" };
    const nodeOnPath = spawnSync("/bin/sh", ["-c", "command -v node nodejs"], { env, encoding: "utf8" });
    expect(nodeOnPath.stdout, "no node on PATH").toBe("");
    expect(nodeOnPath.status).not.toBe(0);
    // Ports of its own: a Looker answering on the default 9999 (another test's) would read as this home's.
    home = await generateLookerHome({
      root: join(work, "home"),
      seed: 22,
      sizeBytes: 3 << 20,
      smallFiles: 60,
      webPort: await freePort(),
      apiPort: await freePort(),
    });
    identityFile = join(work, "identity.txt");
    signingKey = join(work, "signing-key");
    allowedSigners = join(work, "allowed_signers");
    store = join(work, "store");
  });

  afterAll(async () => {
    await Promise.all(vms.splice(0).map((vm) => vm.destroy()));
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("prints its help, and no experimental-feature warning", async () => {
    const result = await sea("--help");
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^looker-backup: encrypted, verified backups/);
    expect(result.stderr).toBe("");
  });

  it("keygen makes an age identity and a signing key", async () => {
    const { recipient, signing } = await keys();
    expect(recipient).toMatch(/^age1[0-9a-z]{58}$/);
    expect(signing.code).toBe(0);
    expect(await readFile(allowedSigners, "utf8")).toMatch(
      /^looker-backup namespaces="looker-backup" ssh-ed25519 /,
    );
  });

  it("backs up a home into a directory store, signed, and lists it", async () => {
    const made = await backup();
    expect(made.files).toBeGreaterThan(60);
    expect(made.signature).toBe(`${made.archive}.sig`);
    const listed = await seaJson<{ name: string }[]>("list", "--out", store);
    expect(listed.map((entry) => entry.name)).toEqual([made.archive.slice(store.length + 1)]);
  });

  it("verifies the archive and its signature", async () => {
    await backup();
    const verified = await seaJson<{ signedBy: string | null }>(
      "verify",
      "--archive",
      archive,
      "--identity",
      identityFile,
      "--trusted-signers",
      allowedSigners,
    );
    expect(verified.signedBy).toMatch(/^SHA256:/);
  });

  it("restores the archive: the home comes back as it was", async () => {
    await backup();
    const target = join(work, "restored");
    await seaJson(
      "restore",
      "--archive",
      archive,
      "--identity",
      identityFile,
      "--trusted-signers",
      allowedSigners,
      "--target",
      target,
    );
    const skip = (path: string) =>
      path === "looker/log" || path.startsWith("looker/log/") || path.endsWith(".lck");
    const before = comparable(await snapshotTree(home.home, { skip }));
    const after = comparable(await snapshotTree(target, { skip }));
    expect(Object.keys(after).length).toBeGreaterThan(60);
    for (const [path, entry] of Object.entries(after)) expect(entry, path).toEqual(before[path]);
  });

  it("drills the archive over SSH on a fresh host and boots Looker there", async () => {
    await backup();
    const vm = await createVm({ name: "sea-drill" });
    vms.push(vm);
    const variable = "LB_SEA_DRILL_CMK";
    const result = await run(
      binary,
      [
        "drill",
        "--archive",
        archive,
        "--identity",
        identityFile,
        "--trusted-signers",
        allowedSigners,
        "--target-host",
        vm.address,
        "--ssh-key",
        vm.clientKeyPath,
        "--known-hosts",
        vm.knownHostsPath,
        "--master-key-env",
        variable,
        "--boot-timeout",
        "60",
        "--json",
      ],
      { [variable]: home.cmk, PATH: `${env["PATH"]}:${drillTools}` },
    );
    expect(result.stderr).not.toContain("Error:");
    expect(result.code, `${result.stderr}\n${result.stdout}`).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ result: "passed" });
  });

  describe("fails as node dist/cli.js does: same exit code, same message", () => {
    const cases: [string, () => string[]][] = [
      ["no command", () => []],
      ["an unknown command", () => ["frobnicate"]],
      ["an unknown flag", () => ["verify", "--archive", archive, "--identity", identityFile, "--bogus"]],
      ["a missing required flag", () => ["restore", "--archive", archive]],
      [
        "an archive that does not exist",
        () => ["verify", "--archive", join(work, "none.age"), "--identity", identityFile],
      ],
      [
        "a non-empty target without --force",
        () => restoreArgv(archive, identityFile, join(work, "occupied")),
      ],
      ["the wrong identity", () => ["verify", "--archive", archive, "--identity", join(work, "other.txt")]],
      [
        "a damaged archive",
        () => ["verify", "--archive", join(work, "damaged.age"), "--identity", identityFile],
      ],
    ];

    beforeAll(async () => {
      await backup();
      await mkdir(join(work, "occupied"));
      await writeFile(join(work, "occupied", "keep.txt"), "not to be replaced\n");
      const other = await sea("keygen", "--output", join(work, "other.txt"));
      expect(other.code).toBe(0);
      const bytes = await readFile(archive);
      const middle = bytes.length >> 1;
      bytes.writeUInt8(bytes.readUInt8(middle) ^ 0x01, middle);
      await writeFile(join(work, "damaged.age"), bytes);
    });

    it.each(cases)("%s", async (_, argv) => {
      const [fromBinary, fromBundle] = await Promise.all([sea(...argv()), js(...argv())]);
      expect(fromBinary.code).not.toBe(0);
      expect({ code: fromBinary.code, stderr: fromBinary.stderr, stdout: fromBinary.stdout }).toEqual({
        code: fromBundle.code,
        stderr: fromBundle.stderr,
        stdout: fromBundle.stdout,
      });
    });

    it("the codes are the documented ones", async () => {
      const codes = await Promise.all(cases.map(async ([, argv]) => (await sea(...argv())).code));
      expect(codes).toEqual([2, 2, 2, 2, 2, 2, 4, 4]);
    });
  });

  describe("npm run release:dry", () => {
    it("packs the binary, the runbook, SHA256SUMS over both and the Unreleased notes into one folder", async () => {
      const out = join(work, "release");
      // dist/ is checked against the sources by CI and by the release itself; here only what the release adds.
      await release({ outDir: out, checkDist: false, log: () => {} });
      expect((await readdir(out)).sort()).toEqual([BINARY_NAME, NOTES, RUNBOOK, SUMS].sort());
      expect(execFileSync("sha256sum", ["-c", SUMS], { cwd: out, encoding: "utf8" })).toBe(
        `${RUNBOOK}: OK\n${BINARY_NAME}: OK\n`,
      );
      const built = await readFile(`${binary}.sha256`, "utf8");
      expect(await readFile(join(out, SUMS), "utf8")).toContain(built);
      const changelog = await readFile(join(ROOT, "CHANGELOG.md"), "utf8");
      expect(await readFile(join(out, NOTES), "utf8")).toBe(releaseNotes(changelog, "Unreleased"));
      expect((await run(join(out, BINARY_NAME), ["--help"])).code).toBe(0);
    });

    it("refuses a tag that is not the version package.json and src/version.ts carry, before building", async () => {
      const out = join(work, "release-wrong-tag");
      const { version } = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as {
        version: string;
      };
      await expect(release({ tag: "v99.0.0", outDir: out, checkDist: false, log: () => {} })).rejects.toThrow(
        `the tag says 99.0.0, but package.json says ${version}`,
      );
      expect(existsSync(out)).toBe(false);
    });
  });
});
