/** The drill's pure parts: the summary, the production guard, sha256sum parsing, and CLI input errors (exit 2). */
import { describe, expect, it } from "vitest";
import { assertNotProduction } from "../../src/drill/drill-database.js";
import { type DrillReport, drillSummaryMarkdown, isDrillReport } from "../../src/drill/report.js";
import { parseSha256sumZ } from "../../src/drill/targets.js";
import { InputError } from "../../src/errors.js";
import { cli } from "../helpers/cli.js";

const passed: DrillReport = {
  result: "passed",
  exitCode: 0,
  archive: "/store/prod-20240301T000000Z.tar.zst.age",
  target: "root@10.0.0.5:22",
  backup: { instance: "prod", startedAt: "2024-03-01T00:00:00.000Z" },
  startedAt: "2024-03-02T00:00:00.000Z",
  rtoMs: 95_000,
  rpoMs: 86_400_000,
  steps: [
    { name: "connect", ms: 1200, ok: true, detail: "root@10.0.0.5:22" },
    { name: "start looker", ms: 90_000, ok: true },
  ],
  bytesRestored: 5_000_000,
  filesVerified: 321,
};

describe("drillSummaryMarkdown", () => {
  it("shows the verdict, the measures, every step and the trend", () => {
    const failed: DrillReport = {
      ...passed,
      result: "failed",
      exitCode: 5,
      error: "Looker failed | to start\nsecond line",
      logTail: "2024 ERROR boot refused: cannot decrypt the KEK\n",
    };
    delete (failed as { rtoMs?: number }).rtoMs;
    const text = drillSummaryMarkdown(failed, [passed]);
    expect(text).toContain("Restore drill failed");
    expect(text).toContain("| RTO (drill start -> healthy) | not reached |");
    expect(text).toContain("| files verified on target | 321 |");
    // A pipe or a line break in a message must not break the table.
    expect(text).toContain("| error | Looker failed \\| to start second line |");
    expect(text).toContain("boot refused: cannot decrypt the KEK");
    expect(text).toContain("### Previous drills");
    expect(text).toContain("| 2024-03-02T00:00:00.000Z | passed |");
    expect(text.match(/^\| (connect|start looker) \|/gm)).toHaveLength(2);
  });

  it("recognises reports in a history file", () => {
    expect(isDrillReport(JSON.parse(JSON.stringify(passed)))).toBe(true);
    expect(isDrillReport({ result: "maybe", steps: [] })).toBe(false);
  });
});

describe("assertNotProduction", () => {
  const drill = { host: "db.internal", port: 3306, user: "drill", password: "x", database: "looker" };

  it("refuses production's database on production's server", () => {
    expect(() => assertNotProduction(drill, { host: "DB.internal", port: 3306, database: "looker" })).toThrow(
      InputError,
    );
    expect(() =>
      assertNotProduction({ ...drill, host: "127.0.0.1" }, { host: "localhost", database: "looker" }),
    ).toThrow(/production database/);
  });

  it("accepts another name, or the same name on another server", () => {
    expect(() =>
      assertNotProduction(
        { ...drill, database: "looker_drill" },
        { host: "db.internal", database: "looker" },
      ),
    ).not.toThrow();
    expect(() =>
      assertNotProduction(drill, { host: "db-prod.internal", port: 3306, database: "looker" }),
    ).not.toThrow();
    expect(() =>
      assertNotProduction(drill, { host: "db.internal", port: 3307, database: "looker" }),
    ).not.toThrow();
  });
});

describe("parseSha256sumZ", () => {
  it("keeps names with spaces, newlines and backslashes exactly", () => {
    const a = "a".repeat(64);
    const b = "b".repeat(64);
    const parsed = parseSha256sumZ(`${a}  ./x y\nz\0${b}  ./back\\slash\0`, (n) => n.slice(2));
    expect([...parsed]).toEqual([
      ["x y\nz", a],
      ["back\\slash", b],
    ]);
  });

  it("refuses output it does not understand", () => {
    expect(() => parseSha256sumZ("sha256sum: x: Permission denied\0", (n) => n)).toThrow(
      /unexpected sha256sum output/,
    );
  });
});

describe("looker-backup drill input errors", () => {
  it("needs exactly one archive source", async () => {
    const run = await cli("drill", "--target-dir", "/nonexistent-drill-target");
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("give exactly one of --archive or --store-dir");
  });

  it("refuses an SSH target without strict host keys", async () => {
    const run = await cli(
      "drill",
      "--archive",
      "/x.tar.zst.age",
      "--passphrase-env",
      "PATH",
      "--target-host",
      "10.0.0.5",
    );
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("needs --ssh-key and --known-hosts");
  });

  it("parses --check as PATH=STATUS", async () => {
    const run = await cli(
      "drill",
      "--archive",
      "/x.tar.zst.age",
      "--passphrase-env",
      "PATH",
      "--target-dir",
      "/t",
      "--check",
      "alive",
    );
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("--check 'alive' is not PATH=STATUS");
  });

  it("reads the CMK from the named environment variable only", async () => {
    const run = await cli(
      "drill",
      "--archive",
      "/x.tar.zst.age",
      "--passphrase-env",
      "PATH",
      "--target-dir",
      "/t",
      "--master-key-env",
      "DRILL_UNIT_TEST_UNSET_VARIABLE",
    );
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("environment variable DRILL_UNIT_TEST_UNSET_VARIABLE is empty or unset");
  });
});
