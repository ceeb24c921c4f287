/**
 * What Looker is started with: `LOOKERARGS` and `LOOKERPORT` as Looker's own startup script sees them. The script
 * (looker-open-source/customer-scripts, startup_scripts/looker) sets `LOOKERARGS="--force-gcm-encryption"`, then
 * sources `./lookerstart.cfg` from `$HOME/looker` when it is readable, and passes `${LOOKERARGS}` unquoted (split on
 * white space) to `java -jar looker.jar start`. So the file is read the same way here: sourced by /bin/sh as the
 * looker user in the Looker directory, on the node itself (over SSH too), and the result split on white space. It is
 * the admin's own configuration, which Looker's script runs on every start.
 */
import { posix } from "node:path";
import { DEFAULT_API_PORT, DEFAULT_WEB_PORT } from "../defaults.js";
import { LookerError } from "../errors.js";
import type { Host } from "../remote/host.js";

/** Where to read a node's start options: its host and Looker directory (a LookerNode has both). */
export interface StartConfigSource {
  readonly name: string;
  readonly config: { readonly host: Host; readonly lookerDir: string };
}

export interface LookerStartOptions {
  /** LOOKERARGS, split as the script's unquoted expansion splits it. */
  readonly args: readonly string[];
  /** LOOKERPORT (default 9999): the web port every health request of the script goes to. */
  readonly port: number;
  /** `--core-port` (Looker's "Startup options": the port core runs on, default 19999): the API port. */
  readonly corePort: number;
  /** `--shared-storage-dir D` of a cluster: shared files every node reads, outside the home. */
  readonly sharedStorageDir?: string;
  /**
   * `-d F` / `--internal-db-creds=F` (Looker's "Startup options"): the YAML file with the backend database's
   * credentials, so the backend is MySQL; relative to the Looker directory unless absolute.
   */
  readonly dbConfigFile?: string;
  readonly clustered: boolean;
  /** `--no-ssl`: the web port speaks plain http (the script's own test is a substring match). */
  readonly noSsl: boolean;
}

const DEFAULT_LOOKERARGS = "--force-gcm-encryption";

// The variables the script sets before it sources the file, so `LOOKERARGS="$LOOKERARGS -d looker-db.yml"` works.
const READ_SCRIPT = [
  'cd "$1" || exit 90',
  'JAVAARGS=""',
  `LOOKERARGS="${DEFAULT_LOOKERARGS}"`,
  "if [ -r ./lookerstart.cfg ]; then . ./lookerstart.cfg </dev/null >/dev/null 2>&1; fi",
  `printf '%s\\n%s\\n' "$LOOKERARGS" "\${LOOKERPORT:-${DEFAULT_WEB_PORT}}"`,
].join("\n");

/** Reads the node's start options by sourcing its lookerstart.cfg as the script does. */
export async function readStartOptions(node: StartConfigSource): Promise<LookerStartOptions> {
  const { lookerDir } = node.config;
  const result = await node.config.host.run(["/bin/sh", "-c", READ_SCRIPT, "read-start-options", lookerDir], {
    timeoutMs: 30_000,
  });
  const [args = "", port = ""] = result.stdout.split("\n");
  if (result.code !== 0) {
    throw new LookerError(
      `could not read Looker's start options (lookerstart.cfg) in ${lookerDir} on ${node.name} (exit ${result.code})${result.stderr.trim() ? `: ${result.stderr.trim()}` : ""}`,
      { hint: "check that the Looker directory exists and the looker user can read lookerstart.cfg" },
    );
  }
  return parseStartOptions(args, port, lookerDir);
}

/** LOOKERARGS and LOOKERPORT as text -> the options the backup and the drill need. */
export function parseStartOptions(
  lookerArgs: string,
  lookerPort: string,
  lookerDir: string,
): LookerStartOptions {
  const args = lookerArgs.split(/\s+/).filter(Boolean);
  const port = /^\d{1,5}$/.test(lookerPort.trim()) ? Number(lookerPort.trim()) : DEFAULT_WEB_PORT;
  // The last occurrence wins, as with Looker's option parser: a later `--port` overrides an earlier one.
  const flagValue = (long: string, short?: string): string | undefined => {
    let value: string | undefined;
    for (let i = 0; i < args.length; i++) {
      const arg = args[i]!;
      if (arg === long || (short !== undefined && arg === short)) value = args[i + 1];
      else if (arg.startsWith(`${long}=`)) value = arg.slice(long.length + 1);
    }
    return value;
  };
  const resolve = (path: string) => (posix.isAbsolute(path) ? path : posix.join(lookerDir, path));
  const corePort = Number(flagValue("--core-port"));
  const shared = flagValue("--shared-storage-dir");
  const dbConfig = flagValue("--internal-db-creds", "-d");
  return {
    args,
    port,
    corePort: Number.isInteger(corePort) && corePort >= 1 && corePort <= 65_535 ? corePort : DEFAULT_API_PORT,
    ...(shared ? { sharedStorageDir: resolve(shared) } : {}),
    ...(dbConfig ? { dbConfigFile: resolve(dbConfig) } : {}),
    clustered: args.includes("--clustered"),
    noSsl: lookerArgs.includes("--no-ssl"),
  };
}
