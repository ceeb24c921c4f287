/**
 * Shared by the looker-job integration tests: reading an archive back with the real age/zstd/tar CLIs, and
 * reading what the Looker simulator itself recorded (its pid lock and its log), so the tests judge the job by
 * Looker's side of the story rather than by the job's own report.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Decrypts and unpacks `archive` with `age -d | zstd -d | tar -x` into a new directory under `parent`. */
export async function extractArchive(archive: string, identity: string, parent: string): Promise<string> {
  const dir = await mkdtemp(join(parent, "extracted-"));
  const identityFile = join(dir, ".identity");
  await writeFile(identityFile, `${identity}\n`, { mode: 0o600 });
  const out = join(dir, "tree");
  await run("mkdir", [out]);
  await run("bash", [
    "-c",
    'set -o pipefail; age -d -i "$1" "$2" | zstd -d -q | tar -x --numeric-owner -C "$3"',
    "extract",
    identityFile,
    archive,
    out,
  ]);
  return out;
}

export async function readMeta(tree: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(join(tree, "meta", "backup.json"), "utf8")) as Record<string, unknown>;
}

/** The pid Looker keeps in `.tmp/looker.pid` (undefined when the file is missing; it may name a dead process). */
export function simulatorPid(lookerDir: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(join(lookerDir, ".tmp", "looker.pid"), "utf8"), 10);
    return Number.isInteger(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** sha256 of every regular file directly in `dir`, except the names in `skip`. Synchronous on purpose. */
export function hashDirectorySync(dir: string, skip: readonly string[] = []): Record<string, string> {
  const hashes: Record<string, string> = {};
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isFile() || skip.includes(entry.name)) continue;
    hashes[entry.name] = createHash("sha256")
      .update(readFileSync(join(dir, entry.name)))
      .digest("hex");
  }
  return hashes;
}

export interface SimLogEvent {
  readonly at: number;
  readonly message: string;
}

/** The simulator's log (`<lookerDir>/log/looker.log`) as timed events; heartbeats are left out. */
export async function simulatorLog(lookerDir: string): Promise<SimLogEvent[]> {
  const text = await readFile(join(lookerDir, "log", "looker.log"), "utf8");
  const events: SimLogEvent[] = [];
  for (const line of text.split("\n")) {
    const match = /^(\S+) [A-Z]+ (.*)$/.exec(line);
    if (!match || match[2]!.startsWith("heartbeat")) continue;
    events.push({ at: Date.parse(match[1]!), message: match[2]! });
  }
  return events;
}

/** When the simulator last began a start, and when the server of that start came up. */
export function lastBoot(events: readonly SimLogEvent[]): { startingAt: number; upAt: number } {
  const starting = events.findLastIndex((e) => e.message.startsWith("starting looker"));
  const up = events.findIndex((e, i) => i > starting && e.message.startsWith("looker started (pid"));
  if (starting < 0 || up < 0) throw new Error("the simulator log shows no completed start");
  return { startingAt: events[starting]!.at, upAt: events[up]!.at };
}

/** When the simulator last shut down ("looker stopped"). */
export function lastShutdown(events: readonly SimLogEvent[]): number {
  const stopped = events.findLast((e) => e.message === "looker stopped");
  if (!stopped) throw new Error("the simulator log shows no shutdown");
  return stopped.at;
}
