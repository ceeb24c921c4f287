/**
 * Promise: a damaged, foreign or wrongly keyed archive is refused with exit 4 (2 for an unusable key file), and the
 * restore target is left exactly as it was, with no staging dir beside it.
 * Faults: truncation at every 1/16th and at the age header/nonce/chunk boundaries, single flipped bytes in the header,
 * the payload and the last chunk (where the catalog lives), a wrong scrypt passphrase, an empty file, files of other
 * types, and bad identity files.
 */

import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createZstdCompressStream } from "../../src/compress/zstd-compress.js";
import { createAgeEncryptStream } from "../../src/crypto/age.js";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { buildTar, encryptTar } from "../helpers/archives.js";
import { cli, cliJson } from "../helpers/cli.js";
import { requireCommands } from "../helpers/prerequisites.js";
import {
  ageHeaderLength,
  expectTargetUntouched,
  makeKeyPair,
  removeWorkspace,
  restoreOver,
  workspace,
} from "./support.js";

const CHUNK = 64 * 1024;
const TAG = 16;
const NONCE = 16;

let work: string;
let identityFile: string;
let recipient: string;
let good: Buffer;
let goodPath: string;

beforeAll(async () => {
  requireCommands(["age", "zstd", "tar"]);
  work = await workspace("damaged");
  ({ identityFile, recipient } = await makeKeyPair(work));
  const home = join(work, "looker-home");
  await generateLookerHome({ root: home, seed: 11, sizeBytes: 2 << 20, smallFiles: 40 });
  const made = await cliJson<{ archive: string }>(
    "backup",
    "--home",
    home,
    "--out",
    join(work, "store"),
    "--recipient",
    recipient,
    "--instance",
    "damaged",
  );
  goodPath = made.archive;
  good = await readFile(goodPath);
});

afterAll(() => removeWorkspace(work));

async function restoreBytes(name: string, bytes: Buffer, keyArgs = ["--identity", identityFile]) {
  const path = join(work, name);
  await writeFile(path, bytes);
  const run = await restoreOver(work, path, keyArgs);
  await expectTargetUntouched(run.parent, run.target);
  return run;
}

describe("the undamaged archive (control)", () => {
  it("restores with exit 0, so every refusal below is caused by the damage alone", async () => {
    const run = await restoreOver(work, goodPath, ["--identity", identityFile]);
    expect(run.code, run.stderr).toBe(0);
  });
});

describe("truncated archives -> exit 4, target untouched", () => {
  const sixteenths = Array.from({ length: 15 }, (_, i) => [`${i + 1}/16`, (n: number) => ((i + 1) * n) >> 4]);
  const boundaries: [string, (n: number, header: number) => number][] = [
    ["1 byte (inside the version line)", () => 1],
    ["inside the recipient stanza", (_n, h) => Math.floor(h / 2)],
    ["1 byte before the header ends", (_n, h) => h - 1],
    ["right after the header (no nonce)", (_n, h) => h],
    ["inside the payload nonce", (_n, h) => h + NONCE / 2],
    ["right after the nonce (no chunk)", (_n, h) => h + NONCE],
    ["inside the first chunk's tag", (_n, h) => h + NONCE + CHUNK + TAG / 2],
    ["exactly after the first full chunk", (_n, h) => h + NONCE + CHUNK + TAG],
    ["exactly after the second full chunk", (_n, h) => h + NONCE + 2 * (CHUNK + TAG)],
    ["one byte short of the end", (n) => n - 1],
    ["the last tag missing", (n) => n - TAG],
  ];
  it.each([...sixteenths, ...boundaries] as [string, (n: number, h: number) => number][])(
    "cut at %s",
    async (label, at) => {
      const length = at(good.length, ageHeaderLength(good));
      expect(length).toBeGreaterThan(0);
      expect(length).toBeLessThan(good.length);
      const run = await restoreBytes(`cut-${label.replace(/\W+/g, "_")}.age`, good.subarray(0, length));
      expect(run.code, `${label}: ${run.stderr}`).toBe(4);
      expect(run.stderr).toMatch(/looker-backup: error: /);
    },
  );
});

describe("one flipped byte -> exit 4, target untouched", () => {
  it.each([
    ["the version line", () => 5],
    ["the recipient stanza body", (h: number) => h - 60],
    ["the header MAC", (h: number) => h - 5],
    ["the payload nonce", (h: number) => h + 3],
    ["the first chunk", (h: number) => h + NONCE + 100],
    ["the middle of the payload", (_h: number, n: number) => Math.floor(n / 2)],
    ["the last chunk (catalog region)", (_h: number, n: number) => n - TAG - 200],
    ["the last tag", (_h: number, n: number) => n - 3],
  ] as [string, (h: number, n: number) => number][])("in %s", async (label, where) => {
    const bytes = Buffer.from(good);
    const index = where(ageHeaderLength(good), good.length);
    bytes[index] = bytes[index]! ^ 0x01;
    const run = await restoreBytes(`flip-${label.replace(/\W+/g, "_")}.age`, bytes);
    expect(run.code, `${label}: ${run.stderr}`).toBe(4);
  });
});

