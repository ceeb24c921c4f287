/**
 * What a backup is given. The manifest is read once, by the preflight: the backup goes on with what the preflight
 * resolved, so a pre-command that removes the manifest file changes nothing. And each secret reaches only the code
 * that uses it: runBackup gets the signing key, never the SSH key, the MySQL password or the CMK, and the node
 * connections get the SSH key and the CMK, never the others.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { Inputs, nodeSettingsOf, readBackupSettings } from "../../src/config/backup-settings.js";
import { actionInputs } from "../../src/config/source.js";
import type { BackupRequest, BackupResult } from "../../src/engine/backup.js";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { cli, cliJson } from "../helpers/cli.js";

/** Every runBackup call of the CLI runs below, with its outcome: the request as the engine received it. */
const calls = vi.hoisted(() => [] as { request: BackupRequest; result?: BackupResult }[]);

vi.mock("../../src/engine/backup.js", async (importOriginal) => {
  const original = await importOriginal<typeof import("../../src/engine/backup.js")>();
  return {
    ...original,
    runBackup: async (request: BackupRequest) => {
      const call: (typeof calls)[number] = { request };
      calls.push(call);
      call.result = await original.runBackup(request);
      return call.result;
    },
  };
});

/** What runBackup uses (BackupRequest); anything else in its request came along with a spread. */
const BACKUP_REQUEST_FIELDS = [
  "home",
  "instance",
  "selection",
  "recipients",
  "passphrase",
  "signingKey",
  "store",
  "retention",
  "compressionLevel",
  "xattrs",
  "substitutes",
  "lookerMeta",
  "extraMembers",
  "companions",
  "shouldCommit",
  "expectedBytes",
  "onProgress",
  "onPhase",
  "signal",
  "now",
];

let work: string;
let home: string;
let recipient: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "lb-request-"));
  home = join(work, "home");
  await generateLookerHome({ root: home, seed: 21, sizeBytes: 256 << 10, smallFiles: 10 });
  await mkdir(join(home, "looker", "notes"));
  await writeFile(join(home, "looker", "notes", "scratch.txt"), "not worth a backup\n");
  ({ recipient } = await cliJson<{ recipient: string }>("keygen", "--output", join(work, "identity.txt")));
});

afterAll(() => rm(work, { recursive: true, force: true }));

beforeEach(() => {
  calls.length = 0;
});

/** Every string in a value however deep (Buffers as text): where a secret would be if it had come along. */
function stringsIn(value: unknown, seen = new Set<unknown>()): string[] {
  if (typeof value === "string") return [value];
  if (Buffer.isBuffer(value)) return [value.toString("latin1")];
  if (value === null || typeof value !== "object" || seen.has(value)) return [];
  seen.add(value);
  const children = value instanceof Map ? [...value.keys(), ...value.values()] : Object.values(value);
  return children.flatMap((child) => stringsIn(child, seen));
}

function backupArgs(instance: string, ...more: string[]): string[] {
  return [
    "backup",
    ...["--home", home, "--out", join(work, `store-${instance}`), "--recipient", recipient],
    ...["--instance", instance, "--consistency", "live", "--json", ...more],
  ];
}

describe("a backup's request", () => {
  it("holds the manifest as the preflight read it: a pre-command that removes the file changes nothing", async () => {
    const manifest = join(work, "manifest.yml");
    await writeFile(manifest, "exclude:\n  - path: looker/notes/**\n    reason: scratch notes\n");
    // The pre-command runs after the preflight, before the archive is written.
    const run = await cli(
      ...backupArgs("once", "--manifest", manifest, "--pre-command", `rm -- '${manifest}'`),
    );
    expect(run.code, run.stderr).toBe(0);
    expect(existsSync(manifest)).toBe(false);
    expect(calls).toHaveLength(1);
    const [{ request, result }] = calls as [(typeof calls)[number]];
    expect(request.selection.manifest.rules.map((rule) => rule.pattern)).toContain("looker/notes/**");
    const paths = result!.catalog.map((entry) => entry.path);
    expect(paths).toContain("home/looker/lookerstart.cfg");
    expect(paths).not.toContain("home/looker/notes/scratch.txt");
  });

  it("holds no secret that runBackup does not use: the signing key does, the SSH key, MySQL password and CMK do not", async () => {
    const sshKey = `-----BEGIN OPENSSH PRIVATE KEY-----\n${randomBytes(24).toString("hex")}\n-----END OPENSSH PRIVATE KEY-----\n`;
    const sshKeyFile = join(work, "ssh-key");
    await writeFile(sshKeyFile, sshKey, { mode: 0o600 });
    const signingKeyFile = join(work, "signing-key");
    await cliJson("keygen", "--signing", "--output", signingKeyFile);
    const mysqlPassword = `pw-${randomBytes(12).toString("hex")}`;
    const cmk = randomBytes(32).toString("base64");
    process.env.LB_TEST_MYSQL_PASSWORD = mysqlPassword;
    process.env.LB_TEST_CMK = cmk;
    try {
      const run = await cli(
        ...backupArgs(
          "secrets",
          ...["--signing-key", signingKeyFile, "--ssh-key", sshKeyFile],
          ...["--mysql-password-env", "LB_TEST_MYSQL_PASSWORD", "--master-key-env", "LB_TEST_CMK"],
        ),
      );
      expect(run.code, run.stderr).toBe(0);
    } finally {
      delete process.env.LB_TEST_MYSQL_PASSWORD;
      delete process.env.LB_TEST_CMK;
    }
    expect(calls).toHaveLength(1);
    const { request } = calls[0]!;
    expect(request.signingKey).toBeDefined();
    expect(Object.keys(request).filter((key) => !BACKUP_REQUEST_FIELDS.includes(key))).toEqual([]);
    const strings = stringsIn(request);
    for (const secret of [sshKey, mysqlPassword, cmk])
      expect(strings.filter((text) => text.includes(secret))).toEqual([]);
  });
});

describe("the node connections' settings (nodeSettingsOf)", () => {
  it("carry the SSH key and the CMK, and none of the other secrets", () => {
    const secrets = {
      [Inputs.SshKey]: `ssh-key-${randomBytes(8).toString("hex")}`,
      [Inputs.MasterKey]: randomBytes(32).toString("base64"),
      [Inputs.MysqlPassword]: `mysql-${randomBytes(8).toString("hex")}`,
      [Inputs.Passphrase]: `passphrase-${randomBytes(8).toString("hex")}`,
      [Inputs.GithubToken]: `token-${randomBytes(8).toString("hex")}`,
    };
    const settings = readBackupSettings(
      actionInputs(
        (name) =>
          ({ ...secrets, [Inputs.Nodes]: "looker@node-2.internal", [Inputs.Home]: "/home/looker" })[name] ??
          "",
      ),
    );
    const strings = stringsIn(nodeSettingsOf(settings.home, settings));
    expect(strings).toContain(secrets[Inputs.SshKey]);
    expect(strings).toContain(secrets[Inputs.MasterKey]);
    for (const input of [Inputs.MysqlPassword, Inputs.Passphrase, Inputs.GithubToken])
      expect(
        strings.filter((text) => text.includes(secrets[input])),
        input,
      ).toEqual([]);
  });
});
