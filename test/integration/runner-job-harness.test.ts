/**
 * The test job harness (test/helpers/runner-job.ts) does what the Actions runner does for a node action, checked with
 * a small probe action (test/fixtures/runner-action): separate main and post processes, fresh file commands per step,
 * state and env carried over, masking, the cancel sequence and the orphan clean-up of "Complete job".
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import {
  cleanUpRunnerJobs,
  nodeAction,
  processEnvironment,
  type RunnerJob,
  startRunnerJob,
} from "../helpers/runner-job.js";

const probe = nodeAction(
  join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "runner-action", "action.yml"),
);
/** Processes a test started outside any job's clean-up, killed whatever happens. */
const strays: number[] = [];

afterEach(async () => {
  await cleanUpRunnerJobs();
  for (const pid of strays.splice(0)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
});

const alive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
};

describe("runner job harness", () => {
  it("runs main and post as separate processes with fresh files, carrying state, env and path", async () => {
    const job = await startRunnerJob({ env: { JOB_LEVEL: "from the workflow" } });
    const secret = "first-secret-line\nsecond-secret-line";
    const main = await job.run(probe, { with: { mode: "files", "secret value": secret } });
    expect(main.conclusion, main.log).toBe("success");
    expect(main.environment["RUNNER_TRACKING_ID"]).toBe(job.id);
    expect(job.id).toMatch(/^github_[0-9a-f-]{36}$/);
    expect(main.environment["INPUT_SECRET_VALUE"]).toBe(secret);
    expect(main.environment["INPUT_MODE"]).toBe("files");
    expect(main.environment["INPUT_TOKEN"]).toBe(job.token);
    expect(main.environment["JOB_LEVEL"]).toBe("from the workflow");
    expect(main.environment["GITHUB_ACTIONS"]).toBe("true");
    expect(main.environment["RUNNER_TEMP"]).toBe(job.runnerTemp);
    expect(main.outputs).toEqual({ plain: "a=b", multi: "line 1\nline 2", token: job.token });
    expect(main.state).toEqual({ saved: "for post" });
    expect(main.env).toEqual({ FROM_MAIN: "set by main" });
    expect(main.path).toEqual(["/opt/probe/bin"]);
    expect(main.deprecatedCommands).toEqual([]);
    // Masked from the add-mask on, on both streams, whole and line by line; not before.
    expect(main.log.split("\n")).toEqual([
      "before mask: first-secret-line",
      "second-secret-line",
      "after mask: ***",
      "***",
      "second line on stderr: ***",
    ]);
    expect(main.stdout).toContain(`after mask: ${secret}`);
    expect(main.visibleSummary).toBe("## Summary\nsecret ***\n");

    const { posts } = await job.complete();
    expect(posts).toHaveLength(1);
    const post = posts[0]!;
    expect(post.pid).not.toBe(main.pid);
    expect(post.environment["GITHUB_OUTPUT"]).not.toBe(main.environment["GITHUB_OUTPUT"]);
    expect(post.environment["GITHUB_STATE"]).not.toBe(main.environment["GITHUB_STATE"]);
    expect(post.environment["STATE_saved"]).toBe("for post");
    expect(JSON.parse(post.outputs["seen"]!)).toEqual({
      state: "for post",
      fromMain: "set by main",
      pathHead: "/opt/probe/bin",
      mode: "files",
    });
    expect(post.summary).toBe("");
  });

  it("kills at Complete job the processes carrying its tracking id, and nothing of another job", async () => {
    const other = await startRunnerJob();
    const otherMain = await other.run(probe, { with: { mode: "orphans" } });
    const otherOrphan = Number(otherMain.outputs["inherit"]);
    strays.push(otherOrphan, Number(otherMain.outputs["clean"]));

    const job = await startRunnerJob();
    const main = await job.run(probe, { with: { mode: "orphans" } });
    const orphan = Number(main.outputs["inherit"]);
    const clean = Number(main.outputs["clean"]);
    strays.push(orphan, clean);
    expect(processEnvironment(orphan)?.get("RUNNER_TRACKING_ID")).toBe(job.id);
    expect(processEnvironment(clean)?.has("RUNNER_TRACKING_ID")).toBe(false);
    expect(job.processes().map((p) => p.pid)).toEqual([orphan]);

    const { orphans } = await job.complete();
    expect(orphans.map((p) => p.pid)).toEqual([orphan]);
    expect(alive(orphan)).toBe(false);
    expect(alive(clean)).toBe(true);
    expect(alive(otherOrphan)).toBe(true);

    const otherDone = await other.complete();
    expect(otherDone.orphans.map((p) => p.pid)).toEqual([otherOrphan]);
    expect(alive(otherOrphan)).toBe(false);
  });

  it("cleans up an abandoned job's processes (a test that failed before completing its job)", async () => {
    const job: RunnerJob = await startRunnerJob();
    const main = await job.run(probe, { with: { mode: "orphans" } });
    const orphan = Number(main.outputs["inherit"]);
    strays.push(orphan, Number(main.outputs["clean"]));
    expect(alive(orphan)).toBe(true);
    const killed = await cleanUpRunnerJobs();
    expect(killed.map((p) => p.pid)).toEqual([orphan]);
    expect(alive(orphan)).toBe(false);
  });

  it("cancels with SIGINT first, then runs the post step (post-if always())", async () => {
    const job = await startRunnerJob();
    const main = await job.run(probe, {
      with: { mode: "polite" },
      cancelWhen: (step) => step.until(() => step.log().includes("waiting")),
    });
    expect(main.conclusion).toBe("cancelled");
    expect(main.cancelSignals).toEqual(["SIGINT"]);
    expect(main.code).toBe(130);
    expect(main.log).toContain("cancelled politely");
    expect(job.status).toBe("cancelled");
    // A later main step under the default success() is skipped.
    expect((await job.run(probe, { with: { mode: "files" } })).conclusion).toBe("skipped");
    const { posts } = await job.complete();
    expect(posts.map((p) => p.conclusion)).toEqual(["success"]);
  });

  it("escalates to SIGTERM and then SIGKILL when the step ignores both", async () => {
    const job = await startRunnerJob();
    const main = await job.run(probe, {
      with: { mode: "stubborn" },
      cancelWhen: (step) => step.until(() => step.log().includes("waiting")),
    });
    expect(main.cancelSignals).toEqual(["SIGINT", "SIGTERM", "SIGKILL"]);
    expect(main.signal).toBe("SIGKILL");
    expect(main.log).toContain("ignoring SIGINT");
    expect(main.log).toContain("ignoring SIGTERM");
    await job.complete();
  });
});