describe("keys", () => {
  // A passphrase archive made with a low scrypt work factor (the CLI always uses age's default of 2^18).
  let passphraseArchive: Buffer;
  beforeAll(async () => {
    const tar = await buildTar([{ header: { path: "home/a.txt" }, body: Buffer.from("a") }], {
      catalog: true,
    });
    passphraseArchive = await buffer(
      Readable.from([tar])
        .pipe(createZstdCompressStream({ level: 3 }))
        .pipe(createAgeEncryptStream({ recipients: [], passphrase: "right horse battery", scryptLogN: 10 })),
    );
  });

  it("a passphrase archive restores with the right passphrase (control)", async () => {
    process.env.LB_REL_RIGHT_PASSPHRASE = "right horse battery";
    const path = join(work, "passphrase-ok.age");
    await writeFile(path, passphraseArchive);
    const run = await restoreOver(work, path, ["--passphrase-env", "LB_REL_RIGHT_PASSPHRASE"]);
    expect(run.code, run.stderr).toBe(0);
  });

  it("a wrong passphrase -> exit 4, target untouched", async () => {
    process.env.LB_REL_WRONG_PASSPHRASE = "wrong horse battery";
    const run = await restoreBytes("passphrase-wrong.age", passphraseArchive, [
      "--passphrase-env",
      "LB_REL_WRONG_PASSPHRASE",
    ]);
    expect(run.code, run.stderr).toBe(4);
    expect(run.stderr).toMatch(/passphrase/);
  });

  it("an identity for a passphrase archive -> exit 2 saying a passphrase is needed, target untouched", async () => {
    const run = await restoreBytes("passphrase-by-identity.age", passphraseArchive);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toMatch(/encrypted with a passphrase/);
  });

  it.each([
    ["an empty identity file", ""],
    [
      "a recipient instead of an identity",
      "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq\n",
    ],
    ["garbage", "AGE-SECRET-KEY-1NOTAKEY\n"],
  ])("%s -> exit 2 naming the file, target untouched", async (label, content) => {
    const keyFile = join(work, `bad-identity-${label.replace(/\W+/g, "_")}.txt`);
    await writeFile(keyFile, content);
    const run = await restoreBytes(`bad-identity-${label.replace(/\W+/g, "_")}.age`, good, [
      "--identity",
      keyFile,
    ]);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toContain(keyFile);
  });

  it("a missing identity file -> exit 2 naming it", async () => {
    const missing = join(work, "no-such-identity.txt");
    const run = await restoreBytes("missing-identity.age", good, ["--identity", missing]);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toContain(missing);
  });
});

describe("not an archive of ours -> exit 4, target untouched", () => {
  let plainTar: Buffer;
  beforeAll(async () => {
    plainTar = await buildTar([{ header: { path: "home/a.txt" }, body: Buffer.from("a") }], {
      catalog: true,
    });
  });

  it.each([
    ["a zero-length file", () => Buffer.alloc(0)],
    ["plain text", () => Buffer.from("these are not the bytes you are looking for\n".repeat(100))],
    ["a gzip file", () => gzipSync(Buffer.from("hello ".repeat(1000)))],
    [
      "a zip file",
      // A minimal zip: local file header + central directory + end record for one stored empty file.
      () =>
        Buffer.concat([
          Buffer.from("504b0304140000000000000000000000000000000000000000000100000061", "hex"),
          Buffer.from(
            "504b01021400140000000000000000000000000000000000000001000000000000000000000000000000000061",
            "hex",
          ),
          Buffer.from("504b050600000000010001002f0000001f0000000000", "hex"),
        ]),
    ],
    ["a plain (unencrypted) tar", () => plainTar],
    ["random bytes", () => Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) & 0xff))],
  ] as [string, () => Buffer][])("%s", async (label, make) => {
    const run = await restoreBytes(`foreign-${label.replace(/\W+/g, "_")}`, make());
    expect(run.code, `${label}: ${run.stderr}`).toBe(4);
    expect(run.stderr).not.toMatch(/\n\s+at /); // a message, not a stack trace
  });

  it("an age file of something that is not a zstd tar", async () => {
    const bytes = await buffer(
      Readable.from([Buffer.from("just text, encrypted properly\n")]).pipe(
        createAgeEncryptStream({ recipients: [recipient] }),
      ),
    );
    const run = await restoreBytes("age-of-text.age", bytes);
    expect(run.code, run.stderr).toBe(4);
  });

  it("an age+zstd file of something that is not a tar", async () => {
    const run = await restoreBytes(
      "age-zstd-of-text.age",
      await encryptTar(Buffer.from("x".repeat(5000)), recipient),
    );
    expect(run.code, run.stderr).toBe(4);
  });

  it("verify refuses the same damage with exit 4 and writes nothing", async () => {
    const bytes = Buffer.from(good);
    bytes[bytes.length - TAG - 200] = bytes[bytes.length - TAG - 200]! ^ 0x80;
    const path = join(work, "verify-flipped.age");
    await writeFile(path, bytes);
    const run = await cli("verify", "--archive", path, "--identity", identityFile);
    expect(run.code, run.stderr).toBe(4);
    expect(run.stdout).toBe("");
  });
});
