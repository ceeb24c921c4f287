// `npm run bench [-- --size 1G] [-- --scaling] [-- --small-files] [-- --pq] [-- --rounds N] [-- --out-dir DIR] [-- --restore-dir DIR] [-- --write-results]`
// Times looker-backup against the shell pipeline it replaces, in the same run, on the same deterministic home:
//   backup:  tar -cf - | zstd -3 -T0 | age -r     vs  looker-backup backup (by default, and with --consistency live)
//   restore: age -d | zstd -d | tar -x            vs  looker-backup restore (includes catalog verification)
// and prints MB/s, our/shell ratio, CPU seconds (user + system) of each, compression ratio and our peak RSS; and in
// the same rounds restic and borg (a first backup into an empty repository, a full restore) side by side with ours.
// Archives go to --out-dir and restores to --restore-dir (default: the work directory); a tmpfs such as /dev/shm
// takes the disk out of it. On a disk, ours pays for durability the shell does not: the dir store fsyncs the archive
// (and its directory) before it reports success, while `> file` leaves the data to the kernel's writeback. Restore
// onto a journaled file system, as a server's is: an ext4 without a journal (some VMs' root) scans for recently
// deleted inodes on every file created, and that scan, not the tools, then decides the restore figures.
// With --pq, instead: our backup and restore to a post-quantum (age1pq1) recipient against an X25519 one, rounds
// alternating which goes first, and the cost of one age header of each kind (the only work that differs).
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
    pq: { type: "boolean", default: false },
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
  const missing = ["tar", "zstd", "age", "age-keygen", "bash", "/usr/bin/time", "restic", "borg"].filter(
    (t) => spawnSync("which", [t]).status !== 0,
  );
  if (missing.length)
    throw new Error(
      `bench needs ${missing.join(", ")}: apt-get install -y tar zstd age time restic borgbackup`,
    );
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

/** Dropping the page cache needs root; without it every run still starts after a sync. */
const canDropCaches = process.getuid?.() === 0 && existsSync("/proc/sys/vm/drop_caches");

/**
 * Every timed run starts from the same memory: what the last run wrote is on the disk (sync), the page cache holds
 * the home and this run's input (the archive or repository) and nothing else. Why: on this VM a restore onto the
 * disk spends most of its time in the kernel, and how much depended on what the runs before it had left: with a
 * page cache full of earlier trees and writeback of the last restore still under way, the same restore's system
 * time went from 6 to 21 s, and whichever tool came after another one's restore paid for it (measured with all
 * four tools, one after another, with and without this). tmpfs contents (--out-dir /dev/shm) are never dropped.
 */
async function settle(...warm) {
  spawnSync("sync");
  if (!canDropCaches) return;
  await writeFile("/proc/sys/vm/drop_caches", "3\n");
  for (const p of warm)
    spawnSync("bash", ["-c", 'find "$1" -type f -print0 | xargs -0 -r cat > /dev/null', "_", p]);
}

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

/** Our CLI's backup of `home` into `out`, timed; `extra` adds options (e.g. the consistency mode). */
function oursBackup(home, out, keys, extra = []) {
  return timed(process.execPath, [
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
    ...extra,
    "--json",
    "--quiet",
  ]);
}

