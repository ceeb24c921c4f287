/**
 * skip-if-unchanged skips only while the backup standing in for this run is still there and will stay for a while:
 * never past half the retention, never when it cannot be found, never when nothing says where it is.
 */
import { describe, expect, it } from "vitest";
import { skipVerdict } from "../../src/action/skip-policy.js";
import {
  type CatalogSnapshot,
  compareSnapshots,
  type StoredReference,
} from "../../src/report/change-report.js";

const DAY = 86_400_000;
const now = new Date("2026-06-30T03:00:00Z");

function snapshot(ageDays: number, stored?: StoredReference): CatalogSnapshot {
  return {
    version: 1,
    archive: "prod-20260601T030000Z.tar.zst.age",
    createdAt: new Date(now.getTime() - ageDays * DAY).toISOString(),
    members: { "home/looker/looker.jar": { size: 3, fingerprint: "file|3|644|1|1|abc|" } },
    ...(stored ? { stored } : {}),
  };
}

const artifact: StoredReference = { kind: "artifact", artifactId: 7, repository: "acme/looker" };
const found = async () => true;

describe("skipVerdict", () => {
  it("skips an unchanged run while the previous archive is younger than half the retention and still stored", async () => {
    const previous = snapshot(14, artifact);
    const seen: StoredReference[] = [];
    const verdict = await skipVerdict(previous, compareSnapshots(previous, { ...previous }), {
      now,
      retentionDays: 30,
      stillStored: async (stored) => {
        seen.push(stored);
        return true;
      },
    });
    expect(verdict).toEqual({ skip: true });
    expect(seen).toEqual([artifact]);
  });

  it("backs up when the previous archive is older than half the retention", async () => {
    const previous = snapshot(15.5, artifact);
    const verdict = await skipVerdict(previous, compareSnapshots(previous, { ...previous }), {
      now,
      retentionDays: 30,
      stillStored: found,
    });
    expect(verdict.skip).toBe(false);
    expect(verdict.reason).toBe(
      "prod-20260601T030000Z.tar.zst.age is 15.5 days old, over half the 30-day retention",
    );
  });

  it("backs up when the previous archive can no longer be found, or its lookup fails", async () => {
    const previous = snapshot(1, artifact);
    const changes = compareSnapshots(previous, { ...previous });
    for (const stillStored of [async () => false, async () => Promise.reject(new Error("403 rate limit"))]) {
      const verdict = await skipVerdict(previous, changes, { now, retentionDays: 30, stillStored });
      expect(verdict).toEqual({
        skip: false,
        reason: "prod-20260601T030000Z.tar.zst.age can no longer be found",
      });
    }
  });

  it("backs up when the snapshot does not say where the archive was stored", async () => {
    const previous = snapshot(1);
    const verdict = await skipVerdict(previous, compareSnapshots(previous, { ...previous }), {
      now,
      retentionDays: 30,
      stillStored: found,
    });
    expect(verdict.skip).toBe(false);
  });

  it("in a directory store age alone does not matter (nothing expires there), presence does", async () => {
    const previous = snapshot(400, { kind: "dir", location: "/backups/prod-20260601T030000Z.tar.zst.age" });
    const changes = compareSnapshots(previous, { ...previous });
    expect(
      await skipVerdict(previous, changes, { now, retentionDays: undefined, stillStored: found }),
    ).toEqual({
      skip: true,
    });
  });

  it("never skips a changed run or a first run", async () => {
    const previous = snapshot(1, artifact);
    const changed: CatalogSnapshot = {
      ...previous,
      members: { "home/looker/looker.jar": { size: 4, fingerprint: "file|4|644|1|1|abd|" } },
    };
    const context = { now, retentionDays: 30, stillStored: found };
    expect((await skipVerdict(previous, compareSnapshots(previous, changed), context)).skip).toBe(false);
    expect((await skipVerdict(undefined, compareSnapshots(undefined, previous), context)).skip).toBe(false);
  });
});
