import "./runtime/heap-limits.js"; // first: sizes the heap before anything allocates
import { runCliProcess } from "./cli/run-process.js";

await runCliProcess();
