import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { InputError } from "../../src/errors.js";
import { defaultManifest } from "../../src/manifest/default-manifest.js";
import { type Selection, selectFiles, streamSelection } from "../../src/manifest/select.js";
import { applyUserManifest, parseUserManifest } from "../../src/manifest/user-manifest.js";

let home: string;

async function put(relative: string, content = "x"): Promise<void> {
  const path = join(home, relative);
  await mkdir(join(path, ".."), { recursive: true });
  await writeFile(path, content);
}

async function minimalHome(): Promise<void> {
  await put(".ssh/id_rsa", "key");
  await put("looker/.db/looker.script", "db");
  await put("looker/.db/looker.lck", "lock");
  await put("looker/deploy_keys/proj/id_rsa", "deploy");
  await put("looker/models-user-1/proj/a.view.lkml", "view: a {}");
  await put("looker/models-user-22/proj/b.model.lkml", "model");
  await put("looker/models/proj/prod.lkml", "prod");
  await put("looker/log/looker.log", "log line");
  await put("looker/.cache/c", "cache");
  await put("looker/.tmp/t", "tmp");
  await put("looker/.snapshots/s", "snap");
  await put("looker/.ssl/cert.pem", "cert");
  await put("looker/looker.jar", "jar");
  await put("looker/lookerstart.cfg", "cfg");
}

function paths(selection: Selection): string[] {
  return selection.entries.map((e) => e.archivePath);
}

beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), "lb-manifest-"));
});
afterEach(async () => {
  await rm(home, { recursive: true, force: true });
});

describe("streamed selection", () => {
  it("hands out a large tree in batches while it is still walking, in the order of the whole selection", async () => {
    await minimalHome();
    for (let i = 0; i < 700; i++) await put(`looker/models-user-${i % 7}/proj/f${i}.view.lkml`, "view");
    const manifest = defaultManifest({ mysqlBackend: false });
    const { batches, summary } = streamSelection({ home, manifest });
    const streamed: string[] = [];
    let filesTalliedAtFirstBatch: number | undefined;
    for await (const batch of batches) {
      const tallied = summary.tallies.reduce((sum, t) => sum + t.files, 0);
      filesTalliedAtFirstBatch ??= tallied;
      streamed.push(...batch.map((e) => e.archivePath));
    }
    const whole = await selectFiles({ home, manifest });
    expect(streamed).toEqual(paths(whole));
    expect(filesTalliedAtFirstBatch).toBeLessThan(whole.tallies.reduce((sum, t) => sum + t.files, 0));
  });
});

