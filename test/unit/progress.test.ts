/**
 * The progress model with an injected clock: the rate as a moving average, the time left from it, the plain lines
 * (every 10 s or each tenth of the total) and the terminal's live line (redrawn at most ten times a second).
 */
import { describe, expect, it } from "vitest";
import { ProgressReporter, RATE_TAU_MS, RateEstimator } from "../../src/report/progress.js";

const MiB = 1 << 20;

/** A reporter on a clock the test moves, with everything it wrote. */
function reporter(tty: boolean, label = "restore") {
  let now = 1_000_000;
  let written = "";
  const progress = new ProgressReporter(
    label,
    (text) => {
      written += text;
    },
    { tty, clock: () => now, timer: false },
  );
  return {
    progress,
    advance: (ms: number) => {
      now += ms;
    },
    written: () => written,
    lines: () => written.split("\n").filter((line) => line !== ""),
  };
}

describe("RateEstimator", () => {
  it("is the plain average at first, and follows a change of pace within a few time constants", () => {
    const rate = new RateEstimator(0);
    expect(rate.perSecond()).toBeUndefined();
    // 10 MiB/s for 5 s.
    for (let t = 1; t <= 5; t++) rate.sample(t * 10 * MiB, t * 1000);
    expect(rate.perSecond()! / MiB).toBeCloseTo(10, 6);
    // Then 1 MiB/s: after 30 s (three time constants) the average is within 5 % of the new pace.
    let count = 50 * MiB;
    for (let t = 6; t <= 35; t++) {
      count += MiB;
      rate.sample(count, t * 1000);
    }
    expect(RATE_TAU_MS).toBe(10_000);
    expect(rate.perSecond()! / MiB).toBeGreaterThan(1);
    expect(rate.perSecond()! / MiB).toBeLessThan(1.05 + (10 - 1) * Math.exp(-3));
  });

  it("ignores samples closer together than a quarter second", () => {
    const rate = new RateEstimator(0);
    rate.sample(100 * MiB, 10);
    expect(rate.perSecond()).toBeUndefined();
    rate.sample(MiB, 1000);
    expect(rate.perSecond()! / MiB).toBeCloseTo(1, 6);
  });
});

describe("ProgressReporter, plain lines (a pipe, the Actions log)", () => {
  it("prints the phase, then a line at each tenth of the total, never past 100 %", () => {
    const { progress, advance, lines } = reporter(false);
    progress.phase("reading", { total: 100 * MiB });
    expect(lines()).toEqual(["restore: reading 0 B of 100 MiB (0%)"]);
    // 2 MiB every 100 ms: a tenth every 500 ms, so the 10 s rule never decides here.
    for (let done = 2; done <= 100; done += 2) {
      advance(100);
      progress.update(done * MiB);
    }
    const shown = lines().slice(1);
    expect(shown).toHaveLength(10);
    expect(shown.map((line) => /\((\d+)%\)/.exec(line)![1])).toEqual([
      "10",
      "20",
      "30",
      "40",
      "50",
      "60",
      "70",
      "80",
      "90",
      "100",
    ]);
    // More than the total (a live file grew): still 100 %, the total shown as the count.
    advance(100);
    progress.update(104 * MiB);
    progress.finish();
    expect(lines().at(-1)).toMatch(/^restore: reading 104 MiB of 104 MiB \(100%\), /);
  });

  it("prints a line every 10 s when the count moves slowly, and when nothing is counted at all", () => {
    const { progress, advance, lines } = reporter(false, "backup");
    progress.phase("stopping Looker");
    for (let t = 0; t < 25; t++) {
      advance(1000);
      progress.tick();
    }
    expect(lines()).toEqual([
      "backup: stopping Looker",
      "backup: stopping Looker, 10.0 s",
      "backup: stopping Looker, 20.0 s",
    ]);
    progress.phase("reading", { total: 1000 * MiB });
    for (let t = 1; t <= 25; t++) {
      advance(1000);
      progress.update(t * MiB);
    }
    expect(lines().slice(3)).toEqual([
      "backup: reading 0 B of 1000 MiB (0%)",
      "backup: reading 10.0 MiB of 1000 MiB (1%), 1.0 MiB/s, ETA 16 min 30 s",
      "backup: reading 20.0 MiB of 1000 MiB (2%), 1.0 MiB/s, ETA 16 min 20 s",
    ]);
    // A new phase first closes the last one with its count.
    progress.phase("storing");
    expect(lines().slice(6)).toEqual([
      "backup: reading 25.0 MiB of 1000 MiB (2%), 1.0 MiB/s, ETA 16 min 15 s",
      "backup: storing",
    ]);
  });

  it("takes its count from the sample at each tick, and shows a second count beside it", () => {
    let read = 0;
    const { progress, advance, lines } = reporter(false);
    progress.phase("reading", { total: 10 * MiB, sample: () => read, alongside: "plaintext" });
    read = 5 * MiB;
    advance(1000);
    progress.update(read, { alongside: 9 * MiB });
    expect(lines().at(-1)).toBe("restore: reading 5.0 MiB of 10.0 MiB (50%), 9.0 MiB plaintext, 5.0 MiB/s");
    read = 6 * MiB;
    advance(1000);
    progress.tick();
    expect(lines().at(-1)).toMatch(/^restore: reading 6\.0 MiB of 10\.0 MiB \(60%\), 9\.0 MiB plaintext, /);
  });
});

