/**
 * MySQL connection settings without a server: looker-db.yml parsing and rewriting, precedence of explicit
 * inputs, validation, and the lifecycle and text of the client option file.
 */
import { readdirSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { InputError } from "../../src/errors.js";
import {
  parseLookerDbYml,
  parsePort,
  readLookerDbYml,
  resolveMysqlConnection,
  validateDatabaseName,
} from "../../src/mysql/connection.js";
import { clientOptionFileText, quoteOptionValue, withDefaultsFile } from "../../src/mysql/defaults-file.js";
import { dumpMemberPath } from "../../src/mysql/dump.js";
import { rewriteLookerDbYml } from "../../src/mysql/restore.js";

let dir: string;

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "lb-mysql-unit-"));
});

afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected a throw");
}

describe("parseLookerDbYml", () => {
  it("reads Looker's flat YAML, mapping username to user and keeping values as written", () => {
    const parsed = parseLookerDbYml(
      "# Looker internal db\ndialect: mysql\nhost: db.internal\nport: 3307\nusername: looker\n" +
        "password: 0123\ndatabase: looker_prod\nssl: true\n",
      "looker-db.yml",
    );
    // "0123" stays a string: a YAML 1.2 core schema would have read the integer 123.
    expect(parsed).toEqual({
      host: "db.internal",
      port: 3307,
      user: "looker",
      password: "0123",
      database: "looker_prod",
    });
  });

  it("keeps quoted passwords exactly, including # and surrounding spaces", () => {
    const parsed = parseLookerDbYml(`host: h\npassword: " p#ss 'x' "\n`, "f.yml");
    expect(parsed.password).toBe(" p#ss 'x' ");
  });

  it("names the file, line and key of a bad port", () => {
    const error = thrown(() =>
      parseLookerDbYml("host: h\nport: http\n", "/home/looker/looker/looker-db.yml"),
    );
    expect(error).toBeInstanceOf(InputError);
    expect(error.message).toContain("/home/looker/looker/looker-db.yml line 2");
    expect(error.message).toContain('key "port"');
  });

  it("refuses another dialect and non-scalar values, naming the key", () => {
    expect(thrown(() => parseLookerDbYml("dialect: postgres\n", "f.yml")).message).toMatch(
      /f\.yml line 1: key "dialect" is "postgres"/,
    );
    expect(thrown(() => parseLookerDbYml("host:\n  - a\n  - b\n", "f.yml")).message).toMatch(
      /f\.yml line 1: key "host" must be a single value/,
    );
    expect(thrown(() => parseLookerDbYml("- just\n- a list\n", "f.yml")).message).toMatch(
      /expected a mapping/,
    );
    expect(thrown(() => parseLookerDbYml("host: [unclosed\n", "f.yml"))).toBeInstanceOf(InputError);
  });

  it("readLookerDbYml names a missing file", async () => {
    const missing = path.join(dir, "nope.yml");
    await expect(readLookerDbYml(missing)).rejects.toThrow(new RegExp(`cannot read ${missing}: ENOENT`));
  });
});

describe("resolveMysqlConnection", () => {
  const fromFile = { host: "file-host", port: 3306, user: "looker", password: "file-pw", database: "looker" };

  it("lets explicit inputs override the file field by field", () => {
    expect(
      resolveMysqlConnection(fromFile, { host: "other", database: "drill_copy", password: undefined }),
    ).toEqual({
      ...fromFile,
      host: "other",
      database: "drill_copy",
    });
  });

  it("defaults the port to 3306 and the password to empty", () => {
    expect(resolveMysqlConnection({ host: "h", user: "u", database: "d" })).toEqual({
      host: "h",
      port: 3306,
      user: "u",
      password: "",
      database: "d",
    });
  });

  it("names every missing field", () => {
    const error = thrown(() => resolveMysqlConnection({ host: "h" }));
    expect(error).toBeInstanceOf(InputError);
    expect(error.message).toBe("mysql connection incomplete: no username, database");
  });

  it("validates the database name, port, host and password", () => {
    expect(() => resolveMysqlConnection(fromFile, { database: "looker`; DROP" })).toThrow(
      /invalid mysql database name/,
    );
    expect(() => resolveMysqlConnection(fromFile, { port: 70000 })).toThrow(/invalid mysql port "70000"/);
    expect(() => resolveMysqlConnection(fromFile, { host: "a b" })).toThrow(/invalid mysql host/);
    expect(() => resolveMysqlConnection(fromFile, { password: "a\u0000b" })).toThrow(
      /invalid mysql password/,
    );
  });
});

