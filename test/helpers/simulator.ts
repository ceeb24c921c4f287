/** Drives the Looker simulator in a generated home, as an admin would: `cd ~/looker && ./looker <command>`. */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { type GeneratedLookerHome, generateLookerHome } from "../fixtures/home-generator.js";
import { freePort } from "./free-port.js";

export interface SimulatedLooker extends GeneratedLookerHome {
  looker(args: string[], cmk?: string): { code: number; stdout: string; stderr: string };
  start(): void;
  isRunning(): boolean;
  stopQuietly(): void;
}

export async function simulatedLooker(
  root: string,
  options: Omit<Parameters<typeof generateLookerHome>[0], "root" | "webPort" | "apiPort"> = {},
): Promise<SimulatedLooker> {
  const generated = await generateLookerHome({
    root,
    webPort: await freePort(),
    apiPort: await freePort(),
    bind: "127.0.0.1",
    ...options,
  });
  const looker = (args: string[], cmk = generated.cmk) => {
    const result = spawnSync("./looker", args, {
      cwd: join(generated.home, "looker"),
      env: { ...process.env, LKR_MASTER_KEY_ENV: cmk },
      encoding: "utf8",
    });
    return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
  };
  return {
    ...generated,
    looker,
    start: () => {
      const result = looker(["start"]);
      if (result.code !== 0) throw new Error(`simulator did not start: ${result.stderr}`);
    },
    isRunning: () => looker(["status"]).code === 0,
    stopQuietly: () => {
      looker(["stop"]);
    },
  };
}
