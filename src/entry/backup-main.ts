import { runBackupAction } from "../action/backup-action.js";

await runBackupAction();
