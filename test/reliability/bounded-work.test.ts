/**
 * Promise: whoever holds the public recipient can make an archive that decrypts, so restore and verify stay bounded
 * in memory and work on any input: a tiny archive that expands to gigabytes, long header chains, huge catalog
 * lines, deep trees and very many members are each restored in bounded memory or refused with exit 4.
 * Faults: 1 GiB of zeros in 16 MiB frames that declare their content size (about 35 KiB compressed), and the same
 * zeros in one frame declaring 1 GiB, each restored and verified by the bundled CLI, whose peak RSS (VmHWM) must
 * stay under 256 MiB; 128 MiB of pax headers before one member; a 26 MiB catalog line; 150,000 members with
 * 3.8 KB paths verified by the bundled CLI under a 512 MiB heap cap.
 */
import { createWriteStream, readFileSync } from "node:fs";
import { readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { pipeline } from "node:stream/promises";
import { constants, createZstdCompress, zstdCompressSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BACKUP_META_PATH } from "../../src/archive/catalog.js";
import { encodeHeader, type TarHeader } from "../../src/archive/tar-format.js";
import { createZstdCompressStream } from "../../src/compress/zstd-compress.js";
import { createAgeEncryptStream } from "../../src/crypto/age.js";
import { buildTar, encryptTar, encryptZstd, type RawMember, zeroFileTar } from "../helpers/archives.js";
import { bundledEntry } from "../helpers/bundle.js";
import { restoreArgv } from "../helpers/cli.js";
import { writeTar } from "../helpers/tar-writer.js";
import {
  expectTargetUntouched,
  makeKeyPair,
  preparedTarget,
  removeWorkspace,
  restoreOver,
  runProcess,
  workspace,
} from "./support.js";

const MiB = 1024 * 1024;
const RSS_LIMIT_MIB = 256;

let work: string;
let identityFile: string;
let recipient: string;

beforeAll(async () => {
  work = await workspace("bounded");
  ({ identityFile, recipient } = await makeKeyPair(work));
});

afterAll(async () => {
  await removeWorkspace(work);
});

/** One zstd frame holding `bytes`, with its content size declared (as the zstd CLI and our backup write them). */
function frameOf(bytes: Buffer): Buffer {
  return zstdCompressSync(bytes, {
    params: { [constants.ZSTD_c_contentSizeFlag]: 1, [constants.ZSTD_c_checksumFlag]: 1 },
    pledgedSrcSize: bytes.length,
  });
}

/** One frame of `size` zeros declaring its content size, compressed as a stream so the zeros are never held. */
async function zeroFrame(size: number): Promise<Buffer> {
  const zeros = Buffer.alloc(16 * MiB);
  async function* parts() {
    for (let left = size; left > 0; left -= zeros.length)
      yield zeros.subarray(0, Math.min(left, zeros.length));
  }
  const compressor = createZstdCompress({
    params: { [constants.ZSTD_c_contentSizeFlag]: 1, [constants.ZSTD_c_checksumFlag]: 1 },
    pledgedSrcSize: size,
  });
  return buffer(Readable.from(parts()).pipe(compressor));
}

interface MeasuredRun {
  code: number | null;
  stdout: string;
  stderr: string;
  peakMiB: number;
}

/**
 * The bundled CLI in a child process; its peak RSS is the highest VmHWM read from /proc while it runs (VmHWM is
 * itself a high-water mark, so polling misses at most the last few milliseconds before exit).
 */
async function measuredCli(...args: string[]): Promise<MeasuredRun> {
  return measuredNode([], args);
}

async function measuredNode(nodeOptions: string[], args: string[]): Promise<MeasuredRun> {
  let peakKiB = 0;
  let timer: NodeJS.Timeout | undefined;
  const run = await runProcess(process.execPath, [...nodeOptions, await bundledEntry("cli"), ...args], {
    onSpawn: (child) => {
      const poll = () => {
        try {
          const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
          if (match) peakKiB = Math.max(peakKiB, Number(match[1]));
        } catch {
          // the child has exited
        }
      };
      timer = setInterval(poll, 20);
      child.on("exit", () => clearInterval(timer));
    },
  });
  clearInterval(timer);
  expect(peakKiB, "VmHWM was read at least once").toBeGreaterThan(0);
  return { ...run, peakMiB: peakKiB / 1024 };
}

describe("an archive that expands a thousandfold", () => {
  const SIZE = 1024 * MiB;

  async function zeroArchive(name: string, frames: (head: Buffer, tail: Buffer) => Promise<Buffer[]>) {
    const { head, tail } = await zeroFileTar("home/zeros", SIZE);
    const archive = join(work, `${name}.tar.zst.age`);
    await writeFile(archive, await encryptZstd(await frames(head, tail), recipient));
    expect((await stat(archive)).size).toBeLessThan(SIZE / 1000);
    return archive;
  }

  const cases = {
    "1 GiB of zeros in 16 MiB frames that declare their size": (head: Buffer, tail: Buffer) => {
      const frame = frameOf(Buffer.alloc(16 * MiB));
      return Promise.resolve([
        frameOf(head),
        ...Array.from({ length: SIZE / (16 * MiB) }, () => frame),
        frameOf(tail),
      ]);
    },
    "1 GiB of zeros in one frame that declares its size": async (head: Buffer, tail: Buffer) => [
      frameOf(head),
      await zeroFrame(SIZE),
      frameOf(tail),
    ],
  };

  for (const [name, frames] of Object.entries(cases)) {
    it(`${name}: verify and restore stay under ${RSS_LIMIT_MIB} MiB peak RSS`, async () => {
      const archive = await zeroArchive(name.replace(/\W+/g, "-"), frames);
      const verify = await measuredCli("verify", "--archive", archive, "--identity", identityFile, "--json");
      expect(verify.code, verify.stderr).toBe(0);
      expect((JSON.parse(verify.stdout) as { bytes: number }).bytes).toBeGreaterThanOrEqual(SIZE);

      const { parent, target } = await preparedTarget(work);
      const restore = await measuredCli(...restoreArgv(archive, identityFile, target), "--force", "--json");
      expect(restore.code, restore.stderr).toBe(0);
      expect((await stat(join(target, "zeros"))).size).toBe(SIZE);
      expect((await readdir(parent)).length).toBe(2); // the target and the kept previous content
      await removeWorkspace(parent); // a gigabyte: not left for afterAll

      console.log(
        `${name}: peak RSS verify ${verify.peakMiB.toFixed(0)} MiB, restore ${restore.peakMiB.toFixed(0)} MiB`,
      );
      expect(verify.peakMiB, "verify peak RSS (MiB)").toBeLessThan(RSS_LIMIT_MIB);
      expect(restore.peakMiB, "restore peak RSS (MiB)").toBeLessThan(RSS_LIMIT_MIB);
    }, 300_000);
  }
});

async function restoreTar(name: string, tar: Buffer) {
  const archive = join(work, `${name}.tar.zst.age`);
  await writeFile(archive, await encryptTar(tar, recipient));
  return restoreOver(work, archive, ["--identity", identityFile]);
}

/** A pax 'x' header (block and padded body) holding one `comment` record: 1024 bytes in all. */
function paxComment(): Buffer {
  const record = Buffer.from(`500 comment=${"c".repeat(487)}\n`);
  const block = Buffer.from(
    encodeHeader({ path: "PaxHeaders/x", type: "file", size: 500, mode: 0o644, uid: 0, gid: 0, mtime: 0 }),
  );
  block[156] = "x".charCodeAt(0);
  block.fill(" ", 148, 156);
  const sum = block.reduce((total, byte) => total + byte, 0);
  block.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  return Buffer.concat([block, record, Buffer.alloc(12)]);
}

const ordinary: RawMember[] = [{ header: { path: "home/a.txt" }, body: Buffer.from("a") }];

describe("long header chains and catalog lines", () => {
  it("128 MiB of pax headers before one member are refused at the 4 MiB limit (exit 4), target untouched", async () => {
    // Parsed as the pre-fix reader did (every chunk re-copying and re-parsing the chain), 64 MiB took 113 s.
    const pax = paxComment();
    const tar = Buffer.concat([
      ...Array.from({ length: 128 * 1024 }, () => pax),
      await buildTar(ordinary, { catalog: true }),
    ]);
    const run = await restoreTar("pax-chain", tar);
    expect(run.code, run.stderr).toBe(4);
    expect(run.stderr).toMatch(
      /headers before one member \(pax, GNU long names\) exceed the limit of 4194304 bytes/,
    );
    await expectTargetUntouched(run.parent, run.target);
  });

  it("a 26 MiB catalog line is refused (exit 4) quoting none of it, target untouched", async () => {
    const huge = `{"path":"home/${"x".repeat(26 << 20)}","type":"file","size":1,"mode":420,"uid":0,"gid":0,"mtime":0}\n`;
    const tar = await buildTar(ordinary, { catalog: true, catalogLines: (lines) => [...lines, huge] });
    const run = await restoreTar("catalog-line", tar);
    expect(run.code, run.stderr).toBe(4);
    expect(run.stderr).toMatch(/catalog line 3 is longer than the limit of 131072 bytes/);
    expect(run.stderr.length, "the message quotes none of the line").toBeLessThan(1000);
    await expectTargetUntouched(run.parent, run.target);
  });
});

describe("very many members with long paths", () => {
  it("150,000 members with 3.8 KB paths are refused at the path limit (exit 4) under a 512 MiB heap", async () => {
    // 570 MB of paths: held until the catalog matched them, they made V8 run out of heap (1M of them: exit 134).
    const directory = `home/${Array.from({ length: 15 }, (_, i) => `${i}`.padEnd(250, "d")).join("/")}`;
    const base = { mode: 0o644, uid: 0, gid: 0, mtime: 1_700_000_000 };
    const meta = Buffer.from('{"format":"looker-backup/1"}\n');
    function* members(): Generator<{ header: TarHeader; body?: Buffer }> {
      yield { header: { ...base, path: BACKUP_META_PATH, type: "file", size: meta.length }, body: meta };
      for (let i = 0; i < 150_000; i++)
        yield { header: { ...base, path: `${directory}/f${i}`, type: "file", size: 0 } };
    }
    const archive = join(work, "many-long-paths.tar.zst.age");
    await pipeline(
      Readable.from(writeTar(members())),
      createZstdCompressStream(),
      createAgeEncryptStream({ recipients: [recipient] }),
      createWriteStream(archive),
    );
    const run = await measuredNode(
      ["--max-old-space-size=512"],
      ["verify", "--archive", archive, "--identity", identityFile],
    );
    expect(run.code, run.stderr).toBe(4);
    expect(run.stderr).toMatch(
      /the archive's member paths exceed the limit of 268435456 bytes in all \(at member \d+\)/,
    );
    console.log(`150k long paths: peak RSS verify ${run.peakMiB.toFixed(0)} MiB`);
  }, 300_000);
});
