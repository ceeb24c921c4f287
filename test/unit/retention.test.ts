import { describe, expect, it } from "vitest";
import { namesToPrune, pruneRefusal } from "../../src/store/retention.js";
import type { StoredObject } from "../../src/store/store.js";

/** Archives every 6 hours from 2026-11-01 to 2026-12-05 (UTC), named by their time; sizes all alike. */
function month(): StoredObject[] {
  const list: StoredObject[] = [];
  for (let t = Date.UTC(2026, 10, 1, 3); t <= Date.UTC(2026, 11, 5, 21); t += 6 * 3_600_000) {
    const at = new Date(t);
    const name = `prod-${at
      .toISOString()
      .replace(/[-:]/g, "")
      .replace(/\.\d{3}Z$/, "Z")}.tar.zst.age`;
    list.push({ name, size: 1000, location: name, createdAt: at });
  }
  return list;
}

const NOW = new Date(Date.UTC(2026, 11, 5, 22));

function kept(archives: StoredObject[], policy: Parameters<typeof namesToPrune>[1]): string[] {
  const pruned = new Set(namesToPrune(archives, policy, NOW));
  return archives
    .filter((a) => !pruned.has(a.name))
    .map((a) => a.createdAt.toISOString().slice(0, 13))
    .sort();
}

describe("retention with restic's semantics, over a month of archives", () => {
  it("keep-daily 7 keeps the newest archive of each of the last 7 days that have one", () => {
    expect(kept(month(), { keepDaily: 7 })).toEqual([
      "2026-11-29T21",
      "2026-11-30T21",
      "2026-12-01T21",
      "2026-12-02T21",
      "2026-12-03T21",
      "2026-12-04T21",
      "2026-12-05T21",
    ]);
  });

  it("keep-weekly 3 keeps the newest of each of the last 3 ISO weeks (Monday to Sunday)", () => {
    // 2026-12-05 is a Saturday: its week began on Monday 11-30; the two before end on Sundays 11-29 and 11-22.
    expect(kept(month(), { keepWeekly: 3 })).toEqual(["2026-11-22T21", "2026-11-29T21", "2026-12-05T21"]);
  });

  it("keep-monthly 2 keeps the newest of November and of December", () => {
    expect(kept(month(), { keepMonthly: 2 })).toEqual(["2026-11-30T21", "2026-12-05T21"]);
  });

  it("rules add up: an archive is kept when any rule keeps it", () => {
    const both = kept(month(), { keepLast: 2, keepDaily: 2, keepMonthly: 2 });
    expect(both).toEqual(["2026-11-30T21", "2026-12-04T21", "2026-12-05T15", "2026-12-05T21"]);
    // Younger than one day at 2026-12-05T22: from 12-04T22 on.
    expect(kept(month(), { keepDays: 1 })).toEqual([
      "2026-12-05T03",
      "2026-12-05T09",
      "2026-12-05T15",
      "2026-12-05T21",
    ]);
  });

  it("days with no archive do not count, and the list's order does not matter", () => {
    const sparse = month().filter((a) => a.createdAt.getUTCDate() % 2 === 0);
    expect(kept([...sparse].reverse(), { keepDaily: 3 })).toEqual([
      "2026-11-30T21",
      "2026-12-02T21",
      "2026-12-04T21",
    ]);
  });

  it("puts 2026-12-31 and 2027-01-01 in one ISO week (2026-W53)", () => {
    const at = (iso: string): StoredObject => ({
      name: iso,
      size: 1,
      location: iso,
      createdAt: new Date(iso),
    });
    const archives = [at("2026-12-31T12:00:00Z"), at("2027-01-01T12:00:00Z"), at("2027-01-04T12:00:00Z")];
    expect(namesToPrune(archives, { keepWeekly: 2 }, NOW)).toEqual(["2026-12-31T12:00:00Z"]);
  });

  it("without any rule, nothing is pruned", () => {
    expect(namesToPrune(month(), {}, NOW)).toEqual([]);
  });
});

describe("the sanity check before pruning", () => {
  const at = (name: string, size: number, day: number): StoredObject => ({
    name,
    size,
    location: name,
    createdAt: new Date(Date.UTC(2026, 11, day)),
  });

  it("refuses after a backup less than half the size of the previous one, naming both", () => {
    const refusal = pruneRefusal([at("old", 461_000_000, 1), at("new", 1_800, 2)], { keepLast: 1 });
    expect(refusal).toMatch(
      /nothing pruned: the new archive new \(1800 bytes\) is less than half the size of old/,
    );
    expect(refusal).toMatch(/--force-prune/);
  });

  it("lets a normal backup prune, and --force-prune overrides", () => {
    expect(pruneRefusal([at("old", 1000, 1), at("new", 600, 2)], { keepLast: 1 })).toBeUndefined();
    expect(
      pruneRefusal([at("old", 1000, 1), at("new", 10, 2)], { keepLast: 1, forcePrune: true }),
    ).toBeUndefined();
  });
});
