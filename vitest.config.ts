import { defineConfig } from "vitest/config";

/**
 * Peak-memory measurements run alone, after every other test: on 2 cores, a neighbour's CPU load delays the
 * measured process's garbage collection, and the same 2 GiB backup peaked at 223 MiB alone and at 261 MiB beside
 * other test files. The bound they assert stays as it is; only the noise around it goes.
 */
const MEASURED_ALONE = ["test/integration/memory.test.ts"];

const shared = {
  // Looker's commands need a `java` on PATH: the stand-in that runs the simulated jar (test/helpers/java-path.ts).
  setupFiles: ["test/helpers/java-on-path.setup.ts"],
  // Integration tests start real sshd, MariaDB and Looker simulator processes; they need time, not retries.
  testTimeout: 120_000,
  hookTimeout: 120_000,
  pool: "forks" as const,
};

export default defineConfig({
  test: {
    maxWorkers: 2,
    projects: [
      {
        test: {
          ...shared,
          name: "suite",
          include: ["test/**/*.test.ts"],
          exclude: MEASURED_ALONE,
          fileParallelism: true,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          ...shared,
          name: "measured alone",
          include: MEASURED_ALONE,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
