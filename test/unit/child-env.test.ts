/**
 * What reaches the processes we start: the allow-list, the `looker-env` additions, and never the job's variables.
 * Run through a real LocalHost child, so the environment checked is the one the kernel gave the process.
 */
import { describe, expect, it } from "vitest";
import { readBackupSettings } from "../../src/config/backup-settings.js";
import { actionInputs } from "../../src/config/source.js";
import { InputError } from "../../src/errors.js";
import { LocalHost } from "../../src/remote/local-host.js";
import { childEnvironment, jobEnvironment, parseLookerEnv } from "../../src/runtime/child-env.js";

/** The variables a GitHub runner gives a step, secrets among them (names as the runner spells them). */
const JOB_ENV = {
  PATH: "/usr/bin:/bin",
  HOME: "/home/runner",
  LANG: "C.UTF-8",
  LC_ALL: "C.UTF-8",
  TZ: "Europe/Berlin",
  JAVA_HOME: "/opt/jdk",
  RUNNER_TRACKING_ID: "github_1234",
  RUNNER_TEMP: "/runner/_temp",
  "INPUT_MASTER-KEY": "cmk-secret",
  INPUT_PASSPHRASE: "passphrase-secret",
  "STATE_stop-record": "{}",
  ACTIONS_RUNTIME_TOKEN: "runtime-token",
  ACTIONS_RESULTS_URL: "http://127.0.0.1:1/",
  GITHUB_TOKEN: "ghs_token",
  LKR_MASTER_KEY_ENV: "production-cmk",
  AWS_SECRET_ACCESS_KEY: "cloud-secret",
};

describe("childEnvironment", () => {
  it("keeps only PATH, HOME, locale, TZ and JAVA_HOME of the job's environment, then adds what it is given", () => {
    expect(childEnvironment({ EXTRA: "1" }, JOB_ENV)).toEqual({
      PATH: "/usr/bin:/bin",
      HOME: "/home/runner",
      LANG: "C.UTF-8",
      LC_ALL: "C.UTF-8",
      TZ: "Europe/Berlin",
      JAVA_HOME: "/opt/jdk",
      EXTRA: "1",
    });
  });

  it("jobEnvironment (provision/teardown only) keeps the job's variables but not the step's inputs or state", () => {
    const env = jobEnvironment({}, JOB_ENV);
    expect(env.AWS_SECRET_ACCESS_KEY).toBe("cloud-secret");
    expect(Object.keys(env).filter((name) => /^(INPUT|STATE)_/.test(name))).toEqual([]);
  });

  it("a LocalHost command sees no job variable, whatever this process holds", async () => {
    const saved = { ...process.env };
    Object.assign(process.env, JOB_ENV, { PATH: saved.PATH });
    try {
      const result = await new LocalHost().run(["env"], { env: { LOOKER_EXTRA: "yes" } });
      expect(result.code).toBe(0);
      const names = result.stdout
        .trim()
        .split("\n")
        .map((line) => line.slice(0, line.indexOf("=")));
      expect(names).toContain("LOOKER_EXTRA");
      expect(names).toContain("PATH");
      for (const leaked of [
        "RUNNER_TRACKING_ID",
        "INPUT_MASTER-KEY",
        "STATE_stop-record",
        "ACTIONS_RUNTIME_TOKEN",
        "GITHUB_TOKEN",
        "LKR_MASTER_KEY_ENV",
      ])
        expect(names).not.toContain(leaked);
    } finally {
      for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
      Object.assign(process.env, saved);
    }
  });
});

describe("looker-env", () => {
  it("sets NAME=value (commas and '=' kept) and passes NAME from this process when it has a value", () => {
    expect(
      parseLookerEnv(["JAVA_OPTS=-Da=1,b=2", "JAVA_HOME", "UNSET_HERE"], "input 'looker-env'", {
        JAVA_HOME: "/opt/jdk",
      }),
    ).toEqual({ JAVA_OPTS: "-Da=1,b=2", JAVA_HOME: "/opt/jdk" });
  });

  it.each([
    ["RUNNER_TRACKING_ID", /RUNNER_TRACKING_ID may not be passed to Looker/],
    ["INPUT_MASTER-KEY", /is not an environment variable name/],
    ["INPUT_PASSPHRASE", /may not be passed/],
    ["ACTIONS_RUNTIME_TOKEN=x", /may not be passed/],
    ["GITHUB_TOKEN", /may not be passed/],
    ["STATE_x", /may not be passed/],
    ["LKR_MASTER_KEY_ENV=abc", /may not be passed[\s\S]*master-key/],
  ])("refuses %s as bad input naming the input", (line, message) => {
    const read = (name: string) =>
      ({ recipients: "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq", "looker-env": line })[
        name
      ] ?? "";
    let error: unknown;
    try {
      readBackupSettings(actionInputs(read));
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(InputError);
    const text = `${(error as InputError).message}\n${(error as InputError).hint}`;
    expect(text).toMatch(/input 'looker-env'/);
    expect(text).toMatch(message);
  });

  it("reads one variable per line from the input, so values may hold commas", () => {
    const read = (name: string) =>
      ({
        recipients: "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq",
        "looker-env": "# comment\nJAVA_OPTS=-Xmx1g,-Xms1g\n\nTZ=UTC\n",
      })[name] ?? "";
    expect(readBackupSettings(actionInputs(read)).lookerEnv).toEqual({
      JAVA_OPTS: "-Xmx1g,-Xms1g",
      TZ: "UTC",
    });
  });
});
