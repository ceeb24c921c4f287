/**
 * Everything that can fail cheaply, checked before Looker is touched: a backup that would fail at upload must not
 * first stop Looker and build a multi-GB archive. Each check is one row of the job summary's first table; the first
 * failure ends the preflight with its own error (and exit code), the rows after it marked as not run.
 */
import { randomBytes } from "node:crypto";
import { mkdir, rm, statfs, writeFile } from "node:fs/promises";
import { join, posix } from "node:path";
import { describeError, InputError, LookerBackupError } from "../errors.js";
import type { LookerNode } from "../looker/control.js";
import { assertMayStopLooker, isInsideWindow, type QuietWindow } from "../looker/quiet-window.js";
import { lookerMysqlConnection, type MysqlConnection } from "../mysql/connection.js";
import { pingMysql } from "../mysql/restore.js";
import { formatBytes } from "../report/format.js";
import { artifactServiceUnavailable } from "../store/artifact-store.js";
import { DirStore } from "../store/dir-store.js";

export interface PreflightCheck {
  readonly check: string;
  readonly status: "ok" | "failed" | "not run";
  readonly detail: string;
}

export type PreflightStore =
  | { readonly kind: "artifact" }
  | { readonly kind: "dir"; readonly directory: string; readonly instance: string };

export interface PreflightRequest {
  /** What the inputs came to (already validated), for the first row. */
  readonly inputs: string;
  readonly stopsLooker: boolean;
  readonly quietWindow?: QuietWindow;
  readonly forceOutsideWindow?: boolean;
  readonly store: PreflightStore;
  /** Connects to every node (SSH host keys are verified on connect); the caller keeps the connections. */
  readonly connectNodes: () => Promise<readonly LookerNode[]>;
  readonly home: string;
  /** Explicit MySQL settings, merged over looker/looker-db.yml when the backend is MySQL. */
  readonly mysql: Partial<MysqlConnection>;
  /** The MySQL backend and its connection file (`-d F` in Looker's start options), or undefined: internal database. */
  readonly mysqlBackend: () => Promise<{ readonly dbConfigFile?: string } | undefined>;
  readonly now?: Date;
  readonly env?: NodeJS.ProcessEnv;
}

/** Thrown by runPreflight: the failing check's own error, with every row for the summary. */
export class PreflightError extends LookerBackupError {
  constructor(
    readonly checks: readonly PreflightCheck[],
    readonly failure: unknown,
  ) {
    super(`preflight failed: ${describeError(failure).split("\n")[0]}`, {
      exitCode: failure instanceof LookerBackupError ? failure.exitCode : undefined,
      hint: failure instanceof LookerBackupError ? failure.hint : undefined,
      cause: failure,
    });
  }
}

/** Runs the checks in order; resolves with every row when all pass. */
export async function runPreflight(request: PreflightRequest): Promise<PreflightCheck[]> {
  const env = request.env ?? process.env;
  const steps: [string, () => Promise<string> | string][] = [
    ["inputs", () => request.inputs],
    ["quiet window", () => quietWindow(request)],
    ["store", () => (request.store.kind === "artifact" ? artifactService(env) : dirStore(request.store))],
    ["Looker nodes", async () => lookerNodes(await request.connectNodes(), request.stopsLooker)],
    ["database", () => database(request)],
  ];
  const checks: PreflightCheck[] = [];
  for (const [index, [check, run]] of steps.entries()) {
    try {
      checks.push({ check, status: "ok", detail: await run() });
    } catch (error) {
      checks.push({ check, status: "failed", detail: describeError(error).split("\n")[0]! });
      for (const [later] of steps.slice(index + 1))
        checks.push({ check: later, status: "not run", detail: "" });
      throw new PreflightError(checks, error);
    }
  }
  return checks;
}

function quietWindow(request: PreflightRequest): string {
  if (!request.stopsLooker) return "live backup: Looker is not stopped";
  const window = request.quietWindow;
  if (window === undefined) return "no quiet window set: Looker may be stopped at any time";
  const now = request.now ?? new Date();
  assertMayStopLooker(window, now, request.forceOutsideWindow ?? false);
  return isInsideWindow(window, now)
    ? `inside ${window.text} (${window.timeZone})`
    : `outside ${window.text} (${window.timeZone}), forced`;
}

