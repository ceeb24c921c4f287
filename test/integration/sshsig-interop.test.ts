/**
 * Interop with stock OpenSSH ssh-keygen, both ways: the keys and signatures we write, ssh-keygen reads and accepts;
 * the keys and signatures ssh-keygen writes, we read and check. Nothing here is a stand-in for ssh-keygen.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  fingerprint,
  generateSigningKey,
  parseSigningKey,
  parseTrustedSigners,
  publicKeyLine,
  SIGNATURE_NAMESPACE,
} from "../../src/crypto/ssh-keys.js";
import { parseSignature, signatureMatches, signDigest } from "../../src/crypto/sshsig.js";
import { InputError, IntegrityError } from "../../src/errors.js";
import { requireCommands } from "../helpers/prerequisites.js";

let dir = "";

beforeAll(async () => {
  requireCommands(["ssh-keygen"]);
  dir = await mkdtemp(join(tmpdir(), "sshsig-interop-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** ssh-keygen with the message on stdin; returns exit status and both outputs. */
function sshKeygen(args: string[], input: Buffer | string = "") {
  const run = spawnSync("ssh-keygen", args, { input, encoding: "utf8" });
  if (run.error) throw run.error;
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

function sha512(data: Buffer): Buffer {
  return createHash("sha512").update(data).digest();
}

async function ourKey(name: string) {
  const { key, file } = generateSigningKey(`${name}@test`);
  const path = join(dir, name);
  await writeFile(path, file, { mode: 0o600 });
  return { key, path };
}

describe("keys we write", () => {
  it("ssh-keygen reads our private key file and derives the public key we print", async () => {
    const { key, path } = await ourKey("derive");
    const derived = execFileSync("ssh-keygen", ["-y", "-f", path], { encoding: "utf8" }).trim();
    expect(derived).toBe(publicKeyLine(key.publicKey, "derive@test"));
    const listed = execFileSync("ssh-keygen", ["-l", "-f", path], { encoding: "utf8" });
    expect(listed).toContain(fingerprint(key.publicKey));
  });

  it("we read back our own file: the same key, signing the same way", async () => {
    const { key, path } = await ourKey("reread");
    const again = parseSigningKey(await readFile(path, "utf8"), path);
    expect(again.publicKey.equals(key.publicKey)).toBe(true);
    expect(again.comment).toBe("reread@test");
  });
});

describe("keys ssh-keygen writes", () => {
  it("reads an unencrypted ed25519 key and gets ssh-keygen's public key", async () => {
    const path = join(dir, "theirs");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "theirs", "-f", path]);
    const key = parseSigningKey(await readFile(path, "utf8"), path);
    expect(publicKeyLine(key.publicKey, key.comment)).toBe((await readFile(`${path}.pub`, "utf8")).trim());
  });

  it("refuses a passphrase-protected key, an rsa key and a damaged file with a clear InputError", async () => {
    const encrypted = join(dir, "encrypted");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "secret words", "-f", encrypted]);
    expect(() => parseSigningKey(readFileText(encrypted), "k")).toThrow(/encrypted with a passphrase/);
    const rsa = join(dir, "rsa");
    execFileSync("ssh-keygen", ["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", rsa]);
    expect(() => parseSigningKey(readFileText(rsa), "k")).toThrow(/only ssh-ed25519 keys sign/);
    const { path } = await ourKey("damaged");
    const lines = readFileText(path).split("\n");
    lines[3] = lines[3]!.replace(/[A-Za-z]/, (c) => (c === "A" ? "B" : "A"));
    expect(() => parseSigningKey(lines.join("\n"), "k")).toThrow(InputError);
    expect(() => parseSigningKey("AGE-SECRET-KEY-1XYZ", "k")).toThrow(/not an OpenSSH private key/);
  });
});

function readFileText(path: string): string {
  return execFileSync("cat", [path], { encoding: "utf8" });
}

describe("signatures we write", () => {
  it("ssh-keygen -Y verify and -Y check-novalidate accept them", async () => {
    const { key } = await ourKey("signer");
    const message = randomBytes(300_000);
    const messagePath = join(dir, "message");
    await writeFile(messagePath, message);
    const signature = signDigest(key, SIGNATURE_NAMESPACE, sha512(message));
    expect(
      signature
        .split("\n")
        .slice(1, -2)
        .every((line) => line.length <= 70),
    ).toBe(true);
    await writeFile(`${messagePath}.sig`, signature);
    const allowed = join(dir, "allowed_signers");
    await writeFile(allowed, `looker-backup ${publicKeyLine(key.publicKey)}\n`);
    const verify = sshKeygen(
      [
        "-Y",
        "verify",
        "-f",
        allowed,
        "-I",
        "looker-backup",
        "-n",
        SIGNATURE_NAMESPACE,
        "-s",
        `${messagePath}.sig`,
      ],
      message,
    );
    expect(verify.stderr + verify.stdout).toContain("Good");
    expect(verify.status).toBe(0);
    const check = sshKeygen(
      ["-Y", "check-novalidate", "-n", SIGNATURE_NAMESPACE, "-s", `${messagePath}.sig`],
      message,
    );
    expect(check.status).toBe(0);
  });

  it("ssh-keygen rejects them for another message or another namespace", async () => {
    const { key } = await ourKey("signer2");
    const message = randomBytes(1000);
    const sigPath = join(dir, "other.sig");
    await writeFile(sigPath, signDigest(key, SIGNATURE_NAMESPACE, sha512(message)));
    const altered = Buffer.from(message);
    altered[500] = altered[500]! ^ 1;
    expect(
      sshKeygen(["-Y", "check-novalidate", "-n", SIGNATURE_NAMESPACE, "-s", sigPath], altered).status,
    ).not.toBe(0);
    expect(sshKeygen(["-Y", "check-novalidate", "-n", "file", "-s", sigPath], message).status).not.toBe(0);
  });
});

