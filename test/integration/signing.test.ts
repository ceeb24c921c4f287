/**
 * Signed backups end to end through the CLI: keygen --signing, backup --signing-key, stock ssh-keygen verifying the
 * stored signature, verify and restore --trusted-signers; and forgeries (made with the same public age recipient,
 * unsigned or signed otherwise) refused with exit 4 before anything is decrypted, the target untouched.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadIdentities } from "../../src/config/keys.js";
import { generateSigningKey } from "../../src/crypto/ssh-keys.js";
import { NOT_CHECKED_WARNING } from "../../src/engine/authenticity.js";
import { runBackup } from "../../src/engine/backup.js";
import { verifyArchive } from "../../src/engine/restore.js";
import { IntegrityError } from "../../src/errors.js";
import { DirStore } from "../../src/store/dir-store.js";
import type { Store } from "../../src/store/store.js";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { cli, cliJson } from "../helpers/cli.js";
import { requireCommands } from "../helpers/prerequisites.js";
import { selectionFor } from "../helpers/selection.js";
import { sshKeygenVerify } from "../helpers/ssh-keygen.js";

let work: string;
let home: string;
let identityFile: string;
let recipient: string;
let signingKey: string;
let allowedSigners: string;
let signed: string;

interface SigningKeygen {
  signingKeyFile: string;
  publicKey: string;
  allowedSigners: string;
  fingerprint: string;
}

beforeAll(async () => {
  requireCommands(["ssh-keygen"]);
  work = await mkdtemp(join(tmpdir(), "lb-signing-"));
  home = join(work, "home");
  await generateLookerHome({ root: home, seed: 23, sizeBytes: 2 << 20, smallFiles: 40 });
  identityFile = join(work, "id.txt");
  ({ recipient } = await cliJson<{ recipient: string }>("keygen", "--output", identityFile));
  signingKey = join(work, "signing-key");
  const made = await cliJson<SigningKeygen>("keygen", "--signing", "--output", signingKey);
  allowedSigners = join(work, "allowed_signers");
  await writeFile(allowedSigners, `${made.allowedSigners}\n`);
  const out = join(work, "store");
  const backup = await cliJson<{ archive: string; signature: string }>(
    "backup",
    ...["--home", home, "--out", out, "--recipient", recipient, "--instance", "signed"],
    ...["--signing-key", signingKey],
  );
  signed = backup.archive;
  expect(backup.signature).toBe(`${signed}.sig`);
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A separate store, so each forgery's name and `.sig` are its own. */
async function unsignedBackup(instance: string): Promise<string> {
  const out = join(work, `store-${instance}`);
  const made = await cliJson<{ archive: string; signature: string | null }>(
    "backup",
    ...["--home", home, "--out", out, "--recipient", recipient, "--instance", instance],
  );
  expect(made.signature).toBeNull();
  return made.archive;
}

async function treeOf(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).sort();
}

describe("keygen --signing", () => {
  it("writes a 0600 OpenSSH key ssh-keygen reads, prints its public key and allowed_signers line, never overwrites", async () => {
    const file = join(work, "k2");
    const run = await cli("keygen", "--signing", "--output", file);
    expect(run.code).toBe(0);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readFile(file, "utf8")).toMatch(/^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
    const [publicKey, allowed] = run.stdout.trim().split("\n");
    expect(publicKey).toMatch(/^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA\S+ looker-backup$/);
    expect(allowed).toBe(`looker-backup namespaces="looker-backup" ${publicKey}`);
    expect(execFileSync("ssh-keygen", ["-y", "-f", file], { encoding: "utf8" }).trim()).toBe(publicKey);
    const again = await cli("keygen", "--signing", "--output", file);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/never overwrites/);
  });
});

