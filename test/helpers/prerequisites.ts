import { accessSync, constants } from "node:fs";
import path from "node:path";
import commandPackages from "../../scripts/test-prerequisites.json" with { type: "json" };

/** The Debian package that provides each command the tests use (one list, shared with the npm pretest step). */
export const COMMAND_PACKAGES: Readonly<Record<string, string>> = commandPackages;

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
