/**
 * Promise: an archive that is properly encrypted to our key but built to exhaust the restorer (huge pax headers,
 * very long paths, a huge number of members) is refused or handled within bounded memory and time, and nothing is
 * ever written outside the target.
 * Faults: a 4 MiB pax record, a pax header declaring 8 GiB, paths of 5000 bytes and with a 300-byte component, and
 * 200 000 empty members verified and 20 000 restored by the bundled CLI under a 256 MiB heap cap.
 */
import { readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeHeader } from "../../src/archive/tar-format.js";
import { buildTar, encryptTar, type RawMember } from "../helpers/archives.js";
import { bundledEntry } from "../helpers/bundle.js";
import { restoreArgv } from "../helpers/cli.js";
import {
  expectTargetUntouched,
  makeKeyPair,
  preparedTarget,
  removeWorkspace,
  restoreOver,
  runProcess,
  workspace,
} from "./support.js";

let work: string;
let identityFile: string;
let recipient: string;
let sentinel: string;

beforeAll(async () => {
  work = await workspace("hostile");
  ({ identityFile, recipient } = await makeKeyPair(work));
  sentinel = join(work, "sentinel");
  await (await import("node:fs/promises")).mkdir(sentinel);
});

afterAll(async () => {
  // Checked last so that a write outside the target in any test of this file fails the run.
  expect(await readdir(sentinel)).toEqual([]);
  await removeWorkspace(work);
});

/** A raw pax 'x' header block declaring `size` bytes, followed by `body` (which may be shorter: a lie). */
function paxBlock(size: number, body: Buffer): Buffer {
  const block = Buffer.from(
    encodeHeader({ path: "PaxHeaders/x", type: "file", size, mode: 0o644, uid: 0, gid: 0, mtime: 0 }),
  );
  block[156] = "x".charCodeAt(0);
  block.fill(" ", 148, 156);
  const sum = block.reduce((total, byte) => total + byte, 0);
  block.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  const padded = Buffer.alloc(Math.ceil(body.length / 512) * 512);
  body.copy(padded);
  return Buffer.concat([block, padded]);
}

function paxRecord(key: string, value: string): Buffer {
  const text = ` ${key}=${value}\n`;
  let length = text.length;
  while (`${length}${text}`.length !== length) length = `${length}${text}`.length;
  return Buffer.from(`${length}${text}`);
}

async function restoreTar(name: string, tar: Buffer) {
  const archive = join(work, `${name}.tar.zst.age`);
  await writeFile(archive, await encryptTar(tar, recipient));
  return restoreOver(work, archive, ["--identity", identityFile]);
}

const ordinary: RawMember[] = [{ header: { path: "home/a.txt" }, body: Buffer.from("a") }];

describe("huge pax headers", () => {
  it("a 4 MiB pax record is refused (exit 4) without being taken in, target untouched", async () => {
    const huge = paxRecord("comment", "z".repeat(4 << 20));
    const tar = Buffer.concat([paxBlock(huge.length, huge), await buildTar(ordinary, { catalog: true })]);
    const run = await restoreTar("pax-4mib", tar);
    expect(run.code, run.stderr).toBe(4);
    expect(run.stderr).toMatch(/pax header of \d+ bytes exceeds the limit/);
    await expectTargetUntouched(run.parent, run.target);
  });

  it("a pax header declaring 8 GiB is refused at once (exit 4), target untouched", async () => {
    const tar = Buffer.concat([
      paxBlock(8 * 1024 ** 3 - 1, paxRecord("path", "home/x")),
      await buildTar(ordinary, { catalog: true }),
    ]);
    const run = await restoreTar("pax-8gib", tar);
    expect(run.code, run.stderr).toBe(4);
    expect(run.stderr).toMatch(/exceeds the limit/);
    await expectTargetUntouched(run.parent, run.target);
  });
});

describe("long paths", () => {
  it("a 5000-byte member path is refused (exit 4), target untouched", async () => {
    const path = `home/${Array.from({ length: 50 }, () => "d".repeat(99)).join("/")}`;
    expect(Buffer.byteLength(path)).toBeGreaterThan(4096);
    const tar = await buildTar([{ header: { path }, body: Buffer.from("x") }], { catalog: true });
    const run = await restoreTar("path-5000", tar);
    expect(run.code, run.stderr).toBe(4);
    expect(run.stderr).toMatch(/exceeds the limit/);
    await expectTargetUntouched(run.parent, run.target);
  });

  it("a path component of 300 bytes fails with a typed error naming the member, target untouched", async () => {
    const path = `home/${"n".repeat(300)}`;
    const tar = await buildTar([{ header: { path }, body: Buffer.from("x") }], { catalog: true });
    const run = await restoreTar("component-300", tar);
    // Refused before anything is written, as verify refuses it too: Linux names are at most 255 bytes.
    expect(run.code, run.stderr).toBe(4);
    expect(run.stderr).toMatch(/path component of 300 bytes \(more than the 255 a Linux name may have\)/);
    expect(run.stderr).not.toMatch(/\n\s+at /);
    await expectTargetUntouched(run.parent, run.target);
  });
});

describe("a huge number of members", () => {
  // Verify walks every member (parser, catalog, digests) without disk writes: 200k stays fast. A restore creates
  // each file for real (about 3k files/s here), so it proves the same bound with 20k members.
  const VERIFY_COUNT = 200_000;
  const RESTORE_COUNT = 20_000;

  async function manyMembers(count: number): Promise<string> {
    const members: RawMember[] = [];
    for (let d = 0; d < count / 1000; d++) {
      members.push({ header: { path: `home/d${d}/`, type: "directory", mode: 0o755 } });
      for (let f = 0; f < 1000; f++) members.push({ header: { path: `home/d${d}/f${f}` } });
    }
    const archive = join(work, `many-${count}.tar.zst.age`);
    await writeFile(archive, await encryptTar(await buildTar(members, { catalog: true }), recipient));
    return archive;
  }

  /** The bundled CLI under a 256 MiB heap cap: if memory grew with the member count, V8 would abort it. */
  async function boundedCli(...args: string[]) {
    return runProcess(process.execPath, ["--max-old-space-size=256", await bundledEntry("cli"), ...args]);
  }

  it(`${VERIFY_COUNT} empty members verify under a 256 MiB heap, writing nothing`, async () => {
    const archive = await manyMembers(VERIFY_COUNT);
    const before = await readdir(work);
    const run = await boundedCli("verify", "--archive", archive, "--identity", identityFile, "--json");
    expect(run.code, run.stderr).toBe(0);
    expect((JSON.parse(run.stdout) as { members: number }).members).toBeGreaterThanOrEqual(VERIFY_COUNT);
    expect(await readdir(work)).toEqual(before);
  });

  it(`${RESTORE_COUNT} empty members restore completely under a 256 MiB heap, all inside the target`, async () => {
    const archive = await manyMembers(RESTORE_COUNT);
    const { parent, target } = await preparedTarget(work);
    const run = await boundedCli(...restoreArgv(archive, identityFile, target), "--force", "--json");
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as { members: number; previousContent: string };
    expect(result.members).toBeGreaterThanOrEqual(RESTORE_COUNT);
    expect((await readdir(parent)).sort()).toEqual(["home", result.previousContent.split("/").pop()].sort());
    expect((await readdir(target)).length).toBe(RESTORE_COUNT / 1000);
    expect((await readdir(join(target, `d${RESTORE_COUNT / 1000 - 1}`))).length).toBe(1000);
    expect((await stat(join(target, "d0/f999"))).size).toBe(0);
  });
});
