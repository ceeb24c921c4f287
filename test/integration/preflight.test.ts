/**
 * The preflight: each check fails for its real cause (a missing artifact service, a GHES server, an unwritable or
 * too small store, a quiet window, a missing looker script, an unreachable MySQL), before Looker is touched, with
 * the rows after the failure marked as not run.
 */
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type PreflightCheck,
  PreflightError,
  type PreflightRequest,
  runPreflight,
} from "../../src/engine/preflight.js";
import { ExitCode } from "../../src/errors.js";
import type { ConnectedNodes } from "../../src/looker/nodes.js";
import { parseQuietWindow } from "../../src/looker/quiet-window.js";
import { defaultManifest } from "../../src/manifest/default-manifest.js";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { freePort } from "../helpers/free-port.js";
import { connectLocalNode } from "../helpers/local-nodes.js";

let scratch: string;
let home: string;
let connected: ConnectedNodes | undefined;

const ARTIFACT_ENV = {
  GITHUB_SERVER_URL: "https://github.com",
  ACTIONS_RUNTIME_TOKEN: "token",
  ACTIONS_RESULTS_URL: "http://127.0.0.1:1/",
};

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "preflight-"));
  home = join(scratch, "home");
  await generateLookerHome({ root: home, seed: 5, sizeBytes: 64 << 10, smallFiles: 4 });
});

