/**
 * dist's entries (the CLI and the actions' main and post) refuse a Node older than 24 with exit 2 and a message
 * saying what to install, instead of the SyntaxError the bundle dies with while it is linked on such a Node (see
 * versionGate in scripts/bundle.mjs). Run with a real older Node: the `nodejs` of the machine's distribution
 * (scripts/test-prerequisites.json names it, so CI installs one where there is none).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { bundledEntry } from "../helpers/bundle.js";
import { findCommand, requireCommands } from "../helpers/prerequisites.js";

const ENTRIES = ["cli", "backup-main", "backup-post", "restore-main"] as const;

/** An older Node than the bundles need: the distribution's `nodejs`, else another `node` this machine has. */
function olderNode(): { path: string; version: string } | undefined {
  const candidates = [findCommand("nodejs"), "/usr/bin/node", "/usr/local/bin/node"];
  for (const path of candidates) {
    if (path === undefined) continue;
    const probe = spawnSync(path, ["-p", "process.versions.node"], { encoding: "utf8" });
    const version = probe.stdout?.trim();
    if (probe.status === 0 && version && Number(version.split(".")[0]) < 24) return { path, version };
  }
  return undefined;
}

let node: { path: string; version: string };

beforeAll(() => {
  requireCommands(["nodejs"]);
  const found = olderNode();
  if (!found)
    throw new Error("no Node older than 24 on this machine (nodejs, /usr/bin/node, /usr/local/bin/node)");
  node = found;
});

describe("on a Node older than 24", () => {
  it.each(ENTRIES)("%s exits 2 naming the Node it needs and the one it found", async (name) => {
    const run = spawnSync(node.path, [await bundledEntry(name)], { encoding: "utf8" });
    expect(run.status).toBe(2);
    expect(run.stdout).toBe("");
    expect(run.stderr.split("\n")[0]).toBe(`looker-backup needs Node 24 or newer (this is ${node.version}).`);
    expect(run.stderr).toMatch(
      name === "cli" ? /nodejs\.org.*release binary looker-backup-linux-x64/ : /using: node24.*runner/,
    );
  });

  it("the CLI refuses before reading its arguments (a bad command is still the version message)", async () => {
    const run = spawnSync(node.path, [await bundledEntry("cli"), "no-such-command"], { encoding: "utf8" });
    expect(run.status).toBe(2);
    expect(run.stderr).toContain("needs Node 24 or newer");
    expect(run.stderr).not.toContain("unknown command");
  });

  it("without the check, the bundle itself fails while it is linked, before any of its code runs", async () => {
    const bundle = join(dirname(await bundledEntry("cli")), "cli.bundle.js");
    const run = spawnSync(node.path, [bundle, "--help"], { encoding: "utf8" });
    expect(run.status).not.toBe(0);
    expect(run.stderr).toContain("SyntaxError");
    expect(run.stdout).toBe("");
  });
});

describe("on Node 24", () => {
  it("the check passes and the CLI runs", async () => {
    const out = execFileSync(process.execPath, [await bundledEntry("cli"), "--help"], { encoding: "utf8" });
    expect(out).toMatch(/^looker-backup: encrypted, verified backups/);
  });
});
