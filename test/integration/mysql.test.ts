/**
 * The MySQL backend against a real MariaDB and the real mysqldump/mysql clients: a dump spooled encrypted,
 * loaded into a database of another name with identical contents; credentials never in argv; every failure
 * (bad password, connection killed, truncated output, abort) rejects and leaves no spool behind.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CancelledError, InputError, LookerBackupError } from "../../src/errors.js";
import type { MysqlConnection } from "../../src/mysql/connection.js";
import { defaultsFileArgument, withDefaultsFile } from "../../src/mysql/defaults-file.js";
import { type SpooledDump, startMysqlDump } from "../../src/mysql/dump.js";
import { loadDumpIntoDatabase } from "../../src/mysql/restore.js";
import { type MariaDb, startMariaDb } from "../helpers/mariadb.js";
import { requireCommands } from "../helpers/prerequisites.js";

const MARKER = `CLEARTEXT-MARKER-${randomBytes(8).toString("hex")}`;
// Everything an option file can trip over: quotes, backslash, comment and separator characters, spaces.
const USER_PASSWORD = `p"a\\s#s' w;rd=[x] ${randomBytes(4).toString("hex")}`;
const UNICODE = "ünïcødé 🎉 日本語 \"quoted\" 'single' back\\slash\nnew line\ttab";
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

let db: MariaDb;
let work: string;
let spoolDir: string;

function userConnection(database: string): MysqlConnection {
  return { host: db.host, port: db.port, user: "lb_user", password: USER_PASSWORD, database };
}

function rootConnection(database: string): MysqlConnection {
  return { host: db.host, port: db.port, user: "root", password: db.rootPassword, database };
}

/** Runs SQL as `conn.user` over TCP with the real client (through our option file: it must log in). */
function sqlAs(conn: MysqlConnection, sql: string): Promise<string> {
  return withDefaultsFile(conn, (file) => {
    return new Promise((resolve, reject) => {
      const child = spawn("mysql", [
        defaultsFileArgument(file),
        "--batch",
        "--skip-column-names",
        conn.database,
      ]);
      let out = "";
      let err = "";
      child.stdout.on("data", (chunk: Buffer) => {
        out += chunk.toString();
      });
      child.stderr.on("data", (chunk: Buffer) => {
        err += chunk.toString();
      });
      child.once("error", reject);
      child.once("close", (code) =>
        code === 0 ? resolve(out) : reject(new Error(`mysql exited ${code}: ${err}`)),
      );
      child.stdin.on("error", () => undefined); // a failing client reports through its exit code
      child.stdin.end(sql);
    });
  });
}

/** A session that holds `LOCK TABLES <table> WRITE` until released: mysqldump blocks on that table. */
async function holdWriteLock(database: string, table: string): Promise<{ release(): Promise<void> }> {
  const child: ChildProcessWithoutNullStreams = spawn("mysql", [
    `--defaults-file=${db.defaultsFile}`,
    "--batch",
    "--skip-column-names",
    "--unbuffered",
    database,
  ]);
  const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));
  const locked = new Promise<void>((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes("locked")) resolve();
    });
    child.once("close", (code) => reject(new Error(`lock session ended early (exit ${code})`)));
  });
  child.stdin.write(`LOCK TABLES \`${table}\` WRITE;\nSELECT 'locked';\n`);
  await locked;
  return {
    release: async () => {
      child.stdin.end();
      await closed;
    },
  };
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The connection id of lb_user's query blocked on the table lock (mysqldump's SELECT). */
function blockedDumpConnection(): Promise<string> {
  return waitFor("mysqldump to block on the table lock", async () => {
    const out = await db.exec(
      "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'lb_user' AND STATE LIKE '%lock%'",
    );
    return out.trim().split("\n")[0] || undefined;
  });
}

/** Our mysqldump child for `database`: its pid and argv, read from /proc. */
function findMysqldump(database: string): Promise<{ pid: number; argv: string[] }> {
  return waitFor("the mysqldump process", async () => {
    for (const entry of await fs.readdir("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      const cmdline = await fs.readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
      const argv = cmdline.split("\0").filter((arg, i, all) => arg !== "" || i < all.length - 1);
      if (argv.includes("--single-transaction") && argv.at(-1) === database)
        return { pid: Number(entry), argv };
    }
    return undefined;
  });
}

async function collect(source: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of source) parts.push(part);
  return Buffer.concat(parts);
}

