/**
 * Interop with the real `zstd` CLI (Debian's zstd package): it reads what we write, we read what it writes.
 * Also checks, in a child process running an esbuild bundle (as dist/ will be), that the inline worker
 * code runs bundled and that no worker thread keeps the process alive after end, destroy or abandonment.
 */
import { execFile, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createZstdCompressStream } from "../../src/compress/zstd-compress.js";
import { createZstdDecompressStream } from "../../src/compress/zstd-decompress.js";
import { IntegrityError } from "../../src/errors.js";

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
const repoRoot = resolve(import.meta.dirname, "../..");

let workDir: string;

beforeAll(async () => {
  const probe = spawnSync("zstd", ["--version"]);
  if (probe.error || probe.status !== 0) {
    throw new Error("the zstd CLI is required for these tests but was not found: apt-get install zstd");
  }
  workDir = await mkdtemp(join(tmpdir(), "zstd-interop-"));
});

afterAll(async () => {
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

/** A slice of a Looker home: LookML/JSON/log lines and database-like pages with some random bytes. */
function homeLikeData(size: number): Buffer {
  const out = Buffer.alloc(size);
  let offset = 0;
  for (let index = 0; offset < size; index++) {
    if (index % 5 < 3) {
      const line =
        `{"id":${index},"view":"orders_${index % 13}","sql":"\${TABLE}.amount_${index % 7}",` +
        `"trace":"${randomBytes(6).toString("hex")}"}\n`;
      offset += out.write(line, offset);
    } else {
      const page = Buffer.alloc(Math.min(8192, size - offset));
      page.writeUInt32LE(index, 0);
      randomBytes(Math.min(1024, page.length)).copy(page, 64);
      offset += page.copy(out, offset);
    }
  }
  return out;
}

async function ourCompress(input: Buffer, options: Parameters<typeof createZstdCompressStream>[0]) {
  const parts: Buffer[] = [];
  await pipeline(Readable.from([input]), createZstdCompressStream(options), async (frames) => {
    for await (const frame of frames) parts.push(frame as Buffer);
  });
  return Buffer.concat(parts);
}

async function ourDecompress(input: Buffer): Promise<Buffer> {
  const parts: Buffer[] = [];
  const chunks = [];
  for (let offset = 0; offset < input.length; offset += 100_000)
    chunks.push(input.subarray(offset, offset + 100_000));
  await pipeline(Readable.from(chunks), createZstdDecompressStream(), async (data) => {
    for await (const part of data) parts.push(part as Buffer);
  });
  return Buffer.concat(parts);
}

/** Runs the zstd CLI with `input` on stdin; resolves its stdout. */
function zstdCli(args: string[], input: Buffer): Promise<Buffer> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn("zstd", args, { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (data: Buffer) => out.push(data));
    child.stderr.on("data", (data: Buffer) => err.push(data));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolvePromise(Buffer.concat(out));
      else reject(new Error(`zstd ${args.join(" ")} exited ${code}: ${Buffer.concat(err).toString()}`));
    });
    child.stdin.on("error", () => {}); // zstd may exit before reading everything; the exit code tells
    child.stdin.end(input);
  });
}

