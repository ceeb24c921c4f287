/**
 * The whole backup job around the engine, in the order Looker's backup guide asks for:
 * lock -> pre-command -> [quiet-window guard] -> [stop nodes] -> [keystore-independent recrypt] -> [MySQL dump
 * snapshot] -> [brief-stop: copy looker/.db, restart] -> archive -> restart nodes -> post-command.
 * Every node this run stopped is started again on every path out of here; that promise outranks the backup itself.
 */
import { existsSync } from "node:fs";
import { lstat, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, posix } from "node:path";
import type { ExtraMember } from "../archive/pack.js";
import type { XattrMode } from "../archive/xattr-index.js";
import { encryptBuffer } from "../crypto/age.js";
import type { SigningKey } from "../crypto/ssh-keys.js";
import { ExitCode, LookerBackupError, LookerError } from "../errors.js";
import { Cluster, type StopRecord } from "../looker/cluster.js";
import type { LookerNode } from "../looker/control.js";
import { acquireInstanceLock } from "../looker/instance-lock.js";
import { assertMayStopLooker, type QuietWindow } from "../looker/quiet-window.js";
import { lookerMysqlConnection, type MysqlConnection } from "../mysql/connection.js";
import type { MysqlDumpHandle } from "../mysql/dump.js";
import { dumpMemberPath, type SpooledDump, startMysqlDump } from "../mysql/dump.js";
import { runProcess } from "../remote/local-host.js";
import { keyfileNameFor } from "../store/archive-name.js";
import type { RetentionPolicy, Store } from "../store/store.js";
import { type BackupRequest, type BackupResult, type BackupSelection, runBackup } from "./backup.js";

export type Consistency = "live" | "brief-stop" | "stopped";
/** What the user asks for; `auto` (the default) is resolved once the backend is known. */
export type ConsistencyChoice = Consistency | "auto";

/**
 * `auto`: live for a MySQL backend (mysqldump takes a consistent snapshot while Looker runs), brief-stop for the
 * internal database, whose HSQLDB files Looker writes while it runs: a live copy of them can tear, and a backup that
 * does not restore is worse than the seconds it takes to copy looker/.db with Looker stopped.
 */
export function resolveConsistency(choice: ConsistencyChoice, mysqlBackend: boolean): Consistency {
  if (choice !== "auto") return choice;
  return mysqlBackend ? "live" : "brief-stop";
}

export function stopsLooker(consistency: Consistency, keystoreIndependent: boolean): boolean {
  return consistency !== "live" || keystoreIndependent;
}

/**
 * One backup job, field by field. Each secret is here for the step that uses it: the passphrase and the signing key
 * for the archive (runBackup), the MySQL settings for the dump. The SSH key and the CMK are not: they went into the
 * node connections (looker/nodes.ts), which arrive here as `nodes`.
 */
export interface LookerJobRequest {
  readonly home: string;
  readonly instance: string;
  /** The manifest and backend, resolved once by the caller (the preflight) from the settings and start options. */
  readonly selection: BackupSelection;
  readonly recipients: readonly string[];
  readonly passphrase?: string;
  readonly signingKey?: SigningKey;
  readonly store: Store;
  readonly retention?: RetentionPolicy;
  readonly compressionLevel?: number;
  readonly xattrs?: XattrMode;
  readonly consistency: ConsistencyChoice;
  readonly keystoreIndependent: boolean;
  /** Who can decrypt the key file; default: the archive's recipients. */
  readonly keyfileRecipients?: readonly string[];
  readonly nodes: readonly LookerNode[];
  readonly quietWindow?: QuietWindow;
  readonly forceOutsideWindow?: boolean;
  readonly preCommand?: string;
  readonly postCommand?: string;
  /** Extra environment for the pre/post commands (the `looker-env` input). */
  readonly lookerEnv?: Readonly<Record<string, string>>;
  /** Explicit MySQL settings; merged over looker/looker-db.yml. */
  readonly mysql?: Partial<MysqlConnection>;
  readonly lockDirectory?: string;
  readonly log?: (line: string) => void;
  /**
   * On cancel, leave the nodes this run stopped to the Actions post step instead of starting them here. The runner
   * sends SIGTERM 7.5 s after SIGINT and kills the process tree 2.5 s later: a boot of minutes cannot finish in the
   * main step, while the post step runs in the time a cancelled job has left. The CLI has no post step: it restarts.
   */
  readonly leaveStoppedOnCancel?: boolean;
  /** Persists which nodes this run stopped (the Actions post step restarts them if this process dies). */
  readonly onStopRecord?: (record: StopRecord) => void;
  readonly shouldCommit?: BackupRequest["shouldCommit"];
  readonly onProgress?: BackupRequest["onProgress"];
  /** Told each phase as it begins: "stopping Looker", "starting Looker" and the like, then runBackup's. */
  readonly onPhase?: (phase: string) => void;
  readonly signal?: AbortSignal;
  readonly now?: () => Date;
}

