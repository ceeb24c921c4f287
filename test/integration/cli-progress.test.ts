/**
 * Progress as an operator sees it, from the bundled CLI: on a terminal (a pseudo-terminal made by util-linux
 * `script`) one line redrawn in place and ended with a newline; on a pipe plain lines. Restore and verify count the
 * archive's bytes read against its size (the plaintext, larger, beside them); a backup counts the selection's bytes,
 * a big file's while it is read. No percentage passes 100.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, open, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { shellCommand } from "../../src/remote/host.js";
import { formatBytes } from "../../src/runtime/format.js";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { bundledEntry } from "../helpers/bundle.js";
import { backupArgv, cliJson, restoreArgv } from "../helpers/cli.js";
import { requireCommands } from "../helpers/prerequisites.js";
import { runProcess } from "../reliability/support.js";

const BIG_FILE_BYTES = 192 << 20;

let work: string;
let home: string;
let cliPath: string;
let recipient: string;
let identityFile: string;

beforeAll(async () => {
  requireCommands(["script"]);
  work = await mkdtemp(join(tmpdir(), "lb-progress-"));
  home = join(work, "home");
  await generateLookerHome({ root: home, seed: 31, sizeBytes: 4 << 20, smallFiles: 40 });
  // One big file of incompressible bytes: most of the selection, read in blocks by the compressing threads.
  const big = await open(join(home, "looker", "big.bin"), "w");
  for (let written = 0; written < BIG_FILE_BYTES; written += 8 << 20) await big.write(randomBytes(8 << 20));
  await big.close();
  identityFile = join(work, "identity.txt");
  ({ recipient } = await cliJson<{ recipient: string }>("keygen", "--output", identityFile));
  cliPath = await bundledEntry("cli");
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

/** The CLI on a pseudo-terminal: what the terminal received (stdout and stderr as one, newlines as \r\n). */
async function onTerminal(args: string[]): Promise<{ code: number | null; screen: string }> {
  const command = shellCommand([process.execPath, cliPath, ...args]);
  const run = await runProcess("script", ["-qec", command, "/dev/null"], { cwd: work });
  return { code: run.code, screen: run.stdout };
}

/** The CLI with stdout and stderr on pipes. */
function onPipes(args: string[]) {
  return runProcess(process.execPath, [cliPath, ...args], { cwd: work });
}

/** Every "<label>: reading X of Y (N%)" in a text: Y and N of each. */
function counts(text: string, label: string): { total: string; percent: number }[] {
  return [...text.matchAll(new RegExp(`${label}: reading [^,\\r\\n]* of ([^,(]+) \\((\\d+)%\\)`, "g"))].map(
    (match) => ({ total: match[1]!.trim(), percent: Number(match[2]) }),
  );
}

/** The selection's bytes as plan counts them: what a backup's progress counts against. */
async function selectionBytes(): Promise<number> {
  const plan = await cliJson<{ rules: { action: string; bytes: number }[] }>("plan", "--home", home);
  return plan.rules.filter((rule) => rule.action !== "exclude").reduce((sum, rule) => sum + rule.bytes, 0);
}

describe("progress of the CLI", () => {
  let archive: string;

  it("backup on a terminal: its phases and its count on one line redrawn in place, then a newline", async () => {
    const out = join(work, "store-tty");
    const { code, screen } = await onTerminal(backupArgv(home, out, recipient, "tty"));
    expect(code, screen).toBe(0);
    archive = /archive {2}(\S+)/.exec(screen)![1]!;
    for (const phase of ["stopping Looker", "starting Looker", "reading", "storing"])
      expect(screen).toContain(`\r\x1b[2Kbackup: ${phase}`);
    const shown = counts(screen, "backup");
    expect(shown.length).toBeGreaterThan(1);
    expect(new Set(shown.map((c) => c.total))).toEqual(new Set([formatBytes(await selectionBytes())]));
    expect(Math.max(...shown.map((c) => c.percent))).toBeLessThanOrEqual(100);
    // The live line ends before the result: the result starts on a line of its own.
    expect(screen).toMatch(/\r\narchive {2}/);
  });

  it("backup on a pipe: plain lines, a big file counted while it is read, never past 100 %", async () => {
    const out = join(work, "store-pipe");
    const run = await onPipes([...backupArgv(home, out, recipient, "pipe"), "--json"]);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ files: expect.any(Number) });
    expect(run.stderr).not.toMatch(/[\r\x1b]/);
    const shown = counts(run.stderr, "backup");
    expect(shown.every((c) => c.percent <= 100)).toBe(true);
    expect(shown.at(-1)!.percent).toBe(100);
    // The big file is nearly all of the selection: lines at the tenths it passes while it is read, not one jump
    // from the small files' few percent to 100 when it is done.
    const between = new Set(shown.map((c) => c.percent).filter((p) => p >= 10 && p < 100));
    expect(between.size, run.stderr).toBeGreaterThanOrEqual(5);
  });

  it("restore on a terminal: the archive's bytes read against its size, redrawn in place, never past 100 %", async () => {
    const size = (await stat(archive)).size;
    const target = join(work, "restored");
    const { code, screen } = await onTerminal(restoreArgv(archive, identityFile, target));
    expect(code, screen).toBe(0);
    const shown = counts(screen, "restore");
    expect(screen.split("\r\x1b[2Krestore: reading").length - 1).toBeGreaterThan(1);
    expect(new Set(shown.map((c) => c.total))).toEqual(new Set([formatBytes(size)]));
    expect(shown.every((c) => c.percent <= 100)).toBe(true);
    expect(screen).toMatch(/plaintext/);
    expect(screen).toContain("\r\x1b[2Krestore: placing");
    expect(screen).toMatch(/\r\nrestored \d+ members/);
  });

  it("verify on a pipe: plain lines against the archive's size, ending at 100 %", async () => {
    const size = (await stat(archive)).size;
    const run = await onPipes(["verify", "--archive", archive, "--identity", identityFile]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).not.toMatch(/[\r\x1b]/);
    const shown = counts(run.stderr, "verify");
    expect(shown.length).toBeGreaterThan(1);
    expect(new Set(shown.map((c) => c.total))).toEqual(new Set([formatBytes(size)]));
    expect(shown.every((c) => c.percent <= 100)).toBe(true);
    expect(shown.at(-1)!.percent).toBe(100);
    expect(run.stderr).toMatch(/verify: reading .* plaintext/);
  });

  it("--quiet shows no progress", async () => {
    const run = await onPipes(["verify", "--archive", archive, "--identity", identityFile, "--quiet"]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).not.toMatch(/verify: reading/);
  });
});
