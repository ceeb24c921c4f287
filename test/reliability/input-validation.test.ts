/**
 * Promise: every invalid input is refused before anything is touched, with exit 2 and a message naming the input
 * (action input or CLI flag) it is about.
 * Faults: one invalid value per backup-action input (readBackupSettings), per restore-action input (the bundled
 * restore-main entry, inputs as INPUT_* variables) and per CLI flag (the in-process CLI).
 * Inputs that take free text (commands, host names, secrets) have no invalid value; they are listed with the reason,
 * and a test checks the tables cover every input declared in action.yml and restore/action.yml.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { Inputs, readBackupSettings } from "../../src/config/backup-settings.js";
import { actionInputs } from "../../src/config/source.js";
import { generateHybridIdentity } from "../../src/crypto/age-keys.js";
import { InputError } from "../../src/errors.js";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { runActionEntry } from "../helpers/actions-env.js";
import { bundledEntry } from "../helpers/bundle.js";
import { cli, restoreArgv } from "../helpers/cli.js";
import { makeKeyPair, removeWorkspace, workspace } from "./support.js";

let work: string;
let recipient: string;
let identityFile: string;
let storeDir: string;
let archive: string;
let home: string;

beforeAll(async () => {
  work = await workspace("inputs");
  ({ recipient, identityFile } = await makeKeyPair(work));
  // The restore action validates after it has found a backup; this one is found by name alone.
  storeDir = join(work, "store");
  await (await import("node:fs/promises")).mkdir(storeDir);
  home = join(work, "home");
  await generateLookerHome({ root: home, seed: 2, sizeBytes: 64 << 10, smallFiles: 5 });
  archive = join(storeDir, "inst-20240101T000000Z.tar.zst.age");
  await writeFile(archive, "not really an archive");
});

afterAll(() => removeWorkspace(work));

async function declaredInputs(actionFile: string): Promise<string[]> {
  const action = parse(await readFile(actionFile, "utf8")) as { inputs: Record<string, unknown> };
  return Object.keys(action.inputs);
}

describe("backup action inputs (readBackupSettings)", () => {
  const RECIPIENT_PLACEHOLDER = "<recipient>";
  // [input, invalid value, other inputs it needs to be reached]
  const invalid: [string, string, Record<string, string>][] = [
    [Inputs.Recipients, "age1notarecipient", {}],
    [Inputs.Home, "home/looker", {}],
    [Inputs.Instance, "bad/name", {}],
    [Inputs.SslFiles, "relative/cert.pem", {}],
    [Inputs.Consistency, "sometimes", {}],
    [Inputs.KeystoreIndependent, "maybe", {}],
    [Inputs.MasterKey, "too-short", {}],
    [Inputs.MasterKeyFile, "relative/cmk", {}],
    [Inputs.KeyfileRecipients, "age1nope", {}],
    [Inputs.Nodes, "no-user-part", { [Inputs.SshKey]: "key" }],
    [Inputs.SshKey, "", { [Inputs.Nodes]: "looker@node-2" }],
    [Inputs.SshAcceptNewHostKeys, "perhaps", {}],
    [Inputs.WebPort, "0", {}],
    [Inputs.BootTimeout, "-5", {}],
    [Inputs.MysqlPort, "70000", {}],
    [Inputs.QuietWindow, "25:00-26:00", {}],
    [Inputs.QuietWindowTimeZone, "Mars/Olympus_Mons", { [Inputs.QuietWindow]: "01:00-03:00" }],
    [Inputs.ForceOutsideWindow, "y", {}],
    [Inputs.Store, "s3", {}],
    [Inputs.StoreDir, "relative/dir", { [Inputs.Store]: "dir" }],
    [Inputs.RetentionDays, "500", {}],
    [Inputs.KeepLast, "-1", { [Inputs.Store]: "dir", [Inputs.StoreDir]: "/backups" }],
    [Inputs.KeepDaily, "0", { [Inputs.Store]: "dir", [Inputs.StoreDir]: "/backups" }],
    [Inputs.KeepWeekly, "weekly", { [Inputs.Store]: "dir", [Inputs.StoreDir]: "/backups" }],
    [Inputs.KeepMonthly, "-3", { [Inputs.Store]: "dir", [Inputs.StoreDir]: "/backups" }],
    [Inputs.ForcePrune, "perhaps", { [Inputs.Store]: "dir", [Inputs.StoreDir]: "/backups" }],
    [Inputs.CompressionLevel, "20", {}],
    [Inputs.Xattrs, "some", {}],
    [Inputs.SkipIfUnchanged, "sure", {}],
    [Inputs.OnWarnings, "complain", {}],
    [Inputs.LookerEnv, "RUNNER_TRACKING_ID", {}],
    [Inputs.LookerControl, "upstart", {}],
    [Inputs.LookerUnit, "--now", {}],
    [Inputs.SigningKey, "AGE-SECRET-KEY-1NOTANSSHKEY", {}],
  ];
  const freeForm: Record<string, string> = {
    [Inputs.Manifest]: "a file; validated when loaded (see the CLI --manifest case below)",
    [Inputs.LookerUser]: "a user name, passed as one argv element",
    [Inputs.KnownHosts]: "parsed when an SSH node is used (test/unit/known-hosts.test.ts)",
    [Inputs.MysqlHost]: "a host name",
    [Inputs.MysqlUser]: "a user name",
    [Inputs.MysqlPassword]: "a secret",
    [Inputs.MysqlDatabase]: "a name",
    [Inputs.PreCommand]: "a shell command",
    [Inputs.PostCommand]: "a shell command",
    [Inputs.Passphrase]: "a secret",
    [Inputs.GithubToken]: "a secret",
  };

  function reader(values: Record<string, string>) {
    const all: Record<string, string> = { [Inputs.Recipients]: RECIPIENT_PLACEHOLDER, ...values };
    return actionInputs((name) => (all[name] === RECIPIENT_PLACEHOLDER ? recipient : (all[name] ?? "")));
  }

  it("accepts the defaults with one recipient (control)", () => {
    expect(readBackupSettings(reader({})).recipients).toEqual([recipient]);
  });

  it("needs no recipients with a passphrase, and refuses both together (age allows a passphrase only alone)", () => {
    const alone = readBackupSettings(
      reader({ [Inputs.Recipients]: "", [Inputs.Passphrase]: "correct horse" }),
    );
    expect(alone.recipients).toEqual([]);
    expect(alone.passphrase).toBe("correct horse");
    expect(() => readBackupSettings(reader({ [Inputs.Passphrase]: "correct horse" }))).toThrow(
      /set only one of input 'recipients' and input 'passphrase'/,
    );
  });

  it("takes post-quantum recipients (age1pq1) but not mixed with X25519 ones, in recipients and keyfile-recipients", () => {
    const pq = [generateHybridIdentity().recipient, generateHybridIdentity().recipient];
    const settings = readBackupSettings(
      reader({ [Inputs.Recipients]: pq.join("\n"), [Inputs.KeyfileRecipients]: pq[0]! }),
    );
    expect(settings.recipients).toEqual(pq);
    expect(settings.keyfileRecipients).toEqual([pq[0]]);
    for (const input of [Inputs.Recipients, Inputs.KeyfileRecipients]) {
      const mixed = () => readBackupSettings(reader({ [input]: `${pq[0]}, ${recipient}` }));
      expect(mixed).toThrow(InputError);
      expect(mixed).toThrow(
        `input '${input}': post-quantum (age1pq1...) and X25519 (age1...) recipients cannot be mixed`,
      );
    }
  });

  it("looker-control defaults to auto and looker-unit to looker.service; a bare unit name gets .service", () => {
    const defaults = readBackupSettings(reader({}));
    expect([defaults.lookerControl, defaults.lookerUnit]).toEqual(["auto", "looker.service"]);
    const chosen = readBackupSettings(
      reader({ [Inputs.LookerControl]: "systemd", [Inputs.LookerUnit]: "looker" }),
    );
    expect([chosen.lookerControl, chosen.lookerUnit]).toEqual(["systemd", "looker.service"]);
  });

  it.each(invalid)("%s = %j -> InputError naming it", (input, value, needs) => {
    let thrown: unknown;
    try {
      readBackupSettings(reader({ ...needs, [input]: value }));
    } catch (error) {
      thrown = error;
    }
    expect(thrown, `${input} was accepted`).toBeInstanceOf(InputError);
    expect((thrown as Error).message).toContain(`'${input}'`);
  });

  it("covers every input of action.yml", async () => {
    const covered = new Set([...invalid.map(([name]) => name), ...Object.keys(freeForm)]);
    expect((await declaredInputs("action.yml")).filter((name) => !covered.has(name))).toEqual([]);
  });
});

describe("restore action inputs (bundled restore-main)", () => {
  // [input, invalid value, other inputs]; identity and store-dir are set unless overridden.
  const invalid: [string, string, Record<string, string>][] = [
    ["identity", "", {}],
    ["store-dir", "relative/store", {}],
    ["run-id", "abc", { "store-dir": "" }],
    ["repository", "no-owner-part", { "store-dir": "" }],
    ["target-port", "x", { "target-dir": "", "target-host": "vm", "ssh-key": "k", "known-hosts": "kh" }],
    ["target-dir", "relative/dir", {}],
    ["web-port", "99999", {}],
    ["api-port", "0", {}],
    ["boot-timeout", "forever", {}],
    ["checks", "/alive=abc", {}],
    ["drill-mysql-port", "-1", { "drill-mysql-host": "db" }],
    ["master-key", "not-a-key", {}],
    ["trusted-signers", "looker-backup ssh-rsa AAAAB3NzaC1yc2E=", {}],
  ];
  const freeForm: Record<string, string> = {
    "keyfile-identity": "a secret (parsed by the drill)",
    workflow: "a workflow file name",
    branch: "a branch name (checked by the API)",
    "artifact-name": "a name",
    instance: "a filter",
    "github-token": "a secret",
    "target-host": "a host name",
    "target-user": "a user name",
    "ssh-key": "a secret",
    "known-hosts": "parsed when connecting",
    "api-client-id": "an id",
    "api-client-secret": "a secret",
    "drill-mysql-host": "a host name",
    "drill-mysql-user": "a user name",
    "drill-mysql-password": "a secret",
    "drill-mysql-database": "a name",
    "provision-command": "a shell command",
    "teardown-command": "a shell command",
  };

  it.each(invalid)("%s = %j -> exit 2 naming it", async (input, value, needs) => {
    const identity = (await readFile(identityFile, "utf8")).trim();
    const run = await runActionEntry(await bundledEntry("restore-main"), {
      inputs: {
        identity,
        "store-dir": storeDir,
        "target-dir": join(work, "drill"),
        ...needs,
        [input]: value,
      },
    });
    expect(run.code, run.stdout + run.stderr).toBe(2);
    expect(run.stdout).toMatch(new RegExp(`::error::.*${input}`));
  });

  it("covers every input of restore/action.yml", async () => {
    const covered = new Set([...invalid.map(([name]) => name), ...Object.keys(freeForm)]);
    expect((await declaredInputs("restore/action.yml")).filter((name) => !covered.has(name))).toEqual([]);
  });
});

describe("CLI flags", () => {
  const missing = "/nonexistent/lb-rel";
  const backup = () => ["backup", "--home", home, "--out", join(work, "out"), "--recipient", recipient];
  const restore = () => restoreArgv(archive, identityFile, join(work, "t"));
  const drillIntoDir = () => ["drill", "--archive", archive, "--identity", identityFile, "--target-dir", "d"];
  // [flag named in the message, argv]
  const cases: [string, () => string[]][] = [
    ["--home", () => ["backup", "--out", join(work, "out"), "--recipient", recipient]],
    ["--out", () => ["backup", "--home", work, "--recipient", recipient]],
    ["--recipient", () => [...backup().slice(0, 5), "--recipient", "age1nope"]],
    ["--recipient", () => backup().slice(0, 5)],
    ["recipients file", () => [...backup().slice(0, 5), "--recipients-file", missing]],
    ["--passphrase-env", () => [...backup().slice(0, 5), "--passphrase-env", "LB_REL_UNSET_VARIABLE"]],
    ["manifest", () => [...backup(), "--manifest", missing]],
    ["instance", () => [...backup(), "--instance", "bad/name"]],
    ["--backend", () => [...backup(), "--backend", "oracle"]],
    ["--looker-control", () => [...backup(), "--looker-control", "upstart"]],
    ["--looker-unit", () => [...backup(), "--looker-unit", "looker.timer"]],
    ["--level", () => [...backup(), "--level", "0"]],
    ["--keep-last", () => [...backup(), "--keep-last", "all"]],
    ["--keep-daily", () => [...backup(), "--keep-daily", "0"]],
    ["--keep-monthly", () => [...backup(), "--keep-monthly", "many"]],
    ["--keep-days", () => [...backup(), "--keep-days", "soon"]],
    ["--xattrs", () => [...backup(), "--xattrs", "maybe"]],
    ["/nonexistent/lb-rel", () => [...backup(), "--ssl-file", missing]],
    ["--home", () => ["backup", "--home"]],
    ["--bogus", () => [...backup(), "--bogus"]],
    ["--archive", () => ["restore", "--identity", identityFile, "--target", join(work, "t")]],
    ["--archive", () => ["restore", "--archive", missing, "--identity", identityFile, "--target", "t"]],
    ["--identity", () => ["restore", "--archive", archive, "--target", join(work, "t")]],
    [
      "identity file /nonexistent/lb-rel",
      () => ["restore", "--archive", archive, "--identity", missing, "--target", "t"],
    ],
    ["--passphrase-env", () => [...restore(), "--passphrase-env", "LB_REL_UNSET_VARIABLE"]],
    ["--target", () => ["restore", "--archive", archive, "--identity", identityFile]],
    ["--target", () => [...restore().slice(0, 5), "--target", archive]],
    ["--force", () => [...restore(), "--force=yes"]],
    ["--keep-privileged-modes", () => [...restore(), "--keep-privileged-modes=yes"]],
    ["--archive", () => ["verify", "--archive", missing, "--identity", identityFile]],
    ["identity file /nonexistent/lb-rel", () => ["verify", "--archive", archive, "--identity", missing]],
    ["--home", () => ["plan"]],
    ["--backend", () => ["plan", "--home", work, "--backend", "x"]],
    ["manifest", () => ["plan", "--home", work, "--manifest", missing]],
    ["--out", () => ["list"]],
    ["instance", () => ["list", "--out", work, "--instance", "a/b"]],
    ["--output", () => ["keygen"]],
    ["cannot create .*identity.txt", () => ["keygen", "--output", identityFile]],
    ["--archive", () => ["drill", "--identity", identityFile, "--target-dir", join(work, "d")]],
    ["--target-dir", () => ["drill", "--archive", archive, "--identity", identityFile]],
    ["--ssh-key", () => ["drill", "--archive", archive, "--identity", identityFile, "--target-host", "h"]],
    ["--check", () => [...drillIntoDir(), "--check", "x"]],
    ["--boot-timeout", () => [...drillIntoDir(), "--boot-timeout", "0"]],
    // A directory: EISDIR (a missing history file is fine: the first drill has none).
    ["--history", () => [...drillIntoDir(), "--history", work]],
    ["--signing-key: not an OpenSSH private key", () => [...backup(), "--signing-key", identityFile]],
    ["--signing-key: cannot read", () => [...backup(), "--signing-key", missing]],
    [
      "--trusted-signers .*identity.txt line [0-9]+: not a public key",
      () => [...restore(), "--trusted-signers", identityFile],
    ],
    [
      "trusted signers file /nonexistent/lb-rel",
      () => ["verify", "--archive", archive, "--identity", identityFile, "--trusted-signers", missing],
    ],
    ["--trusted-signers", () => [...drillIntoDir(), "--trusted-signers", identityFile]],
  ];

  it.each(cases)("%s: %j -> exit 2 naming it, nothing on stdout", async (flag, argv) => {
    const args = argv();
    const run = await cli(...args);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toMatch(new RegExp(flag.replace(/ /g, ".*")));
    expect(run.stderr).toMatch(/^looker-backup: error: /);
    expect(run.stdout).toBe("");
  });
});