async function checksums(database: string, tables: string[]): Promise<string[]> {
  const out = await db.exec(`CHECKSUM TABLE ${tables.map((t) => `\`${database}\`.\`${t}\``).join(", ")}`);
  // "db.table<TAB>checksum" lines; compare the checksums, the db name differs by design.
  return out
    .trim()
    .split("\n")
    .map((line) => line.split("\t")[1] ?? "");
}

beforeAll(async () => {
  requireCommands(["mysqldump", "mysql"]);
  work = await fs.mkdtemp(path.join(os.tmpdir(), "lb-mysql-it-"));
  db = await startMariaDb();
  await db.createDatabase("lb_src", "lb_user", USER_PASSWORD);
  await db.exec("CREATE DATABASE lb_locked; GRANT ALL PRIVILEGES ON lb_locked.* TO 'lb_user'@'%';");
  await db.exec("CREATE DATABASE lb_empty; GRANT ALL PRIVILEGES ON lb_empty.* TO 'lb_user'@'%';");
  // The objects are made by lb_user, as Looker's own user makes them: it is their definer.
  await sqlAs(
    userConnection("lb_src"),
    `CREATE TABLE t_data (id INT PRIMARY KEY, name VARCHAR(200) CHARACTER SET utf8mb4, payload VARBINARY(300), note TEXT) ENGINE=InnoDB;
     CREATE TABLE t_audit (id INT AUTO_INCREMENT PRIMARY KEY, data_id INT, what VARCHAR(20)) ENGINE=InnoDB;
     CREATE VIEW v_names AS SELECT id, name FROM t_data WHERE id > 1;
     CREATE TRIGGER trg_audit AFTER INSERT ON t_data FOR EACH ROW INSERT INTO t_audit (data_id, what) VALUES (NEW.id, 'insert');
     CREATE FUNCTION f_twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2;
     CREATE EVENT ev_noop ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM t_audit WHERE id < 0;
     INSERT INTO t_data VALUES (1, '${MARKER}', NULL, 'plain'),
       (2, ${hexUtf8(UNICODE)}, 0x${ALL_BYTES.toString("hex")}, ${hexUtf8(`${UNICODE}\r\n\u0000end`)}),
       (3, '', X'', NULL);`,
  );
  await sqlAs(
    userConnection("lb_locked"),
    "CREATE TABLE a_locked (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB; INSERT INTO a_locked VALUES (1, 'one');",
  );
});

afterAll(async () => {
  await db?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

beforeEach(async () => {
  spoolDir = await fs.mkdtemp(path.join(work, "spool-"));
});

afterEach(async () => {
  await fs.rm(spoolDir, { recursive: true, force: true });
});

function hexUtf8(text: string): string {
  return `CONVERT(0x${Buffer.from(text, "utf8").toString("hex")} USING utf8mb4)`;
}

describe("startMysqlDump + loadDumpIntoDatabase", () => {
  let dump: SpooledDump | undefined;
  afterEach(async () => {
    await dump?.dispose();
    dump = undefined;
  });

  it("round-trips tables, binary and unicode rows, a view, a trigger, a routine and an event into another database", async () => {
    const events: string[] = [];
    const handle = startMysqlDump(userConnection("lb_src"), {
      spoolDir,
      onSnapshot: () => events.push("callback"),
    });
    handle.snapshotTaken.then(() => events.push("snapshot"));
    dump = await handle.done;
    events.push("done");
    expect(events).toEqual(["callback", "snapshot", "done"]);
    expect(dump.database).toBe("lb_src");

    // On disk: one 0600 file, encrypted (the marker row is not readable there).
    const files = await fs.readdir(spoolDir);
    expect(files).toHaveLength(1);
    const spoolFile = path.join(spoolDir, files[0]!);
    expect((await fs.stat(spoolFile)).mode & 0o777).toBe(0o600);
    const onDisk = await fs.readFile(spoolFile);
    expect(onDisk.subarray(0, 22).toString()).toBe("age-encryption.org/v1\n");
    expect(onDisk.includes(MARKER)).toBe(false);

    // Decrypted: the complete dump, matching the size and digest reported.
    const clear = await collect(dump.open());
    expect(clear.length).toBe(dump.size);
    expect(createHash("sha256").update(clear).digest("hex")).toBe(dump.sha256);
    const text = clear.toString("utf8");
    expect(text).toContain(MARKER);
    expect(text).toMatch(/\n-- Dump completed\n*$/);
    expect(text).not.toMatch(/^(CREATE DATABASE|USE )/m);

    // Loaded by the dump's own user, as a drill would: the view, trigger and routine keep lb_user as their
    // definer, and run with its rights, so it gets rights on the copy (it may then also create it).
    await db.exec("GRANT ALL PRIVILEGES ON lb_copy.* TO 'lb_user'@'%'");
    await loadDumpIntoDatabase(userConnection("ignored"), "lb_copy", dump.open());

    const tables = ["t_data", "t_audit"];
    const [source, copy] = [await checksums("lb_src", tables), await checksums("lb_copy", tables)];
    expect(copy).toEqual(source);
    expect(source.every((sum) => /^\d+$/.test(sum) && sum !== "0")).toBe(true);
    const rows = (database: string) =>
      db.exec(`SELECT id, HEX(name), HEX(payload), HEX(note) FROM \`${database}\`.t_data ORDER BY id`);
    expect(await rows("lb_copy")).toBe(await rows("lb_src"));
    expect(await db.exec("SELECT HEX(payload) FROM lb_copy.t_data WHERE id = 2")).toBe(
      `${ALL_BYTES.toString("hex").toUpperCase()}\n`,
    );
    expect(await db.exec("SELECT HEX(name) FROM lb_copy.t_data WHERE id = 2")).toBe(
      `${Buffer.from(UNICODE, "utf8").toString("hex").toUpperCase()}\n`,
    );

    // The objects live in the copy and refer to the copy, not to lb_src.
    expect(await db.exec("SELECT id FROM lb_copy.v_names ORDER BY id")).toBe("2\n3\n");
    expect(await db.exec("SELECT lb_copy.f_twice(21)")).toBe("42\n");
    expect(
      await db.exec("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = 'lb_copy'"),
    ).toBe("ev_noop\n");
    await db.exec("INSERT INTO lb_copy.t_data (id, name) VALUES (10, 'after restore')");
    expect(await db.exec("SELECT data_id, what FROM lb_copy.t_audit WHERE data_id = 10")).toBe(
      "10\tinsert\n",
    );
    expect(await db.exec("SELECT COUNT(*) FROM lb_src.t_audit WHERE data_id = 10")).toBe("0\n");
    expect(
      await db.exec("SELECT VIEW_DEFINITION FROM information_schema.VIEWS WHERE TABLE_SCHEMA = 'lb_copy'"),
    ).not.toContain("lb_src");

    // A non-empty target is refused unless dropping it is allowed; then it is replaced.
    const refused = await loadDumpIntoDatabase(rootConnection("x"), "lb_copy", dump.open()).catch(
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(InputError);
    expect((refused as Error).message).toMatch(/database "lb_copy" .* is not empty/);
    expect(await db.exec("SELECT COUNT(*) FROM lb_copy.t_data")).toBe("4\n");
    await loadDumpIntoDatabase(rootConnection("x"), "lb_copy", dump.open(), { dropExisting: true });
    expect(await db.exec("SELECT COUNT(*) FROM lb_copy.t_data")).toBe("3\n");

    await dump.dispose();
    expect(await fs.readdir(spoolDir)).toEqual([]);
    expect(() => dump!.open()).toThrow(/disposed/);
  });

  it("resolves snapshotTaken for a database without tables, and the dump loads", async () => {
    const handle = startMysqlDump(userConnection("lb_empty"), { spoolDir });
    let snapshotFirst = false;
    handle.snapshotTaken.then(() => {
      snapshotFirst = true;
    });
    dump = await handle.done;
    await handle.snapshotTaken;
    expect(snapshotFirst).toBe(true);
    expect((await collect(dump.open())).toString()).toMatch(/\n-- Dump completed\n*$/);
    await loadDumpIntoDatabase(rootConnection("x"), "lb_empty_copy", dump.open());
    expect(
      await db.exec("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'lb_empty_copy'"),
    ).toBe("1\n");
  });

  it("keeps the password out of argv and the option file private while running, and removes it after", async () => {
    const lock = await holdWriteLock("lb_locked", "a_locked");
    let handle: ReturnType<typeof startMysqlDump> | undefined;
    try {
      handle = startMysqlDump(userConnection("lb_locked"), { spoolDir });
      handle.done.catch(() => {});
      await blockedDumpConnection();
      const { pid, argv } = await findMysqldump("lb_locked");
      const cmdline = await fs.readFile(`/proc/${pid}/cmdline`);
      expect(cmdline.includes(USER_PASSWORD)).toBe(false);
      expect(argv.join(" ")).not.toContain("password");
      expect(argv[1]).toMatch(/^--defaults-extra-file=\//);
      expect(argv).toContain("--single-transaction");
      expect(argv).not.toContain("--databases");
      const optionFile = argv[1]!.slice("--defaults-extra-file=".length);
      expect((await fs.stat(optionFile)).mode & 0o777).toBe(0o600);
      expect((await fs.stat(path.dirname(optionFile))).mode & 0o777).toBe(0o700);
      // The spool exists while the dump runs, already private.
      const spools = await fs.readdir(spoolDir);
      expect(spools).toHaveLength(1);
      expect((await fs.stat(path.join(spoolDir, spools[0]!))).mode & 0o777).toBe(0o600);
      await lock.release();
      dump = await handle.done;
      expect((await collect(dump.open())).toString()).toContain("INSERT INTO `a_locked` VALUES");
      await expect(fs.stat(path.dirname(optionFile))).rejects.toMatchObject({ code: "ENOENT" });
    } finally {
      await lock.release();
      await handle?.done.catch(() => {});
    }
  });
});