describe("a signed backup", () => {
  it("stores <archive>.sig that stock ssh-keygen -Y verify accepts for the archive", async () => {
    const run = await sshKeygenVerify(signed, allowedSigners);
    expect(run.status).toBe(0);
    expect(run.stdout + run.stderr).toMatch(/Good "looker-backup" signature for looker-backup/);
  });

  it("verifies and restores with --trusted-signers, naming the signer", async () => {
    const verified = await cli(
      "verify",
      "--archive",
      signed,
      "--identity",
      identityFile,
      "--trusted-signers",
      allowedSigners,
    );
    expect(verified.code).toBe(0);
    expect(verified.stderr).toMatch(/signature: good, by SHA256:\S+ \(looker-backup\)/);
    expect(verified.stdout).toContain("signed by SHA256:");
    const target = join(work, "restored");
    const restored = await cliJson<{ signedBy: string; warnings: string[] }>(
      "restore",
      ...["--archive", signed, "--identity", identityFile, "--target", target],
      ...["--trusted-signers", allowedSigners],
    );
    expect(restored.signedBy).toMatch(/^SHA256:/);
    expect(restored.warnings).not.toContain(NOT_CHECKED_WARNING);
    expect(await readFile(join(target, "looker", "looker.jar"))).toEqual(
      await readFile(join(home, "looker", "looker.jar")),
    );
  });

  it("a key listed only under other principals is not trusted for backups (exit 4), as ssh-keygen -I looker-backup", async () => {
    const others = join(work, "other-principals");
    const publicKey = execFileSync("ssh-keygen", ["-y", "-f", signingKey], { encoding: "utf8" }).trim();
    await writeFile(others, `ops@example.com ${publicKey}\n`);
    const run = await cli(
      "verify",
      "--archive",
      signed,
      "--identity",
      identityFile,
      "--trusted-signers",
      others,
    );
    expect(run.code, run.stderr).toBe(4);
    expect(run.stderr).toMatch(/lists only for other principals than looker-backup/);
    expect((await sshKeygenVerify(signed, others)).status).not.toBe(0);
  });

  it("a bare public key line trusts it too", async () => {
    const bare = join(work, "bare.pub");
    await writeFile(bare, execFileSync("ssh-keygen", ["-y", "-f", signingKey]));
    const verified = await cli(
      "verify",
      "--archive",
      signed,
      "--identity",
      identityFile,
      "--trusted-signers",
      bare,
    );
    expect(verified.code).toBe(0);
  });

  it("without trusted signers, verify and restore warn that authenticity was not checked", async () => {
    const verified = await cli("verify", "--archive", signed, "--identity", identityFile);
    expect(verified.code).toBe(0);
    expect(verified.stderr).toContain(`warning: ${NOT_CHECKED_WARNING}`);
    const restored = await cli(
      "restore",
      "--archive",
      signed,
      "--identity",
      identityFile,
      "--target",
      join(work, "r2"),
    );
    expect(restored.code).toBe(0);
    expect(restored.stderr).toContain(`warning: ${NOT_CHECKED_WARNING}`);
  });

  it("a restore refuses bytes that differ from the ones whose signature was checked", async () => {
    const keys = { identities: await loadIdentities([identityFile], "test") };
    const wrong = createHash("sha512").update("something else").digest();
    await expect(
      verifyArchive(createReadStream(signed), keys, undefined, {
        signed: { algorithm: "sha512", digest: wrong },
      }),
    ).rejects.toThrow(IntegrityError);
    const right = createHash("sha512")
      .update(await readFile(signed))
      .digest();
    await expect(
      verifyArchive(createReadStream(signed), keys, undefined, {
        signed: { algorithm: "sha512", digest: right },
      }),
    ).resolves.toMatchObject({ members: expect.any(Number) });
  });
});

