/**
 * Everything that can fail cheaply, checked before Looker is touched: a backup that would fail at upload must not
 * first stop Looker and build a multi-GB archive. Each check is one row of the job summary's first table; the first
 * failure ends the preflight with its own error (and exit code), the rows after it marked as not run.
 */

import { randomBytes } from "node:crypto";
import { lstat, mkdir, rm, statfs, writeFile } from "node:fs/promises";
import { join, posix } from "node:path";
import { checkXattrTools, type XattrMode } from "../archive/xattr-index.js";
import { describeError, InputError, LookerBackupError } from "../errors.js";
import type { LookerNode } from "../looker/control.js";
import { type ConnectedNodes, connectNodes, type NodeSettings } from "../looker/nodes.js";
import { assertMayStopLooker, isInsideWindow, type QuietWindow } from "../looker/quiet-window.js";
import { type LookerStartOptions, readStartOptions } from "../looker/start-config.js";
import type { Manifest } from "../manifest/rules.js";
import { measureSelection, type SelectionMeasure } from "../manifest/select.js";
import type { BackendChoice } from "../manifest/user-manifest.js";
import { lookerMysqlConnection, type MysqlConnection } from "../mysql/connection.js";
import { pingMysql } from "../mysql/restore.js";
import { formatBytes } from "../runtime/format.js";
import { artifactServiceUnavailable } from "../store/artifact-store.js";
import { DirStore } from "../store/dir-store.js";
import { type BackupSelection, resolveSelection } from "./backup.js";
import { type ConsistencyChoice, resolveConsistency, stopsLooker } from "./looker-job.js";

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
  /** Extended attributes: with true, getfattr must be installed. */
  readonly xattrs?: XattrMode;
  readonly consistency: ConsistencyChoice;
  readonly keystoreIndependent: boolean;
  readonly quietWindow?: QuietWindow;
  readonly forceOutsideWindow?: boolean;
  readonly store: PreflightStore;
  /** Connects to every node (SSH host keys are verified on connect); the caller keeps the connections. */
  readonly connectNodes: () => Promise<readonly LookerNode[]>;
  readonly home: string;
  /** Explicit MySQL settings, merged over looker/looker-db.yml when the backend is MySQL. */
  readonly mysql: Partial<MysqlConnection>;
  /** What the backup will select (after the nodes are connected: Looker's start options feed it). */
  readonly selection: () => Promise<BackupSelection>;
  /** Told the selection's measure (the "selection" row): what the backup will read, and what it leaves out. */
  readonly onMeasured?: (measure: SelectionMeasure) => void;
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
  // Whether Looker is stopped depends on the backend (consistency auto), so that check comes last.
  let nodes: readonly LookerNode[] = [];
  let selection: BackupSelection | undefined;
  const steps: [string, () => Promise<string> | string][] = [
    ["inputs", () => `${request.inputs}; ${checkXattrTools(request.xattrs ?? "auto")}`],
    ["store", () => (request.store.kind === "artifact" ? artifactService(env) : dirStore(request.store))],
    [
      "Looker nodes",
      async () => {
        nodes = await request.connectNodes();
        return lookerNodes(nodes);
      },
    ],
    [
      "required files",
      async () => {
        selection = await request.selection();
        return requiredPaths(request.home, selection.manifest);
      },
    ],
    [
      "selection",
      async () => {
        const measure = await measureSelection({ home: request.home, manifest: selection!.manifest });
        request.onMeasured?.(measure);
        return describeMeasure(measure);
      },
    ],
    ["database", () => database(request, selection!)],
    ["stopping Looker", () => stoppingLooker(request, nodes, selection!.mysqlBackend)],
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

/**
 * What the walk found, as plan would say it: the bytes to read (the total the backup's progress counts against) and
 * what the manifest leaves out.
 */
function describeMeasure(measure: SelectionMeasure): string {
  const excluded = measure.tallies.filter((tally) => tally.action === "exclude");
  const files = excluded.reduce((sum, tally) => sum + tally.files, 0);
  const bytes = excluded.reduce((sum, tally) => sum + tally.bytes, 0);
  return `${measure.files} files, ${formatBytes(measure.bytes)} to read; ${files} files, ${formatBytes(bytes)} excluded`;
}

/**
 * A backup that stops Looker must be allowed to now (the quiet window) and able to start it again: Looker's script
 * refuses every start while `.deploying` exists, so a stopped Looker would stay down.
 */
async function stoppingLooker(
  request: PreflightRequest,
  nodes: readonly LookerNode[],
  mysqlBackend: boolean,
): Promise<string> {
  const consistency = resolveConsistency(request.consistency, mysqlBackend);
  const mode = request.consistency === "auto" ? `${consistency} (auto)` : consistency;
  if (!stopsLooker(consistency, request.keystoreIndependent)) return `${mode}: Looker is not stopped`;
  for (const node of nodes) {
    const deploying = posix.join(node.config.lookerDir, ".deploying");
    if ((await node.config.host.run(["test", "-e", deploying], { timeoutMs: 30_000 })).code === 0) {
      throw new LookerBackupError(
        `${node.name}: ${deploying} exists, and Looker's start script refuses to start while it does: a stopped Looker would stay down`,
        { hint: "let the deploy finish (it removes the file), or use consistency: live for this run" },
      );
    }
  }
  const window = request.quietWindow;
  if (window === undefined) return `${mode}: no quiet window set, Looker may be stopped at any time`;
  const now = request.now ?? new Date();
  assertMayStopLooker(window, now, request.forceOutsideWindow ?? false);
  return isInsideWindow(window, now)
    ? `${mode}: inside the quiet window ${window.text} (${window.timeZone})`
    : `${mode}: outside the quiet window ${window.text} (${window.timeZone}), forced`;
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
      `cannot write to the store directory ${store.directory}: ${(error as Error).message}`,
      "create the directory and make it writable by this user, or choose another one",
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
      `the store directory ${store.directory} has ${formatBytes(free)} free, but the last archive of ${store.instance} was ${formatBytes(previous.size)} (needs about ${formatBytes(needed)})`,
      "free space there (keep-last prunes after a successful backup), or choose another directory",
    );
  }
  return `${store.directory} writable, ${formatBytes(free)} free for about ${formatBytes(needed)}`;
}

