/**
 * Interop with the Debian age 1.1.1 CLI, both ways: what we encrypt, `age -d` decrypts byte for byte, and
 * what `age` encrypts, we decrypt. Passphrase prompts need a TTY, so `age -p` / `age -d` run under
 * util-linux `script`, which gives them a pseudo-terminal fed from our stdin.
 */
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type AgeDecryptOptions,
  type AgeEncryptOptions,
  createAgeDecryptStream,
  createAgeEncryptStream,
} from "../../src/crypto/age.js";
import { formatIdentityFile, generateHybridIdentity, generateIdentity } from "../../src/crypto/age-keys.js";

const SIZES = [0, 1, 65_536, 65_537, 5_000_000];
const REQUIRED_BINARIES = [
  ["age", "apt-get install age"],
  ["age-keygen", "apt-get install age"],
  ["script", "apt-get install util-linux (or bsdutils)"],
] as const;

let dir = "";

function requireBinaries(): void {
  for (const [binary, install] of REQUIRED_BINARIES) {
    const probe = spawnSync(binary, ["--version"], { stdio: "ignore" });
    if (probe.error)
      throw new Error(`required binary "${binary}" is not available (${install}): ${probe.error.message}`);
  }
}

/** Runs a command; resolves with stdout, rejects with its stderr on a non-zero exit. */
function run(command: string, args: string[], stdin = ""): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve(Buffer.concat(stdout).toString());
      else
        reject(new Error(`${command} ${args.join(" ")} exited ${code}: ${Buffer.concat(stderr).toString()}`));
    });
    // A command that refuses its input (age -d with the wrong key) may exit before reading it: the exit code is
    // the verdict, and the EPIPE on our write is expected, not an error of the test.
    child.stdin.on("error", () => undefined);
    child.stdin.end(stdin);
  });
}

/** Runs an age command line under a pseudo-terminal, typing `lines` at its prompts. */
function runWithTty(ageArgs: string[], lines: string[]): Promise<string> {
  const quoted = ageArgs.map((arg) => `'${arg.replaceAll("'", "'\\''")}'`).join(" ");
  return run("script", ["-qec", `age ${quoted}`, "/dev/null"], lines.map((line) => `${line}\n`).join(""));
}

/** age opens `-o` lazily and leaves no file for empty output; an existing empty file is then the right result. */
async function emptyOutput(path: string): Promise<string> {
  await writeFile(path, "");
  return path;
}

async function writeRandom(name: string, size: number): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, randomBytes(size));
  return path;
}

async function ourEncrypt(input: string, output: string, options: AgeEncryptOptions): Promise<void> {
  await pipeline(createReadStream(input), createAgeEncryptStream(options), createWriteStream(output));
}

async function ourDecrypt(input: string, output: string, options: AgeDecryptOptions): Promise<void> {
  await pipeline(createReadStream(input), createAgeDecryptStream(options), createWriteStream(output));
}

async function expectSameBytes(actual: string, expected: string): Promise<void> {
  const [a, b] = await Promise.all([readFile(actual), readFile(expected)]);
  expect(a.length).toBe(b.length);
  expect(a.equals(b)).toBe(true);
}

