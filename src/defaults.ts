/**
 * Every default a user can see, once: the settings builders (config/), the CLI's help, the layers that fall back to
 * them (zstd, the artifact store, Looker's control) and `npm run docs:check`, which holds action.yml's and
 * restore/action.yml's `default:` values to these. It sits below every folder so that each of them can use it, and
 * imports nothing so that the docs script can read it on its own.
 */

/** The looker user's home, where Looker's guide installs it. */
export const DEFAULT_HOME = "/home/looker";
export const DEFAULT_CONSISTENCY = "auto";
export const DEFAULT_LOOKER_CONTROL = "auto";
/** The unit Looker's customer-scripts publish (startup_scripts/systemd/looker.service). */
export const DEFAULT_LOOKER_UNIT = "looker.service";
/** Looker's own default web port (its startup script's `LOOKERPORT`). */
export const DEFAULT_WEB_PORT = 9999;
/** Looker's own default API port (`--core-port`). */
export const DEFAULT_API_PORT = 19999;
/** How long Looker may take to answer /alive after a start. */
export const DEFAULT_BOOT_TIMEOUT_SECONDS = 600;
/** The longest wait any timeout setting accepts: a day. */
export const MAX_TIMEOUT_SECONDS = 86_400;
export const DEFAULT_QUIET_WINDOW_TIME_ZONE = "UTC";
export const DEFAULT_STORE = "artifact";
export const DEFAULT_RETENTION_DAYS = 30;
/** GitHub's limit for private repositories (90 for public ones; the artifact client lowers a longer request). */
export const MAX_RETENTION_DAYS = 400;
/** 0: every archive is kept. */
export const DEFAULT_KEEP_LAST = 0;
export const MAX_KEEP = 100_000;
/** zstd's own default level; 1 is fastest, 19 the smallest output without zstd's --ultra levels. */
export const DEFAULT_COMPRESSION_LEVEL = 3;
export const MIN_COMPRESSION_LEVEL = 1;
export const MAX_COMPRESSION_LEVEL = 19;
export const DEFAULT_XATTRS = "auto";
export const DEFAULT_ON_WARNINGS = "warn";
export const DEFAULT_BACKEND = "auto";
export const DEFAULT_SSH_PORT = 22;
/** The drill creates the looker user and places the home, so it connects as root. */
export const DEFAULT_TARGET_USER = "root";
/** How long a freshly provisioned drill host may take to answer SSH. */
export const DEFAULT_SSH_TIMEOUT_SECONDS = 300;
export const DEFAULT_MYSQL_PORT = 3306;
/** The drill's own database, dropped and re-created by every drill. */
export const DEFAULT_DRILL_DATABASE = "looker_drill";
