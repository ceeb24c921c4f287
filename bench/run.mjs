// `npm run bench [-- --size 1G] [-- --scaling] [-- --small-files] [-- --rounds N] [-- --out-dir DIR] [-- --restore-dir DIR] [-- --write-results]`
// Times looker-backup against the shell pipeline it replaces, in the same run, on the same deterministic home:
//   backup:  tar -cf - | zstd -3 -T0 | age -r     vs  looker-backup backup
//   restore: age -d | zstd -d | tar -x            vs  looker-backup restore (includes catalog verification)
// and prints MB/s, our/shell ratio, CPU seconds (user + system) of each, compression ratio and our peak RSS.
// Archives go to --out-dir and restores to --restore-dir (default: the work directory); a tmpfs such as /dev/shm
// takes the disk out of it. On a disk, ours pays for durability the shell does not: the dir store fsyncs the archive
// (and its directory) before it reports success, while `> file` leaves the data to the kernel's writeback.
// A script, never a timed test.
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { bundle } from "../scripts/bundle.mjs";
import { generateLookerHome } from "../test/fixtures/home-generator.ts";

const { values } = parseArgs({
  options: {
    size: { type: "string", default: "1G" },
    rounds: { type: "string", default: "3" },
    scaling: { type: "boolean", default: false },
    "small-files": { type: "boolean", default: false },
    "write-results": { type: "boolean", default: false },
    work: { type: "string", default: path.join(os.tmpdir(), "looker-backup-bench") },
    "out-dir": { type: "string" },
    "restore-dir": { type: "string" },
  },
});

const work = values.work;
const rounds = Number(values.rounds);
const cli = path.join(work, "dist", "cli.js");

function parseSize(text) {
  const match = /^([\d.]+)\s*([KMG]?)B?$/i.exec(text);
  if (!match) throw new Error(`--size: '${text}' is not a size like 512M or 1G`);
  return Math.round(
    Number(match[1]) * { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[match[2].toUpperCase()],
  );
}

function requireTools() {
  const missing = ["tar", "zstd", "age", "age-keygen", "bash", "/usr/bin/time"].filter(
    (t) => spawnSync("which", [t]).status !== 0,
  );
  if (missing.length)
    throw new Error(`bench needs ${missing.join(", ")}: apt-get install -y tar zstd age time`);
}

/**
 * Runs a command, returning wall time, CPU time (user + system, of it and its children) and peak RSS. GNU time's
 * %M is the kernel's own high-water mark of the process (maxrss at exit), exact where polling /proc every 20 ms
 * could miss a short peak. CPU time tells how much of the 2 cores a run took, which wall time alone hides.
 */
function timed(command, args, options = {}) {
  return new Promise((resolve, reject) => {
    const rssFile = path.join(work, `rss-${process.pid}.txt`);
    const started = process.hrtime.bigint();
    const child = spawn("/usr/bin/time", ["-f", "%M %U %S", "-o", rssFile, command, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      ...options,
    });
    let stderr = "";
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.stdout.resume();
    child.on("error", reject);
    child.on("close", async (code) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const report = (await readFile(rssFile, "utf8").catch(() => "0 0 0")).trim().split("\n").pop();
      const [peakKb, user, system] = report.split(" ").map(Number);
      await rm(rssFile, { force: true });
      if (code !== 0 && code !== 3)
        reject(new Error(`${command} ${args.join(" ")} exited ${code}: ${stderr}`));
      else resolve({ ms, peakKb, cpuS: user + system });
    });
  });
}

const shell = (script) => timed("bash", ["-o", "pipefail", "-c", script]);

async function duSize(dir) {
  const out = spawnSync("du", ["-sb", dir]).stdout.toString();
  return Number(out.split("\t")[0]);
}

async function prepareHome(label, options) {
  const home = path.join(work, `home-${label}`);
  const marker = path.join(work, `home-${label}.json`);
  if (existsSync(marker)) return JSON.parse(await readFile(marker, "utf8"));
  await rm(home, { recursive: true, force: true });
  const generated = await generateLookerHome({ root: home, seed: 42, ...options });
  const info = { home, bytes: await duSize(home), files: generated.files };
  await writeFile(marker, JSON.stringify(info));
  return info;
}