describe("the zstd CLI reads our output", () => {
  const input = homeLikeData(24 * MiB + 123);

  it("decompresses a multi-frame stream from 2 workers, with a content size and checksum per frame", async () => {
    const compressed = await ourCompress(input, { workers: 2, blockSize: MiB });
    const file = join(workDir, "ours.zst");
    await writeFile(file, compressed);
    expect((await zstdCli(["-d", "-c"], compressed)).equals(input)).toBe(true);
    const { stdout } = await execFileAsync("zstd", ["-lv", file]);
    expect(stdout).toMatch(/# Zstandard Frames: 25\n/);
    expect(stdout).toMatch(new RegExp(`Decompressed Size: .*\\(${input.length} B\\)`)); // only when every frame has it
    expect(stdout).toMatch(/Check: XXH64/);
  });

  it("decompresses output made with the default options", async () => {
    const compressed = await ourCompress(input, {});
    expect((await zstdCli(["-d", "-c"], compressed)).equals(input)).toBe(true);
    // Within 5% of `zstd -3` on the same data.
    const reference = await zstdCli(["-3", "-c"], input);
    expect(compressed.length).toBeLessThanOrEqual(reference.length * 1.05);
  });

  it("decompresses 0 B and 1 B inputs, single and multi-worker", async () => {
    for (const workers of [1, 2]) {
      for (const data of [Buffer.alloc(0), Buffer.from("x")]) {
        const compressed = await ourCompress(data, { workers, blockSize: MiB });
        expect((await zstdCli(["-d", "-c"], compressed)).equals(data)).toBe(true);
      }
    }
  });
});

describe("we read the zstd CLI's output", () => {
  const input = homeLikeData(20 * MiB + 7);

  it("reads `zstd -3 -T0` output from a pipe and from a file", async () => {
    expect((await ourDecompress(await zstdCli(["-3", "-T0", "-c"], input))).equals(input)).toBe(true);
    const source = join(workDir, "cli-input.bin");
    await writeFile(source, input);
    await execFileAsync("zstd", ["-q", "-f", "-3", "-T0", source, "-o", `${source}.zst`]); // has a content size
    expect((await ourDecompress(await readFile(`${source}.zst`))).equals(input)).toBe(true);
  });

  it("reads concatenated CLI frames and frames without a checksum", async () => {
    const first = await zstdCli(["-3", "-T0", "-c"], input.subarray(0, 5 * MiB));
    const second = await zstdCli(["-1", "--no-check", "-c"], input.subarray(5 * MiB));
    expect((await ourDecompress(Buffer.concat([first, second]))).equals(input)).toBe(true);
  });

  it("fails with IntegrityError on corrupt CLI output", async () => {
    const compressed = Buffer.from(await zstdCli(["-3", "-T0", "-c"], input));
    compressed[Math.floor(compressed.length / 3)]! ^= 0x40;
    await expect(ourDecompress(compressed)).rejects.toThrow(IntegrityError);
  });
});

describe("bundled with esbuild, in a child process", () => {
  let bundle: string;

  beforeAll(async () => {
    const entry = join(workDir, "child.ts");
    await writeFile(
      entry,
      CHILD_SOURCE.replace("@ZSTD_MODULE@", join(repoRoot, "src/compress/zstd-compress.ts")),
    );
    bundle = join(workDir, "child.mjs");
    await execFileAsync(join(repoRoot, "node_modules/.bin/esbuild"), [
      entry,
      "--bundle",
      "--platform=node",
      "--format=esm",
      `--outfile=${bundle}`,
      "--log-level=warning",
    ]);
  });

  /** Runs the bundle; fails if it does not exit on its own (a worker thread left alive would hold it). */
  function runChild(mode: string): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
    return new Promise((resolvePromise, reject) => {
      const child = spawn(process.execPath, [bundle, mode], { stdio: ["ignore", "pipe", "pipe"] });
      const out: Buffer[] = [];
      let stderr = "";
      child.stdout.on("data", (data: Buffer) => out.push(data));
      child.stderr.on("data", (data: Buffer) => {
        stderr += data.toString();
      });
      const guard = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`child in mode ${mode} did not exit by itself: a worker thread keeps it alive`));
      }, 60_000);
      child.on("error", reject);
      child.on("close", (code) => {
        clearTimeout(guard);
        resolvePromise({ code, stdout: Buffer.concat(out), stderr });
      });
    });
  }

  it("compresses with worker threads and exits when the stream ends", async () => {
    const { code, stdout, stderr } = await runChild("end");
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const expected = Buffer.concat([0, 1, 2, 3, 4].map((index) => Buffer.alloc(MiB, 65 + index)));
    expect((await zstdCli(["-d", "-c"], stdout)).equals(expected)).toBe(true);
  });

  it("exits after a destroy mid-stream", async () => {
    const { code, stderr } = await runChild("destroy");
    expect(stderr).toBe("");
    expect(code).toBe(0);
  });

  it("exits when a stream is abandoned with idle workers", async () => {
    const { code, stderr } = await runChild("abandon");
    expect(stderr).toBe("");
    expect(code).toBe(0);
  });
});

/** The child: prints the live worker count at the end so a leak shows as well as a hang. */
const CHILD_SOURCE = `
import { createZstdCompressStream, liveZstdWorkerThreads } from "@ZSTD_MODULE@";
const MiB = 1024 * 1024;
const mode = process.argv[2];
const compressor = createZstdCompressStream({ workers: 2, blockSize: MiB });
const blocks = [0, 1, 2, 3, 4].map((index) => Buffer.alloc(MiB, 65 + index));
if (mode === "end") {
  compressor.pipe(process.stdout);
  for (const block of blocks) compressor.write(block);
  compressor.end();
} else if (mode === "destroy") {
  compressor.on("error", () => {});
  compressor.once("data", () => compressor.destroy(new Error("stop")));
  compressor.once("close", () => {
    if (liveZstdWorkerThreads() !== 0) console.error("workers alive after destroy:", liveZstdWorkerThreads());
  });
  for (const block of blocks) compressor.write(block);
} else if (mode === "abandon") {
  let frames = 0;
  compressor.on("data", () => {
    frames += 1;
    if (frames === 4 && liveZstdWorkerThreads() === 0) console.error("expected idle workers to still exist");
  });
  for (const block of blocks) compressor.write(block); // 5 full blocks, never ended
}
`;
