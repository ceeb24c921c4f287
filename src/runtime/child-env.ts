/**
 * The environment of every process we start (Looker's commands, pre/post commands, mysqldump, tar, cp): an
 * allow-list of this process's environment plus what the caller passes, never the rest.
 *
 * Why an allow-list: on a GitHub runner our environment holds the job's secrets (`INPUT_master-key`, ...,
 * `ACTIONS_RUNTIME_TOKEN`) and the job's `RUNNER_TRACKING_ID`. The runner kills every process carrying that id when
 * the job completes (actions/runner, JobExtension's orphan process cleanup), so a Looker started with our environment
 * would die with the job, and meanwhile expose the secrets in /proc/<pid>/environ. A deny-list would miss whatever
 * the next runner version adds; an allow-list cannot leak what it never names.
 */
import { InputError } from "../errors.js";

/** Variables a command may need from the runner's environment: where programs are, the user, locale and Java. */
const PASSED_NAMES = new Set(["PATH", "HOME", "LANG", "LANGUAGE", "TZ", "JAVA_HOME", "TMPDIR"]);
const PASSED_PREFIXES = ["LC_"];

/**
 * Names a user may not route to Looker through `looker-env`: the runner's job variables and secrets (the reasons
 * above), and the CMK variables, which go only to the commands that need them, from the master-key inputs.
 */
const REFUSED_PATTERNS: readonly RegExp[] = [
  /^RUNNER_/,
  /^INPUT_/i,
  /^STATE_/,
  /^ACTIONS_/,
  /^GITHUB_/,
  /^LKR_MASTER_KEY_/,
];

export type Environment = Readonly<Record<string, string>>;

/** The allow-listed part of `source`, then `extra` over it. */
export function childEnvironment(
  extra: Environment = {},
  source: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(source)) {
    if (value === undefined) continue;
    if (PASSED_NAMES.has(name) || PASSED_PREFIXES.some((prefix) => name.startsWith(prefix)))
      env[name] = value;
  }
  return Object.assign(env, extra);
}

/**
 * Parses the `looker-env` input (or `--looker-env` flags): one `NAME=value` (set) or `NAME` (pass this process's
 * value on, when it has one) per line. Refused names fail here, before Looker is touched.
 */
export function parseLookerEnv(
  lines: readonly string[],
  where: string,
  source: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of lines) {
    const eq = line.indexOf("=");
    const name = eq < 0 ? line : line.slice(0, eq);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new InputError(
        `${where}: '${name.slice(0, 64)}' is not an environment variable name`,
        "write one NAME=value or NAME per line",
      );
    }
    if (REFUSED_PATTERNS.some((pattern) => pattern.test(name))) {
      throw new InputError(
        `${where}: ${name} may not be passed to Looker`,
        name.startsWith("LKR_MASTER_KEY_")
          ? "give the CMK with master-key or master-key-file; it reaches only the commands that need it"
          : "runner and job variables never reach Looker: they would expose secrets and tie Looker's life to the job",
      );
    }
    if (eq >= 0) env[name] = line.slice(eq + 1);
    else if (source[name] !== undefined) env[name] = source[name];
  }
  return env;
}

/**
 * For the drill's provision and teardown commands only: they create and delete cloud VMs inside the job, so they
 * need what earlier steps put in the job's environment (cloud credentials, OIDC request variables), and they end
 * with the step. The step's own inputs (its secrets) and state are still left out.
 */
export function jobEnvironment(
  extra: Environment = {},
  source: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(source)) {
    if (value !== undefined && !/^(INPUT|STATE)_/i.test(name)) env[name] = value;
  }
  return Object.assign(env, extra);
}