afterAll(async () => {
  await connected?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

function request(overrides: Partial<PreflightRequest> = {}): PreflightRequest {
  return {
    inputs: "1 recipient(s)",
    consistency: "stopped",
    keystoreIndependent: false,
    store: { kind: "dir", directory: join(scratch, "store"), instance: "pre" },
    connectNodes: async () => {
      connected ??= await connectLocalNode(home);
      return connected.nodes;
    },
    home,
    mysql: {},
    selection: async () => ({ manifest: defaultManifest({ mysqlBackend: false }), mysqlBackend: false }),
    env: ARTIFACT_ENV,
    ...overrides,
  };
}

async function failure(req: PreflightRequest): Promise<PreflightError> {
  try {
    await runPreflight(req);
  } catch (error) {
    expect(error).toBeInstanceOf(PreflightError);
    return error as PreflightError;
  }
  throw new Error("the preflight passed");
}

function statuses(checks: readonly PreflightCheck[]): string[] {
  return checks.map((c) => `${c.check}: ${c.status}`);
}

describe("preflight", () => {
  it("passes a dir store, a local node with its looker script and the internal database", async () => {
    const checks = await runPreflight(request());
    expect(statuses(checks)).toEqual([
      "inputs: ok",
      "store: ok",
      "Looker nodes: ok",
      "required files: ok",
      "selection: ok",
      "database: ok",
      "stopping Looker: ok",
    ]);
    expect(checks[1]!.detail).toMatch(/writable, .* free \(no earlier archive to estimate from\)/);
    expect(checks[2]!.detail).toMatch(/^local.*: reachable, looker script present$/);
    expect(checks[4]!.detail).toMatch(/^\d+ files, .* to read; \d+ files, .* excluded$/);
    expect(checks[6]!.detail).toBe("stopped: no quiet window set, Looker may be stopped at any time");
  });

  it("refuses store artifact without the runtime variables, with exit 2 and a hint naming store: dir", async () => {
    const error = await failure(
      request({ store: { kind: "artifact" }, env: { GITHUB_SERVER_URL: "https://github.com" } }),
    );
    expect(error.exitCode).toBe(ExitCode.BadInput);
    expect(error.message).toMatch(
      /^preflight failed: store: artifact cannot upload here: ACTIONS_RUNTIME_TOKEN or ACTIONS_RESULTS_URL is not set/,
    );
    expect(error.hint).toMatch(/store: dir/);
    expect(statuses(error.checks)).toEqual([
      "inputs: ok",
      "store: failed",
      "Looker nodes: not run",
      "required files: not run",
      "selection: not run",
      "database: not run",
      "stopping Looker: not run",
    ]);
  });

  it("refuses store artifact on GitHub Enterprise Server, where @actions/artifact v2+ cannot upload", async () => {
    const error = await failure(
      request({
        store: { kind: "artifact" },
        env: { ...ARTIFACT_ENV, GITHUB_SERVER_URL: "https://ghes.example.com" },
      }),
    );
    expect(error.exitCode).toBe(ExitCode.BadInput);
    expect(error.message).toMatch(/ghes\.example\.com is GitHub Enterprise Server/);
    expect(error.hint).toMatch(/store: dir/);
  });

  it("accepts store artifact on GHE.com (data residency), which the client supports", async () => {
    const checks = await runPreflight(
      request({
        store: { kind: "artifact" },
        env: { ...ARTIFACT_ENV, GITHUB_SERVER_URL: "https://acme.ghe.com" },
      }),
    );
    expect(checks[1]).toEqual({ check: "store", status: "ok", detail: "GitHub artifact service available" });
  });

  it("refuses a store directory that cannot be written", async () => {
    const file = join(scratch, "a-file");
    await writeFile(file, "");
    const error = await failure(
      request({ store: { kind: "dir", directory: join(file, "store"), instance: "pre" } }),
    );
    expect(error.exitCode).toBe(ExitCode.BadInput);
    expect(error.message).toMatch(/cannot write to the store directory .*a-file\/store/);
  });

  it("refuses a store directory without room for about the last archive's size", async () => {
    const directory = join(scratch, "small-store");
    await mkdir(directory);
    // A sparse 15 TiB "last archive" stands for one larger than any free space here.
    execFileSync("truncate", ["-s", "15T", join(directory, "pre-20240101T000000Z.tar.zst.age")]);
    const error = await failure(request({ store: { kind: "dir", directory, instance: "pre" } }));
    expect(error.exitCode).toBe(ExitCode.BadInput);
    expect(error.message).toMatch(
      /has .* free, but the last archive of pre was 15\.0 TiB \(needs about 18\.8 TiB\)/,
    );
  });

  it("refuses to go on outside the quiet window when Looker would be stopped, but not for a live backup", async () => {
    const now = new Date("2024-05-01T12:00:00Z");
    const quietWindow = parseQuietWindow("01:00-05:00", "UTC", "quiet-window", "quiet-window-time-zone");
    const error = await failure(request({ quietWindow, now }));
    expect(error.message).toMatch(/outside the quiet window 01:00-05:00/);
    expect(error.checks.at(-1)).toMatchObject({ check: "stopping Looker", status: "failed" });
    const live = await runPreflight(request({ quietWindow, now, consistency: "live" }));
    expect(live.at(-1)!.detail).toBe("live: Looker is not stopped");
  });

  it("refuses a node without an executable looker script", async () => {
    const bare = join(scratch, "bare-home");
    await mkdir(join(bare, "looker"), { recursive: true });
    const nodes = await connectLocalNode(bare);
    try {
      const error = await failure(request({ connectNodes: async () => nodes.nodes }));
      expect(error.message).toMatch(/bare-home\/looker\/looker is missing or not executable/);
      expect(statuses(error.checks).slice(2)).toEqual([
        "Looker nodes: failed",
        "required files: not run",
        "selection: not run",
        "database: not run",
        "stopping Looker: not run",
      ]);
    } finally {
      await nodes.close();
    }
  });

  it("refuses to stop Looker while .deploying exists (the script would refuse to start it again)", async () => {
    const deploying = join(home, "looker", ".deploying");
    await writeFile(deploying, "");
    try {
      const error = await failure(request());
      expect(error.message).toMatch(
        /\.deploying exists, and Looker's start script refuses to start while it does/,
      );
      expect(error.checks.at(-1)).toMatchObject({ check: "stopping Looker", status: "failed" });
      // A live backup does not stop Looker: the job warns instead.
      expect((await runPreflight(request({ consistency: "live" }))).at(-1)!.status).toBe("ok");
    } finally {
      await rm(deploying, { force: true });
    }
  });

  it("resolves consistency auto by the backend: brief-stop for the internal database, live for MySQL", async () => {
    const internal = await runPreflight(request({ consistency: "auto" }));
    expect(internal.at(-1)!.detail).toBe(
      "brief-stop (auto): no quiet window set, Looker may be stopped at any time",
    );
    // auto with the internal database stops Looker, so the quiet window applies to it.
    const now = new Date("2024-05-01T12:00:00Z");
    const quietWindow = parseQuietWindow("01:00-05:00", "UTC", "quiet-window", "quiet-window-time-zone");
    const error = await failure(request({ consistency: "auto", quietWindow, now }));
    expect(error.message).toMatch(/outside the quiet window/);
  });

  it("refuses a required file that is missing (an SSL file, say) before anything is stopped", async () => {
    const missing = join(scratch, "no-such-cert.pem");
    const error = await failure(
      request({
        selection: async () => ({
          manifest: defaultManifest({ mysqlBackend: false, sslFiles: [missing] }),
          mysqlBackend: false,
        }),
      }),
    );
    expect(error.exitCode).toBe(ExitCode.BadInput);
    expect(error.message).toContain(`required path ${missing} (ssl:${missing}) cannot be read: ENOENT`);
    expect(statuses(error.checks).slice(3)).toEqual([
      "required files: failed",
      "selection: not run",
      "database: not run",
      "stopping Looker: not run",
    ]);
  });

  it("refuses a MySQL backend that does not answer, before anything is stopped", async () => {
    const port = await freePort(); // nothing listens there
    const error = await failure(
      request({
        selection: async () => ({ manifest: defaultManifest({ mysqlBackend: true }), mysqlBackend: true }),
        mysql: { host: "127.0.0.1", port, user: "looker", password: "pw", database: "looker" },
      }),
    );
    expect(error.message).toMatch(/cannot reach the MySQL backend \(looker@127\.0\.0\.1:\d+\/looker\)/);
    expect(error.message).not.toContain("pw");
    expect(statuses(error.checks).slice(5)).toEqual(["database: failed", "stopping Looker: not run"]);
  });
});
