/** The tool's version, recorded in every archive so a restore can say what wrote it. Keep in step with package.json. */
export const TOOL_VERSION = "0.1.0";