export interface LookerJobResult extends BackupResult {
  readonly downtimeMs: number;
  readonly consistency: Consistency;
  readonly keyfile?: string;
  readonly backupUid?: string;
  readonly mysqlDatabase?: string;
  /**
   * A live backup of the internal database saw looker/.db change between the start and the end of the archive: its
   * files may not fit together (HSQLDB writes .script, .log and .data while Looker runs). Exit 3.
   */
  readonly databaseChanged: boolean;
}

export async function runLookerBackup(request: LookerJobRequest): Promise<LookerJobResult> {
  const log = request.log ?? (() => {});
  const lock = await acquireInstanceLock(
    request.lockDirectory ?? tmpdir(),
    request.instance,
    `backup of ${request.home}`,
  );
  if (lock.tookOverStale)
    log(`took over a stale lock of pid ${lock.tookOverStale.pid} (${lock.tookOverStale.startedAt})`);
  try {
    if (request.preCommand) await runHook("pre-command", request.preCommand, request.lookerEnv, log, true);
    let result: LookerJobResult | undefined;
    try {
      result = await backupAroundLooker(request, log);
    } finally {
      // After a failure too: a post-command typically resumes what the pre-command paused (e.g. schedules).
      if (request.postCommand) {
        const ok = await runHook("post-command", request.postCommand, request.lookerEnv, log, false);
        if (!ok) result?.warnings.push("post-command failed; see the log");
      }
    }
    return result;
  } finally {
    await lock.release();
  }
}

