import { accessSync, constants } from "node:fs";
import path from "node:path";

/**
 * The Debian package that provides each command the tests use.
 * Keep in sync with scripts/prereqs.mjs (the npm pretest step), which installs them.
 */
export const COMMAND_PACKAGES: Readonly<Record<string, string>> = {
  sshd: "openssh-server",
  ssh: "openssh-client",
  "ssh-keygen": "openssh-client",
  age: "age",
  "age-keygen": "age",
  zstd: "zstd",
  tar: "tar",
  ip: "iproute2",
  nsenter: "util-linux",
  unshare: "util-linux",
  runuser: "util-linux",
  setpriv: "util-linux",
  useradd: "passwd",
  mariadbd: "mariadb-server",
  "mariadb-install-db": "mariadb-server",
  mysql: "mariadb-client",
  mysqldump: "mariadb-client",
  mysqladmin: "mariadb-client",
};

// sbin directories are searched too: a non-root PATH often lacks them, yet root-only tools live there.
const EXTRA_DIRS = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/** The absolute path of `name` on PATH (or a standard bin/sbin directory), or undefined. */
export function findCommand(name: string): string | undefined {
  const dirs = [...(process.env["PATH"] ?? "").split(path.delimiter).filter(Boolean), ...EXTRA_DIRS];
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; keep looking
    }
  }
  return undefined;
}

/**
 * Fails (never skips: a missing service must not turn into a green run) when any command is missing,
 * naming every missing command and the exact apt-get line that installs them.
 */
export function requireCommands(names: string[]): void {
  const missing = names.filter((name) => findCommand(name) === undefined);
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((name) => COMMAND_PACKAGES[name] ?? name))].sort();
  throw new Error(
    `missing test prerequisite command(s): ${missing.join(", ")}\n` +
      `fix: apt-get install -y ${packages.join(" ")}  (or run: node scripts/prereqs.mjs as root)`,
  );
}
