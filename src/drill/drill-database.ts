/**
 * The MySQL backend in a drill: the backup's dump goes into the drill's own database, and the restored
 * looker-db.yml is pointed at it before the home leaves the runner. Looker's guide is explicit that a restored copy
 * must never connect to the production database, so a drill database that could be production is refused.
 */
import { createReadStream } from "node:fs";
import { readdir } from "node:fs/promises";
import { basename, join } from "node:path";
import { DEFAULT_MYSQL_PORT } from "../defaults.js";
import { InputError } from "../errors.js";
import { describeMysqlConnection, type MysqlConnection, readLookerDbYml } from "../mysql/connection.js";
import { loadDumpIntoDatabase, rewriteLookerDbYml } from "../mysql/restore.js";

export const LOOKER_DB_YML = "looker/looker-db.yml";

/** The dumps in a staged archive (`<staging>/mysql/*.sql`). */
export async function stagedDumps(stagingRoot: string): Promise<string[]> {
  const names = await readdir(join(stagingRoot, "mysql")).catch(() => [] as string[]);
  return names.filter((name) => name.endsWith(".sql")).map((name) => join(stagingRoot, "mysql", name));
}

/**
 * Loads the production dump into `drill.database` (dropped and re-created: it is the drill's own) and rewrites
 * `<stagedHome>/looker/looker-db.yml` to point at it. Returns a one-line description for the report.
 */
export async function restoreIntoDrillDatabase(
  drill: MysqlConnection,
  stagedHome: string,
  dumps: readonly string[],
  signal?: AbortSignal,
): Promise<string> {
  const ymlPath = join(stagedHome, LOOKER_DB_YML);
  const production = await readLookerDbYml(ymlPath);
  assertNotProduction(drill, production);
  const dump = pickDump(dumps, production.database);
  await loadDumpIntoDatabase(drill, drill.database, createReadStream(dump, { highWaterMark: 1 << 20 }), {
    create: true,
    dropExisting: true,
    signal,
  });
  await rewriteLookerDbYml(ymlPath, {
    host: drill.host,
    port: drill.port,
    user: drill.user,
    password: drill.password,
    database: drill.database,
  });
  return `${basename(dump)} loaded into ${describeMysqlConnection(drill)}; looker-db.yml points there`;
}

/** Same database name on the same server (as far as names tell) would make the drill write into production. */
export function assertNotProduction(drill: MysqlConnection, production: Partial<MysqlConnection>): void {
  if (production.database === undefined || production.database !== drill.database) return;
  const sameHost = production.host === undefined || sameServerName(production.host, drill.host);
  const samePort = (production.port ?? DEFAULT_MYSQL_PORT) === drill.port;
  if (sameHost && samePort) {
    throw new InputError(
      `the drill database ${describeMysqlConnection(drill)} is the production database named in the backup's looker-db.yml`,
      "pass --drill-mysql-database with a name of its own (e.g. looker_drill); a drill must never touch production",
    );
  }
}

function sameServerName(a: string, b: string): boolean {
  const loopback = (host: string) => ["localhost", "127.0.0.1", "::1"].includes(host.toLowerCase());
  return a.toLowerCase() === b.toLowerCase() || (loopback(a) && loopback(b));
}

function pickDump(dumps: readonly string[], productionDatabase: string | undefined): string {
  const named = dumps.find((dump) => basename(dump) === `${productionDatabase}.sql`);
  const dump = named ?? dumps[0];
  if (dump === undefined) throw new InputError("the archive has no mysql/<database>.sql dump to restore");
  return dump;
}
