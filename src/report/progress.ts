/**
 * Progress for people, one model for backup, verify, restore and the drill: the phase under way ("stopping Looker",
 * "reading", "placing", ...), and in a phase that reads, the bytes done against the known total, the rate and the time
 * left. The rate is an exponentially weighted average over about the last 10 s (RATE_TAU_MS), so the time left follows
 * what the run does now, not what it did at its start or in a burst of read-ahead.
 *
 * On a terminal it is one line, redrawn in place at most every REDRAW_MS and ended with a newline by finish(); in a
 * pipe or the Actions log a plain line every LINE_EVERY_MS or each tenth of the total, whichever comes first, and one
 * at each new phase. Everything goes through `write`, which the caller points at stderr (stdout stays the command's,
 * for --json); lines others print while a live line stands go through log(), which clears and redraws it.
 */
import { formatBytes, formatDuration } from "../runtime/format.js";

/** A terminal's live line is redrawn at most this often (ten times a second). */
export const REDRAW_MS = 100;
/** Outside a terminal: a line at least this often while a phase goes on... */
export const LINE_EVERY_MS = 10_000;
/** ...and one each time the bytes done pass another tenth of the total. */
export const LINE_EVERY_FRACTION = 0.1;
/** The time constant of the rate's moving average. */
export const RATE_TAU_MS = 10_000;
/** Outside a terminal the count is looked at this often, so that a line comes close to each tenth. */
const PLAIN_TICK_MS = 250;
/** Samples closer together than this are one (a rate from a few milliseconds says nothing). */
const MIN_SAMPLE_MS = 250;
/** No time left is shown before the rate rests on this much of the phase. */
const ETA_AFTER_MS = 2000;
/** `\r` and "erase the whole line": the next draw starts on a clean line. */
const CLEAR_LINE = "\r\x1b[2K";

/**
 * The rate of a count, as an exponentially weighted moving average of the rates between samples, each weighed by
 * the time it covers (time constant RATE_TAU_MS). The average starts from zero and is divided by the weight gathered
 * so far (1 - e^(-t/tau)), so early on it is the plain average since the start, and later the last ~10-20 s count.
 */
export class RateEstimator {
  private average = 0;
  private weight = 0;
  private lastAt: number;
  private lastCount: number;

  constructor(start: number, count = 0) {
    this.lastAt = start;
    this.lastCount = count;
  }

  sample(count: number, now: number): void {
    const elapsed = now - this.lastAt;
    if (elapsed < MIN_SAMPLE_MS) return;
    const rate = ((count - this.lastCount) * 1000) / elapsed;
    const alpha = 1 - Math.exp(-elapsed / RATE_TAU_MS);
    this.average += alpha * (rate - this.average);
    this.weight += alpha * (1 - this.weight);
    this.lastAt = now;
    this.lastCount = count;
  }

  /** Per second; undefined before the first sample. */
  perSecond(): number | undefined {
    return this.weight === 0 ? undefined : this.average / this.weight;
  }
}

/** What a phase that reads counts: its total, and where its count comes from between updates. */
export interface PhaseOptions {
  /** The bytes this phase reads in all (the archive's size, the selection's bytes). */
  readonly total?: number;
  /** Read at every tick: the bytes done (a read stream's bytesRead), for a count that moves between updates. */
  readonly sample?: () => number;
  /** What a second count shown beside the bytes done is (restore: "plaintext"). */
  readonly alongside?: string;
}

export interface ProgressOptions {
  /** A terminal (stderr.isTTY): the live line; otherwise plain lines. */
  readonly tty: boolean;
  readonly clock?: () => number;
  /**
   * Ticks on a timer (REDRAW_MS on a terminal, PLAIN_TICK_MS otherwise), so a phase that reads nothing for a while still
   * shows its time, and a sampled count moves. Unit tests leave it off and call tick() with their own clock.
   */
  readonly timer?: boolean;
}

interface Counting {
  total: number | undefined;
  sample: (() => number) | undefined;
  alongside: string | undefined;
  done: number;
  side: number | undefined;
  readonly rate: RateEstimator;
}

export class ProgressReporter {
  private readonly clock: () => number;
  private readonly tty: boolean;
  private phaseName = "";
  private phaseStart: number;
  private counting: Counting | undefined;
  /** Terminal: a live line is on screen (without its newline). */
  private live = false;
  private lastDrawAt = Number.NEGATIVE_INFINITY;
  /** Plain lines: when the last one was printed, at which tenth of the total, with what count. */
  private lastLineAt: number;
  private lastTenth = 0;
  private lastLineDone: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private finished = false;

  constructor(
    private readonly label: string,
    private readonly write: (text: string) => void,
    options: ProgressOptions,
  ) {
    this.clock = options.clock ?? Date.now;
    this.tty = options.tty;
    this.phaseStart = this.clock();
    this.lastLineAt = this.phaseStart;
    if (options.timer ?? true) {
      this.timer = setInterval(() => this.tick(), this.tty ? REDRAW_MS : PLAIN_TICK_MS);
      this.timer.unref();
    }
  }

  /** A new phase (the same name again only updates what it counts): shown at once. */
  phase(name: string, options: PhaseOptions = {}): void {
    if (this.finished) return;
    const now = this.clock();
    const counts = options.total !== undefined || options.sample !== undefined;
    if (name === this.phaseName) {
      if (counts) this.count(now, options);
      this.tick();
      return;
    }
    this.closeCount(now);
    this.phaseName = name;
    this.phaseStart = now;
    this.counting = undefined;
    const counting = counts ? this.count(now, options) : undefined;
    this.lastLineAt = now;
    this.lastTenth = 0;
    this.lastLineDone = counting?.done;
    if (this.tty) this.draw(now);
    else this.write(`${this.line(now)}\n`);
  }