describe("dump failures reject and leave no spool", () => {
  async function expectNoSpool(): Promise<void> {
    expect(await fs.readdir(spoolDir)).toEqual([]);
  }

  it("a wrong password", async () => {
    const wrong = `wrong-${randomBytes(6).toString("hex")}`;
    const handle = startMysqlDump({ ...userConnection("lb_src"), password: wrong }, { spoolDir });
    const error = await handle.done.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LookerBackupError);
    const message = (error as Error).message;
    expect(message).toContain('mysqldump of database "lb_src"');
    expect(message).toMatch(/Access denied for user 'lb_user'/);
    expect(message).not.toContain(wrong);
    await expect(handle.snapshotTaken).rejects.toBe(error);
    await expectNoSpool();
  });

  it("the connection killed mid-dump", async () => {
    const lock = await holdWriteLock("lb_locked", "a_locked");
    try {
      const handle = startMysqlDump(userConnection("lb_locked"), { spoolDir });
      handle.done.catch(() => {});
      const id = await blockedDumpConnection();
      await db.exec(`KILL ${id}`);
      const error = await handle.done.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LookerBackupError);
      expect((error as Error).message).toMatch(
        /mysqldump of database "lb_locked" .* failed: mysqldump exited with code \d+/,
      );
      expect((error as Error).message).toMatch(
        /mysqldump said: .*(Lost connection|server has gone away|interrupted)/is,
      );
      expect((error as Error).message).not.toContain(USER_PASSWORD);
      await expectNoSpool();
    } finally {
      await lock.release();
    }
  });

  it("an abort while dumping", async () => {
    const lock = await holdWriteLock("lb_locked", "a_locked");
    try {
      const controller = new AbortController();
      const handle = startMysqlDump(userConnection("lb_locked"), { spoolDir, signal: controller.signal });
      handle.done.catch(() => {});
      await blockedDumpConnection();
      const { pid } = await findMysqldump("lb_locked");
      controller.abort();
      const error = await handle.done.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CancelledError);
      expect((error as Error).message).toContain('database "lb_locked"');
      await expect(fs.stat(`/proc/${pid}/cmdline`)).rejects.toMatchObject({ code: "ENOENT" });
      await expectNoSpool();
    } finally {
      await lock.release();
    }
  });

  it("output without the trailing '-- Dump completed' line, even with exit 0", async () => {
    // The real mysqldump with its last line cut off: the shape of a dump truncated by a broken pipe upstream.
    const truncating = path.join(work, "mysqldump-truncated");
    await fs.writeFile(truncating, '#!/bin/sh\nmysqldump "$@" | head -n -1\n', { mode: 0o755 });
    const handle = startMysqlDump(userConnection("lb_src"), { spoolDir, command: truncating });
    const error = await handle.done.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LookerBackupError);
    expect((error as Error).message).toMatch(/without the "-- Dump completed" line/);
    await expectNoSpool();
  });

  it("a mysqldump that is not installed names the fix", async () => {
    const handle = startMysqlDump(userConnection("lb_src"), {
      spoolDir,
      command: path.join(work, "no-such-mysqldump"),
    });
    const error = await handle.done.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LookerBackupError);
    expect((error as LookerBackupError).hint).toMatch(/mariadb-client/);
    await expectNoSpool();
  });
});