async function benchOne(label, home, keys) {
  const out = values["out-dir"] ? path.join(values["out-dir"], "out") : path.join(work, "out");
  const rows = {
    shellBackup: [],
    oursBackup: [],
    oursLiveBackup: [],
    shellRestore: [],
    oursRestore: [],
    peakBackup: 0,
    peakRestore: 0,
    cpu: { shellBackup: [], oursBackup: [], oursLiveBackup: [], shellRestore: [], oursRestore: [] },
    /** restic and borg: a first backup into an empty repository and a full restore, each round. */
    peers: {},
  };
  const restoreRoot = values["restore-dir"] ?? out;
  let shellArchive = 0;
  let oursArchive = 0;
  for (let round = 0; round <= rounds; round++) {
    await rm(out, { recursive: true, force: true });
    await mkdir(out, { recursive: true });
    const shellFile = path.join(out, "shell.tar.zst.age");
    await settle(home.home);
    const sb = await shell(
      `tar -cf - -C '${home.home}' . | zstd -3 -T0 -q | age -r ${keys.recipient} > '${shellFile}'`,
    );
    await settle(home.home);
    const ob = await oursBackup(home, out, keys);
    // The same backup reading the home as it is, as the shell and the peers do: the default (brief-stop) also stops
    // Looker (none runs here) and copies looker/.db first, so that the archive holds a database at rest.
    const outLive = path.join(out, "live");
    await settle(home.home);
    const ol = await oursBackup(home, outLive, keys, ["--consistency", "live"]);
    await rm(outLive, { recursive: true, force: true });
    const archive = (await import("node:fs"))
      .readdirSync(out)
      .find((n) => n.startsWith("bench-") && n.endsWith(".tar.zst.age"));
    shellArchive = (await stat(shellFile)).size;
    oursArchive = (await stat(path.join(out, archive))).size;
    const shellTarget = path.join(restoreRoot, "shell-restore");
    const oursTarget = path.join(restoreRoot, "ours-restore");
    await rm(shellTarget, { recursive: true, force: true });
    await rm(oursTarget, { recursive: true, force: true });
    await mkdir(shellTarget, { recursive: true });
    await settle(home.home, shellFile);
    const sr = await shell(
      `age -d -i '${keys.identity}' '${shellFile}' | zstd -dq | tar -x -C '${shellTarget}'`,
    );
    // Each restore starts from the same free memory: on a tmpfs, a second 2 GB tree beside the first made the later
    // restore pay for fresh memory pages (its system time doubled, on this VM), whichever pipeline it was.
    await rm(shellTarget, { recursive: true, force: true });
    await settle(home.home, path.join(out, archive));
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
    await rm(oursTarget, { recursive: true, force: true });
    const peers = await peersOnce(home, out, restoreRoot);
    if (round === 0) continue; // warm-up: page cache, JIT
    for (const [name, run] of Object.entries(peers)) {
      rows.peers[name] ??= {
        backup: [],
        restore: [],
        cpuBackup: [],
        cpuRestore: [],
        peakBackup: 0,
        peakRestore: 0,
      };
      const row = rows.peers[name];
      row.backup.push(run.backup.ms);
      row.restore.push(run.restore.ms);
      row.cpuBackup.push(run.backup.cpuS);
      row.cpuRestore.push(run.restore.cpuS);
      row.peakBackup = Math.max(row.peakBackup, run.backup.peakKb);
      row.peakRestore = Math.max(row.peakRestore, run.restore.peakKb);
      row.repoBytes = run.repoBytes;
    }
    rows.shellBackup.push(sb.ms);
    rows.oursBackup.push(ob.ms);
    rows.oursLiveBackup.push(ol.ms);
    rows.cpu.oursLiveBackup.push(ol.cpuS);
    rows.peakBackup = Math.max(rows.peakBackup, ol.peakKb);
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
    backup: {
      shell: mbps(median(rows.shellBackup)),
      ours: mbps(median(rows.oursBackup)),
      oursLive: mbps(median(rows.oursLiveBackup)),
    },
    restore: { shell: mbps(median(rows.shellRestore)), ours: mbps(median(rows.oursRestore)) },
    cpuS: Object.fromEntries(Object.entries(rows.cpu).map(([k, list]) => [k, median(list)])),
    ratio: { shell: home.bytes / shellArchive, ours: home.bytes / oursArchive },
    peakRssMiB: { backup: rows.peakBackup / 1024, restore: rows.peakRestore / 1024 },
    peers: Object.fromEntries(
      Object.entries(rows.peers).map(([name, row]) => [
        name,
        {
          backup: mbps(median(row.backup)),
          restore: mbps(median(row.restore)),
          cpuS: { backup: median(row.cpuBackup), restore: median(row.cpuRestore) },
          ratio: home.bytes / row.repoBytes,
          peakRssMiB: { backup: row.peakBackup / 1024, restore: row.peakRestore / 1024 },
        },
      ]),
    ),
  };
  await rm(out, { recursive: true, force: true });
  await rm(path.join(restoreRoot, "shell-restore"), { recursive: true, force: true });
  await rm(path.join(restoreRoot, "ours-restore"), { recursive: true, force: true });
  return result;
}

