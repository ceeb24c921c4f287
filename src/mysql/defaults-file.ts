/**
 * Credentials for the mysql clients through an option file, never argv (argv is world-readable in `ps` and
 * /proc/<pid>/cmdline). The file lives in a fresh 0700 directory, is 0600, and is removed when `fn` settles.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MysqlConnection } from "./connection.js";

/**
 * Quotes a value for a MySQL/MariaDB option file. The client's parser (mysys my_default.c) cuts `#`
 * comments outside quotes, trims surrounding whitespace, strips one pair of matching quotes, then decodes
 * `\\ \" \' \n \t \r \b \s`. Double-quoting with those escapes therefore carries every character but NUL.
 */
export function quoteOptionValue(value: string): string {
  const escaped = value
    .replace(/\\/g, "\\\\")
    .replace(/"/g, '\\"')
    .replace(/\n/g, "\\n")
    .replace(/\r/g, "\\r")
    .replace(/\t/g, "\\t")
    .replace(/\u0008/g, "\\b");
  return `"${escaped}"`;
}

/** The `[client]` option file text for `conn`; the database is not in it (it goes last on the command line). */
export function clientOptionFileText(conn: Omit<MysqlConnection, "database">): string {
  return [
    "[client]",
    `user=${quoteOptionValue(conn.user)}`,
    `password=${quoteOptionValue(conn.password)}`,
    `host=${quoteOptionValue(conn.host)}`,
    `port=${conn.port}`,
    // Looker reaches its database over TCP (JDBC): do the same even for "localhost", which the clients
    // would otherwise take to mean the local socket, possibly another server with other accounts.
    "protocol=TCP",
    "",
  ].join("\n");
}

/**
 * Writes the option file, runs `fn(path)` and removes the file's directory however `fn` ends. Pass the path
 * as the FIRST argument, `--defaults-extra-file=<path>` (the clients ignore it anywhere else).
 */
export async function withDefaultsFile<T>(
  conn: Omit<MysqlConnection, "database">,
  fn: (path: string) => Promise<T>,
): Promise<T> {
  // mkdtemp creates the directory 0700: no other user can even list it while the file exists.
  const dir = await mkdtemp(join(tmpdir(), "looker-backup-mysql-"));
  try {
    const file = join(dir, "client.cnf");
    await writeFile(file, clientOptionFileText(conn), { mode: 0o600, flag: "wx" });
    return await fn(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The argument that points a mysql client at the option file; it must come first. */
export function defaultsFileArgument(path: string): string {
  return `--defaults-extra-file=${path}`;
}
