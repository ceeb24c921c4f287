/**
 * Stopping and starting the nodes of an instance, remembering exactly which nodes this run stopped so that they —
 * and only they — are started again however the run ends (success, failure, cancel, or the Actions post step).
 */
import { LookerBackupError, LookerError } from "../errors.js";
import type { LookerNode } from "./control.js";

export interface StopRecord {
  /** Indexes (into the configured node list) of nodes this run stopped and has not started again. */
  readonly stoppedByUs: readonly number[];
  readonly stoppedAt?: string;
}

export class Cluster {
  private stoppedByUs: number[] = [];
  private stoppedAtMs: number | undefined;
  /** Milliseconds Looker was down because of this run (first stop to last node healthy). */
  downtimeMs = 0;

  constructor(
    readonly nodes: readonly LookerNode[],
    /** Persists the stop record (Actions state) each time it changes, before the change takes effect outside. */
    private readonly onRecord: (record: StopRecord) => void = () => {},
    private readonly log: (line: string) => void = () => {},
  ) {}

  get anyStoppedByUs(): boolean {
    return this.stoppedByUs.length > 0;
  }

  /**
   * Stops every running node in parallel (Looker requires all nodes down for recrypt/restore). A node already
   * stopped is left as found and will not be started by us.
   */
  async stopAll(): Promise<void> {
    const running = await Promise.all(this.nodes.map((node) => node.isRunning()));
    const toStop = this.nodes.map((_, i) => i).filter((i) => running[i]);
    // Record first: if we die mid-stop, the post step must still try to start these.
    this.stoppedByUs = toStop;
    this.stoppedAtMs = Date.now();
    this.onRecord({ stoppedByUs: toStop, stoppedAt: new Date(this.stoppedAtMs).toISOString() });
    const results = await Promise.allSettled(
      toStop.map(async (i) => {
        this.log(`stopping Looker on ${this.nodes[i]!.name}`);
        await this.nodes[i]!.stop();
      }),
    );
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  /** Starts the nodes this run stopped, one at a time, each healthy before the next; tries all, reports the first failure. */
  async restartStopped(signal?: AbortSignal): Promise<void> {
    let firstError: unknown;
    for (const index of [...this.stoppedByUs]) {
      const node = this.nodes[index]!;
      try {
        this.log(`starting Looker on ${node.name}`);
        await node.start(signal);
        // Operators (and tests) read the one-at-a-time order from the log: started, healthy, next.
        this.log(`Looker on ${node.name} is up (/alive answers)`);
        this.stoppedByUs = this.stoppedByUs.filter((i) => i !== index);
        this.onRecord({ stoppedByUs: this.stoppedByUs });
      } catch (error) {
        firstError ??= error;
      }
    }
    if (this.stoppedAtMs !== undefined) this.downtimeMs = Date.now() - this.stoppedAtMs;
    if (firstError !== undefined) {
      throw firstError instanceof LookerBackupError
        ? firstError
        : new LookerError(`Looker failed to start: ${(firstError as Error).message}`, { cause: firstError });
    }
  }

  /**
   * The Actions post step: brings back every node the record names within `budgetMs` in all (a cancelled job has
   * about five minutes, post steps included). A node already running again (a start of the main step still under
   * way, or an admin's) is only waited for; a stopped one is started. Fails naming every node left down.
   */
  async startRecordedWithin(budgetMs: number, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + budgetMs;
    const down: LookerNode[] = [];
    let firstError: unknown;
    for (const index of [...this.stoppedByUs]) {
      const node = this.nodes[index]!;
      try {
        const left = deadline - Date.now();
        if (left <= 0) throw new LookerError(`no time left to start Looker on ${node.name}`);
        if (await node.isRunning()) {
          this.log(`Looker on ${node.name} is running again; waiting for /alive`);
          await node.waitUntilAlive(Math.max(0, deadline - Date.now()), signal);
        } else {
          this.log(`starting Looker on ${node.name}`);
          await node.start(signal, Math.max(1, deadline - Date.now()));
        }
        this.log(`Looker on ${node.name} is up (/alive answers)`);
        this.stoppedByUs = this.stoppedByUs.filter((i) => i !== index);
        this.onRecord({ stoppedByUs: this.stoppedByUs });
      } catch (error) {
        down.push(node);
        firstError ??= error;
      }
    }
    if (this.stoppedAtMs !== undefined) this.downtimeMs = Date.now() - this.stoppedAtMs;
    if (down.length > 0) {
      const cause = firstError as Error;
      throw new LookerError(
        `Looker is still down on ${down.map((n) => n.name).join(", ")} after ${Math.round(budgetMs / 1000)} s: ${cause.message}`,
        {
          hint: `start it by hand (${[...new Set(down.map((n) => n.startCommand))].join("; ")}) and check its log`,
          cause,
          ...(cause instanceof LookerError && cause.logTail ? { logTail: cause.logTail } : {}),
        },
      );
    }
  }

  /** Names of the nodes this run stopped and has not started again. */
  get stoppedNames(): string[] {
    return this.stoppedByUs.map((i) => this.nodes[i]!.name);
  }

  /** For the post step: adopt the record the main step persisted. */
  adopt(record: StopRecord): void {
    this.stoppedByUs = record.stoppedByUs.filter((i) => i >= 0 && i < this.nodes.length);
    if (record.stoppedAt) this.stoppedAtMs = Date.parse(record.stoppedAt);
  }
}