function median(list) {
  const sorted = [...list].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function benchOne(label, home, keys) {
  const out = values["out-dir"] ? path.join(values["out-dir"], "out") : path.join(work, "out");
  const rows = {
    shellBackup: [],
    oursBackup: [],
    shellRestore: [],
    oursRestore: [],
    peakBackup: 0,
    peakRestore: 0,
    cpu: { shellBackup: [], oursBackup: [], shellRestore: [], oursRestore: [] },
  };
  const restoreRoot = values["restore-dir"] ?? out;
  let shellArchive = 0;
  let oursArchive = 0;
  for (let round = 0; round <= rounds; round++) {
    await rm(out, { recursive: true, force: true });
    await mkdir(out, { recursive: true });
    const shellFile = path.join(out, "shell.tar.zst.age");
    const sb = await shell(
      `tar -cf - -C '${home.home}' . | zstd -3 -T0 -q | age -r ${keys.recipient} > '${shellFile}'`,
    );
    const ob = await timed(process.execPath, [
      cli,
      "backup",
      "--home",
      home.home,
      "--out",
      out,
      "--recipient",
      keys.recipient,
      "--instance",
      "bench",
      "--json",
      "--quiet",
    ]);
    const archive = (await import("node:fs")).readdirSync(out).find((n) => n.startsWith("bench-"));
    shellArchive = (await stat(shellFile)).size;
    oursArchive = (await stat(path.join(out, archive))).size;
    const shellTarget = path.join(restoreRoot, "shell-restore");
    const oursTarget = path.join(restoreRoot, "ours-restore");
    await rm(shellTarget, { recursive: true, force: true });
    await rm(oursTarget, { recursive: true, force: true });
    await mkdir(shellTarget, { recursive: true });
    const sr = await shell(
      `age -d -i '${keys.identity}' '${shellFile}' | zstd -dq | tar -x -C '${shellTarget}'`,
    );
    // Each restore starts from the same free memory: on a tmpfs, a second 2 GB tree beside the first made the later
    // restore pay for fresh memory pages (its system time doubled, on this VM), whichever pipeline it was.
    await rm(shellTarget, { recursive: true, force: true });
    const or = await timed(process.execPath, [
      cli,
      "restore",
      "--archive",
      path.join(out, archive),
      "--identity",
      keys.identity,
      "--target",
      oursTarget,
      "--json",
      "--quiet",
    ]);
    if (round === 0) continue; // warm-up: page cache, JIT
    rows.shellBackup.push(sb.ms);
    rows.oursBackup.push(ob.ms);
    rows.shellRestore.push(sr.ms);
    rows.oursRestore.push(or.ms);
    rows.cpu.shellBackup.push(sb.cpuS);
    rows.cpu.oursBackup.push(ob.cpuS);
    rows.cpu.shellRestore.push(sr.cpuS);
    rows.cpu.oursRestore.push(or.cpuS);
    rows.peakBackup = Math.max(rows.peakBackup, ob.peakKb);
    rows.peakRestore = Math.max(rows.peakRestore, or.peakKb);
  }
  const mbps = (ms) => home.bytes / 1e6 / (ms / 1000);
  const result = {
    label,
    bytes: home.bytes,
    files: home.files,
    backup: { shell: mbps(median(rows.shellBackup)), ours: mbps(median(rows.oursBackup)) },
    restore: { shell: mbps(median(rows.shellRestore)), ours: mbps(median(rows.oursRestore)) },
    cpuS: Object.fromEntries(Object.entries(rows.cpu).map(([k, list]) => [k, median(list)])),
    ratio: { shell: home.bytes / shellArchive, ours: home.bytes / oursArchive },
    peakRssMiB: { backup: rows.peakBackup / 1024, restore: rows.peakRestore / 1024 },
  };
  await rm(out, { recursive: true, force: true });
  await rm(path.join(restoreRoot, "shell-restore"), { recursive: true, force: true });
  await rm(path.join(restoreRoot, "ours-restore"), { recursive: true, force: true });
  return result;
}

function table(results) {
  const f = (n) => n.toFixed(0).padStart(6);
  const cpu = (shell, ours) => `${shell.toFixed(1)} / ${ours.toFixed(1)}`;
  const lines = [
    "| case | size | files | backup shell MB/s | backup ours MB/s | ours/shell | backup CPU s shell / ours | restore shell MB/s | restore ours MB/s | ours/shell | restore CPU s shell / ours | ratio shell | ratio ours | peak RSS backup / restore MiB |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of results) {
    lines.push(
      `| ${r.label} | ${(r.bytes / 1e9).toFixed(2)} GB | ${r.files} | ${f(r.backup.shell)} | ${f(r.backup.ours)} | ${(r.backup.ours / r.backup.shell).toFixed(2)}x | ${cpu(r.cpuS.shellBackup, r.cpuS.oursBackup)} | ${f(r.restore.shell)} | ${f(r.restore.ours)} | ${(r.restore.ours / r.restore.shell).toFixed(2)}x | ${cpu(r.cpuS.shellRestore, r.cpuS.oursRestore)} | ${r.ratio.shell.toFixed(2)} | ${r.ratio.ours.toFixed(2)} | ${r.peakRssMiB.backup.toFixed(0)} / ${r.peakRssMiB.restore.toFixed(0)} |`,
    );
  }
  return lines.join("\n");
}

requireTools();
await mkdir(work, { recursive: true });
await bundle(path.join(work, "dist"));
const keys = { identity: path.join(work, "identity.txt") };
if (!existsSync(keys.identity)) spawnSync("age-keygen", ["-o", keys.identity]);
keys.recipient = spawnSync("age-keygen", ["-y", keys.identity]).stdout.toString().trim();

const cases = [];
if (values.scaling) {
  for (const size of ["256M", "512M", "1G", "2G"])
    cases.push({ label: `home ${size}`, options: { sizeBytes: parseSize(size), smallFiles: 20_000 } });
} else {
  cases.push({
    label: `home ${values.size}`,
    options: { sizeBytes: parseSize(values.size), smallFiles: 20_000 },
  });
}
if (values["small-files"])
  cases.push({ label: "small files 100k", options: { sizeBytes: 4 << 20, smallFiles: 100_000 } });

const results = [];
for (const c of cases) {
  process.stderr.write(`bench: preparing ${c.label}\n`);
  const home = await prepareHome(c.label.replace(/\W+/g, "-"), c.options);
  process.stderr.write(`bench: running ${c.label} (${rounds} rounds after a warm-up)\n`);
  results.push(await benchOne(c.label, home, keys));
}
const commit = spawnSync("git", ["rev-parse", "--short", "HEAD"]).stdout.toString().trim();
const restoreTo = [
  values["out-dir"] ? `archives into ${values["out-dir"]}` : "archives into the work directory",
  values["restore-dir"] ? `restores into ${values["restore-dir"]}` : "restores into the work directory",
].join(", ");
const header = `Machine: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? "?"}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; Node ${process.version}; ${new Date().toISOString().slice(0, 10)}; commit ${commit}; median of ${rounds} rounds, warm cache; ${restoreTo}.`;
const report = `${header}\n\n${table(results)}\n`;
process.stdout.write(report);
if (values["write-results"]) await recordResults(report);

/**
 * Writes the report into bench/RESULTS.md, as the section of this command line (an existing section of the same
 * command is replaced), so runs with and without --restore-dir can stand side by side with the notes around them.
 */
async function recordResults(report) {
  const file = new URL("./RESULTS.md", import.meta.url);
  const command = `npm run bench -- ${process.argv.slice(2).join(" ")}`;
  const start = `<!-- bench: ${command} -->`;
  const end = "<!-- bench: end -->";
  const section = `${start}\nProduced by \`${command}\`.\n\n${report}${end}`;
  const old = existsSync(file) ? await readFile(file, "utf8") : "# Benchmark results\n";
  const at = old.indexOf(start);
  const updated =
    at >= 0
      ? old.slice(0, at) + section + old.slice(old.indexOf(end, at) + end.length)
      : `${old.trimEnd()}\n\n${section}\n`;
  await writeFile(file, updated);
}