/** The `looker` script must be there to stop and start each node (SSH host keys were checked on connect). */
async function lookerNodes(nodes: readonly LookerNode[]): Promise<string> {
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
    names.push(node.name);
  }
  return `${names.join(", ")}: reachable, looker script present`;
}

/**
 * Required paths that are plain paths (no glob) must exist: a missing SSL file or shared storage directory fails
 * here, not after Looker was stopped. Globs and readability are the selection's to check as it walks.
 */
async function requiredPaths(home: string, manifest: Manifest): Promise<string> {
  const paths = [
    ...manifest.rules
      .filter((rule) => rule.action === "include" && rule.required && !/[*?[]/.test(rule.pattern))
      .map((rule) => ({ id: rule.id, path: join(home, rule.pattern) })),
    ...manifest.outside.filter((outside) => outside.required).map(({ id, path }) => ({ id, path })),
  ];
  for (const { id, path } of paths) {
    await lstat(path).catch((error: NodeJS.ErrnoException) => {
      throw new InputError(
        `required path ${path} (${id}) cannot be read: ${error.code ?? error.message}`,
        "restore it, or mark it optional in the manifest if this instance has none",
      );
    });
  }
  return `${paths.length} required path(s) present`;
}

async function database(request: PreflightRequest, selection: BackupSelection): Promise<string> {
  if (!selection.mysqlBackend) return "internal database (looker/.db)";
  const connection = await lookerMysqlConnection(request.home, request.mysql, selection.dbConfigFile);
  await pingMysql(connection);
  return `MySQL ${connection.database} at ${connection.host}:${connection.port} answers`;
}

export interface BackupPreflightOptions {
  readonly inputs: string;
  readonly xattrs?: XattrMode;
  readonly home: string;
  readonly consistency: ConsistencyChoice;
  readonly keystoreIndependent: boolean;
  readonly quietWindow?: QuietWindow | undefined;
  readonly forceOutsideWindow?: boolean;
  readonly store: PreflightStore;
  readonly manifestFile?: string | undefined;
  readonly sslFiles?: readonly string[];
  readonly backend?: BackendChoice;
  readonly mysql: Partial<MysqlConnection>;
  /** How to reach the nodes (connectNodes). */
  readonly nodes: NodeSettings;
  readonly log?: (line: string) => void;
}

export interface BackupPreflight {
  readonly checks: PreflightCheck[];
  /** The connections the backup goes on with; the caller closes them. */
  readonly connected: ConnectedNodes;
  readonly startOptions: LookerStartOptions;
  /**
   * What the backup reads, resolved here once: the backup takes it as it is, without reading the manifest again; with
   * its measure (the walk made here, before Looker is touched).
   */
  readonly selection: BackupSelection;
}

/**
 * The preflight of a backup, the same for the action and the CLI: connects to the nodes, reads Looker's start options
 * (which can make the backend MySQL or add a cluster's shared storage) and resolves the selection from them. On a
 * failure the connections are closed and a PreflightError names every check.
 */
export async function runBackupPreflight(options: BackupPreflightOptions): Promise<BackupPreflight> {
  let connected: ConnectedNodes | undefined;
  let startOptions: LookerStartOptions | undefined;
  let selection: BackupSelection | undefined;
  let measured: SelectionMeasure | undefined;
  try {
    const checks = await runPreflight({
      inputs: options.inputs,
      ...(options.xattrs ? { xattrs: options.xattrs } : {}),
      consistency: options.consistency,
      keystoreIndependent: options.keystoreIndependent,
      ...(options.quietWindow ? { quietWindow: options.quietWindow } : {}),
      ...(options.forceOutsideWindow ? { forceOutsideWindow: true } : {}),
      store: options.store,
      connectNodes: async () => {
        connected = await connectNodes(options.nodes, options.log);
        startOptions = await readStartOptions(connected.nodes[0]!);
        return connected.nodes;
      },
      home: options.home,
      mysql: options.mysql,
      selection: async () => {
        selection = await resolveSelection(
          {
            home: options.home,
            ...(options.manifestFile ? { manifestFile: options.manifestFile } : {}),
            ...(options.sslFiles ? { sslFiles: options.sslFiles } : {}),
            ...(options.backend ? { backend: options.backend } : {}),
          },
          startOptions,
        );
        return selection;
      },
      onMeasured: (measure) => {
        measured = measure;
      },
    });
    return {
      checks,
      connected: connected!,
      startOptions: startOptions!,
      selection: { ...selection!, ...(measured ? { measured } : {}) },
    };
  } catch (error) {
    await connected?.close();
    throw error;
  }
}
