import "../runtime/heap-limits.js"; // first: sizes the heap before anything allocates
import { runRestoreAction } from "../action/restore-action.js";

await runRestoreAction();