/** The artifact service this job step would upload to (artifact-store.ts says what it needs). */
function artifactService(env: NodeJS.ProcessEnv): string {
  const unavailable = artifactServiceUnavailable(env);
  if (unavailable !== undefined) {
    throw new InputError(
      `store: artifact cannot upload here: ${unavailable}`,
      "use `store: dir` with `store-dir` (a local or mounted directory); artifacts need a job step on GitHub.com or GHE.com",
    );
  }
  return "GitHub artifact service available";
}

/**
 * Writable, and with room for the archive. The estimate is the newest archive of this instance already in the store
 * (an archive grows slowly between two nights), with a quarter more as margin; without one only writability counts.
 */
async function dirStore(store: { directory: string; instance: string }): Promise<string> {
  const dirs = new DirStore(store.directory);
  const probe = join(store.directory, `.preflight-${randomBytes(6).toString("hex")}`);
  try {
    await mkdir(store.directory, { recursive: true, mode: 0o700 });
    await writeFile(probe, "", { flag: "wx", mode: 0o600 });
  } catch (error) {
    throw new InputError(
      `cannot write to store-dir ${store.directory}: ${(error as Error).message}`,
      "create the directory and make it writable by the runner's user, or choose another store-dir",
      error,
    );
  } finally {
    // Under a path that is no directory, rm fails too (ENOTDIR): the error above is the one to report.
    await rm(probe, { force: true }).catch(() => undefined);
  }
  const fs = await statfs(store.directory);
  const free = fs.bavail * fs.bsize;
  const [previous] = await dirs.list(store.instance);
  if (previous === undefined)
    return `${store.directory} writable, ${formatBytes(free)} free (no earlier archive to estimate from)`;
  const needed = Math.ceil(previous.size * 1.25);
  if (free < needed) {
    throw new InputError(
      `store-dir ${store.directory} has ${formatBytes(free)} free, but the last archive of ${store.instance} was ${formatBytes(previous.size)} (needs about ${formatBytes(needed)})`,
      "free space there (keep-last prunes after a successful backup), or choose another store-dir",
    );
  }
  return `${store.directory} writable, ${formatBytes(free)} free for about ${formatBytes(needed)}`;
}

/**
 * The `looker` script must be there to stop and start each node (SSH host keys were checked on connect), and a
 * backup that stops Looker must be able to start it again: the script refuses every start while `.deploying` exists.
 */
async function lookerNodes(nodes: readonly LookerNode[], stopsLooker: boolean): Promise<string> {
  if (nodes.length === 0) return "none configured";
  const names: string[] = [];
  for (const node of nodes) {
    const script = posix.join(node.config.lookerDir, "looker");
    const result = await node.config.host.run(["test", "-x", script], { timeoutMs: 30_000 });
    if (result.code !== 0) {
      throw new LookerBackupError(`${node.name}: ${script} is missing or not executable`, {
        hint: "check the home input (or the node's looker user) and that Looker is installed there",
      });
    }
    const deploying = posix.join(node.config.lookerDir, ".deploying");
    if (
      stopsLooker &&
      (await node.config.host.run(["test", "-e", deploying], { timeoutMs: 30_000 })).code === 0
    ) {
      throw new LookerBackupError(
        `${node.name}: ${deploying} exists, and Looker's start script refuses to start while it does: a stopped Looker would stay down`,
        { hint: "let the deploy finish (it removes the file), or use consistency: live for this run" },
      );
    }
    names.push(node.name);
  }
  return `${names.join(", ")}: reachable, looker script present`;
}

async function database(request: PreflightRequest): Promise<string> {
  const backend = await request.mysqlBackend();
  if (backend === undefined) return "internal database (looker/.db)";
  const connection = await lookerMysqlConnection(request.home, request.mysql, backend.dbConfigFile);
  await pingMysql(connection);
  return `MySQL ${connection.database} at ${connection.host}:${connection.port} answers`;
}