describe("forgeries, made with the same public age recipient", () => {
  /** Runs restore --force over a populated target and checks it refused with exit 4 and left the target alone. */
  async function refused(archive: string, message: RegExp): Promise<void> {
    const parent = await mkdtemp(join(work, "target-"));
    const target = join(parent, "home");
    await mkdir(target);
    await writeFile(join(target, "precious.txt"), "mine\n");
    const before = await treeOf(parent);
    const restore = await cli(
      "restore",
      ...["--archive", archive, "--identity", identityFile, "--target", target, "--force"],
      ...["--trusted-signers", allowedSigners],
    );
    expect(restore.stderr).toMatch(message);
    expect(restore.code).toBe(4);
    expect(await treeOf(parent)).toEqual(before);
    expect(await readFile(join(target, "precious.txt"), "utf8")).toBe("mine\n");
    const verify = await cli(
      "verify",
      "--archive",
      archive,
      "--identity",
      identityFile,
      "--trusted-signers",
      allowedSigners,
    );
    expect(verify.code).toBe(4);
    expect(verify.stderr).toMatch(message);
  }

  it("an unsigned archive", async () => {
    const forged = await unsignedBackup("unsigned");
    // Decrypts fine: the recipient is public. Only the missing signature gives it away.
    expect((await cli("verify", "--archive", forged, "--identity", identityFile)).code).toBe(0);
    await refused(forged, /is not signed: there is no \S+\.sig beside it/);
  });

  it("an archive signed by another key", async () => {
    const other = join(work, "other-key");
    await cliJson("keygen", "--signing", "--output", other);
    const out = join(work, "store-other");
    const made = await cliJson<{ archive: string }>(
      "backup",
      ...["--home", home, "--out", out, "--recipient", recipient, "--instance", "other"],
      ...["--signing-key", other],
    );
    await refused(made.archive, /is signed by SHA256:\S+, which is not a trusted signer/);
  });

  it("an archive with a trusted signature of another archive beside it", async () => {
    const forged = await unsignedBackup("swapped");
    await copyFile(`${signed}.sig`, `${forged}.sig`);
    await refused(forged, /bad signature: the archive is not what SHA256:\S+ signed/);
  });

  it("an archive signed by the trusted key for another namespace (ssh-keygen -Y sign -n file)", async () => {
    const forged = await unsignedBackup("namespace");
    execFileSync("ssh-keygen", ["-Y", "sign", "-q", "-f", signingKey, "-n", "file", forged]);
    await refused(forged, /the signature is for namespace 'file', not 'looker-backup'/);
  });

  it("an altered signed archive", async () => {
    const dir = await mkdtemp(join(work, "altered-"));
    const altered = join(dir, basename(signed));
    const bytes = await readFile(signed);
    bytes[bytes.length - 100] = bytes[bytes.length - 100]! ^ 0x01;
    await writeFile(altered, bytes);
    await copyFile(`${signed}.sig`, `${altered}.sig`);
    await refused(altered, /bad signature/);
  });
});

describe("a signature is stored only for a stored archive", () => {
  /** A real dir store whose commit of the archive (not of other objects) fails, as a full disk or upload would. */
  function failingArchiveCommit(directory: string): Store {
    const store = new DirStore(directory);
    return {
      kind: "failing",
      list: (instance) => store.list(instance),
      open: (name) => store.open(name),
      prune: (instance, policy, now) => store.prune(instance, policy, now),
      async create(name) {
        const pending = await store.create(name);
        if (!name.endsWith(".tar.zst.age")) return pending;
        return {
          stream: pending.stream,
          abort: () => pending.abort(),
          commit: async () => {
            await pending.abort();
            throw new Error("the store refused the archive");
          },
        };
      },
    };
  }

  it("none when the archive's commit fails, and none when shouldCommit declines the archive", async () => {
    const { key } = generateSigningKey("t");
    const failing = join(work, "store-failing");
    await expect(
      runBackup({
        home,
        selection: await selectionFor(home),
        instance: "f",
        recipients: [recipient],
        store: failingArchiveCommit(failing),
        signingKey: key,
      }),
    ).rejects.toThrow(/refused the archive/);
    expect(await readdir(failing)).toEqual([]);
    const declined = join(work, "store-declined");
    const result = await runBackup({
      home,
      selection: await selectionFor(home),
      instance: "d",
      recipients: [recipient],
      store: new DirStore(declined),
      signingKey: key,
      shouldCommit: async () => false,
    });
    expect(result.archive).toBeUndefined();
    expect(result.signature).toBeUndefined();
    expect(await readdir(declined)).toEqual([]);
  });

  it("retention prunes an archive's signature with it", async () => {
    const { key } = generateSigningKey("t");
    const dir = join(work, "store-prune");
    const store = new DirStore(dir);
    const first = await runBackup({
      home,
      selection: await selectionFor(home),
      instance: "p",
      recipients: [recipient],
      store,
      signingKey: key,
      now: () => new Date("2026-01-01T00:00:00Z"),
    });
    const second = await runBackup({
      home,
      selection: await selectionFor(home),
      instance: "p",
      recipients: [recipient],
      store,
      signingKey: key,
      retention: { keepLast: 1 },
      now: () => new Date("2026-01-02T00:00:00Z"),
    });
    expect(second.pruned).toEqual([first.archiveName]);
    expect((await readdir(dir)).sort()).toEqual(
      [second.archiveName, `${second.archiveName}.sig`, second.catalogSidecar!.name].sort(),
    );
  });
});