beforeAll(async () => {
  requireBinaries();
  dir = await mkdtemp(join(tmpdir(), "age-interop-"));
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("age CLI interop", () => {
  it("age -d decrypts what we encrypt to an age-keygen key, and we decrypt what age -r encrypts", async () => {
    const keyFile = join(dir, "age-keygen.txt");
    await run("age-keygen", ["-o", keyFile]);
    const recipient = (await run("age-keygen", ["-y", keyFile])).trim();
    const identityText = await readFile(keyFile, "utf8");
    for (const size of SIZES) {
      const plain = await writeRandom(`plain-${size}`, size);
      await ourEncrypt(plain, `${plain}.ours.age`, { recipients: [recipient] });
      await run("age", [
        "-d",
        "-i",
        keyFile,
        "-o",
        await emptyOutput(`${plain}.ours.out`),
        `${plain}.ours.age`,
      ]);
      await expectSameBytes(`${plain}.ours.out`, plain);

      await run("age", ["-r", recipient, "-o", `${plain}.theirs.age`, plain]);
      await ourDecrypt(`${plain}.theirs.age`, `${plain}.theirs.out`, { identities: [identityText] });
      await expectSameBytes(`${plain}.theirs.out`, plain);
    }
  });

  it("our keygen output works as an age identity file and recipient", async () => {
    const generated = generateIdentity();
    const keyFile = join(dir, "ours-key.txt");
    await writeFile(keyFile, formatIdentityFile(generated));
    await chmod(keyFile, 0o600);
    expect((await run("age-keygen", ["-y", keyFile])).trim()).toBe(generated.recipient);

    const plain = await writeRandom("keygen-plain", 65_537);
    await run("age", ["-r", generated.recipient, "-o", `${plain}.age`, plain]);
    await run("age", ["-d", "-i", keyFile, "-o", `${plain}.out`, `${plain}.age`]);
    await expectSameBytes(`${plain}.out`, plain);
    await ourDecrypt(`${plain}.age`, `${plain}.ours.out`, { identities: [generated.identity] });
    await expectSameBytes(`${plain}.ours.out`, plain);
  });

  it("interoperates with multiple recipients and age -R recipient files", async () => {
    const first = generateIdentity();
    const second = generateIdentity();
    const recipientsFile = join(dir, "recipients.txt");
    await writeFile(recipientsFile, `# team\n${first.recipient}\n${second.recipient}\n`);
    const keyFile = join(dir, "second-key.txt");
    await writeFile(keyFile, formatIdentityFile(second));

    const plain = await writeRandom("multi-plain", 100_000);
    await run("age", ["-R", recipientsFile, "-o", `${plain}.age`, plain]);
    await ourDecrypt(`${plain}.age`, `${plain}.out`, { identities: [first.identity] });
    await expectSameBytes(`${plain}.out`, plain);

    await ourEncrypt(plain, `${plain}.ours.age`, { recipients: [first.recipient, second.recipient] });
    await run("age", [
      "-d",
      "-i",
      keyFile,
      "-o",
      await emptyOutput(`${plain}.ours.out`),
      `${plain}.ours.age`,
    ]);
    await expectSameBytes(`${plain}.ours.out`, plain);
  });

  it("decrypts a file age -R made for 15,000 recipients: a header over 1 MiB, which age -d takes too", async () => {
    const ours = generateIdentity();
    // Recipients of other keys, ours last: every stanza before it is tried and passed over.
    const others = Array.from({ length: 15_000 }, () => generateIdentity().recipient);
    const recipientsFile = join(dir, "many-recipients.txt");
    await writeFile(recipientsFile, `${[...others, ours.recipient].join("\n")}\n`);
    const plain = await writeRandom("many-plain", 70_000);
    await run("age", ["-R", recipientsFile, "-o", `${plain}.age`, plain]);
    const header = (await readFile(`${plain}.age`)).indexOf("\n--- ");
    expect(header).toBeGreaterThan(1 << 20);
    await ourDecrypt(`${plain}.age`, `${plain}.out`, { identities: [ours.identity] });
    await expectSameBytes(`${plain}.out`, plain);
  });

  it("passphrase (scrypt) files interoperate both ways at age's default work factor", async () => {
    const passphrase = "correct horse battery staple";
    for (const size of [0, 65_537]) {
      const plain = await writeRandom(`scrypt-plain-${size}`, size);
      await ourEncrypt(plain, `${plain}.ours.age`, { recipients: [], passphrase });
      expect((await readFile(`${plain}.ours.age`)).toString("latin1")).toMatch(/\n-> scrypt \S+ 18\n/);
      await runWithTty(
        ["-d", "-o", await emptyOutput(`${plain}.ours.out`), `${plain}.ours.age`],
        [passphrase],
      );
      await expectSameBytes(`${plain}.ours.out`, plain);

      await runWithTty(["-p", "-o", `${plain}.theirs.age`, plain], [passphrase, passphrase]);
      expect((await readFile(`${plain}.theirs.age`)).toString("latin1")).toMatch(/\n-> scrypt \S+ 18\n/);
      await ourDecrypt(`${plain}.theirs.age`, `${plain}.theirs.out`, { identities: [], passphrase });
      await expectSameBytes(`${plain}.theirs.out`, plain);
    }
  });

  it("age -d rejects a file we encrypted to someone else, and we reject age's for a wrong key", async () => {
    const ageKey = join(dir, "reject-key.txt");
    await run("age-keygen", ["-o", ageKey]);
    const stranger = generateIdentity();
    const plain = await writeRandom("reject-plain", 10);
    await ourEncrypt(plain, `${plain}.age`, { recipients: [stranger.recipient] });
    await expect(run("age", ["-d", "-i", ageKey, `${plain}.age`])).rejects.toThrow(/no identity matched/);
    const recipient = (await run("age-keygen", ["-y", ageKey])).trim();
    await run("age", ["-r", recipient, "-o", `${plain}.theirs.age`, plain]);
    await expect(
      ourDecrypt(`${plain}.theirs.age`, `${plain}.out`, { identities: [stranger.identity] }),
    ).rejects.toThrow(/no identity matched/);
  });

  it("post-quantum archives need age 1.3: older age refuses the identity file, 1.3 and newer decrypt", async () => {
    const pq = generateHybridIdentity();
    const keyFile = join(dir, "pq-key.txt");
    await writeFile(keyFile, formatIdentityFile(pq), { mode: 0o600 });
    const plain = await writeRandom("pq-plain", 65_537);
    await ourEncrypt(plain, `${plain}.age`, { recipients: [pq.recipient] });
    const version = /v?(\d+)\.(\d+)/.exec(await run("age", ["--version"]));
    const hasPq = version !== null && (Number(version[1]) > 1 || Number(version[2]) >= 3);
    const decrypting = run("age", [
      "-d",
      "-i",
      keyFile,
      "-o",
      await emptyOutput(`${plain}.out`),
      `${plain}.age`,
    ]);
    if (hasPq) {
      await decrypting;
      await expectSameBytes(`${plain}.out`, plain);
    } else {
      // What the README says of Debian's age 1.1.1: it cannot read the AGE-SECRET-KEY-PQ-1 line.
      await expect(decrypting).rejects.toThrow(/unknown identity type/);
    }
  });

  it("we decrypt what age -a armors, whole or in pieces that split its lines", async () => {
    const keyFile = join(dir, "armor-key.txt");
    await run("age-keygen", ["-o", keyFile]);
    const recipient = (await run("age-keygen", ["-y", keyFile])).trim();
    const identityText = await readFile(keyFile, "utf8");
    for (const size of [0, 1, 65_537]) {
      const plain = await writeRandom(`armor-plain-${size}`, size);
      await run("age", ["-a", "-r", recipient, "-o", `${plain}.age.asc`, plain]);
      expect(
        (await readFile(`${plain}.age.asc`, "latin1")).startsWith("-----BEGIN AGE ENCRYPTED FILE-----\n"),
      ).toBe(true);
      await ourDecrypt(`${plain}.age.asc`, `${plain}.out`, { identities: [identityText] });
      await expectSameBytes(`${plain}.out`, plain);
      await pipeline(
        createReadStream(`${plain}.age.asc`, { highWaterMark: 7 }),
        createAgeDecryptStream({ identities: [identityText] }),
        createWriteStream(`${plain}.pieces.out`),
      );
      await expectSameBytes(`${plain}.pieces.out`, plain);
    }
  });
});
