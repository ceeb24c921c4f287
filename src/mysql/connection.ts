/**
 * MySQL connection settings: Looker's `looker/looker-db.yml`, explicit inputs over it, and validation.
 * The file is read with YAML's failsafe schema so every value stays the text the user wrote: a password
 * like `0123` or `yes` must not turn into a number or a boolean on the way.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { type Document, isMap, isScalar, LineCounter, parseDocument } from "yaml";
import { DEFAULT_MYSQL_PORT } from "../defaults.js";
import { InputError } from "../errors.js";

export interface MysqlConnection {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

/** looker-db.yml key for each connection field (Looker says `username`, the mysql clients `user`). */
export const LOOKER_DB_YML_KEYS: Readonly<Record<keyof MysqlConnection, string>> = {
  host: "host",
  port: "port",
  user: "username",
  password: "password",
  database: "database",
};

/** Identifier characters only: the name is quoted into SQL and becomes part of an archive member path. */
const DATABASE_NAME = /^[A-Za-z0-9_$]{1,64}$/;
/** MariaDB allows user names up to 80 characters (MySQL 32). */
const MAX_USER_LENGTH = 80;
const MAX_PASSWORD_LENGTH = 1000;
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;

const FIX_YML_HINT = "fix looker/looker-db.yml, or pass the mysql-* inputs to override it";

/** Throws InputError unless `name` is a database name we can quote safely (letters, digits, `_`, `$`). */
export function validateDatabaseName(name: string, where = "mysql database"): string {
  if (!DATABASE_NAME.test(name)) {
    throw new InputError(
      `invalid ${where} name "${printable(name)}"`,
      "use 1 to 64 letters, digits, underscores or dollar signs",
    );
  }
  return name;
}

/** Parses a TCP port given as a number or its decimal text; InputError naming `where` otherwise. */
export function parsePort(value: string | number, where = "mysql port"): number {
  const text = typeof value === "number" ? String(value) : value.trim();
  const port = /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InputError(`invalid ${where} "${printable(text)}"`, "use a TCP port number from 1 to 65535");
  }
  return port;
}

/** Parses the text of a looker-db.yml; `where` (the file name) goes into every error. */
export function parseLookerDbYml(text: string, where: string): Partial<MysqlConnection> {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { schema: "failsafe", lineCounter, prettyErrors: false });
  const firstError = doc.errors[0];
  if (firstError !== undefined) {
    const line = lineCounter.linePos(firstError.pos[0]).line;
    throw new InputError(
      `${where} line ${line}: not valid YAML (${firstError.code})`,
      FIX_YML_HINT,
      firstError,
    );
  }
  const values = topLevelStrings(doc, where, lineCounter);
  const dialect = values.get("dialect");
  if (dialect !== undefined && dialect.value.trim().toLowerCase() !== "mysql") {
    throw new InputError(
      `${where} line ${dialect.line}: key "dialect" is "${printable(dialect.value)}", not mysql`,
      "only a MySQL internal database can be dumped; remove the file or set the backend to internal",
    );
  }
  const result: Partial<MysqlConnection> = {};
  for (const field of Object.keys(LOOKER_DB_YML_KEYS) as (keyof MysqlConnection)[]) {
    const entry = values.get(LOOKER_DB_YML_KEYS[field]);
    if (entry === undefined) continue;
    const at = `${where} line ${entry.line}: key "${LOOKER_DB_YML_KEYS[field]}"`;
    if (field === "port") result.port = parsePort(entry.value, at);
    else if (field === "password") result.password = entry.value;
    else if (entry.value.trim() !== "") result[field] = entry.value.trim();
  }
  return result;
}

/** Reads and parses a looker-db.yml (see parseLookerDbYml). */
export async function readLookerDbYml(file: string): Promise<Partial<MysqlConnection>> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new InputError(
      `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? error}`,
      FIX_YML_HINT,
      error,
    );
  }
  return parseLookerDbYml(text, file);
}

/**
 * The connection to use: explicit `overrides` win over `fromFile` field by field (an undefined override
 * keeps the file's value); the port defaults to 3306 and the password to empty. Validates the result.
 */