async function backupAroundLooker(
  request: LookerJobRequest,
  log: (line: string) => void,
): Promise<LookerJobResult> {
  const { selection } = request;
  const phase = request.onPhase ?? (() => {});
  const { mysqlBackend } = selection;
  const consistency = resolveConsistency(request.consistency, mysqlBackend);
  if (request.consistency === "auto")
    log(`consistency auto: ${consistency} (${mysqlBackend ? "MySQL backend" : "internal database"})`);
  const stops = stopsLooker(consistency, request.keystoreIndependent);
  if (stops) assertMayStopLooker(request.quietWindow, new Date(), request.forceOutsideWindow ?? false);
  if (stops && request.nodes.length === 0) {
    throw new LookerBackupError("this backup must stop Looker but no Looker node is configured", {
      hint: "configure the node (looker home on this host, or --node user@host)",
    });
  }
  const earlyWarnings: string[] = [];
  if (existsSync(join(request.home, "looker", ".deploying"))) {
    earlyWarnings.push(
      "looker/.deploying exists: a deploy is in progress, so the backup may hold a half-deployed instance (and Looker's start script refuses to start while the file exists)",
    );
  }
  // A live copy of the internal database is consistent only if nothing in looker/.db changed while it was read.
  const watchDatabase = !stops && !mysqlBackend;
  const databaseBefore = watchDatabase ? await databaseFingerprint(request.home) : undefined;
  const cluster = new Cluster(request.nodes, request.onStopRecord, log);
  const scratch = await mkdtemp(join(tmpdir(), "looker-backup-"));
  let dump: MysqlDumpHandle | undefined;
  let spooled: SpooledDump | undefined;
  // Ends a dump still running when the backup fails early, so no mysqldump outlives the run.
  const dumpAbort = new AbortController();
  const dumpSignal = request.signal ? AbortSignal.any([request.signal, dumpAbort.signal]) : dumpAbort.signal;
  try {
    if (stops) {
      phase("stopping Looker");
      await cluster.stopAll();
    }
    if (request.keystoreIndependent) phase("keystore-independent recrypt");
    const keyfile = request.keystoreIndependent ? await makeKeyfile(request.nodes[0]!) : undefined;
    const mysql = mysqlBackend
      ? await lookerMysqlConnection(request.home, request.mysql, selection.dbConfigFile)
      : undefined;
    if (mysql) {
      dump = startMysqlDump(mysql, { spoolDir: scratch, signal: dumpSignal });
      dump.done.catch(() => undefined); // awaited as an extra member below; a failure there fails the backup
      phase("MySQL snapshot");
      await dump.snapshotTaken;
      log(`mysql: consistent snapshot of ${mysql.database} taken`);
    }
    const substitutes = new Map<string, string>();
    if (consistency === "brief-stop") {
      if (!mysqlBackend) {
        phase("copying looker/.db");
        substitutes.set("looker/.db", await copyDatabaseDirectory(request.home, scratch));
      }
      phase("starting Looker");
      await cluster.restartStopped(request.signal);
      log(`brief stop: Looker was down ${cluster.downtimeMs} ms`);
    }
    const result = await runBackup({
      home: request.home,
      instance: request.instance,
      selection: { manifest: selection.manifest, mysqlBackend },
      recipients: request.recipients,
      passphrase: request.passphrase,
      signingKey: request.signingKey,
      store: request.store,
      retention: request.retention,
      compressionLevel: request.compressionLevel,
      xattrs: request.xattrs,
      substitutes,
      lookerMeta: {
        consistency,
        keystoreIndependent: request.keystoreIndependent,
        ...(keyfile ? { backupUid: keyfile.backupUid } : {}),
        // Known only for a brief stop, which is over before the archive's first member is written.
        ...(consistency === "brief-stop" ? { downtimeMs: cluster.downtimeMs } : {}),
      },
      extraMembers: dump ? () => spooledDumpMembers(dump!) : undefined,
      companions: keyfile
        ? (name) => [{ name: keyfileNameFor(name), content: keyfile.encrypted }]
        : undefined,
      shouldCommit: request.shouldCommit,
      ...(selection.measured ? { expectedBytes: selection.measured.bytes } : {}),
      onProgress: request.onProgress,
      onPhase: request.onPhase,
      signal: request.signal,
      now: request.now,
    });
    if (cluster.anyStoppedByUs) {
      phase("starting Looker");
      await cluster.restartStopped(request.signal);
    }
    const databaseChanged =
      databaseBefore !== undefined && databaseBefore !== (await databaseFingerprint(request.home));
    if (databaseChanged) {
      result.warnings.push(
        "looker/.db changed while this live backup read it: the internal database in the archive may not restore (use consistency: brief-stop)",
      );
    }
    result.warnings.unshift(...earlyWarnings);
    return {
      ...result,
      // Warnings found around the archive (a torn database, a deploy in progress) count like the archive's own.
      exitCode: result.warnings.length > 0 ? ExitCode.Warnings : result.exitCode,
      databaseChanged,
      downtimeMs: cluster.downtimeMs,
      consistency,
      ...(result.companions[0] ? { keyfile: result.companions[0].location } : {}),
      ...(keyfile ? { backupUid: keyfile.backupUid } : {}),
      ...(mysql ? { mysqlDatabase: mysql.database } : {}),
    };
  } finally {
    // Whatever happened above, Looker comes back up. A failure to start outranks any other error: exit 5.
    if (cluster.anyStoppedByUs) {
      if (request.signal?.aborted && request.leaveStoppedOnCancel)
        log(`cancelled: the post step starts Looker on ${cluster.stoppedNames.join(", ")}`);
      else {
        phase("starting Looker");
        await cluster.restartStopped();
      }
    }
    dumpAbort.abort();
    await dump?.done.catch(() => undefined);
    await spooled?.dispose();
    await rm(scratch, { recursive: true, force: true });
  }

  /** Waits for the dump that ran alongside the home; it becomes the archive's `mysql/<db>.sql` member. */
  async function spooledDumpMembers(handle: MysqlDumpHandle): Promise<ExtraMember[]> {
    spooled = await handle.done;
    return [dumpMember(spooled)];
  }

  async function makeKeyfile(primary: LookerNode) {
    const host = primary.config.host;
    const dir = await host.makeTempDir("looker-keyfile-");
    try {
      const path = posix.join(dir, "keyfile.json");
      await primary.generateKeyfile(path);
      await primary.keystoreIndependentRecrypt(path);
      const clear = await host.readFile(path);
      const backupUid = parseBackupUid(clear);
      const encrypted = await encryptBuffer(clear, {
        recipients: [...(request.keyfileRecipients ?? request.recipients)],
      });
      clear.fill(0);
      log(`keystore-independent recrypt done (backup_uid ${backupUid})`);
      return { backupUid, encrypted };
    } finally {
      await host.remove(dir);
    }
  }
}

