import { runRestoreAction } from "../action/restore-action.js";

await runRestoreAction();