  /** The bytes done in this phase (and the total, when it became known or changed; the count shown beside). */
  update(done: number, extra: { readonly total?: number; readonly alongside?: number } = {}): void {
    if (this.finished) return;
    const now = this.clock();
    const counting = this.counting ?? this.count(now, {});
    counting.done = done;
    if (extra.total !== undefined) counting.total = extra.total;
    if (extra.alongside !== undefined) counting.side = extra.alongside;
    counting.rate.sample(done, now);
    this.maybeShow(now);
  }

  /** Samples the count (PhaseOptions.sample) and shows what is due; the timer calls it, tests call it. */
  tick(): void {
    if (this.finished) return;
    const now = this.clock();
    const counting = this.counting;
    if (counting?.sample) {
      counting.done = counting.sample();
      counting.rate.sample(counting.done, now);
    }
    this.maybeShow(now);
  }

  /** A line of someone else's (a log line, a warning), printed so that the live line is not torn by it. */
  log(line: string): void {
    if (this.tty && this.live && !this.finished) {
      this.write(`${CLEAR_LINE}${line}\n`);
      this.draw(this.clock());
    } else {
      this.write(`${line}\n`);
    }
  }

  /** Ends the progress: the live line gets its newline; outside a terminal the last count is printed if it moved. */
  finish(): void {
    if (this.finished) return;
    if (this.timer) clearInterval(this.timer);
    const now = this.clock();
    if (this.tty) {
      if (this.counting?.sample) this.counting.done = this.counting.sample();
      if (this.live) this.write(`${CLEAR_LINE}${this.line(now)}\n`);
    } else {
      this.closeCount(now);
    }
    this.finished = true;
    this.live = false;
  }

  /** The line as it stands now. */
  line(now = this.clock()): string {
    const head = this.phaseName === "" ? `${this.label}:` : `${this.label}: ${this.phaseName}`;
    const counting = this.counting;
    if (counting === undefined) {
      const elapsed = now - this.phaseStart;
      return elapsed >= 1000 ? `${head}, ${formatDuration(elapsed)}` : head;
    }
    const { done, total, side, alongside } = counting;
    let bytes = formatBytes(done);
    if (total !== undefined && total > 0) {
      // A live home can grow while it is read: the count may pass the total measured before, never 100 %.
      const fraction = Math.min(1, done / total);
      bytes += ` of ${formatBytes(Math.max(total, done))} (${Math.floor(fraction * 100)}%)`;
    }
    const parts = [`${head} ${bytes}`];
    if (side !== undefined) parts.push(`${formatBytes(side)}${alongside ? ` ${alongside}` : ""}`);
    const rate = counting.rate.perSecond();
    if (rate !== undefined) parts.push(`${formatBytes(Math.max(0, rate))}/s`);
    const eta = this.secondsLeft(now);
    if (eta !== undefined) parts.push(`ETA ${formatEta(eta)}`);
    return parts.join(", ");
  }

  /** Time left at the current rate, once the rate means something; undefined otherwise. */
  private secondsLeft(now: number): number | undefined {
    const counting = this.counting;
    if (counting?.total === undefined || counting.done >= counting.total) return undefined;
    if (now - this.phaseStart < ETA_AFTER_MS) return undefined;
    const rate = counting.rate.perSecond();
    if (rate === undefined || rate <= 0) return undefined;
    return (counting.total - counting.done) / rate;
  }

  /** Outside a terminal, a phase that counted ends with its last count, when the last line did not show it. */
  private closeCount(now: number): void {
    const counting = this.counting;
    if (this.tty || counting === undefined) return;
    if (counting.sample) counting.done = counting.sample();
    if (counting.done !== this.lastLineDone) this.write(`${this.line(now)}\n`);
    this.lastLineDone = counting.done;
  }

  private count(now: number, options: PhaseOptions): Counting {
    const done = options.sample?.() ?? this.counting?.done ?? 0;
    this.counting = {
      total: options.total ?? this.counting?.total,
      sample: options.sample ?? this.counting?.sample,
      alongside: options.alongside ?? this.counting?.alongside,
      done,
      side: this.counting?.side,
      rate: this.counting?.rate ?? new RateEstimator(now, done),
    };
    return this.counting;
  }

  private maybeShow(now: number): void {
    if (this.tty) {
      if (now - this.lastDrawAt >= REDRAW_MS) this.draw(now);
      return;
    }
    const tenth = this.tenth();
    if (now - this.lastLineAt >= LINE_EVERY_MS || tenth > this.lastTenth) {
      this.write(`${this.line(now)}\n`);
      this.lastLineAt = now;
      this.lastTenth = tenth;
      this.lastLineDone = this.counting?.done;
    }
  }

  /** Which tenth of the total the count has reached (0 without a total). */
  private tenth(): number {
    const counting = this.counting;
    if (counting?.total === undefined || counting.total <= 0) return 0;
    return Math.floor(Math.min(1, counting.done / counting.total) / LINE_EVERY_FRACTION + 1e-9);
  }

  private draw(now: number): void {
    this.write(`${CLEAR_LINE}${this.line(now)}`);
    this.live = true;
    this.lastDrawAt = now;
  }
}

/** Whole seconds (rounded up) under a minute; never "192 ms": below a second it is "<1 s". */
function formatEta(seconds: number): string {
  if (seconds < 1) return "<1 s";
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  return formatDuration(seconds * 1000);
}
