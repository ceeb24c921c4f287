import "../runtime/heap-limits.js"; // first: sizes the heap before anything allocates
import { runBackupAction } from "../action/backup-action.js";

await runBackupAction();