describe("names and ports", () => {
  it("accepts identifier names only", () => {
    expect(validateDatabaseName("looker_2$")).toBe("looker_2$");
    for (const bad of ["", "a-b", "a.b", "../x", "a b", "x".repeat(65), "naïve"]) {
      expect(() => validateDatabaseName(bad), bad).toThrow(InputError);
    }
  });

  it("parses ports strictly", () => {
    expect(parsePort("3306")).toBe(3306);
    expect(parsePort(1)).toBe(1);
    for (const bad of ["0", "65536", "33o6", "-1", "3306.5", ""])
      expect(() => parsePort(bad), bad).toThrow(InputError);
  });

  it("puts the dump under mysql/ and refuses names that could escape it", () => {
    expect(dumpMemberPath("looker")).toBe("mysql/looker.sql");
    expect(() => dumpMemberPath("../etc")).toThrow(InputError);
  });
});

describe("option file", () => {
  it("quotes values so the client's parser gives them back unchanged", () => {
    expect(quoteOptionValue(`a"b\\c#d'e f\n`)).toBe(`"a\\"b\\\\c#d'e f\\n"`);
    expect(quoteOptionValue("")).toBe('""');
  });

  it("writes a [client] section over TCP with every connection field", () => {
    const text = clientOptionFileText({ host: "db", port: 3310, user: "looker", password: "s3cr#t" });
    expect(text.split("\n")).toEqual([
      "[client]",
      'user="looker"',
      'password="s3cr#t"',
      'host="db"',
      "port=3310",
      "protocol=TCP",
      "",
    ]);
  });

  it("is 0600 in a 0700 directory while fn runs, and gone afterwards even when fn throws", async () => {
    const conn = { host: "h", port: 3306, user: "u", password: "pw-123456" };
    const seen: string[] = [];
    await expect(
      withDefaultsFile(conn, async (file) => {
        seen.push(file);
        expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
        expect((await fs.stat(path.dirname(file))).mode & 0o777).toBe(0o700);
        expect(await fs.readFile(file, "utf8")).toContain('password="pw-123456"');
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    const result = await withDefaultsFile(conn, async (file) => {
      seen.push(file);
      return 42;
    });
    expect(result).toBe(42);
    expect(seen).toHaveLength(2);
    for (const file of seen) {
      await expect(fs.stat(path.dirname(file))).rejects.toMatchObject({ code: "ENOENT" });
    }
  });
});

describe("rewriteLookerDbYml", () => {
  const original =
    "# managed by ops\ndialect: mysql\nhost: prod-db.internal  # production!\nport: 3306\n" +
    "username: looker\npassword: 'pr0d'\ndatabase: looker\nssl: true\n";

  it("changes only the requested keys, byte for byte, and keeps the mode", async () => {
    const file = path.join(dir, "looker-db.yml");
    await fs.writeFile(file, original, { mode: 0o640 });
    await fs.chmod(file, 0o640);
    await rewriteLookerDbYml(file, { host: "127.0.0.1", database: "drill_copy", port: 3310 });
    const text = await fs.readFile(file, "utf8");
    expect(text).toBe(
      '# managed by ops\ndialect: mysql\nhost: "127.0.0.1"  # production!\nport: 3310\n' +
        "username: looker\npassword: 'pr0d'\ndatabase: \"drill_copy\"\nssl: true\n",
    );
    expect((await fs.stat(file)).mode & 0o777).toBe(0o640);
    expect(readdirSync(dir)).toEqual(["looker-db.yml"]);
    expect(await readLookerDbYml(file)).toEqual({
      host: "127.0.0.1",
      port: 3310,
      user: "looker",
      password: "pr0d",
      database: "drill_copy",
    });
  });

  it("quotes awkward values, fills an empty value and appends a missing key", async () => {
    const file = path.join(dir, "looker-db.yml");
    await fs.writeFile(file, "host: h\npassword:\ndatabase: |\n  looker\n", { mode: 0o600 });
    await rewriteLookerDbYml(file, { password: `0123 "q" #x\\`, user: "drill", database: "copy_1" });
    const reread = await readLookerDbYml(file);
    expect(reread).toEqual({ host: "h", user: "drill", password: `0123 "q" #x\\`, database: "copy_1" });
    expect(await fs.readFile(file, "utf8")).toMatch(/\nusername: "drill"\n$/);
  });

  it("refuses an invalid database name and leaves the file alone", async () => {
    const file = path.join(dir, "looker-db.yml");
    await fs.writeFile(file, original);
    await expect(rewriteLookerDbYml(file, { database: "x; DROP" })).rejects.toThrow(InputError);
    expect(await fs.readFile(file, "utf8")).toBe(original);
  });
});