describe("the time left", () => {
  it("comes from the recent rate, not from the average since the start", () => {
    const { progress, advance } = reporter(false);
    progress.phase("reading", { total: 1000 * MiB });
    // A burst (read-ahead filling buffers), then a steady 10 MiB/s.
    advance(500);
    progress.update(200 * MiB);
    let done = 200;
    for (let t = 0; t < 40; t++) {
      advance(1000);
      done += 10;
      progress.update(done * MiB);
    }
    // 400 MiB left at 10 MiB/s: 40 s. The average since the start (600 MiB in 40.5 s) would say 27 s.
    const eta = Number(/ETA (\d+) s$/.exec(progress.line())![1]);
    expect(eta).toBeGreaterThanOrEqual(38);
    expect(eta).toBeLessThanOrEqual(45);
  });

  it("is never shown in the phase's first two seconds, nor once the count reached the total", () => {
    const { progress, advance } = reporter(false);
    progress.phase("reading", { total: 100 * MiB });
    advance(1000);
    progress.update(10 * MiB);
    expect(progress.line()).not.toMatch(/ETA/);
    advance(1500);
    progress.update(25 * MiB);
    expect(progress.line()).toMatch(/ETA \d+ s$/);
    advance(1000);
    progress.update(100 * MiB);
    expect(progress.line()).not.toMatch(/ETA/);
  });

  it("says <1 s rather than milliseconds", () => {
    const { progress, advance } = reporter(false);
    progress.phase("reading", { total: 100 * MiB });
    for (let t = 1; t <= 4; t++) {
      advance(1000);
      progress.update(t * 24.9 * MiB);
    }
    expect(progress.line()).toMatch(/ETA <1 s$/);
  });
});

describe("ProgressReporter on a terminal", () => {
  it("redraws one line in place at most ten times a second, and ends it with a newline", () => {
    const { progress, advance, written } = reporter(true);
    progress.phase("reading", { total: 100 * MiB });
    // 1,000 updates over 2 s: at most 21 draws (one at the phase, then one per 100 ms).
    for (let i = 1; i <= 1000; i++) {
      advance(2);
      progress.update((i / 10) * MiB);
    }
    const draws = written()
      .split("\r\x1b[2K")
      .filter((part) => part !== "");
    expect(draws.length).toBeGreaterThan(5);
    expect(draws.length).toBeLessThanOrEqual(21);
    expect(written()).not.toContain("\n");
    progress.finish();
    expect(written().endsWith("\n")).toBe(true);
    expect(written().split("\n")).toHaveLength(2);
    expect(written().split("\r\x1b[2K").at(-1)).toMatch(
      /^restore: reading 100 MiB of 100 MiB \(100%\), .*\n$/,
    );
  });

  it("prints a log line above the live line, then draws the live line again", () => {
    const { progress, written } = reporter(true);
    progress.phase("stopping Looker");
    progress.log("preflight: store: ok");
    expect(written()).toBe(
      "\r\x1b[2Krestore: stopping Looker\r\x1b[2Kpreflight: store: ok\n\r\x1b[2Krestore: stopping Looker",
    );
    progress.finish();
    progress.finish();
    expect(written().endsWith("restore: stopping Looker\n")).toBe(true);
    progress.update(5);
    progress.log("after the end");
    expect(written().endsWith("restore: stopping Looker\nafter the end\n")).toBe(true);
  });
});