describe("loadDumpIntoDatabase failures", () => {
  it("reports mysql's error for a broken dump", async () => {
    const broken = Readable.from([Buffer.from("CREATE TABLE ok_table (id INT);\nTHIS IS NOT SQL;\n")]);
    const error = await loadDumpIntoDatabase(rootConnection("x"), "lb_broken", broken).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(LookerBackupError);
    expect((error as Error).message).toMatch(
      /loading the dump into database "lb_broken" .* failed: mysql exited with code 1/,
    );
    expect((error as Error).message).toMatch(
      /mysql said: ERROR 1064 \(42000\) at line 2: You have an error in your SQL syntax/,
    );
  });

  it("passes on an error of the dump source and stops the client", async () => {
    async function* failing(): AsyncGenerator<Buffer> {
      yield Buffer.from("CREATE TABLE first_table (id INT);\n");
      throw new Error("spool could not be decrypted");
    }
    await expect(loadDumpIntoDatabase(rootConnection("x"), "lb_source_fails", failing())).rejects.toThrow(
      "spool could not be decrypted",
    );
  });

  it("refuses a target that does not exist when create is false", async () => {
    await expect(
      loadDumpIntoDatabase(rootConnection("x"), "lb_absent", Readable.from([Buffer.from("SELECT 1;")]), {
        create: false,
      }),
    ).rejects.toThrow(/database "lb_absent" .* does not exist/);
  });
});
