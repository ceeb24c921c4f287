// Makes a Looker simulator home and starts it, for workflows that drill this repository's own action (the
// pull-request gate) and for trying the action by hand. Prints shell assignments (HOME_DIR, CMK, WEB_PORT, API_PORT)
// and, under GitHub Actions, masks the CMK and writes them to GITHUB_OUTPUT. Looker's script runs `java -jar
// looker.jar`: the simulator's java stand-in is put on PATH here and, under GitHub Actions, on GITHUB_PATH for the
// later steps (the action passes its PATH on to Looker's commands), as a runner with a JDK would have it.
//   node scripts/sim-home.mjs --root DIR [--size 32M] [--web-port 9999] [--api-port 19999]
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { generateLookerHome, JAVA_STAND_IN_DIR } from "../test/fixtures/home-generator.ts";

const { values } = parseArgs({
  options: {
    root: { type: "string" },
    size: { type: "string", default: "32" },
    "web-port": { type: "string", default: "9999" },
    "api-port": { type: "string", default: "19999" },
  },
});
if (!values.root) {
  console.error("usage: node scripts/sim-home.mjs --root DIR [--size MiB] [--web-port N] [--api-port N]");
  process.exit(2);
}
const cmk = randomBytes(32).toString("base64");
const root = resolve(values.root);
const home = await generateLookerHome({
  root,
  seed: 7,
  sizeBytes: Number(values.size) << 20,
  cmk,
  webPort: Number(values["web-port"]),
  apiPort: Number(values["api-port"]),
});
// Looker's script picks the instance by HOME; `start` returns while Looker boots, so wait for `status` exit 0.
const env = {
  ...process.env,
  PATH: `${JAVA_STAND_IN_DIR}:${process.env.PATH}`,
  HOME: home.home,
  LKR_MASTER_KEY_ENV: cmk,
};
const started = spawnSync("./looker", ["start"], { cwd: join(root, "looker"), env, stdio: "inherit" });
if (started.status !== 0) process.exit(started.status ?? 1);
const up = spawnSync(
  "/bin/sh",
  ["-c", "for i in $(seq 600); do ./looker status >/dev/null && exit 0; sleep 0.1; done; exit 1"],
  { cwd: join(root, "looker"), env, stdio: "inherit" },
);
if (up.status !== 0) {
  console.error("the simulated Looker did not answer /alive within 60 s; see looker/log/looker.log");
  process.exit(1);
}
if (process.env.GITHUB_PATH) appendFileSync(process.env.GITHUB_PATH, `${JAVA_STAND_IN_DIR}\n`);
const lines = [`HOME_DIR=${home.home}`, `CMK=${cmk}`, `WEB_PORT=${home.webPort}`, `API_PORT=${home.apiPort}`];
if (process.env.GITHUB_OUTPUT) {
  console.log(`::add-mask::${cmk}`);
  appendFileSync(
    process.env.GITHUB_OUTPUT,
    `${lines.map((l) => l.toLowerCase().replace(/^([a-z_]+)=/, (m) => m.replace(/_/g, "-"))).join("\n")}\n`,
  );
}
console.log(lines.filter((l) => !l.startsWith("CMK=") || !process.env.GITHUB_OUTPUT).join("\n"));
