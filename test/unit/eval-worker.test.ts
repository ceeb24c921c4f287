import type { MessagePort } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { startEvalWorker, stopEvalWorker, threadSource } from "../../src/runtime/eval-worker.js";

/** A thread that answers its first message with its own nice value (Linux: per thread, by its id). */
function reportNice(port: MessagePort, _data: undefined, require: NodeJS.Require): void {
  port.once("message", () => {
    const tid = Number(require("node:fs").readlinkSync("/proc/thread-self").split("/").pop());
    port.postMessage(require("node:os").getPriority(tid));
  });
}
const REPORT_NICE = threadSource(reportNice);

async function niceOf(background: boolean): Promise<number> {
  let answer: (nice: number) => void = () => {};
  const reply = new Promise<number>((resolve) => {
    answer = resolve;
  });
  const thread = startEvalWorker<number>(
    "the nice reporter",
    REPORT_NICE,
    { onMessage: (nice) => answer(nice), onFailure: () => {} },
    undefined,
    { background },
  );
  thread.ref();
  thread.postMessage("go");
  try {
    return await reply;
  } finally {
    await stopEvalWorker(thread);
  }
}

describe("eval workers", () => {
  it("run a background thread 10 nice levels below its owner (capped at 19), and others at the owner's", async () => {
    const normal = await niceOf(false);
    const background = await niceOf(true);
    expect(background).toBe(Math.min(19, normal + 10));
  });
});
