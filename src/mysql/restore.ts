/**
 * Loading a dump into a named database with the real `mysql` client, and pointing a restored
 * looker-db.yml at it. The dump names no database (see MYSQLDUMP_ARGS), so it lands wherever it is loaded:
 * a drill loads it into its own database and rewrites the restored looker-db.yml to match, so a restored
 * copy never talks to production.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chown, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { isMap, isScalar, parseDocument } from "yaml";
import { CancelledError, InputError, LookerBackupError } from "../errors.js";
import { childEnvironment } from "../runtime/child-env.js";
import {
  describeMysqlConnection,
  LOOKER_DB_YML_KEYS,
  type MysqlConnection,
  parsePort,
  validateDatabaseName,
  validateMysqlConnection,
} from "./connection.js";
import { defaultsFileArgument, withDefaultsFile } from "./defaults-file.js";

export interface LoadDumpOptions {
  /** Create the target database when it does not exist (default true). */
  readonly create?: boolean | undefined;
  /** Drop and re-create the target database when it already holds objects (default false: refuse). */
  readonly dropExisting?: boolean | undefined;
  readonly signal?: AbortSignal | undefined;
  /** The mysql client executable; default `mysql` from PATH. */
  readonly command?: string | undefined;
}

/**
 * The options for loading a dump: `--binary-mode` keeps `\r\n` and NUL bytes in routine bodies as they are,
 * `--comments` keeps comments inside routine and trigger bodies.
 */
const LOAD_ARGS = ["--batch", "--binary-mode", "--comments", "--default-character-set=utf8mb4"];
const QUERY_ARGS = ["--batch", "--skip-column-names", "--default-character-set=utf8mb4"];
const STDERR_TAIL = 4096;

/**
 * Loads `dump` (clear-text SQL from mysqldump) into `database` on the server of `conn` (whose own
 * `database` is ignored): creates the database, or refuses to touch one that holds tables, views, routines
 * or events unless `dropExisting`. A failed load may leave the database partly loaded.
 */
export async function loadDumpIntoDatabase(
  conn: MysqlConnection,
  database: string,
  dump: AsyncIterable<Buffer> | Readable,
  opts: LoadDumpOptions = {},
): Promise<void> {
  const target = validateMysqlConnection({
    ...conn,
    database: validateDatabaseName(database, "target database"),
  });
  await withDefaultsFile(target, async (defaultsFile) => {
    const client = { ...opts, defaultsFile, target };
    await prepareDatabase(client, opts);
    const result = await runClient(client, [...LOAD_ARGS, database], dump);
    if (result.code !== 0) {
      throw new LookerBackupError(
        `loading the dump into database "${database}" (${describeMysqlConnection(target)}) failed: ${result.reason}${said(result, target)}`,
        {
          hint: `the database "${database}" may be partly loaded; fix the cause, then restore again with dropExisting`,
        },
      );
    }
  });
}

/**
 * Points the looker-db.yml at `path` at another database/host/user: only the keys named in `changes` change,
 * byte for byte everything else stays (comments, order, other keys such as ssl); the file keeps its mode and
 * owner and is replaced atomically.
 */
export async function rewriteLookerDbYml(path: string, changes: Partial<MysqlConnection>): Promise<void> {
  const before = await stat(path).catch((error: unknown) => {
    throw new InputError(
      `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`,
      undefined,
      error,
    );
  });
  let text = await readFile(path, "utf8");
  for (const [field, value] of Object.entries(changes) as [
    keyof MysqlConnection,
    string | number | undefined,
  ][]) {
    if (value === undefined) continue;
    text = setTopLevelValue(text, LOOKER_DB_YML_KEYS[field], yamlValueOf(field, value), path);
  }
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    await writeFile(temp, text, { mode: before.mode & 0o7777, flag: "wx" });
    if (process.getuid?.() !== before.uid || process.getgid?.() !== before.gid) {
      await chown(temp, before.uid, before.gid);
    }
    await rename(temp, path);
  } finally {
    await rm(temp, { force: true });
  }
}

interface ClientContext {
  readonly defaultsFile: string;
  readonly target: MysqlConnection;
  readonly signal?: AbortSignal | undefined;
  readonly command?: string | undefined;
}

