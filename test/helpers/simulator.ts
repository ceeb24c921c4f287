/**
 * Drives the simulated Looker in a generated home as an admin would: `./looker <command>` with HOME set to the home
 * (Looker's script starts with `cd $HOME/looker`) and the `java` stand-in first on PATH (test/helpers/java-path.ts).
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type GeneratedLookerHome, generateLookerHome } from "../fixtures/home-generator.js";
import { freePort } from "./free-port.js";
import { pathWithJava } from "./java-path.js";

export interface SimulatedLooker extends GeneratedLookerHome {
  looker(args: string[], cmk?: string): { code: number; stdout: string; stderr: string };
  /** `./looker start`, then waits until /alive answers (the start daemonizes and returns while Looker boots). */
  start(): void;
  /** `./looker status`: exit 0 true, exit 7 false; anything else throws. */
  isRunning(): boolean;
  stopQuietly(): void;
  /** The pid Looker keeps in looker/.tmp/looker.pid, when that file holds one. */
  pid(): number | undefined;
}

const START_WAIT_MS = 60_000;

export async function simulatedLooker(
  root: string,
  options: Omit<Parameters<typeof generateLookerHome>[0], "root" | "webPort" | "apiPort"> = {},
): Promise<SimulatedLooker> {
  // Without lookerstart.cfg Looker runs on its default ports; otherwise free ones keep parallel tests apart.
  const defaults = options.lookerstartCfg === false;
  const generated = await generateLookerHome({
    root,
    webPort: defaults ? 9999 : await freePort(),
    apiPort: defaults ? 19999 : await freePort(),
    ...options,
  });
  const looker = (args: string[], cmk = generated.cmk) => {
    const result = spawnSync("./looker", args, {
      cwd: join(generated.home, "looker"),
      env: { ...process.env, PATH: pathWithJava(), HOME: generated.home, LKR_MASTER_KEY_ENV: cmk },
      encoding: "utf8",
    });
    return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
  };
  const isRunning = () => {
    const result = looker(["status"]);
    if (result.code === 0) return true;
    if (result.code === 7) return false;
    throw new Error(`./looker status exited ${result.code}: ${result.stdout}${result.stderr}`);
  };
  const pid = () => {
    try {
      const value = Number.parseInt(
        readFileSync(join(generated.lookerDir, ".tmp", "looker.pid"), "utf8"),
        10,
      );
      return Number.isInteger(value) && value > 0 ? value : undefined;
    } catch {
      return undefined;
    }
  };
  return {
    ...generated,
    looker,
    start: () => {
      const result = looker(["start"]);
      if (result.code !== 0)
        throw new Error(`./looker start exited ${result.code}: ${result.stdout}${result.stderr}`);
      const deadline = Date.now() + START_WAIT_MS;
      while (Date.now() < deadline) {
        if (isRunning()) return;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
      }
      const log = readFileSync(join(generated.lookerDir, "log", "looker.log"), "utf8")
        .split("\n")
        .slice(-8);
      throw new Error(
        `simulated Looker did not answer /alive within ${START_WAIT_MS} ms:\n${log.join("\n")}`,
      );
    },
    isRunning,
    stopQuietly: () => {
      const before = pid();
      looker(["stop"]);
      // /alive refuses before the server has exited (it still logs its shutdown): wait for the process itself, so a
      // caller that removes the home next does not race the last writes into looker/log.
      const deadline = Date.now() + STOP_WAIT_MS;
      while (before !== undefined && Date.now() < deadline && processExists(before)) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
      }
    },
    pid,
  };
}

const STOP_WAIT_MS = 20_000;

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
