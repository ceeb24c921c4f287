// Lints the shell scripts with shellcheck: the examples operators copy (examples/**/*.sh), scripts/*.sh and
// .ci/run. The looker script stand-in under test/fixtures is left out: it follows Looker's published script, as is.
import { spawnSync } from "node:child_process";
import { glob } from "node:fs/promises";

const files = [".ci/run"];
for (const pattern of ["examples/**/*.sh", "scripts/*.sh"]) {
  for await (const file of glob(pattern)) files.push(file);
}
files.sort();

const probe = spawnSync("shellcheck", ["--version"], { encoding: "utf8" });
if (probe.error) {
  console.error(
    "shell: shellcheck is not installed: apt-get install shellcheck (as root, node scripts/prereqs.mjs installs it)",
  );
  process.exit(1);
}
const result = spawnSync("shellcheck", ["--external-sources", ...files], { stdio: "inherit" });
if (result.status !== 0) process.exit(1);
const version = /version: (\S+)/.exec(probe.stdout)?.[1] ?? "?";
console.log(`shell: no shellcheck ${version} findings in ${files.length} files`);