/**
 * restic and borg as a user would run them instead: a first backup into an empty, encrypted repository (created
 * untimed) and a full restore. restic 0.14 compresses with its default (zstd, "auto"); borg is asked for zstd level 3,
 * the level ours and the shell use.
 */
async function peersOnce(home, out, restoreRoot) {
  const env = {
    ...process.env,
    RESTIC_PASSWORD: "bench",
    BORG_PASSPHRASE: "bench",
    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: "yes",
  };
  const results = {};
  const resticRepo = path.join(out, "restic");
  const target = path.join(restoreRoot, "peer-restore");
  spawnSync("restic", ["init", "-q", "--repo", resticRepo], { env });
  await settle(home.home);
  const rb = await timed("restic", ["-r", resticRepo, "backup", "-q", "."], { env, cwd: home.home });
  await rm(target, { recursive: true, force: true });
  await settle(home.home, resticRepo);
  const rr = await timed("restic", ["-r", resticRepo, "restore", "latest", "-q", "--target", target], {
    env,
  });
  results.restic = { backup: rb, restore: rr, repoBytes: await duSize(resticRepo) };
  await rm(target, { recursive: true, force: true });
  await rm(resticRepo, { recursive: true, force: true });
  const borgRepo = path.join(out, "borg");
  spawnSync("borg", ["init", "-e", "repokey", borgRepo], { env });
  await settle(home.home);
  const bb = await timed("borg", ["create", "--compression", "zstd,3", `${borgRepo}::bench`, "."], {
    env,
    cwd: home.home,
  });
  await mkdir(target, { recursive: true });
  await settle(home.home, borgRepo);
  const br = await timed("borg", ["extract", `${borgRepo}::bench`], { env, cwd: target });
  results.borg = { backup: bb, restore: br, repoBytes: await duSize(borgRepo) };
  await rm(target, { recursive: true, force: true });
  await rm(borgRepo, { recursive: true, force: true });
  return results;
}

/** Our backup and restore of `home`, once, to `recipient` / with `identity`; the timings and the archive's header size. */
async function oursOnce(home, out, restoreTarget, key) {
  await rm(out, { recursive: true, force: true });
  await mkdir(out, { recursive: true });
  const backup = await oursBackup(home, out, key);
  const archive = path.join(
    out,
    (await import("node:fs"))
      .readdirSync(out)
      .find((n) => n.startsWith("bench-") && n.endsWith(".tar.zst.age")),
  );
  const start = (await readFile(archive)).subarray(0, 64 * 1024);
  const headerBytes = start.indexOf("\n", start.indexOf("\n---") + 1) + 1;
  await rm(restoreTarget, { recursive: true, force: true });
  const restore = await timed(process.execPath, [
    cli,
    "restore",
    "--archive",
    archive,
    "--identity",
    key.identity,
    "--target",
    restoreTarget,
    "--json",
    "--quiet",
  ]);
  await rm(restoreTarget, { recursive: true, force: true });
  return { backup, restore, headerBytes };
}

