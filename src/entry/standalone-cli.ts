// The standalone binary's main (bundled as CommonJS by scripts/bundle.mjs): the same CLI as dist/cli.js.
import "../runtime/heap-limits.js"; // first: sizes the heap before anything allocates
import { runCliProcess } from "../cli/run-process.js";

void runCliProcess();
