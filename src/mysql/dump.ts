/**
 * A consistent MySQL dump, streamed from the real `mysqldump` into an encrypted spool file.
 *
 * The archive needs the dump's size before its tar header, so the dump is spooled first; it is age-encrypted
 * on the way to disk with a key that exists only in this process's memory, so no clear-text dump ever touches
 * the disk and a spool left behind by a crash is unreadable. `--single-transaction` gives a consistent
 * snapshot without locking Looker out; `snapshotTaken` tells the caller when it is established (mysqldump
 * starts the transaction before it writes the first table), so Looker can be restarted while the rest streams.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createAgeDecryptStream, createAgeEncryptStream } from "../crypto/age.js";
import { generateIdentity } from "../crypto/age-keys.js";
import { CancelledError, LookerBackupError } from "../errors.js";
import { childEnvironment } from "../runtime/child-env.js";
import {
  describeMysqlConnection,
  type MysqlConnection,
  validateDatabaseName,
  validateMysqlConnection,
} from "./connection.js";
import { defaultsFileArgument, withDefaultsFile } from "./defaults-file.js";

export interface SpooledDump {
  readonly database: string;
  /** Plaintext bytes of the dump. */
  readonly size: number;
  /** sha256 (hex) of the plaintext dump. */
  readonly sha256: string;
  /** Decrypts the spool as a stream; may be called more than once until dispose(). */
  open(): AsyncIterable<Buffer>;
  /** Removes the spool file. Idempotent. */
  dispose(): Promise<void>;
}

export interface MysqlDumpHandle {
  /**
   * Resolves once mysqldump's consistent snapshot is established; rejects like `done` if it never is.
   * Seen from the output, it can lag the snapshot by one stdio buffer of mysqldump (4 KiB), never precede it.
   */
  readonly snapshotTaken: Promise<void>;
  /** The complete dump; rejects (and leaves no spool) on any failure, abort included. */
  readonly done: Promise<SpooledDump>;
}

export interface MysqlDumpOptions {
  /** Directory for the encrypted spool file (0600). */
  readonly spoolDir: string;
  readonly signal?: AbortSignal | undefined;
  /** Called once, when the snapshot is established (same moment as `snapshotTaken`). */
  readonly onSnapshot?: (() => void) | undefined;
  /** The mysqldump executable; default `mysqldump` from PATH. */
  readonly command?: string | undefined;
}

/**
 * The database name alone, not `--databases`: the dump then has no CREATE DATABASE / USE and loads into a
 * database of any name (a drill never touches the production database).
 */
export const MYSQLDUMP_ARGS: readonly string[] = [
  "--single-transaction",
  "--routines",
  "--triggers",
  "--events",
  "--hex-blob",
  "--default-character-set=utf8mb4",
  "--no-tablespaces",
  "--skip-dump-date",
];

/** mysqldump writes one of these first for each object, after START TRANSACTION WITH CONSISTENT SNAPSHOT. */
const SNAPSHOT_MARKER =
  /^-- (Table structure for table|Temporary table structure for view|Temporary view structure for view|Final view structure for view|Dumping routines for database|Dumping events for database) /m;
/** The last line of a dump that ran to the end; a dump cut short never has it. */
const COMPLETED_MARKER = /\n-- Dump completed[^\n]*\n\s*$/;
const MARKER_CARRY = 128;
const OUTPUT_TAIL = 256;
const STDERR_TAIL = 4096;
const READ_SIZE = 1 << 20;

/** The archive member holding the dump of `database`. */
export function dumpMemberPath(database: string): string {
  return `mysql/${validateDatabaseName(database)}.sql`;
}

/** Starts mysqldump at once; throws InputError synchronously for an invalid connection. */
export function startMysqlDump(conn: MysqlConnection, opts: MysqlDumpOptions): MysqlDumpHandle {
  validateMysqlConnection(conn);
  let markSnapshot = () => {};
  let failSnapshot: (error: unknown) => void = () => {};
  const snapshotTaken = new Promise<void>((resolve, reject) => {
    markSnapshot = resolve;
    failSnapshot = reject;
  });
  // Callers may await only `done`; a failure before the snapshot must not become an unhandled rejection.
  snapshotTaken.catch(() => {});
  let snapshotSeen = false;
  const onSnapshot = () => {
    if (snapshotSeen) return;
    snapshotSeen = true;
    markSnapshot();
    opts.onSnapshot?.();
  };
  const done = withDefaultsFile(conn, (file) => runDump(conn, file, opts, onSnapshot));
  done.catch(failSnapshot);
  return { snapshotTaken, done };
}

interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: Error;
}