export function resolveMysqlConnection(
  fromFile: Partial<MysqlConnection> = {},
  overrides: Partial<MysqlConnection> = {},
): MysqlConnection {
  const pick = <K extends keyof MysqlConnection>(key: K): MysqlConnection[K] | undefined =>
    overrides[key] ?? fromFile[key];
  const missing = (["host", "user", "database"] as const).filter((key) => !pick(key));
  if (missing.length > 0) {
    throw new InputError(
      `mysql connection incomplete: no ${missing.map((key) => LOOKER_DB_YML_KEYS[key]).join(", ")}`,
      "set them in looker/looker-db.yml or pass the mysql-host, mysql-user and mysql-database inputs",
    );
  }
  return validateMysqlConnection({
    host: pick("host") as string,
    port: pick("port") ?? DEFAULT_MYSQL_PORT,
    user: pick("user") as string,
    password: pick("password") ?? "",
    database: pick("database") as string,
  });
}

/** Throws InputError when a field cannot be passed safely to the mysql clients; returns the connection. */
export function validateMysqlConnection(conn: MysqlConnection): MysqlConnection {
  validateDatabaseName(conn.database);
  parsePort(conn.port);
  if (conn.host === "" || /\s/.test(conn.host) || CONTROL_CHARACTERS.test(conn.host)) {
    throw new InputError(`invalid mysql host "${printable(conn.host)}"`, "use a host name or an IP address");
  }
  if (conn.user === "" || conn.user.length > MAX_USER_LENGTH || CONTROL_CHARACTERS.test(conn.user)) {
    throw new InputError(
      `invalid mysql user "${printable(conn.user)}"`,
      `use 1 to ${MAX_USER_LENGTH} printable characters`,
    );
  }
  // NUL cannot be carried by an option file, and the clients read it in lines of at most 4 KiB; every
  // other password can be written (see defaults-file.ts).
  if (conn.password.includes("\u0000") || conn.password.length > MAX_PASSWORD_LENGTH) {
    throw new InputError(
      "invalid mysql password: it contains a NUL character or is too long",
      `use at most ${MAX_PASSWORD_LENGTH} characters and no NUL`,
    );
  }
  return conn;
}

/** `user@host:port/database`, for messages: never the password. */
export function describeMysqlConnection(conn: MysqlConnection): string {
  return `${conn.user}@${conn.host}:${conn.port}/${conn.database}`;
}

interface YmlValue {
  value: string;
  line: number;
}

function topLevelStrings(doc: Document, where: string, lineCounter: LineCounter): Map<string, YmlValue> {
  const values = new Map<string, YmlValue>();
  if (doc.contents === null) return values;
  if (!isMap(doc.contents)) {
    throw new InputError(`${where}: expected a mapping of keys (host:, port:, ...)`, FIX_YML_HINT);
  }
  const wanted = new Set(["dialect", ...Object.values(LOOKER_DB_YML_KEYS)]);
  for (const pair of doc.contents.items) {
    if (!isScalar(pair.key) || !wanted.has(String(pair.key.value))) continue;
    const key = String(pair.key.value);
    const line = lineCounter.linePos(pair.key.range?.[0] ?? 0).line;
    if (pair.value !== null && !isScalar(pair.value)) {
      throw new InputError(`${where} line ${line}: key "${key}" must be a single value`, FIX_YML_HINT);
    }
    values.set(key, { value: pair.value === null ? "" : String(pair.value.value ?? ""), line });
  }
  return values;
}

/** The value with control characters escaped and shortened, safe to put in a one-line message. */
function printable(value: string): string {
  const escaped = JSON.stringify(value).slice(1, -1);
  return escaped.length > 80 ? `${escaped.slice(0, 77)}...` : escaped;
}

/**
 * The backend connection of the Looker home at `home`: its connection file (`-d F` in Looker's start options, else
 * looker/looker-db.yml) with `explicit` settings laid over it. The file may be missing or unreadable when the
 * explicit settings name the host and the database.
 */
export async function lookerMysqlConnection(
  home: string,
  explicit: Partial<MysqlConnection> = {},
  dbConfigFile = join(home, "looker", "looker-db.yml"),
): Promise<MysqlConnection> {
  const fromFile = await readLookerDbYml(dbConfigFile).catch((error: unknown) => {
    if (explicit.host && explicit.database) return undefined;
    throw error;
  });
  return resolveMysqlConnection(fromFile, explicit);
}