/**
 * The key file as Looker documents it: {"dbmk":"<base64 of 256 bits>\n","backup_uid":"<base64>"} (the newline is
 * inside the string). Proves generate_keyfile_for_backup wrote a usable file; returns the backup_uid for the meta.
 */
export function parseBackupUid(keyfile: Buffer): string {
  let parsed: { backup_uid?: unknown; dbmk?: unknown } | undefined;
  try {
    parsed = JSON.parse(keyfile.toString("utf8")) as { backup_uid?: unknown; dbmk?: unknown };
  } catch {
    // reported below
  }
  const uid = parsed?.backup_uid;
  if (typeof uid !== "string" || !/^[A-Za-z0-9+/=._-]{1,128}$/.test(uid)) {
    throw new LookerError("generate_keyfile_for_backup wrote a key file without a usable backup_uid");
  }
  const dbmk = typeof parsed?.dbmk === "string" ? parsed.dbmk.trim() : "";
  if (!/^[A-Za-z0-9+/]{43}=$/.test(dbmk) || Buffer.from(dbmk, "base64").length !== 32) {
    throw new LookerError(
      "generate_keyfile_for_backup wrote a key file whose dbmk is not base64 of 256 bits",
    );
  }
  return uid;
}

function dumpMember(dump: SpooledDump): ExtraMember {
  return {
    path: dumpMemberPath(dump.database),
    size: dump.size,
    mode: 0o600,
    mtime: Date.now() / 1000,
    body: () => dump.open(),
  };
}

/**
 * Name, size, mtime and inode of every file in looker/.db (the lock file aside): equal before and after a live backup
 * only if HSQLDB wrote nothing meanwhile. Per-file "changed while read" checks miss a file that changed after it was
 * read while another was still being read, which tears the set just the same.
 */
async function databaseFingerprint(home: string): Promise<string> {
  const dir = join(home, "looker", ".db");
  const names = (await readdir(dir).catch(() => [] as string[]))
    .filter((name) => name !== "looker.lck")
    .sort();
  const parts: string[] = [];
  for (const name of names) {
    const info = await lstat(join(dir, name)).catch(() => undefined);
    parts.push(info ? `${name}:${info.size}:${info.mtimeMs}:${info.ino}` : `${name}:gone`);
  }
  return parts.join("\n");
}

/** `cp -a` keeps owners, modes, times and hard links: the copy is archived as if it were the original. */
async function copyDatabaseDirectory(home: string, scratch: string): Promise<string> {
  const copy = join(scratch, "db-copy");
  const result = await runProcess("cp", ["-a", "--", join(home, "looker", ".db"), copy]);
  if (result.code !== 0) {
    throw new LookerBackupError(
      `could not copy looker/.db for a brief-stop backup: ${result.stderr.trim()}`,
      {
        hint: "check free space in the temp directory (TMPDIR), or use consistency: stopped",
      },
    );
  }
  await rm(join(copy, "looker.lck"), { force: true });
  return copy;
}

async function runHook(
  name: string,
  script: string,
  env: Readonly<Record<string, string>> | undefined,
  log: (line: string) => void,
  mustSucceed: boolean,
): Promise<boolean> {
  log(`${name}: ${script}`);
  const result = await runProcess("/bin/sh", ["-c", script], {
    ...(env ? { env } : {}),
    onLine: (line) => log(`${name}> ${line}`),
  });
  if (result.code === 0) return true;
  if (mustSucceed) {
    throw new LookerBackupError(`${name} failed with exit ${result.code}`, {
      hint: "fix the command; nothing was stopped or written",
    });
  }
  log(`${name} failed with exit ${result.code}`);
  return false;
}
