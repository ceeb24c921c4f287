// npm `pretest`: makes sure the real tools the tests drive (sshd, age, zstd, tar, iproute2, MariaDB) and the lint
// runs (shellcheck) are present.
// Installs them with apt-get when running as root; otherwise prints the exact command and fails.
// Fast path: only PATH lookups, no subprocess, when everything is already installed.
import { spawnSync } from "node:child_process";
import { accessSync, constants, readFileSync } from "node:fs";
import path from "node:path";

// One list for this script and test/helpers/prerequisites.ts: command -> Debian package.
const COMMAND_PACKAGES = JSON.parse(
  readFileSync(new URL("./test-prerequisites.json", import.meta.url), "utf8"),
);

const EXTRA_DIRS = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

function hasCommand(name) {
  const dirs = [...(process.env.PATH ?? "").split(path.delimiter).filter(Boolean), ...EXTRA_DIRS];
  return dirs.some((dir) => {
    try {
      accessSync(path.join(dir, name), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function missingCommands() {
  return Object.keys(COMMAND_PACKAGES).filter((name) => !hasCommand(name));
}

function run(command, args) {
  const result = spawnSync(command, args, {
    stdio: "inherit",
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
  if (result.error) throw result.error;
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(" ")} failed with exit code ${result.status}`);
  }
}

const missing = missingCommands();
if (missing.length === 0) {
  console.log(`prereqs: ok (${Object.keys(COMMAND_PACKAGES).length} commands present)`);
  process.exit(0);
}

const packages = [...new Set(missing.map((name) => COMMAND_PACKAGES[name]))].sort();
const installLine = `apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${packages.join(" ")}`;
console.log(`prereqs: missing ${missing.join(", ")}`);

if (typeof process.getuid !== "function" || process.getuid() !== 0) {
  console.error(`prereqs: not root, cannot install; run as root:\n  ${installLine}`);
  process.exit(1);
}

try {
  run("apt-get", ["update"]);
  run("apt-get", ["install", "-y", "--no-install-recommends", ...packages]);
} catch (error) {
  console.error(`prereqs: install failed: ${error.message}\n  try: ${installLine}`);
  process.exit(1);
}

const stillMissing = missingCommands();
if (stillMissing.length > 0) {
  console.error(`prereqs: still missing after install: ${stillMissing.join(", ")}`);
  process.exit(1);
}
console.log(`prereqs: installed ${packages.join(" ")}`);