describe("default manifest", () => {
  it("selects the home minus what Looker's guide marks as not needed", async () => {
    await minimalHome();
    const selection = await selectFiles({ home, manifest: defaultManifest({ mysqlBackend: false }) });
    const selected = paths(selection);
    expect(selected[0]).toBe("home/");
    for (const kept of [
      "home/.ssh/id_rsa",
      "home/looker/.db/looker.script",
      "home/looker/deploy_keys/proj/id_rsa",
      "home/looker/models-user-1/proj/a.view.lkml",
      "home/looker/models-user-22/proj/b.model.lkml",
      "home/looker/.ssl/cert.pem",
      "home/looker/looker.jar",
      "home/looker/lookerstart.cfg",
    ]) {
      expect(selected).toContain(kept);
    }
    for (const dropped of ["log", ".cache", ".tmp", ".snapshots", "models"]) {
      expect(selected.some((p) => p.startsWith(`home/looker/${dropped}/`))).toBe(false);
    }
    expect(selected).not.toContain("home/looker/.db/looker.lck");
    const log = selection.tallies.find((t) => t.id === "default:looker/log")!;
    expect(log.action).toBe("exclude");
    expect(log.paths).toEqual(["looker/log"]);
    expect(log.reason).toMatch(/logs/);
  });

  it("lists directories before their contents, in a stable order", async () => {
    await minimalHome();
    const selected = paths(await selectFiles({ home, manifest: defaultManifest({ mysqlBackend: false }) }));
    expect(selected.indexOf("home/looker/")).toBeLessThan(selected.indexOf("home/looker/looker.jar"));
    expect(selected.indexOf("home/looker/.db/")).toBeLessThan(
      selected.indexOf("home/looker/.db/looker.script"),
    );
    const again = paths(await selectFiles({ home, manifest: defaultManifest({ mysqlBackend: false }) }));
    expect(again).toEqual(selected);
  });

  it("fails with exit 2 when a required path is missing, naming it", async () => {
    await minimalHome();
    await rm(join(home, "looker/deploy_keys"), { recursive: true });
    const error = await selectFiles({ home, manifest: defaultManifest({ mysqlBackend: false }) }).catch(
      (e) => e,
    );
    expect(error).toBeInstanceOf(InputError);
    expect(error.exitCode).toBe(2);
    expect(error.message).toContain("looker/deploy_keys");
    expect(error.hint).toContain("optional");
  });

  it("does not require looker/.db with a MySQL backend", async () => {
    await minimalHome();
    await rm(join(home, "looker/.db"), { recursive: true });
    await expect(selectFiles({ home, manifest: defaultManifest({ mysqlBackend: false }) })).rejects.toThrow(
      /looker\/.db/,
    );
    const selection = await selectFiles({ home, manifest: defaultManifest({ mysqlBackend: true }) });
    expect(paths(selection)).toContain("home/looker/looker.jar");
  });

  it("keeps symlinks as symlinks and skips sockets-like specials with a reason", async () => {
    await minimalHome();
    await symlink("/etc/hostname", join(home, "looker/.ssl/current.pem"));
    const selection = await selectFiles({ home, manifest: defaultManifest({ mysqlBackend: false }) });
    const link = selection.entries.find((e) => e.archivePath === "home/looker/.ssl/current.pem")!;
    expect(link.type).toBe("symlink");
  });

  it("archives outside-home files under rootfs/ and requires listed SSL files", async () => {
    await minimalHome();
    const outside = await mkdtemp(join(tmpdir(), "lb-outside-"));
    try {
      await writeFile(join(outside, "cert.pem"), "c");
      const manifest = defaultManifest({ mysqlBackend: false, sslFiles: [join(outside, "cert.pem")] });
      const selection = await selectFiles({ home, manifest });
      expect(paths(selection)).toContain(`rootfs${outside}/cert.pem`);
      const missing = defaultManifest({ mysqlBackend: false, sslFiles: [join(outside, "nope.pem")] });
      await expect(selectFiles({ home, manifest: missing })).rejects.toBeInstanceOf(InputError);
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });
});

describe("user manifest", () => {
  it("can bring logs back, exclude a subtree of a default include and relax a required path", async () => {
    await minimalHome();
    await put("looker/models-user-1/scratch/big.bin", "zzz");
    await rm(join(home, "looker/deploy_keys"), { recursive: true });
    const user = parseUserManifest(
      [
        "version: 1",
        "include:",
        "  - path: looker/log",
        "    reason: audit retention",
        "exclude:",
        "  - looker/models-user-*/scratch",
        "optional: [looker/deploy_keys]",
      ].join("\n"),
      "m.yml",
    );
    const manifest = applyUserManifest(defaultManifest({ mysqlBackend: false }), user);
    const selection = await selectFiles({ home, manifest });
    const selected = paths(selection);
    expect(selected).toContain("home/looker/log/looker.log");
    expect(selected).not.toContain("home/looker/models-user-1/scratch/big.bin");
    expect(selected).toContain("home/looker/models-user-1/proj/a.view.lkml");
    const logRule = selection.tallies.find((t) => t.id === "m.yml:include[0]")!;
    expect(logRule.files).toBe(1);
    expect(logRule.reason).toBe("audit retention");
  });

  it("reaches a file inside an excluded directory when a more specific include names it", async () => {
    await minimalHome();
    await put("looker/log/audit/2026.log", "audit");
    const user = parseUserManifest("include: [looker/log/audit]", "m.yml");
    const selected = paths(
      await selectFiles({
        home,
        manifest: applyUserManifest(defaultManifest({ mysqlBackend: false }), user),
      }),
    );
    expect(selected).toContain("home/looker/log/audit/2026.log");
    expect(selected).not.toContain("home/looker/log/looker.log");
  });

  it("never lets a manifest bring back the lock file of a running Looker", async () => {
    await minimalHome();
    const user = parseUserManifest("include: [looker/.db/looker.lck]", "m.yml");
    const selected = paths(
      await selectFiles({
        home,
        manifest: applyUserManifest(defaultManifest({ mysqlBackend: false }), user),
      }),
    );
    expect(selected).not.toContain("home/looker/.db/looker.lck");
  });

  it.each([
    ["include: looker/log", "m.yml:1:10: include", /expected a list/],
    ["version: 2", "m.yml:1:10: version", /unsupported version/],
    ["colour: blue", "m.yml:1:1: colour", /unknown key 'colour'/],
    ["include:\n  - path: looker/log\n    requird: true", "m.yml:3:5: include[0].requird", /unknown key/],
    ["include:\n  - /etc/passwd", "m.yml:2:5: include[0]", /relative to the looker home/],
    ["include:\n  - ../other", "m.yml:2:5: include[0]", /stay inside it/],
    ["outside:\n  - etc/ssl/x", "m.yml:2:5: outside[0]", /absolute path/],
    ["include:\n  - path: a\n    required: yes-please", "m.yml:3:15: include[0].required", /true or false/],
    ["backend: oracle", "m.yml:1:10: backend", /not a backend/],
    ["include: [a\n", "m.yml:", /invalid YAML/],
  ])("rejects %j with file:line:col and the key", (text, where, message) => {
    let error: InputError | undefined;
    try {
      parseUserManifest(text, "m.yml");
    } catch (e) {
      error = e as InputError;
    }
    expect(error).toBeInstanceOf(InputError);
    expect(error!.exitCode).toBe(2);
    expect(error!.message.startsWith(where)).toBe(true);
    expect(error!.message).toMatch(message);
    expect(error!.hint).toBeTruthy();
  });

  it("rejects 'optional' for a path that is not required by default", () => {
    const user = parseUserManifest("optional:\n  - looker/log", "m.yml");
    expect(() => applyUserManifest(defaultManifest({ mysqlBackend: false }), user)).toThrow(
      /m.yml:2:5.*not a required/,
    );
  });
});
