import type { Manifest, ManifestRule, OutsidePath } from "./rules.js";

/**
 * Looker's "Creating backups" guide as data: the whole home of the looker user, the paths the
 * guide names as essential checked for presence, and the temp/copy/log paths it says are not needed left out.
 */
export interface DefaultManifestOptions {
  /** With a MySQL backend the internal database directory is not needed for a restore. */
  readonly mysqlBackend: boolean;
  /** CA-signed certificate and key files kept outside the home, named by the user. */
  readonly sslFiles?: readonly string[];
  /** A cluster's `--shared-storage-dir` (from lookerstart.cfg): shared files every node reads, outside the home. */
  readonly sharedStorageDir?: string;
}

export const INIT_SCRIPT_PATH = "/etc/init.d/looker";
export const MYSQL_BACKEND_MARKER = "looker/looker-db.yml";

export function defaultManifest(options: DefaultManifestOptions): Manifest {
  return {
    rules: defaultRules(options.mysqlBackend),
    outside: defaultOutside(options.sslFiles ?? [], options.sharedStorageDir),
  };
}

function defaultRules(mysqlBackend: boolean): ManifestRule[] {
  const include = (pattern: string, required: boolean, reason: string): ManifestRule => ({
    id: `default:${pattern}`,
    action: "include",
    pattern,
    required,
    reason,
    origin: "default",
  });
  const exclude = (pattern: string, reason: string, fixed = false): ManifestRule => ({
    id: `default:${pattern}`,
    action: "exclude",
    pattern,
    required: false,
    reason,
    origin: "default",
    fixed,
  });
  return [
    include(
      ".",
      false,
      "the rest of the looker home: jars, the looker script, lookerstart.cfg, looker-db.yml",
    ),
    include(".ssh", true, "git keys for LookML projects created by Looker 4.6 and earlier"),
    include(
      "looker/.db",
      !mysqlBackend,
      mysqlBackend
        ? "internal database directory (not required: the backend is MySQL, dumped separately)"
        : "the internal database: users, content, settings, encryption keys",
    ),
    exclude(
      "looker/.db/looker.lck",
      "lock file of a running Looker; a restored copy must not carry it",
      true,
    ),
    include(
      "looker/deploy_keys",
      true,
      "git deploy keys for LookML projects created by Looker 4.8 and later",
    ),
    include("looker/models-user-*", false, "each developer's LookML models (development mode)"),
    include("looker/.ssl", false, "certificates: self-signed ones are regenerated, CA-signed ones are not"),
    // Runtime files of Looker's startup script: a restored copy carrying them would suppress or confuse a start on
    // the new host (`.starting` holds the pid of a start in progress; the token belongs to the server that wrote it).
    exclude(
      "looker/.starting",
      "pid of a `looker start` in progress; a restored copy must not carry it",
      true,
    ),
    exclude(
      "looker/.status_server_token",
      "the running server's stop token; Looker on the restored host writes its own",
      true,
    ),
    exclude("looker/log", "logs are not needed to restore; include them in a manifest if retention requires"),
    exclude("looker/.cache", "temporary data Looker rebuilds"),
    exclude("looker/.tmp", "temporary data Looker rebuilds"),
    exclude("looker/.snapshots", "copies of data that Looker recreates"),
    exclude("looker/models", "production models, re-cloned from git on start"),
  ];
}

function defaultOutside(sslFiles: readonly string[], sharedStorageDir: string | undefined): OutsidePath[] {
  const initScript: OutsidePath = {
    id: `default:${INIT_SCRIPT_PATH}`,
    path: INIT_SCRIPT_PATH,
    required: false,
    reason: "init script that starts Looker at boot (backed up when present)",
    origin: "default",
  };
  const ssl = sslFiles.map(
    (path): OutsidePath => ({
      id: `ssl:${path}`,
      path,
      required: true,
      reason: "SSL certificate or key file named in the settings",
      origin: "default",
    }),
  );
  const shared: OutsidePath[] = sharedStorageDir
    ? [
        {
          id: "default:shared-storage-dir",
          path: sharedStorageDir,
          required: true,
          reason:
            "the cluster's shared storage (--shared-storage-dir in lookerstart.cfg): files every node reads",
          origin: "default",
        },
      ]
    : [];
  return [initScript, ...ssl, ...shared];
}