/** X25519 against post-quantum, alternating which runs first in each round so drift in the VM's speed cancels. */
async function benchPq(label, home, keys, pqKeys) {
  const out = values["out-dir"] ? path.join(values["out-dir"], "out") : path.join(work, "out");
  const restoreTarget = path.join(values["restore-dir"] ?? out, "ours-restore");
  const runs = { x25519: [], pq: [] };
  const headerBytes = {};
  for (let round = 0; round <= rounds; round++) {
    const order = round % 2 === 0 ? ["x25519", "pq"] : ["pq", "x25519"];
    for (const kind of order) {
      const run = await oursOnce(home, out, restoreTarget, kind === "pq" ? pqKeys : keys);
      headerBytes[kind] = run.headerBytes;
      if (round > 0) runs[kind].push(run); // round 0 warms the page cache and the JIT
    }
  }
  await rm(out, { recursive: true, force: true });
  const mbps = (ms) => home.bytes / 1e6 / (ms / 1000);
  const summary = (kind, step) => ({
    mbps: mbps(median(runs[kind].map((r) => r[step].ms))),
    cpuS: median(runs[kind].map((r) => r[step].cpuS)),
  });
  // Each round's two runs ran back to back: their ratio is less moved by the VM's changing load than the ratio of
  // medians taken minutes apart. Throughput PQ/X25519 is X25519's time over PQ's.
  const paired = (step) => {
    const ratios = runs.x25519.map((x, i) => x[step].ms / runs.pq[i][step].ms);
    return { median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios) };
  };
  return {
    label,
    bytes: home.bytes,
    files: home.files,
    backup: { x25519: summary("x25519", "backup"), pq: summary("pq", "backup"), paired: paired("backup") },
    restore: {
      x25519: summary("x25519", "restore"),
      pq: summary("pq", "restore"),
      paired: paired("restore"),
    },
    headerBytes,
  };
}

/**
 * What one age header costs to write and to open for each kind of recipient, in this process: the only work in a
 * backup or restore that depends on the kind (the payload is the same STREAM either way).
 */
async function headerCost(keys, pqKeys) {
  const { build } = await import("esbuild");
  const file = path.join(work, "age-header-bench.mjs");
  await build({
    stdin: {
      contents: [
        'export { createHeader, openHeader } from "./src/crypto/age-file-key.ts";',
        'export { parseHeader } from "./src/crypto/age-header.ts";',
        'export { parseIdentities, parseRecipient } from "./src/crypto/age-keys.ts";',
      ].join("\n"),
      resolveDir: path.join(import.meta.dirname, ".."),
      loader: "ts",
    },
    outfile: file,
    bundle: true,
    platform: "node",
    target: "node24",
    format: "esm",
    logLevel: "warning",
  });
  const age = await import(file);
  const cost = {};
  for (const [kind, key] of [
    ["x25519", keys],
    ["pq", pqKeys],
  ]) {
    const recipients = [age.parseRecipient(key.recipient)];
    const identities = age.parseIdentities(await readFile(key.identity, "utf8"));
    const times = { create: [], open: [] };
    for (let i = 0; i < 520; i++) {
      let started = process.hrtime.bigint();
      const { header } = await age.createHeader({ recipients });
      const created = Number(process.hrtime.bigint() - started) / 1e6;
      started = process.hrtime.bigint();
      await age.openHeader(age.parseHeader(header), { identities });
      const opened = Number(process.hrtime.bigint() - started) / 1e6;
      if (i < 20) continue; // warm-up
      times.create.push(created);
      times.open.push(opened);
    }
    cost[kind] = { createMs: median(times.create), openMs: median(times.open) };
  }
  return cost;
}