interface ClientResult {
  code: number;
  stdout: string;
  stderr: string;
  /** What went wrong, for a message, when code is not 0. */
  reason: string;
}

async function prepareDatabase(client: ClientContext, opts: LoadDumpOptions): Promise<void> {
  const { database } = client.target;
  const state = await databaseState(client);
  const where = `database "${database}" on ${client.target.host}:${client.target.port}`;
  if (state.exists && state.objects > 0 && !opts.dropExisting) {
    throw new InputError(
      `${where} is not empty (${state.objects} tables, views, routines or events); refusing to overwrite it`,
      "restore into a new database name, or allow dropping the existing database",
    );
  }
  if (!state.exists && opts.create === false) {
    throw new InputError(`${where} does not exist`, "create it first, or allow the restore to create it");
  }
  const statements: string[] = [];
  if (state.exists && state.objects > 0) statements.push(`DROP DATABASE \`${database}\`;`);
  if (!state.exists || state.objects > 0)
    statements.push(`CREATE DATABASE \`${database}\` CHARACTER SET utf8mb4;`);
  if (statements.length > 0) await query(client, statements.join("\n"));
}

async function databaseState(client: ClientContext): Promise<{ exists: boolean; objects: number }> {
  // The name passed validateDatabaseName: it has no quote to escape.
  const name = `'${client.target.database}'`;
  const output = await query(
    client,
    `SELECT (SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ${name}),
      (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ${name})
      + (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ${name})
      + (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ${name});`,
  );
  const [exists = "", objects = ""] = output.trim().split("\t");
  if (!/^\d+$/.test(exists) || !/^\d+$/.test(objects)) {
    throw new LookerBackupError(
      `unexpected answer from mysql about database "${client.target.database}": ${output.trim()}`,
    );
  }
  return { exists: Number(exists) > 0, objects: Number(objects) };
}

async function query(client: ClientContext, sql: string): Promise<string> {
  const result = await runClient(client, QUERY_ARGS, Readable.from([Buffer.from(sql)]));
  if (result.code !== 0) {
    throw new LookerBackupError(
      `mysql on ${client.target.host}:${client.target.port} failed: ${result.reason}${said(result, client.target)}`,
      {
        hint: "check the mysql host, port, user and password, and that the user may create and drop the target database",
      },
    );
  }
  return result.stdout;
}

/** Runs the mysql client with `input` on stdin; a client that stops reading early is reported by its exit. */
async function runClient(
  client: ClientContext,
  args: readonly string[],
  input: AsyncIterable<Buffer> | Readable,
): Promise<ClientResult> {
  if (client.signal?.aborted) throw new CancelledError(`mysql on ${client.target.host} cancelled`);
  const child = spawn(client.command ?? "mysql", [defaultsFileArgument(client.defaultsFile), ...args], {
    stdio: ["pipe", "pipe", "pipe"],
    env: childEnvironment(),
  });
  const exited = exitOf(child);
  const stdout: Buffer[] = [];
  let stderr = Buffer.alloc(0);
  child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk));
  child.stderr.on("data", (chunk: Buffer) => {
    stderr = Buffer.concat([stderr, chunk]).subarray(-STDERR_TAIL);
  });
  let inputError: unknown;
  try {
    await pipeline(input, child.stdin, { signal: client.signal });
  } catch (error) {
    inputError = error;
  }
  // EPIPE only means the client quit early: its exit status and stderr say why. Any other input failure
  // (a dump that fails to decrypt, an abort) must stop the client before it commits a partial load.
  if (inputError !== undefined && (inputError as NodeJS.ErrnoException).code !== "EPIPE") {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
    if (client.signal?.aborted) throw new CancelledError(`mysql on ${client.target.host} cancelled`);
    throw inputError;
  }
  const exit = await exited;
  const code = exit.code ?? 1;
  const reason =
    exit.error !== undefined
      ? exit.error.message
      : exit.signal !== null
        ? `mysql was killed by ${exit.signal}`
        : `mysql exited with code ${exit.code}`;
  return {
    code: exit.error === undefined ? code : 1,
    stdout: Buffer.concat(stdout).toString("utf8"),
    stderr: stderr.toString("utf8"),
    reason,
  };
}

