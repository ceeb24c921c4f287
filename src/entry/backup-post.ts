import { runPostAction } from "../action/post-action.js";

await runPostAction();