function pqTable(results, cost) {
  const f = (n) => n.toFixed(0).padStart(6);
  const ratio = ({ median: middle, min, max }) =>
    `${middle.toFixed(3)}x (${min.toFixed(2)}-${max.toFixed(2)})`;
  const cpu = (step, r) => `${r[step].x25519.cpuS.toFixed(2)} / ${r[step].pq.cpuS.toFixed(2)}`;
  const lines = [
    "| case | size | files | backup X25519 MB/s | backup PQ MB/s | PQ/X25519 paired (range) | backup CPU s X25519 / PQ | restore X25519 MB/s | restore PQ MB/s | PQ/X25519 paired (range) | restore CPU s X25519 / PQ | header bytes X25519 / PQ |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of results) {
    lines.push(
      `| ${r.label} | ${(r.bytes / 1e9).toFixed(2)} GB | ${r.files} | ${f(r.backup.x25519.mbps)} | ${f(r.backup.pq.mbps)} | ${ratio(r.backup.paired)} | ${cpu("backup", r)} | ${f(r.restore.x25519.mbps)} | ${f(r.restore.pq.mbps)} | ${ratio(r.restore.paired)} | ${cpu("restore", r)} | ${r.headerBytes.x25519} / ${r.headerBytes.pq} |`,
    );
  }
  const ms = (n) => `${(n * 1000).toFixed(0)} us`;
  lines.push(
    "",
    `One age header (one recipient), median of 500: written in ${ms(cost.x25519.createMs)} (X25519) / ${ms(cost.pq.createMs)} (post-quantum: one ML-KEM-768 encapsulation and one X25519 exchange), opened in ${ms(cost.x25519.openMs)} / ${ms(cost.pq.openMs)}. Once per archive, whatever its size.`,
  );
  return lines.join("\n");
}

/** Ours against restic and borg, on the same homes in the same run (ratios > 1: ours is faster). */
function peersTable(results) {
  const f = (n) => n.toFixed(0);
  const lines = [
    "| case | backup MB/s ours / restic / borg | ours vs restic / borg | backup CPU s ours / restic / borg | restore MB/s ours / restic / borg | ours vs restic / borg | restore CPU s ours / restic / borg | ratio ours / restic / borg | peak RSS MiB backup, restore: ours / restic / borg |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of results) {
    const { restic, borg } = r.peers;
    if (!restic || !borg) continue;
    const x = (a, b) => `${(a / b).toFixed(2)}x`;
    lines.push(
      `| ${r.label} | ${f(r.backup.ours)} / ${f(restic.backup)} / ${f(borg.backup)} | ${x(r.backup.ours, restic.backup)} / ${x(r.backup.ours, borg.backup)} | ${r.cpuS.oursBackup.toFixed(1)} / ${restic.cpuS.backup.toFixed(1)} / ${borg.cpuS.backup.toFixed(1)} | ${f(r.restore.ours)} / ${f(restic.restore)} / ${f(borg.restore)} | ${x(r.restore.ours, restic.restore)} / ${x(r.restore.ours, borg.restore)} | ${r.cpuS.oursRestore.toFixed(1)} / ${restic.cpuS.restore.toFixed(1)} / ${borg.cpuS.restore.toFixed(1)} | ${r.ratio.ours.toFixed(2)} / ${restic.ratio.toFixed(2)} / ${borg.ratio.toFixed(2)} | ${f(r.peakRssMiB.backup)}, ${f(r.peakRssMiB.restore)} / ${f(restic.peakRssMiB.backup)}, ${f(restic.peakRssMiB.restore)} / ${f(borg.peakRssMiB.backup)}, ${f(borg.peakRssMiB.restore)} |`,
    );
  }
  // CPU per file says what small files cost each tool, whatever the cores: the wall time on 2 cores hides it.
  const perFile = results.filter((r) => r.peers.restic && r.peers.borg);
  if (perFile.length > 0) {
    lines.push(
      "",
      "CPU per file (user + system, microseconds), backup / restore:",
      "",
      "| case | files | shell | ours | restic | borg |",
      "|---|---:|---:|---:|---:|---:|",
    );
    for (const r of perFile) {
      const us = (seconds) => ((seconds * 1e6) / r.files).toFixed(0);
      const pair = (backup, restore) => `${us(backup)} / ${us(restore)}`;
      const { restic, borg } = r.peers;
      lines.push(
        `| ${r.label} | ${r.files} | ${pair(r.cpuS.shellBackup, r.cpuS.shellRestore)} | ${pair(r.cpuS.oursBackup, r.cpuS.oursRestore)} | ${pair(restic.cpuS.backup, restic.cpuS.restore)} | ${pair(borg.cpuS.backup, borg.cpuS.restore)} |`,
      );
    }
  }
  return lines.join("\n");
}

