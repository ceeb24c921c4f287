#!/usr/bin/env node
import "./runtime/heap-limits.js"; // first: sizes the heap before anything allocates
import { runCli } from "./cli/main.js";

const controller = new AbortController();
for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => controller.abort());
const stdout = (text: string) => process.stdout.write(text);
const stderr = (text: string) => process.stderr.write(text);
process.exitCode = await runCli(process.argv.slice(2), { stdout, stderr, signal: controller.signal });
