/**
 * Promise: whatever bytes a restore is fed, it ends with success or one of our typed errors (never another
 * exception, never a hang), and it writes nothing outside its staging dir: the target's parent holds only the
 * expected names and a sentinel dir beside it stays empty.
 * Faults: 300 seeded random mutations of a valid archive's plaintext tar (re-encrypted, so they reach the tar
 * reader) and 300 of its ciphertext; each restore runs into a fresh target under a 10 s bound.
 */
import { mkdir, mkdtemp, readdir } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { zstdCompressSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encryptBuffer } from "../../src/crypto/age.js";
import { restoreArchive } from "../../src/engine/restore.js";
import { LookerBackupError } from "../../src/errors.js";
import { buildTar, encryptTar, type RawMember } from "../helpers/archives.js";
import { makeKeyPair, removeWorkspace, seededRandom, within, workspace } from "./support.js";

const CASES = 300;
const PER_CASE_MS = 10_000;

let work: string;
let identity: string;
let recipient: string;
let plainTar: Buffer;
let ciphertext: Buffer;

const members: RawMember[] = [
  { header: { path: "home/.ssh/", type: "directory", mode: 0o700 } },
  { header: { path: "home/.ssh/id_rsa", mode: 0o600 }, body: Buffer.from("-----BEGIN KEY-----\nabc\n") },
  { header: { path: "home/looker/", type: "directory", mode: 0o755 } },
  { header: { path: "home/looker/lookerstart.cfg" }, body: Buffer.from('LOOKERARGS=""\n'.repeat(40)) },
  { header: { path: "home/looker/link", type: "symlink", linkTarget: "lookerstart.cfg" } },
  { header: { path: "home/looker/hard", type: "hardlink", linkTarget: "home/looker/lookerstart.cfg" } },
  { header: { path: `home/looker/${"long-name-".repeat(20)}` }, body: Buffer.from("long") },
  { header: { path: "home/looker/big.bin" }, body: Buffer.alloc(3000, 7) },
  { header: { path: "rootfs/etc/init.d/looker", mode: 0o755 }, body: Buffer.from("#!/bin/sh\n") },
  { header: { path: "mysql/looker.sql", mode: 0o600 }, body: Buffer.from("CREATE TABLE t (a int);\n") },
];

beforeAll(async () => {
  work = await workspace("fuzz");
  const keys = await makeKeyPair(work);
  recipient = keys.recipient;
  identity = (await (await import("node:fs/promises")).readFile(keys.identityFile, "utf8"))
    .split("\n")
    .find((l) => l.startsWith("AGE-SECRET-KEY-"))!;
  // A valid archive records the outside path its rootfs/ member comes from (restore places nothing else).
  plainTar = await buildTar(members, { catalog: true, outside: ["/etc/init.d/looker"] });
  ciphertext = await encryptTar(plainTar, recipient);
});

afterAll(() => removeWorkspace(work));

type Mutation = (bytes: Buffer, random: () => number) => Buffer;

const int = (random: () => number, n: number) => Math.floor(random() * n);

/** Small, structure-blind edits: the kind of damage that reaches parsers in ways nobody planned for. */
const mutations: Record<string, Mutation> = {
  flipBits(bytes, random) {
    const out = Buffer.from(bytes);
    for (let i = 1 + int(random, 8); i > 0; i--) {
      const at = int(random, out.length);
      out[at] = out[at]! ^ (1 << int(random, 8));
    }
    return out;
  },
  randomBytes(bytes, random) {
    const out = Buffer.from(bytes);
    const at = int(random, out.length);
    for (let i = 0; i < 1 + int(random, 64) && at + i < out.length; i++) out[at + i] = int(random, 256);
    return out;
  },
  truncate(bytes, random) {
    return bytes.subarray(0, int(random, bytes.length));
  },
  insert(bytes, random) {
    const at = int(random, bytes.length);
    const junk = Buffer.from(Array.from({ length: 1 + int(random, 600) }, () => int(random, 256)));
    return Buffer.concat([bytes.subarray(0, at), junk, bytes.subarray(at)]);
  },
  deleteRange(bytes, random) {
    const at = int(random, bytes.length);
    return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1 + int(random, 1024))]);
  },
  duplicateBlock(bytes, random) {
    // Whole 512-byte blocks: repeated headers, members out of order, a second catalog.
    const blocks = Math.floor(bytes.length / 512);
    const from = int(random, blocks) * 512;
    const to = int(random, blocks) * 512;
    return Buffer.concat([bytes.subarray(0, to), bytes.subarray(from, from + 512), bytes.subarray(to)]);
  },
  digitsInHeader(bytes, random) {
    // Octal fields (size, mode, mtime) with plausible but wrong digits.
    const out = Buffer.from(bytes);
    const block = int(random, Math.floor(out.length / 512)) * 512;
    const field = [100, 108, 116, 124, 136, 148][int(random, 6)]!;
    out[block + field + int(random, 8)] = "01234567 \0"[int(random, 10)]!.charCodeAt(0);
    return out;
  },
};

