/**
 * The CLI as a process: its arguments, stdout and stderr, SIGINT and SIGTERM as cancel, and the exit code. One
 * function for both ways it ships: dist/cli.js (an ES module) and the standalone binary, whose main is CommonJS
 * (Node 24's single executable applications run only a CommonJS main), where top-level await does not exist.
 */
import { runCli } from "./main.js";

export async function runCliProcess(): Promise<void> {
  const controller = new AbortController();
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => controller.abort());
  const stdout = (text: string) => process.stdout.write(text);
  const stderr = (text: string) => process.stderr.write(text);
  process.exitCode = await runCli(process.argv.slice(2), {
    stdout,
    stderr,
    stderrIsTTY: process.stderr.isTTY === true,
    signal: controller.signal,
  });
}
