/**
 * Shared setup for the reliability suite: private workspaces, a key pair, and the "target untouched" check that
 * most promises end with (the target keeps its content and nothing else appears beside it, e.g. a staging dir).
 */
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import { type CliRun, cli, cliJson } from "../helpers/cli.js";

export const PRECIOUS = "precious content that a failed restore must not touch\n";

export async function workspace(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `lb-rel-${prefix}-`));
}

export async function removeWorkspace(dir: string | undefined): Promise<void> {
  if (dir) await rm(dir, { recursive: true, force: true });
}

/** A fresh identity file (via our keygen) and its recipient. */
export async function makeKeyPair(dir: string, name = "identity.txt") {
  const identityFile = join(dir, name);
  const { recipient } = await cliJson<{ recipient: string }>("keygen", "--output", identityFile);
  return { identityFile, recipient };
}

/** A parent dir holding only `home/keep.txt`: the target a failed restore must leave as it was. */
export async function preparedTarget(work: string): Promise<{ parent: string; target: string }> {
  const parent = await mkdtemp(join(work, "target-"));
  const target = join(parent, "home");
  await mkdir(target);
  await writeFile(join(target, "keep.txt"), PRECIOUS);
  return { parent, target };
}

/** The target still holds exactly keep.txt with its content, and its parent holds nothing but the target. */
export async function expectTargetUntouched(parent: string, target: string): Promise<void> {
  expect(await readdir(parent), "no staging dir or other leftovers beside the target").toEqual(["home"]);
  expect(await readdir(target)).toEqual(["keep.txt"]);
  expect(await readFile(join(target, "keep.txt"), "utf8")).toBe(PRECIOUS);
}

/** Restores with --force into a prepared target through the in-process CLI. */
export async function restoreOver(
  work: string,
  archive: string,
  keyArgs: string[],
): Promise<CliRun & { parent: string; target: string }> {
  const { parent, target } = await preparedTarget(work);
  const run = await cli("restore", "--archive", archive, ...keyArgs, "--target", target, "--force");
  return { ...run, parent, target };
}

export interface ProcessRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion, collecting its output; `onSpawn` sees the child while it runs. */
export function runProcess(
  command: string,
  args: string[],
  options: {
    env?: NodeJS.ProcessEnv;
    cwd?: string;
    onSpawn?: (child: import("node:child_process").ChildProcess) => void;
  } = {},
): Promise<ProcessRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("error", reject);
    options.onSpawn?.(child);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** A deterministic PRNG (mulberry32) so fuzz cases are reproducible from their seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Rejects when `promise` has not settled within `ms`: a hang becomes a failure naming `what`. */
export async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms (hang)`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Length of the age header including the "--- mac" line: the payload nonce starts here. */
export function ageHeaderLength(archive: Buffer): number {
  const marker = archive.indexOf("\n---");
  if (marker < 0) throw new Error("no age header end found");
  return archive.indexOf("\n", marker + 1) + 1;
}
