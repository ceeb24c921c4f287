/**
 * The backup action's post step. It runs even when the main step failed or was cancelled: every node the main step
 * stopped and did not start again is started here, one at a time, each healthy before the next.
 */
import * as core from "@actions/core";
import { nodeSettingsOf, readBackupSettings } from "../config/backup-settings.js";
import { actionInputs } from "../config/source.js";
import { describeError, exitCodeOf, LookerError } from "../errors.js";
import { Cluster } from "../looker/cluster.js";
import { connectNodes } from "../looker/nodes.js";
import { maskSecretInputs } from "./secrets.js";
import { loadStopRecord, saveStopRecord } from "./state.js";

/**
 * A cancelled job has about five minutes in all, post steps included (GitHub's docs on cancelling workflows): the
 * post step must finish, and say which nodes it could not bring back, before the runner gives up on it.
 */
const POST_BUDGET_MS = 4 * 60_000;

export async function runPostAction(): Promise<void> {
  maskSecretInputs();
  const record = loadStopRecord();
  if (!record || record.stoppedByUs.length === 0) {
    core.info("nothing to restart: the main step left every Looker node as it found it");
    return;
  }
  try {
    const settings = readBackupSettings(actionInputs((name) => core.getInput(name)));
    const connected = await connectNodes(nodeSettingsOf(settings.home, settings), (l) => core.info(l));
    try {
      const cluster = new Cluster(connected.nodes, saveStopRecord, (l) => core.info(l));
      cluster.adopt(record);
      core.warning(
        `the main step ended with ${record.stoppedByUs.length} Looker node(s) stopped; starting them now`,
      );
      await cluster.startRecordedWithin(POST_BUDGET_MS);
      core.info("Looker is running again on every node this run stopped");
    } finally {
      await connected.close();
    }
  } catch (error) {
    core.setFailed(`could not restart Looker: ${describeError(error)}`);
    if (error instanceof LookerError && error.logTail) {
      core.startGroup("Looker log (last lines)");
      core.info(error.logTail);
      core.endGroup();
    }
    process.exitCode = exitCodeOf(error);
  }
}