function said(result: ClientResult, conn: MysqlConnection): string {
  // MariaDB's client echoes a failing statement between dashed lines: in a dump that is a long INSERT full
  // of Looker's data, which belongs in no log. Its error line follows.
  let text = result.stderr.replace(/^-{14}\n[\s\S]*?\n-{14}\n/gm, "").trim();
  if (conn.password.length >= 4) text = text.split(conn.password).join("***");
  return text === "" ? "" : `\nmysql said: ${text}`;
}

function exitOf(
  child: ChildProcess,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }> {
  return new Promise((resolve) => {
    child.once("error", (error) => resolve({ code: null, signal: null, error }));
    child.once("close", (code, signal) => resolve({ code, signal }));
  });
}

/** The YAML text for a new value: strings double-quoted so no YAML 1.1 reader (Looker's) retypes them. */
function yamlValueOf(field: keyof MysqlConnection, value: string | number): string {
  if (field === "port") return String(parsePort(value, "looker-db.yml port"));
  const text = String(value);
  if (field === "database") validateDatabaseName(text, "looker-db.yml database");
  return JSON.stringify(text);
}

/**
 * Replaces the value of a top-level `key` in the YAML `text` (or appends `key: value`), touching nothing
 * else, then checks by parsing that the key now reads as intended.
 */
function setTopLevelValue(text: string, key: string, yamlValue: string, where: string): string {
  const doc = parseDocument(text, { schema: "failsafe" });
  if (doc.errors.length > 0 || (doc.contents !== null && !isMap(doc.contents))) {
    throw new InputError(`${where}: not a YAML mapping; cannot rewrite it`, "fix the file by hand");
  }
  const pair = doc.contents?.items.find((item) => isScalar(item.key) && String(item.key.value) === key);
  let updated: string;
  if (pair === undefined) {
    updated = `${text}${text === "" || text.endsWith("\n") ? "" : "\n"}${key}: ${yamlValue}\n`;
  } else {
    const range = isScalar(pair.value) ? pair.value.range : undefined;
    if (range === undefined || range === null) {
      throw new InputError(
        `${where}: key "${key}" is not a single value; cannot rewrite it`,
        "fix the file by hand",
      );
    }
    const [start, end] = range;
    const replaced = text.slice(start, end);
    // A block scalar's range includes its final line break; an empty value may sit right after the colon.
    const lead = /\s/.test(text.charAt(start - 1)) ? "" : " ";
    const trail = replaced.endsWith("\n") ? "\n" : "";
    updated = `${text.slice(0, start)}${lead}${yamlValue}${trail}${text.slice(end)}`;
  }
  const check = parseDocument(updated, { schema: "failsafe" });
  const expected = String(parseDocument(yamlValue, { schema: "failsafe" }).toJS());
  if (check.errors.length > 0 || String(check.get(key)) !== expected) {
    throw new LookerBackupError(`${where}: could not rewrite key "${key}" safely`, {
      hint: "edit the file by hand",
    });
  }
  return updated;
}

/**
 * Connects to the backend database and runs `SELECT 1` (the backup's preflight): a wrong password or an
 * unreachable server fails here, before Looker is stopped, not in the middle of the dump.
 */
export async function pingMysql(conn: MysqlConnection, opts: { command?: string } = {}): Promise<void> {
  const target = validateMysqlConnection(conn);
  await withDefaultsFile(target, async (defaultsFile) => {
    const client = { ...opts, defaultsFile, target };
    const result = await runClient(
      client,
      [...QUERY_ARGS, "--connect-timeout=10", target.database],
      Readable.from([Buffer.from("SELECT 1;\n")]),
    );
    if (result.code !== 0 || result.stdout.trim() !== "1") {
      throw new LookerBackupError(
        `cannot reach the MySQL backend (${describeMysqlConnection(target)}): ${result.reason}${said(result, target)}`,
        {
          hint: "check the mysql-* inputs or looker/looker-db.yml, the password secret, and that this runner may connect to the server",
        },
      );
    }
  });
}
