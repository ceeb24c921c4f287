/**
 * Runs a bundled action entry the way the Actions runner does: inputs as INPUT_* variables, outputs, state and the
 * job summary through the files named by GITHUB_OUTPUT, GITHUB_STATE and GITHUB_STEP_SUMMARY.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface ActionRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  outputs: Record<string, string>;
  state: Record<string, string>;
  summary: string;
  files: { output: string; state: string; summary: string; runnerTemp: string };
}

export interface ActionRunOptions {
  inputs: Record<string, string>;
  env?: Record<string, string>;
  state?: Record<string, string>;
  /** Called once the child is running, e.g. to send it a signal at the right moment. */
  onSpawn?: (child: import("node:child_process").ChildProcess) => void;
}

export async function runActionEntry(entry: string, options: ActionRunOptions): Promise<ActionRun> {
  const dir = await mkdtemp(join(tmpdir(), "lb-actions-"));
  const files = {
    output: join(dir, "output"),
    state: join(dir, "state"),
    summary: join(dir, "summary.md"),
    runnerTemp: join(dir, "runner-temp"),
  };
  await Promise.all([writeFile(files.output, ""), writeFile(files.state, ""), writeFile(files.summary, "")]);
  await (await import("node:fs/promises")).mkdir(files.runnerTemp);
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/root",
    GITHUB_ACTIONS: "true",
    GITHUB_OUTPUT: files.output,
    GITHUB_STATE: files.state,
    GITHUB_STEP_SUMMARY: files.summary,
    RUNNER_TEMP: files.runnerTemp,
    GITHUB_RUN_ID: "1",
    GITHUB_RUN_ATTEMPT: "1",
    ...options.env,
  };
  for (const [name, value] of Object.entries(options.inputs)) env[`INPUT_${name.toUpperCase()}`] = value;
  for (const [name, value] of Object.entries(options.state ?? {})) env[`STATE_${name}`] = value;
  const child = spawn(process.execPath, [entry], { env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => {
    stdout += d;
  });
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  options.onSpawn?.(child);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.on("close", (c, s) => resolve([c, s])),
  );
  return {
    code,
    signal,
    stdout,
    stderr,
    outputs: parseCommandFile(await readFile(files.output, "utf8")),
    state: parseCommandFile(await readFile(files.state, "utf8")),
    summary: await readFile(files.summary, "utf8"),
    files,
  };
}

/** The runner's file-command format: `name<<DELIMITER\nvalue\nDELIMITER\n` (and plain `name=value`). */
export function parseCommandFile(text: string): Record<string, string> {
  const values: Record<string, string> = {};
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc) {
      const end = lines.indexOf(heredoc[2]!, i + 1);
      values[heredoc[1]!] = lines.slice(i + 1, end).join("\n");
      i = end;
    } else if (line.includes("=")) {
      values[line.slice(0, line.indexOf("="))] = line.slice(line.indexOf("=") + 1);
    }
  }
  return values;
}
