/**
 * Keeps V8's young generation at its initial size for the whole process, as the first thing an entry point does
 * (import it first).
 *
 * Why: a backup of 100,000 small files allocates fast enough that V8 grows its semi-spaces to the maximum
 * (heapTotal ~175 MiB against ~40 MiB of live objects), and nothing shrinks them while the pipeline runs.
 * Measured at 100,000 files: peak RSS ~375 -> ~280 MiB, heapTotal 174 -> 77 MiB, same CPU time (more, smaller
 * scavenges). Of the flags that would do it, only the growth factor takes effect once the process runs
 * (--max-semi-space-size is read at start-up only). V8 does not promise that flags set at run time apply; a
 * runtime that ignored this would only use more memory, never behave differently.
 */
import { setFlagsFromString } from "node:v8";

setFlagsFromString("--semi-space-growth-factor=1");
