/**
 * Promise: a cancelled backup cleans up (aborts its pending archive) and settles as cancelled even when a stage of
 * the pipeline never finishes closing. The stage here is the store's stream, standing in for an upload that hangs.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runBackup } from "../../src/engine/backup.js";
import type { Store } from "../../src/store/store.js";
import { generateLookerHome } from "../fixtures/home-generator.js";

let work: string;
let home: string;
const RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "lb-cancel-"));
  home = join(work, "home");
  await generateLookerHome({ root: home, seed: 5, sizeBytes: 24 << 20, smallFiles: 100 });
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

describe("a cancelled backup", () => {
  it("aborts its pending archive and settles even when the store's stream never closes", async () => {
    const events: string[] = [];
    const controller = new AbortController();
    const running = runBackup({
      home,
      instance: "cancel",
      recipients: [RECIPIENT],
      store: hangingStore(events),
      signal: controller.signal,
    });
    while (!events.includes("write")) await new Promise((r) => setTimeout(r, 5));
    controller.abort();
    await expect(running).rejects.toThrow(/abort/i);
    expect(events).toContain("abort");
  });
});
