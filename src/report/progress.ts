import { formatBytes, formatDuration, formatRate } from "../runtime/format.js";

/**
 * Turns a stream of byte counts into an occasional progress line (bytes, %, rate, ETA). Throttled so a long run
 * logs a line every few seconds rather than flooding a CI log.
 */
export class ProgressReporter {
  private readonly startedAt: number;
  private lastPrintAt = 0;

  constructor(
    private readonly label: string,
    private readonly print: (line: string) => void,
    private readonly intervalMs = 5000,
    private readonly clock: () => number = Date.now,
  ) {
    this.startedAt = clock();
    this.lastPrintAt = this.startedAt;
  }

  update(bytesDone: number, bytesTotal?: number): void {
    const now = this.clock();
    if (now - this.lastPrintAt < this.intervalMs) return;
    this.lastPrintAt = now;
    this.print(this.line(bytesDone, bytesTotal, now));
  }

  line(bytesDone: number, bytesTotal: number | undefined, now = this.clock()): string {
    const elapsed = now - this.startedAt;
    const parts = [`${this.label}: ${formatBytes(bytesDone)}`];
    if (bytesTotal && bytesTotal > 0) {
      const fraction = Math.min(1, bytesDone / bytesTotal);
      parts[0] += ` of ${formatBytes(bytesTotal)} (${Math.floor(fraction * 100)}%)`;
      parts.push(formatRate(bytesDone, elapsed));
      if (bytesDone > 0 && fraction < 1)
        parts.push(`ETA ${formatDuration((elapsed / bytesDone) * (bytesTotal - bytesDone))}`);
    } else {
      parts.push(formatRate(bytesDone, elapsed));
    }
    return parts.join(", ");
  }
}