describe("signatures ssh-keygen writes", () => {
  it("we verify them, for sha512 and sha256, and reject another message", async () => {
    const keyPath = join(dir, "keygen-signer");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", keyPath]);
    const message = randomBytes(70_000);
    const messagePath = join(dir, "signed-by-ssh-keygen");
    await writeFile(messagePath, message);
    for (const hash of ["sha512", "sha256"] as const) {
      await rm(`${messagePath}.sig`, { force: true });
      execFileSync("ssh-keygen", [
        "-Y",
        "sign",
        "-q",
        "-f",
        keyPath,
        "-n",
        SIGNATURE_NAMESPACE,
        "-O",
        `hashalg=${hash}`,
        messagePath,
      ]);
      const parsed = parseSignature(await readFile(`${messagePath}.sig`, "utf8"), "sig");
      expect(parsed.hashAlgorithm).toBe(hash);
      expect(parsed.namespace).toBe(SIGNATURE_NAMESPACE);
      const trusted = parseTrustedSigners(await readFile(`${keyPath}.pub`, "utf8"), "pub");
      expect(trusted.find(parsed.publicKey)).toBeDefined();
      expect(signatureMatches(parsed, createHash(hash).update(message).digest())).toBe(true);
      expect(signatureMatches(parsed, createHash(hash).update(message.subarray(1)).digest())).toBe(false);
    }
  });

  it("a damaged signature file is an IntegrityError, not a crash", () => {
    expect(() =>
      parseSignature("-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n", "s"),
    ).toThrow(IntegrityError);
    expect(() => parseSignature("hello", "s")).toThrow(IntegrityError);
  });
});

describe("trusted signers", () => {
  it("reads allowed_signers lines and bare keys, honouring namespaces=", () => {
    const a = generateSigningKey("a").key;
    const b = generateSigningKey("b").key;
    const c = generateSigningKey("c").key;
    const trusted = parseTrustedSigners(
      [
        "# backup signers",
        `looker-backup,ops@example.com namespaces="looker-backup,file" ${publicKeyLine(a.publicKey, "a")}`,
        publicKeyLine(b.publicKey),
        `git@example.com namespaces="git" ${publicKeyLine(c.publicKey)}`,
      ].join("\n"),
      "signers",
    );
    expect(trusted.find(a.publicKey)?.principals).toEqual(["looker-backup", "ops@example.com"]);
    expect(trusted.find(b.publicKey)).toBeDefined();
    expect(trusted.find(c.publicKey)).toBeUndefined();
  });

  it.each([
    ["the principal itself", "looker-backup", true],
    ["another principal only", "ops@example.com", false],
    ["a pattern matching it", "looker-*", true],
    ["a pattern with the principal negated", "looker-*,!looker-backup", false],
    ["namespaces negating ours", 'looker-backup namespaces="*,!looker-backup"', false],
    ["namespaces negating another", 'looker-backup namespaces="looker-backup,!git"', true],
  ])(
    "trusts a key listed with %s exactly when ssh-keygen -Y verify -I looker-backup does",
    async (_, prefix, trusts) => {
      const { key, path } = await ourKey(`principal-${trusts}-${prefix.length}`);
      const message = join(dir, `message-${prefix.length}-${trusts}`);
      await writeFile(message, "a backup\n");
      execFileSync("ssh-keygen", ["-Y", "sign", "-q", "-f", path, "-n", "looker-backup", message]);
      const allowed = join(dir, `allowed-${prefix.length}-${trusts}`);
      await writeFile(allowed, `${prefix} ${publicKeyLine(key.publicKey)}\n`);
      const stock = sshKeygen(
        ["-Y", "verify", "-f", allowed, "-I", "looker-backup", "-n", "looker-backup", "-s", `${message}.sig`],
        await readFile(message),
      );
      expect(stock.status === 0, stock.stderr).toBe(trusts);
      let ours: boolean;
      try {
        ours =
          parseTrustedSigners(await readFile(allowed, "utf8"), "allowed").find(key.publicKey) !== undefined;
      } catch {
        ours = false; // a file that trusts no key for backups
      }
      expect(ours).toBe(trusts);
    },
  );

  it("refuses files that trust nothing, other key types and unsupported options", () => {
    const a = generateSigningKey("a").key;
    expect(() => parseTrustedSigners("# nothing\n", "f")).toThrow(/no ssh-ed25519 key trusted/);
    expect(() => parseTrustedSigners("x ssh-rsa AAAAB3NzaC1yc2E=", "f")).toThrow(/ssh-rsa keys cannot/);
    expect(() => parseTrustedSigners(`x cert-authority ${publicKeyLine(a.publicKey)}`, "f")).toThrow(
      /cert-authority is not supported/,
    );
    expect(() => parseTrustedSigners("x ssh-ed25519 AAAA", "f")).toThrow(/damaged/);
  });
});