/** Our backup by default (brief-stop) and reading the home as it is (live), the same work as the shell and the peers. */
function consistencyTable(results) {
  const f = (n) => n.toFixed(0);
  const x = (a, b) => `${(a / b).toFixed(2)}x`;
  const lines = [
    "| case | backup MB/s shell / ours brief-stop / ours live | brief-stop vs shell | live vs shell | live vs restic / borg | backup CPU s shell / brief-stop / live |",
    "|---|---:|---:|---:|---:|---:|",
  ];
  for (const r of results) {
    const { restic, borg } = r.peers;
    const peers =
      restic && borg ? `${x(r.backup.oursLive, restic.backup)} / ${x(r.backup.oursLive, borg.backup)}` : "-";
    lines.push(
      `| ${r.label} | ${f(r.backup.shell)} / ${f(r.backup.ours)} / ${f(r.backup.oursLive)} | ${x(r.backup.ours, r.backup.shell)} | ${x(r.backup.oursLive, r.backup.shell)} | ${peers} | ${r.cpuS.shellBackup.toFixed(1)} / ${r.cpuS.oursBackup.toFixed(1)} / ${r.cpuS.oursLiveBackup.toFixed(1)} |`,
    );
  }
  return lines.join("\n");
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

let pqKeys;
if (values.pq) {
  pqKeys = { identity: path.join(work, "identity-pq.txt") };
  if (!existsSync(pqKeys.identity))
    spawnSync(process.execPath, [cli, "keygen", "--pq", "--output", pqKeys.identity]);
  pqKeys.recipient = /^# public key: (age1pq1\S+)$/m.exec(await readFile(pqKeys.identity, "utf8"))[1];
}

const results = [];
for (const c of cases) {
  process.stderr.write(`bench: preparing ${c.label}\n`);
  const home = await prepareHome(c.label.replace(/\W+/g, "-"), c.options);
  process.stderr.write(`bench: running ${c.label} (${rounds} rounds after a warm-up)\n`);
  results.push(values.pq ? await benchPq(c.label, home, keys, pqKeys) : await benchOne(c.label, home, keys));
}
const commit = spawnSync("git", ["rev-parse", "--short", "HEAD"]).stdout.toString().trim();
const restoreTo = [
  values["out-dir"] ? `archives into ${values["out-dir"]}` : "archives into the work directory",
  values["restore-dir"] ? `restores into ${values["restore-dir"]}` : "restores into the work directory",
].join(", ");
const header = `Machine: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? "?"}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; Node ${process.version}; ${new Date().toISOString().slice(0, 10)}; commit ${commit}; median of ${rounds} rounds, warm cache${canDropCaches ? " (page cache dropped and the home and the run's input read again before each timed run)" : " (runs as non-root: the page cache is not reset between runs)"}; ${restoreTo}.`;
const body = values.pq
  ? pqTable(results, await headerCost(keys, pqKeys))
  : `${table(results)}\n\nThe same homes, in the same rounds, against restic and borg:\n\n${peersTable(results)}\n\nOur backup as it runs by default (brief-stop: Looker stopped, looker/.db copied, Looker started, then the archive; no Looker runs here, so the copy is what it adds) and with \`--consistency live\` (the home read as it is, as the shell, restic and borg read it):\n\n${consistencyTable(results)}`;
const report = `${header}\n\n${body}\n`;
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
