/**
 * The `systemctl` stand-in (test/fixtures/systemd-sim/systemctl.mjs) set up for one test file: a root directory holding
 * its units (system/), state (run/), journal and calls.log, and a `systemctl` wrapper in bin/ that tells the stand-in
 * where that root is. Put bin/ first on PATH where the product should find systemctl; the product passes its PATH on
 * to the commands it runs (src/runtime/child-env.ts) and never learns about the root.
 */
import { spawnSync } from "node:child_process";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { JAVA_STAND_IN_DIR } from "../fixtures/home-generator.js";

const STAND_IN = fileURLToPath(new URL("../fixtures/systemd-sim/systemctl.mjs", import.meta.url));

export interface SystemdStandIn {
  readonly root: string;
  /** Holds `systemctl`; first on PATH wherever the product should use it. */
  readonly binDir: string;
  /** Writes (or replaces) a unit file under system/. */
  installUnit(name: string, text: string): Promise<void>;
  /** Every systemctl call so far, as "<uid> <args>". */
  calls(): Promise<string[]>;
  /** Runs the stand-in as this (root) test process. */
  systemctl(...args: string[]): { code: number; stdout: string; stderr: string };
}

export async function systemdStandIn(root: string): Promise<SystemdStandIn> {
  const binDir = join(root, "bin");
  await mkdir(binDir, { recursive: true });
  await mkdir(join(root, "system"), { recursive: true });
  // The looker user asks for the unit's state (show, is-active) too: it must read the root and log its calls.
  await chmod(root, 0o755);
  await writeFile(join(root, "calls.log"), "");
  await chmod(join(root, "calls.log"), 0o666);
  const quote = (text: string) => `'${text.replace(/'/g, `'\\''`)}'`;
  const wrapper = join(binDir, "systemctl");
  await writeFile(
    wrapper,
    `#!/bin/sh\nexport SYSTEMCTL_ROOT=${quote(root)}\nexec ${quote(process.execPath)} ${quote(STAND_IN)} "$@"\n`,
  );
  await chmod(wrapper, 0o755);
  return {
    root,
    binDir,
    installUnit: (name, text) => writeFile(join(root, "system", name), text),
    calls: async () => (await readFile(join(root, "calls.log"), "utf8")).split("\n").filter(Boolean),
    systemctl: (...args) => {
      const result = spawnSync(wrapper, args, { encoding: "utf8" });
      return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
    },
  };
}

/**
 * Looker's published unit (customer-scripts, startup_scripts/systemd/looker.service) for a home elsewhere than
 * /home/looker, as its README says to customise it: the paths, and the environment an admin gives it. HOME because
 * Looker's script works in $HOME/looker; PATH for the JDK (here the `java` stand-in and the node it runs on); the CMK
 * in an EnvironmentFile only root reads, as systemd never passes systemctl's caller's environment on.
 */
export function lookerUnit(options: { home: string; user: string; environmentFile: string }): string {
  const lookerDir = join(options.home, "looker");
  const path = [JAVA_STAND_IN_DIR, dirname(process.execPath), "/usr/local/bin", "/usr/bin", "/bin"].join(":");
  return [
    "[Unit]",
    "Description=Looker Application",
    "After=network.target",
    "",
    "[Service]",
    `ExecStart=${lookerDir}/looker start`,
    `ExecStop=${lookerDir}/looker stop`,
    "Type=simple",
    `PIDFile=${lookerDir}/.tmp/looker.pid`,
    `User=${options.user}`,
    `WorkingDirectory=${lookerDir}`,
    "TimeoutStartSec=500",
    `Environment=HOME=${options.home} PATH=${path}`,
    `EnvironmentFile=${options.environmentFile}`,
    "",
    "[Install]",
    "WantedBy=default.target",
    "",
  ].join("\n");
}
