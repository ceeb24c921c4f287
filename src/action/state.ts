/**
 * What the main step leaves for the post step (actions/cache's StateProvider idea): the nodes it stopped and has not
 * started again. The post step runs even when the main step failed or was cancelled.
 */
import * as core from "@actions/core";
import type { StopRecord } from "../looker/cluster.js";

export const State = {
  StopRecord: "stop-record",
} as const;

export function saveStopRecord(record: StopRecord): void {
  core.saveState(State.StopRecord, JSON.stringify(record));
}

export function loadStopRecord(): StopRecord | undefined {
  const raw = core.getState(State.StopRecord);
  if (!raw) return undefined;
  try {
    const parsed = JSON.parse(raw) as StopRecord;
    return Array.isArray(parsed.stoppedByUs) ? parsed : undefined;
  } catch {
    return undefined;
  }
}
