import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Looker's commands need a `java` on PATH: the stand-in that runs the simulated jar (test/helpers/java-path.ts).
    setupFiles: ["test/helpers/java-on-path.setup.ts"],
    // Integration tests start real sshd, MariaDB and Looker simulator processes; they need time, not retries.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
    fileParallelism: true,
    maxWorkers: 2,
  },
});