async function runDump(
  conn: MysqlConnection,
  defaultsFile: string,
  opts: MysqlDumpOptions,
  onSnapshot: () => void,
): Promise<SpooledDump> {
  const what = `mysqldump of database "${conn.database}" (${describeMysqlConnection(conn)})`;
  if (opts.signal?.aborted) throw new CancelledError(`${what} cancelled`);
  const key = generateIdentity();
  const spoolPath = join(opts.spoolDir, `mysql-${conn.database}-${randomBytes(8).toString("hex")}.sql.age`);
  const child = spawn(
    opts.command ?? "mysqldump",
    [defaultsFileArgument(defaultsFile), ...MYSQLDUMP_ARGS, conn.database],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: childEnvironment(),
    },
  );
  const exited = exitOf(child);
  const stderr = new TailBuffer(STDERR_TAIL);
  child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
  const observer = new DumpObserver(onSnapshot);
  try {
    await pipeline(
      child.stdout,
      observer,
      createAgeEncryptStream({ recipients: [key.recipient] }),
      createWriteStream(spoolPath, { mode: 0o600, flags: "wx" }),
      { signal: opts.signal },
    );
    const exit = await exited;
    const problem = problemOf(exit, observer);
    if (problem !== undefined)
      throw new LookerBackupError(`${what} failed: ${problem}${detail(stderr, conn)}`, dumpHint(exit));
    onSnapshot(); // an empty database has no table line; a complete dump had its snapshot all the same
    return spooledDump(conn.database, spoolPath, key.identity, observer);
  } catch (error) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    const exit = await exited;
    await rm(spoolPath, { force: true });
    if (opts.signal?.aborted) throw new CancelledError(`${what} cancelled`);
    if (error instanceof LookerBackupError) throw error;
    const reason = exit.error ?? error;
    throw new LookerBackupError(`${what} failed: ${messageOf(reason)}${detail(stderr, conn)}`, {
      ...dumpHint(exit),
      cause: reason,
    });
  }
}

function problemOf(exit: ChildExit, observer: DumpObserver): string | undefined {
  if (exit.error !== undefined) return messageOf(exit.error);
  if (exit.signal !== null) return `mysqldump was killed by ${exit.signal}`;
  if (exit.code !== 0) return `mysqldump exited with code ${exit.code}`;
  if (!observer.completed) return 'the output ends without the "-- Dump completed" line (truncated dump)';
  return undefined;
}

function dumpHint(exit: ChildExit): { hint: string } {
  if ((exit.error as NodeJS.ErrnoException | undefined)?.code === "ENOENT") {
    return { hint: "install the MySQL/MariaDB client on the runner (apt-get install mariadb-client)" };
  }
  return {
    hint: "check the mysql host, port, user and password, that the user may read the database (SELECT, SHOW VIEW, TRIGGER, EVENT), and that the server stayed up",
  };
}

/** The tail of mysqldump's stderr for the message, with the password masked should it ever appear. */
function detail(stderr: TailBuffer, conn: MysqlConnection): string {
  let text = stderr.text().trim();
  if (conn.password.length >= 4) text = text.split(conn.password).join("***");
  return text === "" ? "" : `\nmysqldump said: ${text}`;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function exitOf(child: ChildProcess): Promise<ChildExit> {
  return new Promise((resolve) => {
    child.once("error", (error) => resolve({ code: null, signal: null, error }));
    child.once("close", (code, signal) => resolve({ code, signal }));
  });
}

function spooledDump(
  database: string,
  spoolPath: string,
  identity: string,
  observer: DumpObserver,
): SpooledDump {
  let disposed = false;
  return {
    database,
    size: observer.size,
    sha256: observer.sha256,
    open: () => {
      if (disposed)
        throw new LookerBackupError(`the spooled dump of database "${database}" was already disposed`);
      return decryptSpool(spoolPath, identity);
    },
    dispose: async () => {
      disposed = true;
      await rm(spoolPath, { force: true });
    },
  };
}

async function* decryptSpool(spoolPath: string, identity: string): AsyncGenerator<Buffer> {
  const decrypt = createAgeDecryptStream({ identities: [identity] });
  const source = createReadStream(spoolPath, { highWaterMark: READ_SIZE });
  // A read error destroys `decrypt` with it, so the loop below throws; an early break destroys `source`.
  source.on("error", (error) => decrypt.destroy(error));
  source.pipe(decrypt);
  try {
    for await (const chunk of decrypt) yield chunk as Buffer;
  } finally {
    source.destroy();
  }
}

/** Counts and hashes the clear-text dump as it passes, and watches for the snapshot and completion lines. */
class DumpObserver extends Transform {
  size = 0;
  completed = false;
  readonly #hash = createHash("sha256");
  readonly #onSnapshot: () => void;
  #snapshotSeen = false;
  /** The last bytes seen (latin1, one char a byte). */
  #carry = "";
  #digest: string | undefined;

  constructor(onSnapshot: () => void) {
    super();
    this.#onSnapshot = onSnapshot;
  }

  get sha256(): string {
    this.#digest ??= this.#hash.digest("hex");
    return this.#digest;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.size += chunk.length;
    this.#hash.update(chunk);
    // Until the snapshot line is found the whole chunk is searched; after it only the tail matters, for the
    // completion line. The carried bytes let a marker split across two chunks still be found.
    const text = this.#snapshotSeen ? chunk.subarray(-OUTPUT_TAIL) : chunk;
    const window = this.#carry + text.toString("latin1");
    if (!this.#snapshotSeen && SNAPSHOT_MARKER.test(window)) {
      this.#snapshotSeen = true;
      this.#onSnapshot();
    }
    this.#carry = window.slice(-Math.max(MARKER_CARRY, OUTPUT_TAIL));
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.completed = COMPLETED_MARKER.test(this.#carry);
    callback();
  }
}

/** Keeps the last `limit` bytes written to it. */
class TailBuffer {
  #chunks: Buffer[] = [];
  #length = 0;

  constructor(private readonly limit: number) {}

  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    while (this.#length - (this.#chunks[0]?.length ?? 0) >= this.limit) {
      this.#length -= this.#chunks.shift()?.length ?? 0;
    }
  }

  text(): string {
    return Buffer.concat(this.#chunks).subarray(-this.limit).toString("utf8");
  }
}