interface Outcome {
  kind: "ok" | "typed" | "untyped";
  message: string;
}

async function restoreMutant(bytes: Buffer, label: string): Promise<Outcome> {
  const parent = await mkdtemp(join(work, "case-"));
  const sentinel = join(parent, "sentinel");
  await mkdir(sentinel);
  const target = join(parent, "home");
  let outcome: Outcome;
  try {
    await within(
      PER_CASE_MS,
      label,
      restoreArchive({ source: Readable.from([bytes]), keys: { identities: [identity] }, target }),
    );
    outcome = { kind: "ok", message: "" };
  } catch (error) {
    if ((error as Error).message.includes("(hang)")) throw error;
    outcome = {
      kind: error instanceof LookerBackupError ? "typed" : "untyped",
      message: `${(error as Error).name}: ${(error as Error).message}`,
    };
  }
  // Only the target (on success) and the dump dir beside it may appear; the sentinel must stay empty.
  const names = (await readdir(parent)).filter((n) => n !== "sentinel");
  const allowed = outcome.kind === "ok" ? ["home", "home.mysql"] : [];
  expect(
    names.filter((n) => !allowed.includes(n)),
    `${label}: leftovers beside the target`,
  ).toEqual([]);
  expect(await readdir(sentinel), `${label}: wrote outside its target`).toEqual([]);
  return outcome;
}

/** zstd + age like a backup, but in-thread: the archive path's worker pool would cost a thread start per case. */
function sealed(tar: Buffer): Promise<Buffer> {
  return encryptBuffer(zstdCompressSync(tar), { recipients: [recipient] });
}

async function fuzz(source: () => Buffer, seed: number, reencrypt: boolean) {
  const random = seededRandom(seed);
  const names = Object.keys(mutations);
  const tally: Record<string, number> = { ok: 0, typed: 0, untyped: 0 };
  const untyped: string[] = [];
  for (let i = 0; i < CASES; i++) {
    const name = names[int(random, names.length)]!;
    const mutated = mutations[name]!(source(), random);
    const label = `seed ${seed} case ${i} (${name})`;
    const bytes = reencrypt ? await sealed(mutated) : mutated;
    const outcome = await restoreMutant(bytes, label);
    tally[outcome.kind]!++;
    if (outcome.kind === "untyped") untyped.push(`${label}: ${outcome.message}`);
  }
  return { tally, untyped };
}

describe("fuzzing restore", () => {
  it("the unmutated archive restores (control)", async () => {
    expect((await restoreMutant(ciphertext, "control")).kind).toBe("ok");
  });

  it(`${CASES} mutations of the plaintext tar (re-encrypted): only typed errors, no hang, no stray writes`, async () => {
    const { tally, untyped } = await fuzz(() => plainTar, 20240601, true);
    expect(untyped).toEqual([]);
    // The mutations must mostly be caught: a fuzzer whose cases all "succeed" tests nothing.
    expect(tally.typed).toBeGreaterThan(CASES / 2);
  });

  it(`${CASES} mutations of the ciphertext: only typed errors, no hang, no stray writes`, async () => {
    const { tally, untyped } = await fuzz(() => ciphertext, 7, false);
    expect(untyped).toEqual([]);
    expect(tally.typed).toBeGreaterThan(CASES * 0.9);
  });
});
