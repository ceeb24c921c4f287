/**
 * Promise: a cancelled backup cleans up (aborts its pending archive) and settles as cancelled even when a stage of
 * the pipeline never finishes closing. The stage here is the store's stream, standing in for an upload that hangs.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { liveZstdWorkerThreads } from "../../src/compress/zstd-compress.js";
import { type ResolvedManifest, runBackup } from "../../src/engine/backup.js";
import type { Store } from "../../src/store/store.js";
import { generateLookerHome } from "../fixtures/home-generator.js";
import { openFilesUnder } from "../helpers/open-files.js";
import { selectionFor } from "../helpers/selection.js";

let work: string;
let home: string;
let selection: ResolvedManifest;
const RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "lb-cancel-"));
  home = join(work, "home");
  await generateLookerHome({ root: home, seed: 5, sizeBytes: 24 << 20, smallFiles: 100 });
  selection = await selectionFor(home);
});
afterAll(() => rm(work, { recursive: true, force: true }));

/** A store whose stream takes the first writes, then stops calling back, and never finishes being destroyed. */
function hangingStore(events: string[]): Store {
  return {
    kind: "hanging",
    async create() {
      let writes = 0;
      const stream = new Writable({
        write(_chunk, _encoding, callback) {
          if (++writes <= 2) callback();
          events.push("write");
        },
        destroy() {
          events.push("destroy"); // and never calls back
        },
      });
      return {
        stream,
        commit: async () => {
          throw new Error("a cancelled backup must not commit");
        },
        abort: async () => {
          events.push("abort");
          stream.destroy();
        },
      };
    },
    list: async () => [],
    open: async () => {
      throw new Error("not used");
    },
    prune: async () => [],
  };
}

/** A backup into a hangingStore, with the means to cancel it. */
function cancellableBackup() {
  const events: string[] = [];
  const controller = new AbortController();
  const running = runBackup({
    home,
    instance: "cancel",
    selection,
    recipients: [RECIPIENT],
    store: hangingStore(events),
    signal: controller.signal,
  });
  return { events, controller, running };
}

describe("a cancelled backup", () => {
  it("aborts its pending archive and settles even when the store's stream never closes", async () => {
    const { events, controller, running } = cancellableBackup();
    while (!events.includes("write")) await new Promise((r) => setTimeout(r, 5));
    controller.abort();
    await expect(running).rejects.toThrow(/abort/i);
    expect(events).toContain("abort");
  });

  it("closes every file of the home it held open, big files' blocks queued for compression included", async () => {
    const { controller, running } = cancellableBackup();
    // The store stops taking data after two writes: the pipeline stalls with the home's big files open for blocks
    // the zstd threads have not read yet.
    await vi.waitFor(() => expect(openFilesUnder(home)).toBeGreaterThan(0), { timeout: 10_000 });
    controller.abort();
    await expect(running).rejects.toThrow(/abort/i);
    await vi.waitFor(() => expect(openFilesUnder(home)).toBe(0), { timeout: 10_000 });
    await vi.waitFor(() => expect(liveZstdWorkerThreads()).toBe(0), { timeout: 10_000 });
  });
});
