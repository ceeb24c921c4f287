/**
 * Callers waiting for a thread's backlog (work sent, not answered yet) to shrink to a bound. The owner tells it
 * when the backlog shrank (wake) or the thread failed (rejectAll).
 */
export class BacklogWaiters {
  private waiting: { resolve: () => void; reject: (error: Error) => void; until: number }[] = [];

  /** @param backlog the owner's current backlog */
  constructor(private readonly backlog: () => number) {}

  /** Resolves once the backlog is at most `until`. */
  until(until: number): Promise<void> {
    if (this.backlog() <= until) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject, until }));
  }

  /** Resolves the waiters whose bound the backlog has reached. */
  wake(): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const waiter of waiting) {
      if (this.backlog() <= waiter.until) waiter.resolve();
      else this.waiting.push(waiter);
    }
  }

  rejectAll(error: Error): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const waiter of waiting) waiter.reject(error);
  }
}
