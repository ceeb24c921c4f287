// `npm run demo`: the main job end to end on the bundled Looker simulator, with Node, curl and openssl only (Looker's
// startup script asks /alive with curl; the simulated Looker makes its self-signed certificate with openssl).
//  1. generates a Looker home and starts the simulator (Looker with a customer master key),
//  2. runs the bundled backup action exactly as the Actions runner would (INPUT_* variables, GITHUB_OUTPUT,
//     GITHUB_STATE, GITHUB_STEP_SUMMARY), keystore-independent, brief-stop, into a directory store, then its post step,
//  3. simulates losing the host, and drills the backup: restores it into a new directory with a NEW master key,
//     runs restore_dr_backup with the key file, starts Looker there and proves it answers /alive.
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateLookerHome, JAVA_STAND_IN_DIR } from "../test/fixtures/home-generator.ts";
import { parseCommandFile } from "../test/helpers/actions-env.ts";
import { bundle } from "./bundle.mjs";

const work = await mkdtemp(join(tmpdir(), "looker-backup-demo-"));
// Traversable (not listable) by others: as root, the restored Looker runs as the looker user, who must reach its home.
await chmod(work, 0o711);
const dist = join(work, "dist");
const say = (line) => console.log(`\x1b[1mdemo:\x1b[0m ${line}`);

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function run(args, options = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], ...options });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

// Looker's script runs `java -jar looker.jar`: this machine's "JDK" is the simulator's java stand-in, first on PATH
// for everything the demo starts (the action passes its PATH on to Looker's commands).
process.env.PATH = `${JAVA_STAND_IN_DIR}:${process.env.PATH}`;

/** `./looker <args>` as an admin runs it: Looker's script picks the instance by HOME. */
function looker(home, args, cmk) {
  return spawnSync("./looker", args, {
    cwd: join(home, "looker"),
    env: { ...process.env, HOME: home, LKR_MASTER_KEY_ENV: cmk },
    encoding: "utf8",
  });
}

/** `./looker start` returns while Looker boots (it daemonizes); up is when `status` exits 0. */
async function startAndWait(home, cmk) {
  const started = looker(home, ["start"], cmk);
  if (started.status !== 0) return started;
  for (let i = 0; i < 600; i++) {
    if (looker(home, ["status"], cmk).status === 0) return started;
    await new Promise((r) => setTimeout(r, 100));
  }
  return { ...started, status: 1, stderr: `${started.stderr}Looker did not answer /alive within 60 s` };
}

function fail(what, result) {
  console.error(`demo: ${what} failed (exit ${result.code})\n${result.stdout}\n${result.stderr}`);
  process.exit(1);
}

say(`working in ${work}`);
await bundle(dist);

const cmk = randomBytes(32).toString("base64");
const webPort = await freePort();
const apiPort = await freePort();
const home = join(work, "production-home");
say("generating a Looker home (simulator, internal database, LookML, deploy keys) ...");
const generated = await generateLookerHome({
  root: home,
  seed: 2026,
  sizeBytes: 48 << 20,
  smallFiles: 400,
  cmk,
  webPort,
  apiPort,
});
say(`home ${home}: ${generated.files} files, ${(generated.bytes / 2 ** 20).toFixed(0)} MiB`);
const started = await startAndWait(home, cmk);
if (started.status !== 0)
  fail("starting the simulator", { code: started.status, stdout: started.stdout, stderr: started.stderr });
say(`Looker simulator running: https://127.0.0.1:${webPort}/alive (self-signed certificate)`);

const identity = join(work, "identity.txt");
const keygen = await run([join(dist, "cli.js"), "keygen", "--output", identity, "--json"]);
if (keygen.code !== 0) fail("keygen", keygen);
const { recipient } = JSON.parse(keygen.stdout);
say(`age identity ${identity} (recipient ${recipient})`);

const store = join(work, "store");
const files = {
  output: join(work, "github-output"),
  state: join(work, "github-state"),
  summary: join(work, "job-summary.md"),
};
await Promise.all(Object.values(files).map((f) => writeFile(f, "")));
await mkdir(join(work, "runner-temp"));
const inputs = {
  recipients: recipient,
  home,
  instance: "demo",
  consistency: "brief-stop",
  "keystore-independent": "true",
  "master-key": cmk,
  store: "dir",
  "store-dir": store,
  "web-port": String(webPort),
  "boot-timeout": "60",
};
const env = {
  PATH: process.env.PATH,
  HOME: process.env.HOME,
  GITHUB_ACTIONS: "true",
  GITHUB_OUTPUT: files.output,
  GITHUB_STATE: files.state,
  GITHUB_STEP_SUMMARY: files.summary,
  RUNNER_TEMP: join(work, "runner-temp"),
  ...Object.fromEntries(Object.entries(inputs).map(([k, v]) => [`INPUT_${k.toUpperCase()}`, v])),
};
say("running the backup action (dist/backup-main.js) as the Actions runner would ...");
const main = await run([join(dist, "backup-main.js")], { env });
if (main.code !== 0) fail("the backup action", main);
const outputs = parseCommandFile(await readFile(files.output, "utf8"));
const state = parseCommandFile(await readFile(files.state, "utf8"));
const post = await run([join(dist, "backup-post.js")], {
  env: { ...env, ...Object.fromEntries(Object.entries(state).map(([k, v]) => [`STATE_${k}`, v])) },
});
if (post.code !== 0) fail("the post step", post);
say(
  `backup done: ${outputs["archive-name"]} (${outputs.bytes} bytes, ${outputs.files} members), Looker was down ${outputs["downtime-ms"]} ms`,
);
say(`Looker still running after the backup: ${looker(home, ["status"], cmk).status === 0 ? "yes" : "NO"}`);

say("disaster: the production host is gone (stopping its Looker) ...");
looker(home, ["stop"], cmk);

const newCmk = randomBytes(32).toString("base64");
const restored = join(work, "restored-home");
say("drill: restoring into a new home with a NEW master key, restore_dr_backup, start, /alive ...");
const drill = await run(
  [
    join(dist, "cli.js"),
    "drill",
    "--archive",
    join(store, outputs["archive-name"]),
    "--identity",
    identity,
    "--target-dir",
    restored,
    "--master-key-env",
    "DEMO_NEW_CMK",
    "--web-port",
    String(webPort),
    "--api-port",
    String(apiPort),
    "--boot-timeout",
    "60",
    "--report",
    join(work, "drill-report.json"),
  ],
  { env: { ...process.env, DEMO_NEW_CMK: newCmk } },
);
process.stdout.write(drill.stderr);
if (drill.code !== 0) fail("the drill", drill);
const report = JSON.parse(await readFile(join(work, "drill-report.json"), "utf8"));
say(
  `drill ${report.result}: RTO ${report.rtoMs} ms, backup age ${report.rpoMs} ms, ${report.filesVerified} files verified`,
);
looker(restored, ["stop"], newCmk);
say(`archive:      ${join(store, outputs["archive-name"])}`);
say(`key file:     ${join(store, outputs["keyfile-artifact-name"])}`);
say(`job summary:  ${files.summary}`);
say(`drill report: ${join(work, "drill-report.json")}`);
